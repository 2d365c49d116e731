"""The experiment runner: YAML profile -> papermill runs -> book pages -> Jupyter Book site.

Each experiment runs the template notebook once with papermill; the notebook runs every point
of the experiment's grid in one process (see `sweep`), reusing the runs whose key matches the
finished run on disk. An experiment whose runs are all current is not executed at all.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import nbformat
import yaml

from vgg_transfer import artifacts, sweep
from vgg_transfer.config import (PROJECT_ROOT, Point, load_experiments, profile_compare,
                                 profile_studies, resolve_profile)
from vgg_transfer.report import REGIME_TEXT
from vgg_transfer.sweep import Outcome

NOTEBOOKS = PROJECT_ROOT / "notebooks"
BOOK = PROJECT_ROOT / "book"
OUTPUTS = PROJECT_ROOT / "outputs"
BACKGROUND = ("intro", "vgg16")
RESULTS = ("comparison", "cost")
DISCUSSION = ("limitations", "improvements", "conclusion", "reproducibility")
def runs_dir(profile: str, outputs: Path = OUTPUTS) -> Path:
    return Path(outputs) / profile / "runs"


def notebooks_dir(profile: str, outputs: Path = OUTPUTS) -> Path:
    """Where each experiment's executed notebook goes (its page in the book)."""
    return Path(outputs) / profile / "notebooks"


def execute(template: Path, output: Path, parameters: dict, kernel: str | None) -> None:
    """Run a template notebook with papermill; its cell output streams to our log."""
    import papermill

    papermill.execute_notebook(
        str(template), str(output), parameters=parameters, kernel_name=kernel,
        log_output=True, progress_bar=False, cwd=str(PROJECT_ROOT))


def papermill_parameters(notebook: Path) -> set[str]:
    """The names a template's `parameters` cell declares."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def _by_experiment(points: list[Point]) -> dict[str, list[Point]]:
    grouped: dict[str, list[Point]] = {}
    for point in points:
        grouped.setdefault(point.experiment, []).append(point)
    return grouped


def run_experiments(profile: str, overrides: dict | None = None, only: list[str] | None = None,
                    kernel: str | None = None, force: bool = False,
                    experiments_file: str | None = None,
                    outputs: Path = OUTPUTS) -> list[Outcome]:
    """Run (or reuse) every experiment of a profile. Every point is validated first."""
    spec = load_experiments(experiments_file)
    experiments = _by_experiment(resolve_profile(spec, profile, overrides, only))
    folder, notebooks = runs_dir(profile, outputs), notebooks_dir(profile, outputs)
    folder.mkdir(parents=True, exist_ok=True)
    notebooks.mkdir(parents=True, exist_ok=True)
    code, page_code = sweep.code_hash(), sweep.code_hash(modules=None)
    outcomes, start = [], time.perf_counter()
    total = sum(len(points) for points in experiments.values())
    done = 0
    for i, (name, points) in enumerate(experiments.items(), 1):
        elapsed = time.perf_counter() - start
        todo = points if force else sweep.pending(points, folder, code)
        print(f"\n=== [{i}/{len(experiments)}] {name} ({points[0].cfg.regime}, "
              f"{points[0].cfg.describe_weights()}): {len(todo)} of {len(points)} run(s) to do"
              f" — runs {done + 1}-{done + len(points)} of {total}, "
              f"{elapsed / 60:.1f} min elapsed ===", flush=True)
        stamp = notebooks / f"{name}.code"
        current = ((notebooks / f"{name}.ipynb").is_file()
                   and not (notebooks / f"{name}.failed").is_file()
                   and stamp.is_file() and stamp.read_text().strip() == page_code)
        if not todo and current:
            print(f"{name}: every run and its page unchanged since the last one; reusing them",
                  flush=True)
            outcomes.append(Outcome(name, "cached", 0.0))
        else:
            outcomes.append(_run_one(name, profile, overrides, folder, notebooks, kernel,
                                     force, experiments_file))
            if outcomes[-1].status == "ok":  # the notebook was drawn by this code
                stamp.write_text(page_code + "\n")
        done += len(points)
        print(f"=== {name}: {outcomes[-1].status} in {outcomes[-1].seconds:.0f} s ===",
              flush=True)
    artifacts.write_json(Path(outputs) / profile / "runs.json", {
        "profile": profile, "experiments": [o.__dict__ for o in outcomes],
        "seconds": time.perf_counter() - start})
    return outcomes


def _run_one(name: str, profile: str, overrides: dict | None, folder: Path, notebooks: Path,
             kernel: str | None, force: bool, experiments_file: str | None) -> Outcome:
    """Execute the template for one experiment; its notebook replaces the last one only when
    every run succeeded."""
    staging = notebooks / f".{name}.partial.ipynb"
    params = {"experiment": name, "profile": profile, "runs_dir": str(folder),
              "overrides": dict(overrides or {}), "force": force,
              "experiments_file": str(experiments_file) if experiments_file else None}
    start = time.perf_counter()
    try:
        execute(NOTEBOOKS / "experiment.ipynb", staging, params, kernel)
        staging.replace(notebooks / f"{name}.ipynb")
        (notebooks / f"{name}.failed").unlink(missing_ok=True)
        return Outcome(name, "ok", time.perf_counter() - start)
    except Exception as err:
        message = sweep.one_line(err)
        print(f"{name}: FAILED — {message}", flush=True)
        if staging.is_file():
            staging.replace(notebooks / f"{name}.failed.ipynb")
        artifacts.write_json(notebooks / f"{name}.failed", {
            "name": name, "error": message, "traceback": traceback.format_exc()[-4000:]})
        return Outcome(name, "failed", time.perf_counter() - start, message)


# ---------------------------------------------------------------- the book

def _title_experiment(notebook: Path, output: Path, name: str, runs: list[dict]) -> None:
    """Copy an executed experiment notebook into the book with a title naming it."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:  # papermill's injected values: folded like the parameters cell
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            cell.metadata["tags"] = [*tags, "hide-input"]
    first = runs[0]
    regime = REGIME_TEXT.get(first["regime"], first["regime"])
    count = f"; {len(runs)} runs" if len(runs) > 1 else ""
    nb.cells[0].source = (f"# Experiment: {name}\n\n"
                          f"*{regime}; weights: {first['weights_label']}{count}.*\n\n"
                          + nb.cells[0].source.split("\n\n", 1)[-1])
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, output)


