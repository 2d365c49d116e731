"""The runs of an experiment: one per grid run of its grid, each cached, staged and isolated.

A run is skipped when its key (resolved config, data and weights hashes, the run record's
schema version, the regime's training fields, the code under run/) matches the finished run
on disk. Otherwise it runs in a staging folder that replaces the run folder only when the run
succeeds, so a failure never destroys a good result; a run killed mid-training resumes from
its last checkpoint. The experiment template notebook calls `run_in_notebook`, which runs
every grid run of one experiment in one process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import time
import traceback
import typing
from dataclasses import dataclass
from pathlib import Path

from vgg_transfer import files
from vgg_transfer.core.data import TEST_FILE, TRAIN_FILES, sha256_file
from vgg_transfer.record import SCHEMA_VERSION
from vgg_transfer.run.fingerprint import code_hash
from vgg_transfer.runner import lock, search
from vgg_transfer.spec import regimes
from vgg_transfer.spec.config import PROJECT_ROOT, WEIGHT_NAMES, ExperimentConfig, load_experiments
from vgg_transfer.spec.profiles import GridRun, resolve_grid


@dataclass
class Outcome:
    name: str
    status: str          # ok | cached | failed
    seconds: float
    error: str | None = None


class RunsFailed(RuntimeError):
    """Some runs of an experiment failed; the others finished and were kept."""


CONFIG_NOT_KEYED = ("data_dir", "checkpoint_seconds")  # the data's hashes stand for the folder
PACKAGE = Path(__file__).resolve().parents[1]  # the installed package, wherever it is
TEMPLATE = PROJECT_ROOT / "notebooks" / "experiment.ipynb"


def package_hash(package: Path | None = None) -> str:
    """Every module of the package byte for byte, with the experiment template: what an
    executed experiment notebook and the site are made of (a run's own key holds less:
    `run.fingerprint.code_hash`)."""
    package = Path(package or PACKAGE)
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts):
        digest.update(path.relative_to(package).as_posix().encode() + path.read_bytes())
    if TEMPLATE.is_file():
        digest.update(TEMPLATE.read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def _file_hash(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def file_hash(path: Path) -> str:
    """SHA-256 of a file, computed once per process for an unchanged file: every run of a
    profile reads the same data and weights files."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    return _file_hash(path, stat.st_size, stat.st_mtime_ns)


def _inputs_hash(cfg: ExperimentConfig) -> dict:
    """Hashes of the data files and weights a run reads."""
    data = ({name: file_hash(Path(cfg.data_dir) / name) for name in (*TRAIN_FILES, TEST_FILE)}
            if cfg.data_dir else "keras-download")
    if cfg.weights == "hed-bsds500":
        from vgg_transfer.run.weights import hed_weights_path
        weights = file_hash(hed_weights_path())
    elif cfg.weights in ("none", "imagenet"):
        weights = cfg.weights
    else:
        weights = file_hash(Path(cfg.weights))
    return {"data": data, "weights": weights}


def run_key(cfg: ExperimentConfig, code: str) -> str:
    """What determines a run's result: the resolved config, the regime's training fields
    (network, initialisation, phases; never its description or colour), the data's and
    weights' hashes (not their paths' spelling), the run record's schema and the code that
    computes it (`code`: `run.fingerprint.code_hash()`). A run whose rate its search chooses
    (`lr_search`) is keyed by the search, not by a rate (`runner.search`)."""
    config = {k: v for k, v in cfg.model_dump().items() if k not in CONFIG_NOT_KEYED}
    if cfg.lr_search is not None:
        config["learning_rate"] = None
    payload = {"config": config, "regime": regimes.get(cfg.regime).training_fields(),
               **_inputs_hash(cfg), "schema": SCHEMA_VERSION, "code": code}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def is_current(run: Path, key: str) -> bool:
    return ((run / "metrics.json").is_file() and (run / files.RUN_KEY).is_file()
            and (run / files.RUN_KEY).read_text().strip() == key)


