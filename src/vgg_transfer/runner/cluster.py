"""A profile's runs as tasks on Dask distributed: one task is one run.

`--workers N` starts a local cluster of N worker processes (one per GPU, each pinned to its
own with CUDA_VISIBLE_DEVICES; on a CPU machine N workers sharing the cores); `--scheduler
ADDRESS` sends the runs to a cluster someone already runs (`dask scheduler` + `dask worker`,
dask-jobqueue on Slurm, dask-kubernetes). Each task is `sweep.run_one` for one run,
writing into the runs folder, which every worker must see at the same path: the run cache,
staging, resume from a checkpoint and the failure records are the sequential runner's own.
The worker runs each run in a child process of its own (see `run_task`). A worker that dies
mid-run is restarted by its nanny and the scheduler hands the run out again; it resumes from
its last checkpoint.

The runner calls `run_on_cluster` before its notebook pass, so every run is current (or failed)
by the time each experiment's notebook executes, and the notebooks only draw their pages.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path

from vgg_transfer import files
from vgg_transfer.run import backend
from vgg_transfer.runner import search, sweep
from vgg_transfer.runner.sweep import Outcome
from vgg_transfer.spec.config import ConfigError
from vgg_transfer.spec.profiles import GridRun

# Dask's nanny sets these to 1 in every worker it starts; the local cluster leaves them as
# they are here, so that a run's NumPy and oneDNN get the threads a sequential run gets.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

# Fault injection for the tests, off unless set: with VGG_TRANSFER_TEST_KILL=<run name>, the
# worker running that run kills itself (SIGKILL) right after the run's first checkpoint,
# once (a marker file beside the run's staging folder remembers it).
TEST_KILL = "VGG_TRANSFER_TEST_KILL"

# A local cluster listens here only (scheduler, its HTTP endpoint, nannies, workers): Dask
# runs whatever functions a connected client sends, so nothing else may reach it.
LOOPBACK = "127.0.0.1"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


# ---------------------------------------------------------------- the cluster

def visible_gpus() -> list[str]:
    """The GPUs a local cluster spreads its workers over, without importing TensorFlow:
    CUDA_VISIBLE_DEVICES when set, else what `nvidia-smi -L` lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, _ in enumerate(row for row in listing.splitlines()
                                         if row.startswith("GPU "))]


def worker_specs(workers: int, gpus: list[str]) -> dict[str, dict]:
    """One nanny per worker, one thread each; with GPUs, worker i sees only GPU i."""
    from distributed import Nanny

    if gpus and workers > len(gpus):
        raise ConfigError(f"workers: {workers} workers but {len(gpus)} GPU(s) visible "
                          f"({','.join(gpus)}); a local cluster runs one worker per GPU")
    specs = {}
    for i in range(workers):
        env = {"CUDA_VISIBLE_DEVICES": gpus[i]} if gpus else {}
        specs[f"gpu{gpus[i]}" if gpus else f"cpu{i}"] = {"cls": Nanny, "options": {
            # memory_limit 0: no memory-based restarts, as for a sequential run
            "nthreads": 1, "memory_limit": 0, "env": env, "silence_logs": logging.ERROR,
            "host": LOOPBACK, "dashboard": False}}  # nanny and worker on loopback only
    return specs


def _has_dashboard() -> bool:
    try:
        import bokeh  # noqa: F401  (the dashboard needs it; dask[distributed] does not)
        return True
    except ImportError:
        return False


def security_for(address: str):
    """Dask's `Security` for a scheduler address.

    `tls://` uses the certificates and keys of Dask's configuration
    (`distributed.comm.tls.ca-file`, `.client.cert`, `.client.key`; or the environment:
    DASK_DISTRIBUTED__COMM__TLS__CA_FILE and so on), and stops with one line when they are
    missing. `tcp://` beyond this machine is plain text without authentication: it works,
    with one warning line, because anyone who reaches the scheduler can run code as its
    workers' user.
    """
    import dask
    from distributed.security import Security

    scheme, _, rest = address.partition("://")
    if scheme == "tls":
        needed = {key: dask.config.get(f"distributed.comm.tls.{key}", None)
                  for key in ("ca-file", "client.cert", "client.key")}
        missing = [key for key, value in needed.items() if not value]
        if missing:
            raise ConfigError(
                f"scheduler: {address} is TLS, but Dask's configuration has no "
                f"distributed.comm.tls.{missing[0]} (set it, or "
                "DASK_DISTRIBUTED__COMM__TLS__"
                f"{missing[0].upper().replace('.', '__').replace('-', '_')})")
        return Security(tls_ca_file=needed["ca-file"], tls_client_cert=needed["client.cert"],
                        tls_client_key=needed["client.key"], require_encryption=True)
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    if scheme in ("tcp", "") and host not in LOCAL_HOSTS:
        print(f"warning: {address} is plain tcp: runs and results cross the network "
              "unencrypted and unauthenticated, and anyone who can reach the scheduler can "
              "run code as its workers' user; use tls:// (see the README)", file=sys.stderr,
              flush=True)
    return Security()


