"""A run's learning rate, chosen on validation among candidates (`lr_search`).

Each candidate is a run of its own: the grid run's config with the candidate's rate, seed 0, no
budget points, and the search's `set` (typically a smaller flops_budget). Candidates are
named from what they train, so the points of one line (its budgets, its other seeds) share
one search, which runs once. The grid run then trains at the rate whose run ended with the best
validation accuracy (the smallest rate on a tie). The test set plays no part.

A grid run's run key holds its search (the candidates' configs) instead of a rate: the rate
follows from the candidates' runs, which their own keys determine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from vgg_transfer.record import RunRecord
from vgg_transfer.report.selection import ending_val_accuracy
from vgg_transfer.spec.config import ExperimentConfig, make_config
from vgg_transfer.spec.profiles import GridRun


class SearchFailed(RuntimeError):
    """A candidate of a grid run's search has no finished run to choose from."""


def candidates(grid_run: GridRun) -> list[GridRun]:
    """The runs a grid run's search trains, one per candidate rate (none without a search)."""
    search = grid_run.cfg.lr_search
    if search is None:
        return []
    values = {**grid_run.cfg.model_dump(exclude={"name", "lr_search", "learning_rate"}),
              "budget_points": None, "seed": 0, **search.set}
    digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode())
    stem = f"{grid_run.experiment}-lrsearch-{digest.hexdigest()[:8]}"
    return [GridRun(make_config({**values, "name": f"{stem}-lr{rate:g}", "learning_rate": rate},
                              where=f"{grid_run.name}: lr_search"),
                  grid_run.experiment, {"learning_rate": rate}, reference=False)
            for rate in search.learning_rates]


def with_candidates(grid_runs: list[GridRun]) -> tuple[list[GridRun], list[GridRun]]:
    """(every search's candidates, each once and in order; the grid runs themselves)."""
    seen: dict[str, GridRun] = {}
    for grid_run in grid_runs:
        for candidate in candidates(grid_run):
            seen.setdefault(candidate.name, candidate)
    return list(seen.values()), list(grid_runs)


def choose(grid_run: GridRun, runs_dir: Path) -> tuple[ExperimentConfig, dict | None]:
    """The grid run's config at the rate its search chose, and the search as its record keeps
    it (the grid run unchanged and None without a search)."""
    if grid_run.cfg.lr_search is None:
        return grid_run.cfg, None
    rows = []
    for candidate in candidates(grid_run):
        folder = Path(runs_dir) / candidate.name
        if not (folder / "metrics.json").is_file():
            raise SearchFailed(f"lr_search: candidate {candidate.name} has no finished run "
                               f"in {runs_dir}")
        run = RunRecord.load(folder)
        rows.append({"learning_rate": candidate.cfg.learning_rate, "run": candidate.name,
                     "val_accuracy": ending_val_accuracy(run), "flops": run.training_flops,
                     "seconds": run.training_seconds,
                     "test_accuracy": run.metrics.test_accuracy})  # reported, never chosen on
    best = max(rows, key=lambda row: row["val_accuracy"])  # first (smallest rate) on a tie
    chosen = best["learning_rate"]
    print(f"{grid_run.name}: learning rate {chosen:g} chosen on validation among "
          + ", ".join(f"{row['learning_rate']:g} ({row['val_accuracy']:.4f})" for row in rows),
          flush=True)
    return (grid_run.cfg.model_copy(update={"learning_rate": chosen}),
            {"chosen": chosen, "candidates": rows, "set": dict(grid_run.cfg.lr_search.set),
             "flops": sum(row["flops"] for row in rows),
             "seconds": sum(row["seconds"] for row in rows)})
