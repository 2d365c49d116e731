"""Profiles, grids and the book's declaration: from the experiments file to resolved runs.

Layers merge as

    defaults < environment (CIFAR10_DIR, WEIGHTS, KERAS_BACKEND) < experiment entry < profile.set
             < profile.experiments[name] < grid run < overrides

An experiment may declare a `grid` (in its entry, in the profile, or for all of a profile's
experiments): every combination of the grid's values is one run, a `GridRun`, validated as an
`ExperimentConfig` before anything trains.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field

from vgg_transfer.spec.config import (
    DEFAULT_EXPERIMENTS,
    ENV_VARS,
    ConfigError,
    ExperimentConfig,
    load_experiments,
    make_config,
)

# The studies the pages can compute, one page each (notebooks/studies/<name>.ipynb); a profile's
# `studies` picks among them, in the order its Studies part shows them.
STUDIES = ("protocol", "frontier", "data_efficiency", "seeds", "depth", "resolution",
           "calibration", "gradcam", "claims")


def profile_names(spec: dict) -> list[str]:
    return list(spec.get("profiles") or {})


PROFILE_KEYS = ("description", "set", "only", "experiments", "grid", "compare", "studies")


def _profile(spec: dict, profile: str) -> dict:
    profiles = spec.get("profiles") or {}
    if profile not in profiles:
        raise ConfigError(f"profile: unknown profile {profile!r} "
                          f"(allowed: {', '.join(profiles)})")
    entry = profiles[profile] or {}
    unknown = set(entry) - set(PROFILE_KEYS)
    if unknown:
        raise ConfigError(f"profiles.{profile}: unknown key {sorted(unknown)[0]!r} "
                          f"(allowed: {', '.join(PROFILE_KEYS)})")
    known = set(spec.get("experiments") or {})
    for name in entry.get("experiments") or {}:
        if name not in known:
            raise ConfigError(f"profiles.{profile}.experiments: unknown experiment {name!r} "
                              f"(allowed: {', '.join(known)})")
    return entry


def experiment_names(spec: dict, profile: str) -> list[str]:
    """The experiments a profile runs, in the order of its `only` list (so a profile runs
    first what matters most to it: `study` the frontier), else in file order."""
    names = list(spec.get("experiments") or {})
    only = _profile(spec, profile).get("only")
    if only is None:
        return names
    missing = [name for name in only if name not in names]
    if missing:
        raise ConfigError(f"profiles.{profile}.only: unknown experiment {missing[0]!r} "
                          f"(allowed: {', '.join(names)})")
    return list(dict.fromkeys(only))


def _layers(spec: dict, name: str, profile: str, env: dict | None) -> tuple[dict, dict]:
    """The merged values of one experiment before overrides, and its merged grid."""
    experiments = spec.get("experiments") or {}
    if name not in experiments:
        raise ConfigError(f"experiment: unknown experiment {name!r} "
                          f"(allowed: {', '.join(experiments)})")
    env = os.environ if env is None else env
    from_env = {key: env[var] for var, key in ENV_VARS.items() if env.get(var)}
    chosen = _profile(spec, profile)
    entry = dict(experiments[name] or {})
    in_profile = dict((chosen.get("experiments") or {}).get(name) or {})
    grid = {**(entry.pop("grid", None) or {}), **(chosen.get("grid") or {}),
            **(in_profile.pop("grid", None) or {})}
    values = {**(spec.get("defaults") or {}), **from_env, **entry, **(chosen.get("set") or {}),
              **in_profile}
    return values, grid


def resolve(spec: dict, name: str, profile: str, overrides: dict | None = None,
            env: dict | None = None) -> ExperimentConfig:
    """Merge the layers for one experiment (without its grid) and validate the result.

    Args:
        spec: the experiments file, as returned by `load_experiments`.
        name: an experiment in `spec["experiments"]`.
        profile: a profile in `spec["profiles"]`.
        overrides: values that win over everything (CLI `--set`, papermill parameters).
        env: environment variables to read (defaults to `os.environ`).
    """
    values, _ = _layers(spec, name, profile, env)
    return make_config({**values, **(overrides or {}), "name": name},
                    where=f"experiment {name!r} (profile {profile})")


@dataclass
class GridRun:
    """One run of an experiment: its resolved config and its place in the experiment's grid."""

    cfg: ExperimentConfig
    experiment: str                  # the entry of the experiments file
    axes: dict = field(default_factory=dict)  # the grid values that made this grid run
    reference: bool = True           # every axis but seed at the experiment's own value

    @property
    def name(self) -> str:
        return self.cfg.name


