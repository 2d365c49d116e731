"""The experiment runner: YAML profile -> papermill runs -> book pages -> Jupyter Book site.

Each experiment runs its template notebook with papermill into a staging folder; only a
successful run replaces the previous run folder, so a failure never destroys a good result.
A run is skipped when its key (resolved config, data and weights hashes, library code) matches
the finished run already on disk.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

from vgg_transfer import artifacts
from vgg_transfer.config import (PROJECT_ROOT, ExperimentConfig, experiment_names,
                                 load_experiments, resolve_profile)
from vgg_transfer.data import TEST_FILE, TRAIN_FILES, sha256_file
from vgg_transfer.report import REGIME_TEXT

NOTEBOOKS = PROJECT_ROOT / "notebooks"
BOOK = PROJECT_ROOT / "book"
OUTPUTS = PROJECT_ROOT / "outputs"
PAGES = ("intro", "vgg16", "comparison", "cost", "conclusion", "reproducibility")


@dataclass
class Outcome:
    name: str
    status: str          # ok | cached | failed
    seconds: float
    error: str | None = None


def runs_dir(profile: str, outputs: Path = OUTPUTS) -> Path:
    return Path(outputs) / profile / "runs"


def _code_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted((PROJECT_ROOT / "src" / "vgg_transfer").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    digest.update((NOTEBOOKS / "experiment.ipynb").read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def _file_hash(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def _hash(path: Path) -> str:
    """SHA-256 of a file, computed once per process for an unchanged file: every experiment
    of a profile reads the same data and weights files."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    return _file_hash(path, stat.st_size, stat.st_mtime_ns)


def _inputs_hash(cfg: ExperimentConfig) -> dict:
    """Hashes of the data files and weights a run reads."""
    data = ({name: _hash(Path(cfg.data_dir) / name) for name in (*TRAIN_FILES, TEST_FILE)}
            if cfg.data_dir else "keras-download")
    if cfg.weights == "hed-bsds500":
        from vgg_transfer.weights import hed_weights_path
        weights = _hash(hed_weights_path())
    elif cfg.weights in ("none", "imagenet"):
        weights = cfg.weights
    else:
        weights = _hash(Path(cfg.weights))
    return {"data": data, "weights": weights}


def run_key(cfg: ExperimentConfig, code_hash: str) -> str:
    """What determines a run's result: config, data, weights and the library code."""
    payload = {"config": cfg.model_dump(), **_inputs_hash(cfg), "code": code_hash}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _is_current(run: Path, key: str) -> bool:
    return ((run / "metrics.json").is_file() and (run / "run_key").is_file()
            and (run / "run_key").read_text().strip() == key)


def _replace_dir(staging: Path, final: Path) -> None:
    """Move a finished staging folder into place, removing the old one only afterwards."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def execute(template: Path, output: Path, parameters: dict, kernel: str | None) -> None:
    """Run a template notebook with papermill; its cell output streams to our log."""
    import papermill

    papermill.execute_notebook(
        str(template), str(output), parameters=parameters, kernel_name=kernel,
        log_output=True, progress_bar=False, cwd=str(PROJECT_ROOT))


def run_experiments(profile: str, overrides: dict | None = None, only: list[str] | None = None,
                    kernel: str | None = None, force: bool = False,
                    experiments_file: str | None = None,
                    outputs: Path = OUTPUTS) -> list[Outcome]:
    """Run (or reuse) every experiment of a profile. All configs are validated first."""
    spec = load_experiments(experiments_file)
    configs = resolve_profile(spec, profile, overrides, only)
    folder = runs_dir(profile, outputs)
    folder.mkdir(parents=True, exist_ok=True)
    code = _code_hash()
    outcomes, start = [], time.perf_counter()
    for i, cfg in enumerate(configs, 1):
        elapsed = time.perf_counter() - start
        print(f"\n=== [{i}/{len(configs)}] {cfg.name} ({cfg.regime}, {cfg.describe_weights()}) "
              f"— {len(configs) - i} left after this, {elapsed / 60:.1f} min elapsed ===",
              flush=True)
        outcomes.append(_run_one(cfg, profile, folder, run_key(cfg, code), kernel, force,
                                 str(experiments_file) if experiments_file else None))
        print(f"=== {cfg.name}: {outcomes[-1].status} in {outcomes[-1].seconds:.0f} s ===",
              flush=True)
    artifacts.write_json(Path(outputs) / profile / "runs.json", {
        "profile": profile, "experiments": [o.__dict__ for o in outcomes]})
    return outcomes


def _run_one(cfg: ExperimentConfig, profile: str, folder: Path, key: str,
             kernel: str | None, force: bool, experiments_file: str | None) -> Outcome:
    final = folder / cfg.name
    if not force and _is_current(final, key):
        print(f"{cfg.name}: unchanged since its last run, reusing {final}", flush=True)
        return Outcome(cfg.name, "cached", 0.0)
    staging = folder / f".{cfg.name}.partial"
    resumable = (not force and (staging / "checkpoint.npz").is_file()
                 and (staging / "run_key").is_file()
                 and (staging / "run_key").read_text().strip() == key)
    if resumable:
        print(f"{cfg.name}: an interrupted run left a checkpoint; resuming it", flush=True)
    else:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        (staging / "run_key").write_text(key + "\n")
    start = time.perf_counter()
    params = {**cfg.model_dump(), "experiment": cfg.name, "profile": profile,
              "run_dir": str(staging), "experiments_file": experiments_file}
    params.pop("name")
    try:
        execute(NOTEBOOKS / "experiment.ipynb", staging / "notebook.ipynb", params, kernel)
        _replace_dir(staging, final)
        (folder / f"{cfg.name}.failed").unlink(missing_ok=True)
        return Outcome(cfg.name, "ok", time.perf_counter() - start)
    except Exception as err:
        message = _one_line(err)
        print(f"{cfg.name}: FAILED — {message}", flush=True)
        failed = folder / f".{cfg.name}.failed-run"
        shutil.rmtree(failed, ignore_errors=True)
        staging.rename(failed)
        artifacts.write_json(folder / f"{cfg.name}.failed", {
            "name": cfg.name, "error": message, "staging": str(failed),
            "traceback": traceback.format_exc()[-4000:]})
        return Outcome(cfg.name, "failed", time.perf_counter() - start, message)


def _one_line(err: Exception) -> str:
    """The last meaningful line of an error (papermill wraps the kernel's traceback)."""
    text = str(err).strip()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("-")]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line.strip()[:300]
    return (lines[-1] if lines else type(err).__name__)[:300]