def _hide_injected(notebook: Path) -> None:
    """A page's injected parameters (folders, names) are plumbing: keep them off the page."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    nbformat.write(nb, notebook)


def _failure_page(record: dict, output: Path, kept: Path | None) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    earlier = (f"\n\nThe notebook of its last successful execution is kept, untouched, in "
               f"`{kept}`, and so are the run folders of every run that finished; the pages "
               "of this build read only those." if kept else "")
    output.write_text(f"# Experiment: {record['name']} (failed)\n\n"
                      f"This experiment failed in the last run, so its page shows no results. "
                      f"The error:\n\n```text\n{record['error']}\n```{earlier}\n")


def write_toc(experiment_pages: list[str], studies: list[str], book: Path = BOOK) -> None:
    """Generate `_toc.yml` from the run: the experiment and study pages the run produced."""
    parts = [
        {"caption": "Background", "chapters": [
            {"file": "transfer_learning"}, {"file": "results/vgg16"}, {"file": "method"}]},
        {"caption": "Experiments", "chapters": [{"file": p} for p in experiment_pages]},
        {"caption": "Results", "chapters": [{"file": f"results/{page}"} for page in RESULTS]},
    ]
    if studies:
        parts.append({"caption": "Studies", "chapters": [
            {"file": f"results/studies/{study}"} for study in studies]})
    parts.append({"caption": "Discussion", "chapters": [
        {"file": f"results/{page}"} for page in DISCUSSION]})
    toc = {"format": "jb-book", "root": "results/intro", "parts": parts}
    (Path(book) / "_toc.yml").write_text(
        "# Generated by `python -m vgg_transfer build`; do not edit.\n"
        + yaml.safe_dump(toc, sort_keys=False))


def finished_runs(profile: str, experiments_file: str | None = None,
                  outputs: Path = OUTPUTS) -> dict[str, list[str]]:
    """Per experiment of the profile, the points with a finished run and no failure since."""
    spec = load_experiments(experiments_file)
    folder = runs_dir(profile, outputs)
    grouped = _by_experiment(resolve_profile(spec, profile))
    return {name: [p.name for p in points if (folder / p.name / "metrics.json").is_file()
                   and not (folder / f"{p.name}.failed").is_file()]
            for name, points in grouped.items()}


def build_pages(profile: str, kernel: str | None = None, experiments_file: str | None = None,
                outputs: Path = OUTPUTS, book: Path = BOOK) -> list[str]:
    """Put the profile's experiment notebooks and the executed page notebooks under book/."""
    spec = load_experiments(experiments_file)
    folder, notebooks = runs_dir(profile, outputs), notebooks_dir(profile, outputs)
    results = Path(book) / "results"
    shutil.rmtree(results, ignore_errors=True)
    runs = finished_runs(profile, experiments_file, outputs)
    pages, finished = [], []
    for name, points in runs.items():
        failed, notebook = notebooks / f"{name}.failed", notebooks / f"{name}.ipynb"
        page = results / "experiments" / name
        if failed.is_file():
            _failure_page(artifacts.read_json(failed), page.with_suffix(".md"),
                          notebook if notebook.is_file() else None)
        elif points and notebook.is_file():
            _title_experiment(notebook, page.with_suffix(".ipynb"), name,
                              [artifacts.read_json(folder / p / "metrics.json") for p in points])
            finished.append(name)
        else:
            continue
        pages.append(f"results/experiments/{name}")
    if not finished:
        raise RuntimeError(f"no finished runs for profile {profile} in {folder}; "
                           f"run `python -m vgg_transfer run --profile {profile}` first")
    studies = {study: [e for e in experiments if e in finished]
               for study, experiments in profile_studies(spec, profile).items()}
    studies = {study: experiments for study, experiments in studies.items() if experiments}
    params = {"runs_dir": str(folder), "experiments": finished, "profile": profile,
              "run_names": [p for name in finished for p in runs[name]], "studies": studies,
              "compare": [e for e in profile_compare(spec, profile) if e in finished]
              or finished,
              "bench_file": str(Path(outputs) / "benchmarks" / "bench.json")}
    targets = [(page, results / f"{page}.ipynb", {}) for page in BACKGROUND + RESULTS]
    targets += [(f"study_{study}", results / "studies" / f"{study}.ipynb",
                 {"study_experiments": experiments}) for study, experiments in studies.items()]
    targets += [(page, results / f"{page}.ipynb", {}) for page in DISCUSSION]
    for template, output, extra in targets:
        print(f"page: {output.relative_to(results).with_suffix('')}", flush=True)
        output.parent.mkdir(parents=True, exist_ok=True)
        path = NOTEBOOKS / f"{template}.ipynb"
        declared = papermill_parameters(path)  # each page gets only what it declares
        execute(path, output, {k: v for k, v in {**params, **extra}.items() if k in declared},
                kernel)
        _hide_injected(output)
    write_toc(pages, list(studies), book)
    return pages