AXIS_LABELS = {"seed": "s", "train_size": "n", "image_size": "px", "epochs": "e",
               "val_size": "v", "batch_size": "b", "learning_rate": "lr",
               "unfreeze_from": "from", "head_epochs": "he"}


def _label(key: str, value) -> str:
    """A short, file-name-safe label for one grid value: n500, px64, s0, gap, augment."""
    if isinstance(value, bool):
        return key if value else f"no_{key}"
    if value is None:
        return f"{AXIS_LABELS.get(key, key)}all"
    if isinstance(value, str):
        return "".join(c if c.isalnum() or c in "_." else "_" for c in value)
    if key == "flops_budget":  # in TFLOPs: tf3, tf30
        return f"tf{value / 1e12:g}".replace("+", "")
    if key == "budget_points":  # in TFLOPs: pts1.25_4
        return "pts" + "_".join(f"{v / 1e12:g}" for v in value).replace("+", "")
    if isinstance(value, float):
        return f"{AXIS_LABELS.get(key, key)}{value:g}"
    return f"{AXIS_LABELS.get(key, key)}{value}"


def grid_run_name(experiment: str, axes: dict) -> str:
    """`frozen` + {train_size: 500, seed: 0} -> `frozen-n500-s0`."""
    return "-".join([experiment, *(_label(k, v) for k, v in axes.items())])


def _grid_options(grid: dict, overrides: dict, where: str) -> list[list[dict]]:
    """Each axis as a list of value mappings; axes that overrides fix are dropped.

    An axis is a list of values (`seed: [0, 1, 2]`) or of mappings that set several keys
    together (`budget: [{train_size: 500, epochs: 12}, ...]`). The seed axis goes last.
    """
    axes = []
    for axis in sorted(grid, key=lambda a: a == "seed"):
        values = grid[axis]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: grid.{axis}: must be a non-empty list of values")
        options = []
        for value in values:
            option = dict(value) if isinstance(value, dict) else {axis: value}
            option = {k: v for k, v in option.items() if k not in overrides}
            if option and option not in options:
                options.append(option)
        if options:
            axes.append(options)
    return axes


def resolve_grid(spec: dict, name: str, profile: str, overrides: dict | None = None,
                   env: dict | None = None) -> list[GridRun]:
    """Every run of one experiment: the product of its grid's axes, each validated.

    Layers merge as defaults < environment < experiment entry < profile.set
    < profile.experiments[name] < grid run < overrides; an override of a grid key fixes it
    (`--set seed=0` runs one seed). A grid run's name is the experiment's plus its grid labels
    (`frozen-n500-s0`); without a grid it is the experiment's name.
    """
    overrides = overrides or {}
    values, grid = _layers(spec, name, profile, env)
    where = f"experiment {name!r} (profile {profile})"
    base = make_config({**values, **overrides, "name": name}, where=where)
    grid_runs = []
    for combo in itertools.product(*_grid_options(grid, overrides, where)):
        axes = {k: v for option in combo for k, v in option.items()}
        label = grid_run_name(name, axes)
        saving = {} if values.get("save_model") is not None or "save_model" in overrides \
            else {"save_model": not axes}  # a grid's runs do not keep their models
        cfg = make_config({**values, **axes, **saving, **overrides, "name": label},
                          where=f"{where}, grid run {label}")
        reference = all(getattr(cfg, k) == getattr(base, k) for k in axes if k != "seed")
        grid_runs.append(GridRun(cfg, name, axes, reference))
    names = [p.name for p in grid_runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: grid gives two grid runs the same name; "
                          "give each axis distinct values")
    return grid_runs


