"""The experiment runner: YAML profile -> papermill runs -> book pages -> Jupyter Book site.

Each experiment runs the template notebook once with papermill; the notebook runs every point
of the experiment's grid in one process (see `sweep`), reusing the runs whose key matches the
finished run on disk. An experiment whose runs are all current is not executed at all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import nbformat
import yaml

from vgg_transfer import artifacts, backend, regimes, selection, sweep
from vgg_transfer.config import (PROJECT_ROOT, ConfigError, Point, book_pages,
                                 load_experiments, profile_compare, profile_studies,
                                 resolve_profile)
from vgg_transfer.pages import CONTEXT_FILE, Context
from vgg_transfer.record import RunRecord, is_finished
from vgg_transfer.sweep import Outcome

NOTEBOOKS = PROJECT_ROOT / "notebooks"
BOOK = PROJECT_ROOT / "book"
OUTPUTS = PROJECT_ROOT / "outputs"
PLUMBING = ("parameters", "injected-parameters")  # papermill's cells: kept off the pages


def runs_dir(profile: str, outputs: Path = OUTPUTS) -> Path:
    return Path(outputs) / profile / "runs"


def notebooks_dir(profile: str, outputs: Path = OUTPUTS) -> Path:
    """Where each experiment's executed notebook goes (its page in the book)."""
    return Path(outputs) / profile / "notebooks"


# How `execute` starts a notebook's kernel: C-level output stays out of the cells (ipykernel
# option), its channels are encrypted when the kernelspec supports it (jupyter_client option),
# and the last lines of its own stderr are shown when the kernel itself fails.
KERNEL_ARGUMENTS = ("--IPKernelApp.capture_fd_output=False",)
KERNEL_TRANSPORT_ENCRYPTION = "auto"
KERNEL_STDERR_LINES = 40


def execute(template: Path, output: Path, parameters: dict, kernel: str | None,
            env: dict | None = None) -> None:
    """Run a template notebook with papermill; its cells' output streams to our log.

    `env`: variables set in the kernel's environment on top of this process's (the Keras
    backend of an experiment's runs).

    The kernel is started so that the log holds the cells' own lines and nothing else:

    - its ZMQ channels use CurveZMQ keys that jupyter_client provisions when the kernelspec
      declares support (ipykernel's does), so ipykernel has no "Kernel is running over TCP
      without encryption" warning to give;
    - writes to file descriptors 1 and 2 by compiled code are not captured into the cells
      (`IPKernelApp.capture_fd_output=False`), and the kernel process's stderr is a temporary
      file. TensorFlow's start-up lines go there ("oneDNN custom operations are on", "Could
      not find cuda drivers", and absl's "All log messages before absl::InitializeLog() ..."):
      libtensorflow_framework logs them from static initialisers while it loads, before its
      own initialiser reads TF_CPP_MIN_LOG_LEVEL, so no setting turns them off (TensorFlow
      issue 100442). ipykernel's own start-up messages go there too.

    Python's output (print, warnings, tracebacks) still reaches the cells and the log. The
    kernel's stderr is printed when the kernel itself fails (dies, hangs, never starts); an
    exception in a cell is in the notebook and needs none of it.
    """
    import tempfile

    import papermill
    from papermill.exceptions import PapermillExecutionError

    with tempfile.TemporaryFile() as kernel_stderr:
        try:
            papermill.execute_notebook(
                str(template), str(output), parameters=parameters, kernel_name=kernel,
                log_output=True, progress_bar=False, cwd=str(PROJECT_ROOT),
                kernel_manager_class=_quiet_kernel_manager(kernel_stderr, env),
                extra_arguments=list(KERNEL_ARGUMENTS))
        except PapermillExecutionError:
            raise
        except Exception:
            _show_kernel_stderr(kernel_stderr, template)
            raise


def _quiet_kernel_manager(stderr, env: dict | None = None):
    """A kernel manager class whose kernels write their stderr to `stderr`, get `env` in
    their environment and encrypt their channels when the kernelspec allows it (see
    `execute`)."""
    import zmq
    from jupyter_client.manager import AsyncKernelManager

    encryption = (KERNEL_TRANSPORT_ENCRYPTION if zmq.has("curve")
                  and AsyncKernelManager.class_traits().get("transport_encryption") else None)

    class QuietKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw.setdefault("stderr", stderr)  # a Popen argument of the kernel
            if env:
                kw.setdefault("env", {**os.environ, **env})
            if encryption:
                kw.setdefault("transport_encryption", encryption)
            return await super().start_kernel(**kw)

    return QuietKernelManager


