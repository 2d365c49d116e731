"""A command's plan, resolved once: the profile, its points, where outputs and the book go,
and the kernel that runs the notebooks.

`make_plan` parses the experiments file once and resolves every point before anything runs;
everything after it (the runs, each experiment's kernel, the pages, the site's key) reads the
plan. An experiment's kernel gets its points as a file (`write_points`), as the pages get
their context, so it neither reads the experiments file nor resolves anything again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from vgg_transfer import files
from vgg_transfer.spec.config import PROJECT_ROOT, ConfigError, load_experiments, make_config
from vgg_transfer.spec.profiles import Point, profile_names, resolve_profile

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
    points: tuple[Point, ...]       # what this command runs: overrides and --only applied
    overrides: dict                 # --set values (they fix the grid axes they name)
    outputs: Path = OUTPUTS         # <outputs>/<profile>/{runs,notebooks,points}
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
    def points_dir(self) -> Path:
        """Where each experiment's kernel finds its resolved points."""
        return Path(self.outputs) / self.profile / "points"

    def experiments(self) -> dict[str, list[Point]]:
        """This command's points by experiment, in the profile's order."""
        return by_experiment(self.points)

    @functools.cached_property
    def profile_points(self) -> dict[str, list[Point]]:
        """Every point of the profile as the pages list it (no overrides, no --only)."""
        return by_experiment(resolve_profile(self.spec, self.profile))


def make_plan(profile: str, overrides: dict | None = None, only: list[str] | None = None,
              experiments_file: str | Path | None = None, outputs: Path | None = None,
              book: Path | None = None, kernel: str | None = None) -> Plan:
    """Parse the experiments file and resolve every point of the profile, once."""
    spec = load_experiments(experiments_file)
    names = profile_names(spec)
    if profile not in names:
        raise ConfigError(f"profile: unknown profile {profile!r} (allowed: {', '.join(names)})")
    overrides = dict(overrides or {})
    points = tuple(resolve_profile(spec, profile, overrides, only))
    return Plan(profile, spec, points, overrides, Path(outputs or OUTPUTS), Path(book or BOOK),
                kernel)


def by_experiment(points) -> dict[str, list[Point]]:
    grouped: dict[str, list[Point]] = {}
    for point in points:
        grouped.setdefault(point.experiment, []).append(point)
    return grouped


def write_points(points: list[Point], path: Path) -> Path:
    """The resolved points of one experiment, for its kernel (`read_points`)."""
    files.write_json(path, [{"config": p.cfg.model_dump(), "experiment": p.experiment,
                             "axes": p.axes, "reference": p.reference} for p in points])
    return Path(path)


def read_points(path: str | Path) -> list[Point]:
    """The points `write_points` wrote, each config validated again."""
    return [Point(make_config(entry["config"], where=f"{Path(path).name}, point "
                                                      f"{entry['config'].get('name')}"),
                  entry["experiment"], entry["axes"], entry["reference"])
            for entry in files.read_json(path)]
