"""The experiment runner: YAML profile -> papermill runs -> book pages -> Jupyter Book site.

Each experiment runs the template notebook once with papermill; the notebook runs every grid run
of the experiment's grid in one process (see `sweep`), reusing the runs whose key matches the
finished run on disk. An experiment whose runs are all current is not executed at all.
"""

from __future__ import annotations

import shutil
import time
import traceback
from pathlib import Path

from vgg_transfer import files
from vgg_transfer.run import backend
from vgg_transfer.runner import sweep
from vgg_transfer.runner.papermill import execute
from vgg_transfer.runner.plan import BOOK, NOTEBOOKS, OUTPUTS, Plan, write_grid
from vgg_transfer.runner.sweep import Outcome
from vgg_transfer.spec.config import ConfigError
from vgg_transfer.spec.profiles import GridRun

PAPERMILL_TAGS = ("parameters", "injected-parameters")  # papermill's cells: kept off the pages


def run_experiments(plan: Plan, force: bool = False, workers: int | None = None,
                    scheduler: str | None = None) -> list[Outcome]:
    """Run (or reuse) every experiment of a plan; its grid runs were validated when it was made.

    With `workers` (a local Dask cluster) or `scheduler` (a running one's address), every
    run to do goes to the cluster first, one task each (see `cluster`); the experiments'
    notebooks then only draw their pages from the finished runs.
    """
    experiments = plan.experiments()
    for path in (plan.runs_dir, plan.notebooks_dir):
        path.mkdir(parents=True, exist_ok=True)
    code, page_code = sweep.code_hash(), sweep.package_hash()
    remote = None
    if workers is not None or scheduler is not None:
        from vgg_transfer.runner import cluster
        remote = cluster.run_on_cluster(list(plan.grid_runs), plan.runs_dir, force,
                                        workers=workers, scheduler=scheduler,
                                        feature_cache=plan.feature_cache)
    else:  # a cluster's workers bring their own backends
        check_backends(experiments, plan.runs_dir, code, force)
    outcomes, start, done = [], time.perf_counter(), 0
    for i, (name, grid_runs) in enumerate(experiments.items(), 1):
        todo = grid_runs if force else sweep.pending(grid_runs, plan.runs_dir, code)
        if remote is not None:  # what the cluster ran; the notebook trains nothing
            todo = [p for p in grid_runs if p.name in remote]
        _banner(i, len(experiments), name, grid_runs, len(todo), remote is not None,
                (done, len(plan.grid_runs)), time.perf_counter() - start)
        outcomes.append(_experiment(plan, name, grid_runs, todo, remote, force, page_code))
        done += len(grid_runs)
        print(f"=== {name}: {outcomes[-1].status} in {outcomes[-1].seconds:.0f} s ===",
              flush=True)
    _write_summary(Path(plan.outputs) / plan.profile / "runs.json", plan.profile, outcomes, start)
    return outcomes


def _experiment(plan: Plan, name: str, grid_runs: list[GridRun], todo: list[GridRun],
                remote: dict | None, force: bool, page_code: str) -> Outcome:
    """One experiment: its cluster failures, its reused page, or its notebook executed."""
    lost = [remote[p.name] for p in todo if remote and remote[p.name].status == "failed"]
    if lost:
        from vgg_transfer.runner import cluster
        return cluster.failed_experiment(name, lost, len(grid_runs), plan.notebooks_dir)
    if not todo and _page_is_current(plan.notebooks_dir, name, page_code):
        print(f"{name}: every run and its page unchanged since the last one; reusing them",
              flush=True)
        return Outcome(name, "cached", 0.0)
    outcome = _run_notebook(plan, name, grid_runs, force and remote is None,
                       {backend.ENV: grid_runs[0].cfg.backend})
    if outcome.status == "ok":  # the notebook was drawn by this code
        (plan.notebooks_dir / f"{name}.code").write_text(page_code + "\n")
    return outcome