def replace_dir(staging: Path, final: Path) -> None:
    """Move a finished staging folder into place, removing the old one only afterwards."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours in a kernel's traceback
EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Failed|Interrupt)\b: (.+)$")


def one_line(err: BaseException) -> str:
    """The message of an error in one line. papermill's error carries the kernel's exception
    (`evalue`); otherwise the last `SomethingError: message` line of the text, never a line of
    the code the traceback quotes."""
    evalue = getattr(err, "evalue", None)
    if evalue:
        return str(evalue).strip().splitlines()[-1][:300]
    text = ANSI.sub("", str(err)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found = [m.group(1) for line in lines if (m := EXCEPTION_LINE.match(line))]
    return (found[-1] if found else lines[-1] if lines else type(err).__name__)[:300]


def pending(grid_runs: list[GridRun], runs_dir: Path, code: str | None = None) -> list[GridRun]:
    """The grid runs without a finished run that matches their key."""
    code = code or code_hash()
    return [p for p in grid_runs if not is_current(Path(runs_dir) / p.name, run_key(p.cfg, code))]


def run_one(grid_run: GridRun, runs_dir: Path, key: str, force: bool = False,
            feature_cache: Path | None = None) -> Outcome:
    """Run one grid run into its staging folder and move it into place when it succeeds; the
    run folder is locked while this process writes it (`runner.lock`). `feature_cache`: the
    folder of frozen blocks' outputs its runs share (None: computed, not kept)."""
    folder = Path(runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with lock.run_lock(folder, grid_run.name):
            return _run_one(grid_run, files.RunFiles(folder, grid_run.name), key, force,
                            feature_cache)
    except lock.Busy as err:
        print(f"{grid_run.name}: not run: {err}", flush=True)
        return Outcome(grid_run.name, "failed", 0.0, str(err))


def _run_one(grid_run: GridRun, where: files.RunFiles, key: str, force: bool,
             feature_cache: Path | None) -> Outcome:
    from vgg_transfer.run.pipeline import run

    folder, final, staging = where.folder, where.final, where.staging
    if not force and is_current(final, key):
        print(f"{grid_run.name}: unchanged since its last run, reusing {final}", flush=True)
        return Outcome(grid_run.name, "cached", 0.0)
    try:
        cfg, chosen = search.choose(grid_run, folder)
    except search.SearchFailed as err:
        print(f"{grid_run.name}: FAILED — {err}", flush=True)
        return Outcome(grid_run.name, "failed", 0.0, str(err))
    resumable = (not force and (staging / files.CHECKPOINT).is_file()
                 and (staging / files.RUN_KEY).is_file()
                 and (staging / files.RUN_KEY).read_text().strip() == key)
    if resumable:
        print(f"{grid_run.name}: an interrupted run left a checkpoint; resuming it", flush=True)
    else:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        (staging / files.RUN_KEY).write_text(key + "\n")
    start = time.perf_counter()
    try:
        run(cfg, staging, grid_run.experiment, grid_run.axes, grid_run.reference, chosen,
            feature_cache)
        replace_dir(staging, final)
        where.failed.unlink(missing_ok=True)
        return Outcome(grid_run.name, "ok", time.perf_counter() - start)
    except Exception as err:  # the earlier run folder, if any, is untouched
        message = one_line(err)
        print(f"{grid_run.name}: FAILED — {message}", flush=True)
        _record_failure(where, message)
        return Outcome(grid_run.name, "failed", time.perf_counter() - start, message)


def _record_failure(where: files.RunFiles, message: str) -> None:
    """Keep the failed staging folder and a `.failed` record beside the runs; on a full disk
    the record may not fit, and then the log line is all there is."""
    failed = where.failed_run
    try:
        shutil.rmtree(failed, ignore_errors=True)
        where.staging.rename(failed)
        files.write_json(where.failed, {
            "name": where.name, "error": message, "staging": str(failed),
            "traceback": traceback.format_exc()[-4000:]})
    except OSError as err:
        print(f"{where.name}: its failure could not be recorded ({err})", flush=True)


def run_in_order(grid_runs: list[GridRun], runs_dir: Path, force: bool = False,
                 feature_cache: Path | None = None) -> list[Outcome]:
    """Run (or reuse) every grid run in order, after the runs of their learning-rate searches
    (`runner.search`); a failing one does not stop the others."""
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    code = code_hash()
    searched, grid_runs = search.with_candidates(grid_runs)
    grid_runs = [*searched, *grid_runs]
    outcomes, start = [], time.perf_counter()
    for i, grid_run in enumerate(grid_runs, 1):
        if len(grid_runs) > 1:
            print(f"--- run {i}/{len(grid_runs)}: {grid_run.name} "
                  f"({(time.perf_counter() - start) / 60:.1f} min into this experiment) ---",
                  flush=True)
        outcomes.append(run_one(grid_run, runs_dir, run_key(grid_run.cfg, code), force,
                                feature_cache))
    return outcomes


# ---------------------------------------------------------------- the template notebook

MANUAL = PROJECT_ROOT / "outputs" / "manual"


# The template's own parameters; every other parameter is a field of ExperimentConfig.
RUNNER_PARAMETERS = {
    "experiment": ("None", "an entry of experiments.yaml (default: the name of the regime)"),
    "profile": ('"quick"', "a profile of experiments.yaml"),
    "run_dir": ("None", "one run, straight into this folder (the grid must give one grid run)"),
    "runs_dir": ("None", "every run of the grid, a folder each (default: outputs/manual)"),
    "experiments_file": ("None", "default: experiments.yaml of the project"),
    "force": ("False", "re-run runs that are unchanged since their last run"),
    "overrides": ("{}", "config values as a mapping"),
    "grid_file": ("None", "the runner's resolved grid runs (then the values below are unused)"),
    "feature_cache": ("None", "the frozen blocks' outputs, shared (default: outputs/"
                      f"{files.FEATURE_CACHE})"),
}
# The config's fields as the template's parameters (a run's name comes from its grid run).
CONFIG_PARAMETERS = tuple(name for name in ExperimentConfig.model_fields if name != "name")


def _field_hint(annotation) -> str:
    """`Literal["a", "b"]` -> "a | b"; `Optional[int]` -> "int or None"; `list[float]` ->
    "list of float"."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(str(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is list:
        return "list of " + " or ".join(_field_hint(a) for a in args)
    if args:
        return " or ".join([_field_hint(a) for a in args] + ["None"])
    if hasattr(annotation, "model_fields"):  # a nested mapping, e.g. lr_search
        return "mapping of " + ", ".join(annotation.model_fields)
    return getattr(annotation, "__name__", str(annotation))


def template_parameters() -> str:
    """The template's parameters cell: its own parameters, then every config field but the
    run's name (a test checks the template against it)."""
    lines = ["# Parameters. A config value left as None comes from experiments.yaml (defaults,",
             "# environment, experiment entry, profile, grid run); one set here wins and fixes",
             "# that grid axis. Generated from ExperimentConfig by",
             "# vgg_transfer.runner.sweep.template_parameters()."]
    lines += [f"{name} = {value}  # {hint}" for name, (value, hint) in RUNNER_PARAMETERS.items()]
    fields = ExperimentConfig.model_fields
    hints = {"regime": " | ".join(regimes.REGISTRY),
             "weights": " | ".join(WEIGHT_NAMES) + " | a .weights.h5 file"}
    lines += [f"{name} = None  # {hints.get(name) or _field_hint(fields[name].annotation)}"
              for name in CONFIG_PARAMETERS]
    return "\n".join(lines)


def given_parameters(namespace: dict) -> dict:
    """The config values a papermill run of the template set (those not left as None)."""
    return {name: namespace[name] for name in CONFIG_PARAMETERS
            if namespace.get(name) is not None}


def template_runs(namespace: dict) -> list[GridRun]:
    """The grid runs the template runs: the runner's resolved grid runs when it gives a file,
    otherwise resolved from the template's parameters (papermill by hand)."""
    if namespace.get("grid_file"):
        from vgg_transfer.runner.plan import read_grid

        return read_grid(namespace["grid_file"])
    return notebook_runs(namespace.get("experiment"), namespace.get("profile") or "quick",
                           namespace.get("experiments_file"),
                           {**(namespace.get("overrides") or {}), **given_parameters(namespace)})


def notebook_runs(experiment: str | None, profile: str, experiments_file: str | None,
                    overrides: dict) -> list[GridRun]:
    """The grid runs the template notebook runs, from its papermill parameters.

    The experiment name defaults to the regime's, so `-p regime finetune` alone works; a
    name that is not in the experiments file starts from the defaults (give it a regime).
    """
    name = experiment or overrides.get("regime") or "frozen"
    spec = load_experiments(experiments_file)
    spec.setdefault("experiments", {}).setdefault(name, {})
    return resolve_grid(spec, name, profile, overrides)


def run_in_notebook(grid_runs: list[GridRun], profile: str, run_dir: str | None = None,
                    runs_dir: str | None = None, force: bool = False,
                    feature_cache: str | None = None) -> list[Path]:
    """Run the template's grid runs and return their run folders.

    With `run_dir` the experiment must resolve to one grid run (fix grid axes with parameters,
    e.g. `-p seed 0`), which runs straight into that folder; otherwise every grid run runs,
    cached and staged, under `runs_dir` (default outputs/manual/<profile>/runs). Both read
    and fill `feature_cache`, by default the default outputs folder's, as the runner's runs.
    """
    from vgg_transfer.run.pipeline import run

    cache = Path(feature_cache) if feature_cache else files.feature_cache_of(MANUAL.parent)

    if run_dir is not None:
        if len(grid_runs) != 1:
            raise ValueError(
                f"run_dir: experiment {grid_runs[0].experiment!r} has {len(grid_runs)} runs under "
                f"profile {profile}; give runs_dir (a folder for all of them) or fix the grid "
                f"with parameters ({', '.join(grid_runs[0].axes)})")
        grid_run = grid_runs[0]
        searched, _ = search.with_candidates(grid_runs)  # beside the run, cached like any run
        if any(o.status == "failed"
               for o in run_in_order(searched, Path(run_dir).parent, force, cache)):
            raise RunsFailed(f"{grid_run.name}: a run of its learning-rate search failed")
        cfg, chosen = search.choose(grid_run, Path(run_dir).parent)
        run(cfg, run_dir, grid_run.experiment, grid_run.axes, grid_run.reference, chosen,
            cache)
        return [Path(run_dir)]
    folder = Path(runs_dir) if runs_dir else MANUAL / profile / "runs"
    outcomes = run_in_order(grid_runs, folder, force, cache)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise RunsFailed(f"{len(failed)} of {len(outcomes)} runs failed: "
                         + "; ".join(f"{o.name}: {o.error}" for o in failed))
    return [folder / p.name for p in grid_runs]