def _show_kernel_stderr(stderr, template: Path) -> None:
    """The last lines a failed kernel wrote to its stderr."""
    stderr.seek(0)
    lines = stderr.read().decode(errors="replace").splitlines()
    if lines:
        print(f"the kernel's stderr ({template.name}, last lines):\n"
              + "\n".join(lines[-KERNEL_STDERR_LINES:]), file=sys.stderr, flush=True)


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
    code, page_code = sweep.code_hash(), sweep.code_hash(modules=None)
    if workers is None and scheduler is None:  # a cluster's workers bring their own
        check_backends(experiments, folder, code, force)
    outcomes, start = [], time.perf_counter()
    total = sum(len(points) for points in experiments.values())
    done, remote = 0, None
    if workers is not None or scheduler is not None:
        from vgg_transfer import cluster
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
    artifacts.write_json(path, {"profile": profile, "experiments": [o.__dict__ for o in outcomes],
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
        artifacts.write_json(notebooks / f"{name}.failed", {
            "name": name, "error": message, "traceback": traceback.format_exc()[-4000:]})
        return Outcome(name, "failed", time.perf_counter() - start, message)


# ---------------------------------------------------------------- the book

def _remove_plumbing(nb) -> None:
    """A page's parameters (folders, names) are plumbing: keep them off the page."""
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if any(tag in tags for tag in PLUMBING) and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]


def _title_experiment(notebook: Path, output: Path, name: str, runs: list[RunRecord]) -> None:
    """Copy an executed experiment notebook into the book with a title naming it."""
    nb = nbformat.read(notebook, as_version=4)
    _remove_plumbing(nb)  # the configuration table shows the values
    first = runs[0].metrics
    count = f"; {len(runs)} runs" if len(runs) > 1 else ""
    nb.cells[0].source = (f"# Experiment: {name}\n\n"
                          f"*{regimes.describe(first.regime)}; weights: "
                          f"{first.weights_label}{count}.*\n\n"
                          + nb.cells[0].source.split("\n\n", 1)[-1])
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, output)


