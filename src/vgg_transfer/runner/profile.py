"""The experiment runner: YAML profile -> papermill runs -> book pages -> Jupyter Book site.

Each experiment runs the template notebook once with papermill; the notebook runs every point
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
from vgg_transfer.runner.sweep import Outcome
from vgg_transfer.spec.config import PROJECT_ROOT, ConfigError, load_experiments
from vgg_transfer.spec.profiles import Point, resolve_profile

NOTEBOOKS = PROJECT_ROOT / "notebooks"
BOOK = PROJECT_ROOT / "book"
OUTPUTS = PROJECT_ROOT / "outputs"
PLUMBING = ("parameters", "injected-parameters")  # papermill's cells: kept off the pages


def runs_dir(profile: str, outputs: Path = OUTPUTS) -> Path:
    return Path(outputs) / profile / "runs"


def notebooks_dir(profile: str, outputs: Path = OUTPUTS) -> Path:
    """Where each experiment's executed notebook goes (its page in the book)."""
    return Path(outputs) / profile / "notebooks"


def _by_experiment(points: list[Point]) -> dict[str, list[Point]]:
    grouped: dict[str, list[Point]] = {}
    for point in points:
        grouped.setdefault(point.experiment, []).append(point)
    return grouped


def run_experiments(profile: str, overrides: dict | None = None, only: list[str] | None = None,
                    kernel: str | None = None, force: bool = False,
                    experiments_file: str | None = None, outputs: Path = OUTPUTS,
                    workers: int | None = None, scheduler: str | None = None) -> list[Outcome]:
    """Run (or reuse) every experiment of a profile. Every point is validated first.

    With `workers` (a local Dask cluster) or `scheduler` (a running one's address), every
    run to do goes to the cluster first, one task each (see `cluster`); the experiments'
    notebooks then only draw their pages from the finished runs.
    """
    spec = load_experiments(experiments_file)
    experiments = _by_experiment(resolve_profile(spec, profile, overrides, only))
    folder, notebooks = runs_dir(profile, outputs), notebooks_dir(profile, outputs)
    for path in (folder, notebooks):
        path.mkdir(parents=True, exist_ok=True)
    code, page_code = sweep.code_hash(), sweep.package_hash()
    if workers is None and scheduler is None:  # a cluster's workers bring their own
        check_backends(experiments, folder, code, force)
    outcomes, start = [], time.perf_counter()
    total = sum(len(points) for points in experiments.values())
    done, remote = 0, None
    if workers is not None or scheduler is not None:
        from vgg_transfer.runner import cluster
        remote = cluster.run_points([p for ps in experiments.values() for p in ps], folder,
                                    force, workers=workers, scheduler=scheduler)
    for i, (name, points) in enumerate(experiments.items(), 1):
        elapsed = time.perf_counter() - start
        todo = points if force else sweep.pending(points, folder, code)
        if remote is not None:  # what the cluster ran; the notebook trains nothing
            todo = [p for p in points if p.name in remote]
        _banner(i, len(experiments), name, points, len(todo), remote is not None,
                (done, total), elapsed)
        stamp = notebooks / f"{name}.code"
        current = _page_is_current(notebooks, name, page_code)
        lost = [remote[p.name] for p in todo if remote and remote[p.name].status == "failed"]
        if lost:
            outcomes.append(cluster.failed_experiment(name, lost, len(points), notebooks))
        elif not todo and current:
            print(f"{name}: every run and its page unchanged since the last one; reusing them",
                  flush=True)
            outcomes.append(Outcome(name, "cached", 0.0))
        else:
            outcomes.append(_run_one(name, profile, overrides, folder, notebooks, kernel,
                                     force and remote is None, experiments_file,
                                     {backend.ENV: points[0].cfg.backend}))
            if outcomes[-1].status == "ok":  # the notebook was drawn by this code
                stamp.write_text(page_code + "\n")
        done += len(points)
        print(f"=== {name}: {outcomes[-1].status} in {outcomes[-1].seconds:.0f} s ===",
              flush=True)
    _write_summary(Path(outputs) / profile / "runs.json", profile, outcomes, start)
    return outcomes


def check_backends(experiments: dict[str, list[Point]], folder: Path, code: str,
                   force: bool) -> None:
    """Before anything runs: one kernel runs one Keras backend, so an experiment's runs
    share theirs, and the backend of every run to do is installed."""
    todo = []
    for name, points in experiments.items():
        names = sorted({p.cfg.backend for p in points})
        if len(names) > 1:
            raise ConfigError(f"experiment {name!r}: its runs use several backends "
                              f"({', '.join(names)}), and a kernel runs one; give each "
                              "backend an experiment of its own, or run on a cluster "
                              "(--workers)")
        todo += points if force else sweep.pending(points, folder, code)
    missing = sorted({p.cfg.backend for p in todo} - set(backend.installed()))
    if missing:
        raise ConfigError(f"backend: {missing[0]} is not installed here (make venv "
                          f"EXTRAS={missing[0]}, or pip install -e '.[{missing[0]}]')")


def _write_summary(path: Path, profile: str, outcomes: list[Outcome], start: float) -> None:
    files.write_json(path, {"profile": profile, "experiments": [o.__dict__ for o in outcomes],
                                "seconds": time.perf_counter() - start})


def _banner(i: int, n: int, name: str, points: list[Point], todo: int, remote: bool,
            progress: tuple[int, int], elapsed: float) -> None:
    """One line per experiment: what it is, how many of its runs are to do, where we are."""
    done, total = progress
    print(f"\n=== [{i}/{n}] {name} ({points[0].cfg.regime}, "
          f"{points[0].cfg.describe_weights()}): {todo} of {len(points)} run(s) "
          f"{'done on the cluster' if remote else 'to do'}"
          f" — runs {done + 1}-{done + len(points)} of {total}, "
          f"{elapsed / 60:.1f} min elapsed ===", flush=True)


def _page_is_current(notebooks: Path, name: str, page_code: str) -> bool:
    """The experiment's notebook exists, did not fail, and was drawn by this code."""
    stamp = notebooks / f"{name}.code"
    return ((notebooks / f"{name}.ipynb").is_file()
            and not (notebooks / f"{name}.failed").is_file()
            and stamp.is_file() and stamp.read_text().strip() == page_code)


def _run_one(name: str, profile: str, overrides: dict | None, folder: Path, notebooks: Path,
             kernel: str | None, force: bool, experiments_file: str | None,
             env: dict | None = None) -> Outcome:
    """Execute the template for one experiment, in a kernel with `env` (its runs' Keras
    backend); its notebook replaces the last one only when every run succeeded."""
    staging = notebooks / f".{name}.partial.ipynb"
    params = {"experiment": name, "profile": profile, "runs_dir": str(folder),
              "overrides": dict(overrides or {}), "force": force,
              "experiments_file": str(experiments_file) if experiments_file else None}
    start = time.perf_counter()
    try:
        execute(NOTEBOOKS / "experiment.ipynb", staging, params, kernel, env)
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