@contextlib.contextmanager
def connect(workers: int | None = None, scheduler: str | None = None):
    """A Dask client: on a local cluster of `workers` processes that listens on loopback
    only, or on the cluster whose scheduler listens at `scheduler` (tls:// with Dask's TLS
    settings; see `security_for`). The caller's environment is restored afterwards (the
    nanny writes its worker variables into the process that starts it)."""
    import dask
    from distributed import Client, Scheduler, SpecCluster

    if (workers is None) == (scheduler is None):
        raise ConfigError("give either workers (a local cluster) or scheduler (an address)")
    if scheduler is not None:
        with Client(scheduler, timeout="60s", security=security_for(scheduler)) as client:
            yield client
        return
    saved = dict(os.environ)
    # None: the worker inherits the variable from this process, or goes without it
    settings = {f"distributed.nanny.pre-spawn-environ.{name}": None for name in THREAD_VARIABLES}
    try:
        with dask.config.set(settings):
            with SpecCluster(workers=worker_specs(workers, visible_gpus()),
                             scheduler={"cls": Scheduler, "options": {
                                 "host": LOOPBACK, "dashboard_address": f"{LOOPBACK}:0",
                                 "dashboard": _has_dashboard()}},
                             # warnings: a worker that died, and its restart
                             silence_logs=logging.WARNING, name="vgg_transfer") as cluster, \
                    Client(cluster) as client:
                yield client
    finally:
        os.environ.clear()
        os.environ.update(saved)


def check_workers(client, runs_dir: Path) -> int:
    """Every worker must run this code and see the runs folder; returns how many there are."""
    client.wait_for_workers(1, timeout=300)
    code = sweep.code_hash()
    seen = client.run(_worker_view, str(runs_dir))
    for address, (worker_code, sees) in seen.items():
        if not sees:
            raise ConfigError(f"scheduler: worker {address} does not see {runs_dir}; the "
                              "outputs folder must be on a filesystem every worker shares, "
                              "at the same path (give --outputs)")
        if worker_code != code:
            raise ConfigError(f"scheduler: worker {address} runs other code than this "
                              "checkout; install the same version of vgg_transfer on every "
                              "worker")
    return len(seen)


def _worker_view(runs_dir: str) -> tuple[str, bool]:
    return sweep.code_hash(), Path(runs_dir).is_dir()


# ---------------------------------------------------------------- the tasks

def run_task(grid_run: GridRun, runs_dir: str, key: str, force: bool,
             feature_cache: str | None = None) -> tuple[Outcome, str]:
    """One run, from a worker: `sweep.run_one` in a child process of the worker, its
    output in `.<run>.log` beside the run folder. Returns its outcome and the worker's name.

    A child process per run, because the worker's own threads draw from Python's global
    random generator while a task runs, and Keras draws the
    seeds of initializers given none from it after `keras.utils.set_random_seed`; in the
    worker itself the same run gave different weights each time. A fresh process per run is
    also what a sequential run gets (a notebook kernel), and it hands a GPU's memory back,
    and it runs the Keras backend the run's config names (KERAS_BACKEND in its environment).
    """
    from distributed import get_worker

    worker = str(get_worker().name)
    folder = Path(runs_dir)
    where = files.RunFiles(folder, grid_run.name)
    if not force and sweep.is_current(where.final, key):
        return Outcome(grid_run.name, "cached", 0.0), worker
    _arm_test_kill(grid_run, folder)
    start = time.perf_counter()
    with open(where.log, "ab") as log:
        child = subprocess.run(
            [sys.executable, "-m", "vgg_transfer.runner.cluster", str(os.getpid())],
            input=pickle.dumps((grid_run, str(folder), key, force, feature_cache)), stdout=log,
            stderr=subprocess.STDOUT, check=False,
            env={**os.environ, backend.ENV: grid_run.cfg.backend})  # Keras reads it at import
    seconds = time.perf_counter() - start
    failed = where.failed
    if child.returncode == 0 and sweep.is_current(where.final, key):
        return Outcome(grid_run.name, "ok", seconds), worker
    if child.returncode == 1 and failed.is_file():
        return Outcome(grid_run.name, "failed", seconds, files.read_json(failed)["error"]), \
            worker
    return _lost(grid_run, folder, RuntimeError(
        f"the run's process ended with exit status {child.returncode}; see "
        f"{where.log}")), worker


def _child(parent: int) -> int:
    """`python -m vgg_transfer.runner.cluster PARENT`: the run pickled on stdin, in this process."""
    _die_with(parent)
    grid_run, folder, key, force, cache = pickle.load(sys.stdin.buffer)
    cache = Path(cache) if cache else None
    return 1 if sweep.run_one(grid_run, Path(folder), key, force, cache).status == "failed" \
        else 0