def _hide_injected(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    _remove_plumbing(nb)
    nbformat.write(nb, notebook)


def _failure_page(record: dict, output: Path, kept: Path | None) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    earlier = (f"\n\nThe notebook of its last successful execution is kept, untouched, in "
               f"`{kept}`, and so are the run folders of every run that finished; the pages "
               "of this build read only those." if kept else "")
    output.write_text(f"# Experiment: {record['name']} (failed)\n\n"
                      f"This experiment failed in the last run, so its page shows no results. "
                      f"The error:\n\n```text\n{record['error']}\n```{earlier}\n")


def _toc_files(pages: list[str] | str, experiments: list[str], studies: list[str]) -> list[str]:
    """The `_toc.yml` entries of one part of the book's declaration."""
    if pages == "experiments":
        return [f"results/experiments/{name}" for name in experiments]
    if pages == "studies":
        return [f"results/studies/{study}" for study in studies]
    return [page.removesuffix(".md") if page.endswith(".md") else f"results/{page}"
            for page in pages]


def write_toc(declaration: dict, experiments: list[str], studies: list[str],
              book: Path = BOOK) -> None:
    """Generate `_toc.yml` from the book's declaration (`config.book_pages`) and the pages
    this build produced: its experiments' and its studies'."""
    parts = []
    for part in declaration["parts"]:
        files = _toc_files(part["pages"], experiments, studies)
        if files:  # a part with no pages in this build is left out
            parts.append({"caption": part["caption"],
                          "chapters": [{"file": file} for file in files]})
    toc = {"format": "jb-book", "root": f"results/{declaration['root']}", "parts": parts}
    (Path(book) / "_toc.yml").write_text(
        "# Generated by `python -m vgg_transfer build` from experiments.yaml's `book`; "
        "do not edit.\n" + yaml.safe_dump(toc, sort_keys=False))


def finished_runs(profile: str, experiments_file: str | None = None,
                  outputs: Path = OUTPUTS) -> dict[str, list[str]]:
    """Per experiment of the profile, the points with a finished run and no failure since."""
    spec = load_experiments(experiments_file)
    folder = runs_dir(profile, outputs)
    grouped = _by_experiment(resolve_profile(spec, profile))
    return {name: [p.name for p in points if is_finished(folder / p.name)
                   and not (folder / f"{p.name}.failed").is_file()]
            for name, points in grouped.items()}


def _experiment_pages(profile: str, runs: dict[str, list[str]], outputs: Path,
                      results: Path) -> tuple[list[str], list[str]]:
    """Each experiment's page (its executed notebook, or a failure page); returns the
    experiments with a page and those that finished."""
    folder, notebooks = runs_dir(profile, outputs), notebooks_dir(profile, outputs)
    pages, finished = [], []
    for name, points in runs.items():
        failed, notebook = notebooks / f"{name}.failed", notebooks / f"{name}.ipynb"
        page = results / "experiments" / name
        if failed.is_file():
            _failure_page(artifacts.read_json(failed), page.with_suffix(".md"),
                          notebook if notebook.is_file() else None)
        elif points and notebook.is_file():
            _title_experiment(notebook, page.with_suffix(".ipynb"), name,
                              selection.load(folder, points))
            finished.append(name)
        else:
            continue
        pages.append(name)
    return pages, finished


def _title(notebook: Path) -> str:
    """A notebook's title: its first markdown heading."""
    cell = next(c for c in nbformat.read(notebook, as_version=4).cells
                if c.cell_type == "markdown")
    return cell.source.splitlines()[0].lstrip("#").strip()


def _context(spec: dict, profile: str, runs: dict[str, list[str]], finished: list[str],
             outputs: Path) -> Context:
    """What the pages of this build read: its finished runs, comparison and studies."""
    studies = {study: [e for e in experiments if e in finished]
               for study, experiments in profile_studies(spec, profile).items()}
    studies = {study: experiments for study, experiments in studies.items() if experiments}
    return Context(
        profile=profile, runs_dir=str(runs_dir(profile, outputs)),
        run_names=[p for name in finished for p in runs[name]], experiments=finished,
        compare=[e for e in profile_compare(spec, profile) if e in finished] or finished,
        studies=studies, titles={s: _title(NOTEBOOKS / f"study_{s}.ipynb") for s in studies},
        bench_file=str(Path(outputs) / "benchmarks" / "bench.json"))


def _page_notebooks(declaration: dict, studies: list[str],
                    results: Path) -> list[tuple[Path, Path]]:
    """(template, executed page) for every notebook page of the book's declaration."""
    named = [declaration["root"]] + [page for part in declaration["parts"]
                                     if isinstance(part["pages"], list)
                                     for page in part["pages"] if not page.endswith(".md")]
    targets = [(NOTEBOOKS / f"{page}.ipynb", results / f"{page}.ipynb") for page in named]
    if any(part["pages"] == "studies" for part in declaration["parts"]):
        targets += [(NOTEBOOKS / f"study_{study}.ipynb", results / "studies" / f"{study}.ipynb")
                    for study in studies]
    return targets


def _execute_page(template: Path, output: Path, context: Path, kernel: str | None) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    declared = papermill_parameters(template)  # a page without parameters gets none
    execute(template, output, {"context": str(context)} if "context" in declared else {},
            kernel)
    _hide_injected(output)


def build_pages(profile: str, kernel: str | None = None, experiments_file: str | None = None,
                outputs: Path = OUTPUTS, book: Path = BOOK) -> list[str]:
    """Put the profile's experiment notebooks and the executed page notebooks under book/,
    as the book's declaration (experiments.yaml's `book`) lists them, and write `_toc.yml`."""
    spec = load_experiments(experiments_file)
    declaration = book_pages(spec)
    results = Path(book) / "results"
    shutil.rmtree(results, ignore_errors=True)
    runs = finished_runs(profile, experiments_file, outputs)
    pages, finished = _experiment_pages(profile, runs, outputs, results)
    if not finished:
        raise RuntimeError(f"no finished runs for profile {profile} in "
                           f"{runs_dir(profile, outputs)}; run `python -m vgg_transfer run "
                           f"--profile {profile}` first")
    context = _context(spec, profile, runs, finished, outputs)
    path = context.write(Path(outputs) / profile / CONTEXT_FILE)
    for template, output in _page_notebooks(declaration, list(context.studies), results):
        print(f"page: {output.relative_to(results).with_suffix('')}", flush=True)
        _execute_page(template, output, path, kernel)
    write_toc(declaration, pages, list(context.studies), book)
    return [f"results/experiments/{name}" for name in pages]


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
    spec = load_experiments(experiments_file)
    digest = hashlib.sha256(f"{profile}\n{sweep.code_hash(modules=None)}".encode())
    digest.update(yaml.safe_dump(book_pages(spec)).encode())
    folder, notebooks = runs_dir(profile, outputs), notebooks_dir(profile, outputs)
    for name, points in _by_experiment(resolve_profile(spec, profile)).items():
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