def resolve_profile(spec: dict, profile: str, overrides: dict | None = None,
                    only: list[str] | None = None, env: dict | None = None) -> list[GridRun]:
    """Resolve and validate every grid run of every experiment of a profile before any runs."""
    names = experiment_names(spec, profile)
    if only:
        unknown = [name for name in only if name not in names]
        if unknown:
            raise ConfigError(f"only: experiment {unknown[0]!r} is not in profile {profile} "
                              f"(allowed: {', '.join(names)})")
        names = [name for name in names if name in only]
    return [grid_run for name in names for grid_run in resolve_grid(spec, name, profile, overrides,
                                                                 env)]


def profile_compare(spec: dict, profile: str) -> list[str]:
    """The experiments the comparison page puts side by side (default: all of the profile's)."""
    names = experiment_names(spec, profile)
    compare = _profile(spec, profile).get("compare") or names
    missing = [name for name in compare if name not in names]
    if missing:
        raise ConfigError(f"profiles.{profile}.compare: experiment {missing[0]!r} is not in "
                          f"the profile (allowed: {', '.join(names)})")
    return list(compare)


def profile_studies(spec: dict, profile: str) -> dict[str, list[str]]:
    """The Studies pages a profile builds, each with the experiments it reads.

    `studies` is a list of page names, or a mapping from page name to its experiments
    (default: every experiment of the profile).
    """
    studies = _profile(spec, profile).get("studies") or {}
    names = experiment_names(spec, profile)
    if isinstance(studies, list):
        studies = {study: None for study in studies}
    out = {}
    for study, experiments in studies.items():
        if study not in STUDIES:
            raise ConfigError(f"profiles.{profile}.studies: unknown study {study!r} "
                              f"(allowed: {', '.join(STUDIES)})")
        missing = [e for e in experiments or [] if e not in names]
        if missing:
            raise ConfigError(f"profiles.{profile}.studies.{study}: experiment {missing[0]!r} "
                              f"is not in the profile (allowed: {', '.join(names)})")
        out[study] = list(experiments or names)
    return out


BOOK_GROUPS = ("experiments", "studies")  # stand for the profile's experiment / study pages


def _book_part(part, where: str) -> dict:
    if not isinstance(part, dict) or set(part) != {"caption", "pages"}:
        raise ConfigError(f"{where}: a part is a mapping with `caption` and `pages`")
    pages = part["pages"]
    if not (pages in BOOK_GROUPS or isinstance(pages, list)
            and all(isinstance(page, str) and page for page in pages)):
        raise ConfigError(f"{where} ({part['caption']}): pages: a list of page names, or "
                          f"one of {', '.join(BOOK_GROUPS)}")
    return {"caption": str(part["caption"]), "pages": pages}


def book_pages(spec: dict) -> dict:
    """The book's declaration: its landing page, then its parts and their pages, in order.

    A page is a notebook of notebooks/pages/ (`comparison`), executed into the book, or a markdown
    file of book/ (`method.md`); a part's `pages` may instead be `experiments` (one page per
    experiment of the profile) or `studies` (the profile's Studies pages). The runner and the
    generated `_toc.yml` both read this. An experiments file without a `book` builds the
    project's book (the one declared in experiments.yaml).
    """
    book = spec.get("book")
    if book is None:
        book = load_experiments(DEFAULT_EXPERIMENTS).get("book")
    if not isinstance(book, dict) or set(book) != {"root", "parts"}:
        raise ConfigError("book: a mapping with `root` (the landing page) and `parts`")
    if not isinstance(book["parts"], list):
        raise ConfigError("book.parts: a list of parts")
    parts = [_book_part(part, f"book.parts[{i}]") for i, part in enumerate(book["parts"])]
    named = [str(book["root"])] + [page for part in parts if isinstance(part["pages"], list)
                                   for page in part["pages"]]
    groups = [part["pages"] for part in parts if isinstance(part["pages"], str)]
    twice = sorted({page for page in named + groups if (named + groups).count(page) > 1})
    if twice:
        raise ConfigError(f"book: page {twice[0]!r} is declared twice")
    return {"root": str(book["root"]), "parts": parts}