def _die_with(parent: int) -> None:
    """End this process as soon as its worker dies, so that a killed worker leaves no run
    behind writing into the staging folder that its retry resumes from."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG, Linux
    except (OSError, AttributeError):
        pass

    def watch():  # elsewhere, and if the worker died before prctl
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _arm_test_kill(grid_run: GridRun, folder: Path) -> None:
    """See TEST_KILL: watch for the run's first checkpoint, then kill this worker."""
    marker = files.RunFiles(folder, grid_run.name).killed
    if os.environ.get(TEST_KILL) != grid_run.name or marker.exists():
        return
    checkpoint = files.RunFiles(folder, grid_run.name).staging / files.CHECKPOINT

    def watch():
        while not checkpoint.is_file():
            time.sleep(0.02)
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name=TEST_KILL, daemon=True).start()


def _lost(grid_run: GridRun, runs_dir: Path, err: BaseException) -> Outcome:
    """A task that ended without an outcome (its workers kept dying): recorded as a failed
    run, as `sweep.run_one` records one."""
    message = sweep.one_line(err) or type(err).__name__
    files.write_json(files.RunFiles(runs_dir, grid_run.name).failed, {
        "name": grid_run.name, "error": message, "traceback": "".join(
            traceback.format_exception(type(err), err, err.__traceback__))[-4000:]})
    return Outcome(grid_run.name, "failed", 0.0, message)


def run_on_cluster(grid_runs: list[GridRun], runs_dir: Path, force: bool = False, *,
                   workers: int | None = None, scheduler: str | None = None,
                   feature_cache: Path | None = None) -> dict[str, Outcome]:
    """Run every pending grid run (every grid run with `force`) as one Dask task each.

    A failing run does not stop the others. Prints one line per finished run. Returns the
    outcome of each run sent to the cluster, by run name (empty when every run was current).
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"workers: must be at least 1 (got {workers})")
    runs_dir = Path(runs_dir).resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    outcomes: dict[str, Outcome] = {}
    for wave in search.with_candidates(grid_runs):  # the searches' runs first: grid runs read them
        todo = list(wave) if force else sweep.pending(wave, runs_dir)
        if todo:
            outcomes.update(_run_wave(todo, len(wave), runs_dir, force, workers, scheduler,
                                      feature_cache))
    if not outcomes:
        print("cluster: every run is current; nothing to send", flush=True)
    return outcomes


def _run_wave(todo: list[GridRun], total: int, runs_dir: Path, force: bool,
              workers: int | None, scheduler: str | None,
              feature_cache: Path | None) -> dict[str, Outcome]:
    """Send runs that do not depend on each other to the cluster, and wait for them all."""
    from distributed import as_completed

    start = time.perf_counter()
    with connect(workers, scheduler) as client:
        size = check_workers(client, runs_dir)
        board = f"; dashboard {client.dashboard_link}" if _has_dashboard() else ""
        print(f"cluster: {len(todo)} of {total} run(s) to do on {size} worker(s) "
              f"({scheduler or 'local'}){board}", flush=True)
        batch = uuid.uuid4().hex[:8]
        code = sweep.code_hash()
        cache = str(feature_cache) if feature_cache else None
        futures = {client.submit(run_task, p, str(runs_dir), sweep.run_key(p.cfg, code), force,
                                 cache, pure=False, key=f"run-{p.name}-{batch}"): p
                   for p in todo}
        outcomes: dict[str, Outcome] = {}
        for future in as_completed(futures):
            grid_run = futures[future]
            try:
                outcome, where = future.result()
            except Exception as err:  # the task itself failed: a worker died once too often
                outcome, where = _lost(grid_run, runs_dir, err), "no worker"
            outcomes[grid_run.name] = outcome
            error = f": {outcome.error}" if outcome.error else ""
            print(f"[{len(outcomes)}/{len(todo)}] {grid_run.name} {outcome.status}{error} on "
                  f"{where} in {outcome.seconds:.0f} s; {len(todo) - len(outcomes)} left, "
                  f"{(time.perf_counter() - start) / 60:.1f} min elapsed", flush=True)
    failed = sum(o.status == "failed" for o in outcomes.values())
    print(f"cluster: {len(outcomes)} run(s) in {(time.perf_counter() - start) / 60:.1f} min, "
          f"{failed} failed", flush=True)
    return outcomes


def failed_experiment(name: str, failures: list[Outcome], total: int,
                      notebooks: Path) -> Outcome:
    """An experiment with runs that failed on the cluster: recorded as the runner records an
    experiment whose notebook raised `sweep.RunsFailed` (its last good page is kept)."""
    message = (f"RunsFailed: {len(failures)} of {total} runs failed: "
               + "; ".join(f"{o.name}: {o.error}" for o in failures))
    files.write_json(Path(notebooks) / f"{name}.failed",
                         {"name": name, "error": message, "traceback": ""})
    return Outcome(name, "failed", sum(o.seconds for o in failures), message)


if __name__ == "__main__":
    sys.exit(_child(int(sys.argv[1])))