def check_backends(experiments: dict[str, list[GridRun]], folder: Path, code: str,
                   force: bool) -> None:
    """Before anything runs: one kernel runs one Keras backend, so an experiment's runs
    share theirs, and the backend of every run to do is installed."""
    todo = []
    for name, grid_runs in experiments.items():
        names = sorted({p.cfg.backend for p in grid_runs})
        if len(names) > 1:
            raise ConfigError(f"experiment {name!r}: its runs use several backends "
                              f"({', '.join(names)}), and a kernel runs one; give each "
                              "backend an experiment of its own, or run on a cluster "
                              "(--workers)")
        todo += grid_runs if force else sweep.pending(grid_runs, folder, code)
    missing = sorted({p.cfg.backend for p in todo} - set(backend.installed()))
    if missing:
        raise ConfigError(f"backend: {missing[0]} is not installed here (make venv "
                          f"EXTRAS={missing[0]}, or pip install -e '.[{missing[0]}]')")


def _write_summary(path: Path, profile: str, outcomes: list[Outcome], start: float) -> None:
    files.write_json(path, {"profile": profile, "experiments": [o.__dict__ for o in outcomes],
                                "seconds": time.perf_counter() - start})


def _banner(i: int, n: int, name: str, grid_runs: list[GridRun], todo: int, remote: bool,
            progress: tuple[int, int], elapsed: float) -> None:
    """One line per experiment: what it is, how many of its runs are to do, where we are."""
    done, total = progress
    print(f"\n=== [{i}/{n}] {name} ({grid_runs[0].cfg.regime}, "
          f"{grid_runs[0].cfg.describe_weights()}): {todo} of {len(grid_runs)} run(s) "
          f"{'done on the cluster' if remote else 'to do'}"
          f" — runs {done + 1}-{done + len(grid_runs)} of {total}, "
          f"{elapsed / 60:.1f} min elapsed ===", flush=True)


def _page_is_current(notebooks: Path, name: str, page_code: str) -> bool:
    """The experiment's notebook exists, did not fail, and was drawn by this code."""
    stamp = notebooks / f"{name}.code"
    return ((notebooks / f"{name}.ipynb").is_file()
            and not (notebooks / f"{name}.failed").is_file()
            and stamp.is_file() and stamp.read_text().strip() == page_code)


def notebook_parameters(plan: Plan, name: str, grid_runs: list[GridRun],
                        force: bool) -> dict:
    """The template's parameters for one experiment: its grid runs as a file, and where its
    runs and the shared feature cache go."""
    grid_file = write_grid(grid_runs, plan.grid_dir / f"{name}.json")
    return {"experiment": name, "profile": plan.profile, "runs_dir": str(plan.runs_dir),
            "grid_file": str(grid_file), "force": force,
            "feature_cache": str(plan.feature_cache)}


def _run_notebook(plan: Plan, name: str, grid_runs: list[GridRun], force: bool,
             env: dict | None = None) -> Outcome:
    """Execute the template for one experiment on its resolved grid runs (a file the kernel
    reads), in a kernel with `env` (its runs' Keras backend); its notebook replaces the last
    one only when every run succeeded."""
    notebooks = plan.notebooks_dir
    staging = notebooks / f".{name}.partial.ipynb"
    params = notebook_parameters(plan, name, grid_runs, force)
    start = time.perf_counter()
    try:
        execute(NOTEBOOKS / "experiment.ipynb", staging, params, plan.kernel, env)
        staging.replace(notebooks / f"{name}.ipynb")
        (notebooks / f"{name}.failed").unlink(missing_ok=True)
        return Outcome(name, "ok", time.perf_counter() - start)
    except Exception as err:
        message = sweep.one_line(err)
        print(f"{name}: FAILED — {message}", flush=True)
        if staging.is_file():
            staging.replace(notebooks / f"{name}.failed.ipynb")
        files.write_json(notebooks / f"{name}.failed", {
            "name": name, "error": message, "traceback": traceback.format_exc()[-4000:]})
        return Outcome(name, "failed", time.perf_counter() - start, message)




def clean(profile: str | None = None) -> list[Path]:
    """Remove what runs and builds produced (one profile's runs, or everything)."""
    targets = ([OUTPUTS / profile] if profile else [OUTPUTS]) + [
        BOOK / "_build", BOOK / "results", BOOK / "_toc.yml"]
    removed = []
    for path in targets:
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
        elif path.is_file():
            path.unlink()
            removed.append(path)
    return removed
