"""A command's plan, resolved once: the profile, its grid runs, where outputs and the book go,
and the kernel that runs the notebooks.

`make_plan` parses the experiments file once and resolves every grid run before anything runs;
everything after it (the runs, each experiment's kernel, the pages, the site's key) reads the
plan. An experiment's kernel gets its grid runs as a file (`write_grid`), as the pages get
their context, so it neither reads the experiments file nor resolves anything again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from vgg_transfer import files
from vgg_transfer.spec.config import PROJECT_ROOT, ConfigError, load_experiments, make_config
from vgg_transfer.spec.profiles import GridRun, profile_names, resolve_profile

NOTEBOOKS = PROJECT_ROOT / "notebooks"  # experiment.ipynb, the template of every experiment
PAGES = NOTEBOOKS / "pages"            # the book's notebook pages, one template each
STUDY_PAGES = NOTEBOOKS / "studies"    # one template per study
BOOK = PROJECT_ROOT / "book"
OUTPUTS = PROJECT_ROOT / "outputs"


@dataclass(frozen=True)
class Plan:
    """What one command does, resolved and validated."""

    profile: str
    spec: dict                      # the experiments file, as parsed (once)
    grid_runs: tuple[GridRun, ...]       # what this command runs: overrides and --only applied
    overrides: dict                 # --set values (they fix the grid axes they name)
    outputs: Path = OUTPUTS         # <outputs>/<profile>/{runs,notebooks,grid}
    book: Path = BOOK
    kernel: str | None = None       # the Jupyter kernel of every notebook (None: the template's)

    @property
    def runs_dir(self) -> Path:
        return Path(self.outputs) / self.profile / "runs"

    @property
    def notebooks_dir(self) -> Path:
        """Where each experiment's executed notebook goes (its page in the book)."""
        return Path(self.outputs) / self.profile / "notebooks"

    @property
    def feature_cache(self) -> Path:
        """The frozen blocks' outputs, shared by every profile of the outputs folder."""
        return files.feature_cache_of(self.outputs)

    @property
    def grid_dir(self) -> Path:
        """Where each experiment's kernel finds its resolved grid runs."""
        return Path(self.outputs) / self.profile / "grid"

    def experiments(self) -> dict[str, list[GridRun]]:
        """This command's grid runs by experiment, in the profile's order."""
        return by_experiment(self.grid_runs)

    @functools.cached_property
    def profile_grid_runs(self) -> dict[str, list[GridRun]]:
        """Every grid run of the profile as the pages list it (no overrides, no --only)."""
        return by_experiment(resolve_profile(self.spec, self.profile))


def make_plan(profile: str, overrides: dict | None = None, only: list[str] | None = None,
              experiments_file: str | Path | None = None, outputs: Path | None = None,
              book: Path | None = None, kernel: str | None = None) -> Plan:
    """Parse the experiments file and resolve every grid run of the profile, once."""
    spec = load_experiments(experiments_file)
    names = profile_names(spec)
    if profile not in names:
        raise ConfigError(f"profile: unknown profile {profile!r} (allowed: {', '.join(names)})")
    overrides = dict(overrides or {})
    grid_runs = tuple(resolve_profile(spec, profile, overrides, only))
    return Plan(profile, spec, grid_runs, overrides, Path(outputs or OUTPUTS), Path(book or BOOK),
                kernel)


def by_experiment(grid_runs) -> dict[str, list[GridRun]]:
    grouped: dict[str, list[GridRun]] = {}
    for grid_run in grid_runs:
        grouped.setdefault(grid_run.experiment, []).append(grid_run)
    return grouped


def write_grid(grid_runs: list[GridRun], path: Path) -> Path:
    """The resolved grid runs of one experiment, for its kernel (`read_grid`)."""
    files.write_json(path, [{"config": p.cfg.model_dump(), "experiment": p.experiment,
                             "axes": p.axes, "reference": p.reference} for p in grid_runs])
    return Path(path)


def read_grid(path: str | Path) -> list[GridRun]:
    """The grid runs `write_grid` wrote, each config validated again."""
    return [GridRun(make_config(entry["config"], where=f"{Path(path).name}, grid_run "
                                                      f"{entry['config'].get('name')}"),
                  entry["experiment"], entry["axes"], entry["reference"])
            for entry in files.read_json(path)]