def build_site(strict: bool = True, book: Path = BOOK) -> Path:
    """`jupyter-book build book` (execution is off in _config.yml); returns the index page."""
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(book)]
    if strict:
        command += ["-W", "-n", "--keep-going"]
    subprocess.run(command, check=True, cwd=PROJECT_ROOT)
    return Path(book) / "_build" / "html" / "index.html"


def site_key(profile: str, experiments_file: str | None = None, outputs: Path = OUTPUTS,
             book: Path = BOOK) -> str:
    """What the site is made of: the runs, the page templates, the book's sources, the code."""
    digest = hashlib.sha256(f"{profile}\n{sweep.code_hash(modules=None)}".encode())
    folder, notebooks = runs_dir(profile, outputs), notebooks_dir(profile, outputs)
    for name, points in _by_experiment(resolve_profile(load_experiments(experiments_file),
                                                       profile)).items():
        paths = [notebooks / f"{name}.failed", notebooks / f"{name}.ipynb"]
        paths += [path for p in points
                  for path in (folder / p.name / "run_key", folder / f"{p.name}.failed")]
        for path in paths:
            digest.update(path.read_bytes() if path.is_file() else b"-")
    generated = {"_build", "results", "_toc.yml", "__pycache__"}
    sources = [*sorted(NOTEBOOKS.glob("*.ipynb")), Path(outputs) / "benchmarks" / "bench.json",
               *sorted(p for p in Path(book).rglob("*") if p.is_file()
                       and not generated & set(p.relative_to(book).parts))]
    for path in sources:
        digest.update(str(path.name).encode() + (path.read_bytes() if path.is_file() else b"-"))
    return digest.hexdigest()


def build_report(profile: str, kernel: str | None = None, experiments_file: str | None = None,
                 outputs: Path = OUTPUTS, book: Path = BOOK, strict: bool = True,
                 force: bool = False) -> Path:
    """Pages + site, skipped when nothing they are made of changed since the last build."""
    key = site_key(profile, experiments_file, outputs, book)
    stamp = Path(book) / "_build" / "html" / ".site_key"
    index = Path(book) / "_build" / "html" / "index.html"
    if not force and stamp.is_file() and stamp.read_text().strip() == key and index.is_file():
        print("site unchanged since its last build: nothing to rebuild", flush=True)
        return index
    build_pages(profile, kernel, experiments_file, outputs, book)
    index = build_site(strict, book)
    stamp.write_text(key + "\n")
    return index


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