# ---------------------------------------------------------------- the book

def _title_experiment(notebook: Path, output: Path, metrics: dict) -> None:
    """Copy an executed experiment notebook into the book with a title naming it."""
    nb = nbformat.read(notebook, as_version=4)
    staging = notebook.parent.with_name(f".{notebook.parent.name}.partial")
    for cell in nb.cells:  # papermill's injected values: folded like the parameters cell
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            cell.metadata["tags"] = [*tags, "hide-input"] if "hide-input" not in tags else tags
            # the run was written to a staging folder, then moved into place
            cell.source = cell.source.replace(str(staging), str(notebook.parent))
    nb.cells[0].source = (f"# Experiment: {metrics['name']}\n\n"
                          f"*{REGIME_TEXT.get(metrics['regime'], metrics['regime'])}; "
                          f"weights: {metrics['weights_label']}.*")
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
    earlier = (f"\n\nAn earlier successful run of it is kept, untouched, in `{kept}`; it is "
               "left out of this build because it no longer matches the configuration."
               if kept else "")
    output.write_text(f"# Experiment: {record['name']} (failed)\n\n"
                      f"This experiment failed in the last run, so no results are shown for "
                      f"it. The error:\n\n```text\n{record['error']}\n```{earlier}\n")


def write_toc(experiment_pages: list[str], book: Path = BOOK) -> None:
    """Generate `_toc.yml` from the run: the experiment pages the run produced."""
    toc = {
        "format": "jb-book",
        "root": "results/intro",
        "parts": [
            {"caption": "Background", "chapters": [
                {"file": "transfer_learning"}, {"file": "results/vgg16"}, {"file": "method"}]},
            {"caption": "Experiments", "chapters": [{"file": p} for p in experiment_pages]},
            {"caption": "Results", "chapters": [
                {"file": "results/comparison"}, {"file": "results/cost"},
                {"file": "limitations"},
                {"file": "improvements"}, {"file": "results/conclusion"},
                {"file": "results/reproducibility"}]},
        ],
    }
    (Path(book) / "_toc.yml").write_text("# Generated by `python -m vgg_transfer build`; do not edit.\n"
                                   + yaml.safe_dump(toc, sort_keys=False))


def build_pages(profile: str, kernel: str | None = None, experiments_file: str | None = None,
                outputs: Path = OUTPUTS, book: Path = BOOK) -> list[str]:
    """Put the profile's experiment notebooks and the executed page notebooks under book/."""
    spec = load_experiments(experiments_file)
    names = experiment_names(spec, profile)
    folder = runs_dir(profile, outputs)
    results = Path(book) / "results"
    shutil.rmtree(results, ignore_errors=True)
    pages, finished = [], []
    for name in names:
        run, failed = folder / name, folder / f"{name}.failed"
        if failed.is_file():
            _failure_page(artifacts.read_json(failed), results / "experiments" / f"{name}.md",
                          run if (run / "metrics.json").is_file() else None)
        elif (run / "metrics.json").is_file():
            _title_experiment(run / "notebook.ipynb", results / "experiments" / f"{name}.ipynb",
                              artifacts.read_json(run / "metrics.json"))
            finished.append(name)
        else:
            continue
        pages.append(f"results/experiments/{name}")
    if not finished:
        raise RuntimeError(f"no finished runs for profile {profile} in {folder}; "
                           f"run `python -m vgg_transfer run --profile {profile}` first")
    params = {"runs_dir": str(folder), "experiments": finished, "profile": profile}
    for page in PAGES:
        print(f"page: {page}", flush=True)
        extra = {"bench_file": str(Path(outputs) / "benchmarks" / "bench.json")} \
            if page == "cost" else {}
        execute(NOTEBOOKS / f"{page}.ipynb", results / f"{page}.ipynb", {**params, **extra},
                kernel)
        _hide_injected(results / f"{page}.ipynb")
    write_toc(pages, book)
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

    digest = hashlib.sha256(f"{profile}\n{_code_hash()}".encode())
    folder = runs_dir(profile, outputs)
    for name in experiment_names(load_experiments(experiments_file), profile):
        for path in (folder / name / "run_key", folder / f"{name}.failed"):
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
