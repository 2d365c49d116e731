"""Loading and selecting runs: which runs a page reads, read through `RunRecord` only.

A page loads the finished runs of its build once, then picks among them: the runs of some
experiments, the *reference* runs (every grid value but the seed at the experiment's own
setting), the runs at one value of a grid axis. Nothing here computes a statistic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vgg_transfer.record import RunRecord, is_finished
from vgg_transfer.spec import regimes
from vgg_transfer.spec.profiles import grid_run_name


def load(runs_dir: str | Path, names: list[str]) -> list[RunRecord]:
    """Finished runs in the given order; names with no finished run are skipped."""
    runs_dir = Path(runs_dir)
    return load_folders([runs_dir / name for name in names])


def load_folders(folders: list[str | Path]) -> list[RunRecord]:
    """The finished runs among these folders, in order."""
    return [RunRecord.load(folder) for folder in folders if is_finished(folder)]


def of_experiments(runs: list[RunRecord], experiments: list[str],
                   reference: bool | None = None) -> list[RunRecord]:
    """The runs of some experiments (in that order), optionally only reference points."""
    return [run for name in experiments for run in runs
            if run.experiment == name
            and (reference is None or run.metrics.reference == reference)]


def reference_runs(runs: list[RunRecord], experiment: str) -> list[RunRecord]:
    """One experiment's runs at its own setting: one per seed."""
    return of_experiments(runs, [experiment], reference=True)


def reference_run(runs: list[RunRecord]) -> RunRecord:
    """The first run at its experiment's own setting (the first run if there is none)."""
    return next((run for run in runs if run.metrics.reference), runs[0])


def first_of_each(runs: list[RunRecord]) -> dict[str, RunRecord]:
    """Per experiment, its first run (in the given order)."""
    first: dict[str, RunRecord] = {}
    for run in runs:
        first.setdefault(run.experiment, run)
    return first


def setting(run: RunRecord) -> str:
    """A run's name without its seed: the runs of one setting differ only in the seed."""
    axes = {k: v for k, v in run.metrics.axes.items() if k != "seed"}
    return grid_run_name(run.experiment, axes)


def axis_value(run: RunRecord, axis: str):
    """A run's value on one axis: a config field, or `train_n` (the images it trained on)."""
    return run.metrics.train_n if axis == "train_n" else getattr(run.config, axis)


def at(runs: list[RunRecord], **values) -> list[RunRecord]:
    """The runs whose axes (config fields, or train_n) have these values."""
    return [run for run in runs
            if all(axis_value(run, axis) == value for axis, value in values.items())]


def ending(run: RunRecord) -> str:
    """How a run's training ended: on a plateau of the validation split (early stopping) or
    when its budget ran out."""
    return "plateau" if any(p["stopped_on_plateau"] for p in run.metrics.phases) else "budget"


def ending_val_accuracy(run: RunRecord) -> float:
    """The validation accuracy of the weights a run ended with: its last phase's restored
    epoch's (early stopping kept an earlier epoch), else its last epoch's."""
    history = run.history
    if "phase" in history and len(run.metrics.phases) > 1:
        history = history[history["phase"] == history["phase"].iloc[-1]]
    restored = run.metrics.phases[-1].get("restored_epoch") if run.metrics.phases else None
    values = history["val_accuracy"]
    return float(values.iloc[restored - 1] if restored else values.iloc[-1])


def trains_whole_network(run: RunRecord) -> bool:
    """Did every phase of the run train the whole convolutional base (no block frozen), as it
    was configured (`finetune` from block 1 does; the `depth` runs from block 5 do not)?"""
    return (regimes.get(run.metrics.regime).base != "none"
            and all(phase["frozen_blocks"] == 0 for phase in run.metrics.phases))


def _row(run: RunRecord) -> dict:
    m, t = run.metrics, run.timings
    return {
        "name": m.name, "experiment": m.experiment, "regime": m.regime,
        "weights": m.weights_label, "reference": m.reference, "seed": run.seed,
        "train_n": m.train_n, "image_size": run.config.image_size, "head": run.config.head,
        "epochs": m.epochs, "steps": m.steps, "images_seen": m.images_seen,
        "ended": ending(run), "whole_network": trains_whole_network(run),
        "test_accuracy": m.test_accuracy,
        "ci_low": m.test_accuracy_ci95[0], "ci_high": m.test_accuracy_ci95[1],
        "test_n": m.test_n, "test_ece": m.test_ece, "test_loss": m.test_loss,
        "best_val_accuracy": m.best_val_accuracy, "val_accuracy": ending_val_accuracy(run),
        "final_train_accuracy": m.final_train_accuracy, "trainable": m.params.trainable,
        "training_seconds": run.training_seconds, "wall_seconds": t.wall_seconds,
        "precision": run.config.precision,
        "training_flops": run.training_flops,
        "feature_images_per_second": t.feature_images_per_second,
    }


def compute_curve(run: RunRecord) -> pd.DataFrame:
    """A run's validation accuracy against the training compute spent so far, in seconds
    and in FLOPs: frozen blocks' outputs first (`RunRecord.feature_cost`, and the cached
    blocks' FLOPs), then each epoch's, from the run's own records (FLOPs are NaN for a
    record without them)."""
    spent = run.feature_cost + np.cumsum(run.timings.epoch_seconds)
    compute = run.metrics.compute
    per_epoch = compute.get("per_epoch") or [float("nan")] * len(run.history)
    used = compute.get("before_training", float("nan")) + np.cumsum(per_epoch, dtype=float)
    n = min(len(spent), len(used), len(run.history))
    return pd.DataFrame({"seconds": spent[-n:], "flops": used[-n:], "val_accuracy":
                         run.history["val_accuracy"].to_numpy()[-n:]})


def runs_frame(runs: list[RunRecord]) -> pd.DataFrame:
    """One row per run: what it was (experiment, regime, grid values) and what it measured."""
    return pd.DataFrame([_row(run) for run in runs])


def still_improving(run: RunRecord) -> bool:
    """Did a run use its whole budget with its validation accuracy best in its last epoch?"""
    return ending(run) == "budget" and run.metrics.best_val_epoch == len(run.history)
