"""Statistics over runs: summaries over seeds, seed-paired McNemar tests, noise and margins.

The per-array measures (Wilson interval, McNemar's exact test on two prediction vectors,
reliability bins, the t summary of some values) are in `evaluation`; this module applies
them to groups of runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from vgg_transfer.core.metrics import mcnemar_exact, seed_summary
from vgg_transfer.record import RunRecord
from vgg_transfer.report.selection import (
    at,
    axis_value,
    ending_val_accuracy,
    of_experiments,
    reference_runs,
    runs_frame,
)
from vgg_transfer.report.words import counts, distinct

CHANCE = 0.10  # ten balanced classes
POINT = ["experiment", "train_n", "image_size", "head"]  # what makes a point, but the seed

PAIR_COLUMNS = ["A", "B", "seeds", "val A", "val B", "accuracy A", "accuracy B",
                "difference (A − B)",
                "only A right", "only B right", "largest p (McNemar, exact)", "p per seed",
                "differences", "paired on"]


# ---------------------------------------------------------------- summaries over seeds

def summarise(frame: pd.DataFrame, by: list[str], value: str = "test_accuracy") -> pd.DataFrame:
    """Mean, sd, number of seeds and 95% t interval of `value` per group, in first-seen order."""
    rows = []
    for key, group in frame.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key, strict=False)), **seed_summary(group[value])})
    return pd.DataFrame(rows)


def summary_of(runs: list[RunRecord], experiment: str,
               value: str = "test_accuracy") -> dict | None:
    """Mean, sd, n and t interval of a metric over one experiment's reference runs (None if
    it has none)."""
    chosen = reference_runs(runs, experiment)
    if not chosen:
        return None
    return seed_summary([getattr(run.metrics, value) for run in chosen])


def by_setting(runs: list[RunRecord], experiments: list[str], axis: str,
               value: str = "test_accuracy") -> pd.DataFrame:
    """Mean, sd, seeds and t interval per experiment and value of one axis (all points)."""
    frame = runs_frame(of_experiments(runs, experiments))
    if frame.empty:
        return frame
    order = {e: i for i, e in enumerate(experiments)}
    summary = summarise(frame, ["experiment", "regime", axis], value)
    return summary.sort_values(
        ["experiment", axis], key=lambda c: c.map(order) if c.name == "experiment" else c,
        kind="stable").reset_index(drop=True)


def seeds_per_point(runs: list[RunRecord]) -> pd.Series:
    """How many seeds each point (experiment and setting) ran."""
    return runs_frame(runs).groupby(POINT)["seed"].nunique()


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN ones left out of the family
    and returned as NaN): the k-th smallest of m is multiplied by m - k + 1, then made
    non-decreasing and capped at 1. It bounds the chance of any false rejection in the family
    by the level used, whatever the tests' dependence."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    order = present[np.argsort(p[present], kind="stable")]
    m, running = len(order), 0.0
    for k, index in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[index]))
        out[index] = running
    return out


def t_quantile(n: int, confidence: float = 0.95) -> float:
    """The two-sided t quantile of a mean over n runs (n − 1 degrees of freedom)."""
    return float(student_t.ppf(0.5 + confidence / 2, n - 1))


def rise_margin(before, after) -> float:
    """Two standard errors of the difference between two means over seeds (rows with mean,
    sd, n); 0 when either has a single run, so any rise counts."""
    if min(before["n"], after["n"]) < 2:
        return 0.0
    return 2 * float(np.sqrt(before["sd"] ** 2 / before["n"] + after["sd"] ** 2 / after["n"]))


def collapse(runs: list[RunRecord], experiment: str) -> dict | None:
    """Did an experiment stay at chance? Its best validation accuracy in any epoch of any
    seed, and whether that is within 2 points of chance."""
    chosen = reference_runs(runs, experiment)
    if not chosen:
        return None
    best = max(float(run.history["val_accuracy"].max()) for run in chosen)
    worst_final = min(float(run.history["val_accuracy"].iloc[-1]) for run in chosen)
    return {"best_val": best, "worst_final_val": worst_final,
            "collapsed": best <= CHANCE + 0.02, "seeds": len(chosen)}


# ---------------------------------------------------------------- paired tests

def _same_test_images(a: RunRecord, b: RunRecord) -> bool:
    ta, tb = a.predictions["true"].to_numpy(), b.predictions["true"].to_numpy()
    return len(ta) == len(tb) and bool((ta == tb).all())


def seed_pairs(runs_a: list[RunRecord], runs_b: list[RunRecord]) -> list[tuple]:
    """Runs of A and B with the same seed (same data split) and the same test images."""
    by_seed = {run.seed: run for run in runs_b}
    return [(a, by_seed[a.seed]) for a in runs_a
            if a.seed in by_seed and _same_test_images(a, by_seed[a.seed])]


def paired_test(runs_a: list[RunRecord], runs_b: list[RunRecord], a: str,
                b: str) -> dict | None:
    """McNemar's exact test between two groups of runs, seed by seed on the same test images.

    The row holds the mean accuracies, the discordant counts summed over seeds, the largest
    p-value (the claim "A beats B in every seed" needs every test) and each seed's p-value
    and difference. Returns None when no seed pairs.
    """
    pairs = seed_pairs(runs_a, runs_b)
    if not pairs:
        return None
    tests = [mcnemar_exact(ra.correct, rb.correct) for ra, rb in pairs]
    accuracy_a = [ra.metrics.test_accuracy for ra, _ in pairs]
    accuracy_b = [rb.metrics.test_accuracy for _, rb in pairs]
    diffs = [x - y for x, y in zip(accuracy_a, accuracy_b, strict=False)]
    return {"A": a, "B": b, "seeds": len(tests),
            "val A": float(np.mean([ending_val_accuracy(ra) for ra, _ in pairs])),
            "val B": float(np.mean([ending_val_accuracy(rb) for _, rb in pairs])),
            "accuracy A": float(np.mean(accuracy_a)), "accuracy B": float(np.mean(accuracy_b)),
            "difference (A − B)": float(np.mean(diffs)),
            "only A right": sum(t["a_only"] for t in tests),
            "only B right": sum(t["b_only"] for t in tests),
            "largest p (McNemar, exact)": max(t["p_value"] for t in tests),
            "p per seed": [t["p_value"] for t in tests], "differences": diffs,
            # one seed of experiments that have several: its accuracies are that seed's
            "paired on": (f"seed {pairs[0][0].seed}" if len(pairs) == 1
                          and max(len(runs_a), len(runs_b)) > 1 else "")}


def swapped(row: dict) -> dict:
    """A paired test's row with A and B exchanged."""
    return {**row, "A": row["B"], "B": row["A"],
            "accuracy A": row["accuracy B"], "accuracy B": row["accuracy A"],
            "val A": row["val B"], "val B": row["val A"],
            "only A right": row["only B right"], "only B right": row["only A right"],
            "difference (A − B)": -row["difference (A − B)"],
            "differences": [-d for d in row["differences"]]}


def _pairs_of(groups: dict[str, list[RunRecord]], names: list[str]) -> list[dict]:
    rows = [paired_test(groups[a], groups[b], a, b) if groups[a] and groups[b] else None
            for i, a in enumerate(names) for b in names[i + 1:]]
    return [row for row in rows if row]


def pairwise_tests(runs: list[RunRecord], experiments: list[str] | None = None) -> pd.DataFrame:
    """Seed-paired McNemar tests for every pair of experiments, on their reference runs."""
    names = experiments or list(dict.fromkeys(run.experiment for run in runs))
    groups = {name: reference_runs(runs, name) for name in names}
    return pd.DataFrame(_pairs_of(groups, names), columns=PAIR_COLUMNS)


def tests_at(runs: list[RunRecord], experiments: list[str], axis: str) -> pd.DataFrame:
    """Seed-paired McNemar tests between every pair of experiments at each axis value."""
    chosen = of_experiments(runs, experiments)
    values = sorted({axis_value(run, axis) for run in chosen}, key=lambda v: (v is None, v))
    rows = []
    for value in values:
        groups = {e: at(of_experiments(chosen, [e]), **{axis: value}) for e in experiments}
        rows += [{axis: value, **row} for row in _pairs_of(groups, experiments)]
    return pd.DataFrame(rows, columns=[axis, *PAIR_COLUMNS])


# ---------------------------------------------------------------- per-prediction measures


# ---------------------------------------------------------------- per-experiment summaries

def _experiment_row(name: str, group: pd.DataFrame) -> dict:
    summary = seed_summary(group["test_accuracy"])
    single = summary["n"] == 1  # one run: the Wilson interval of its test set
    return {
        "experiment": name, "regime": group["regime"].iloc[0],
        "weights": group["weights"].iloc[0], "train images": int(group["train_n"].iloc[0]),
        "epochs": counts(group["epochs"]), "optimizer steps": counts(group["steps"]),
        "images seen": counts(group["images_seen"]),
        "ended on": distinct(group["ended"]), "seeds": summary["n"],
        "test_accuracy": summary["mean"], "sd": summary["sd"],
        "ci_low": group["ci_low"].iloc[0] if single else summary["ci_low"],
        "ci_high": group["ci_high"].iloc[0] if single else summary["ci_high"],
        "test n": int(group["test_n"].iloc[0]),
        "val accuracy": group["val_accuracy"].mean(),  # the weights each run ended with
        "trainable parameters": int(group["trainable"].iloc[0]),
        "training time (s)": group["training_seconds"].mean(),
        "precision": distinct(group["precision"]),
        "training TFLOPs": group["training_flops"].mean() / 1e12,
        "wall time (s)": group["wall_seconds"].mean(),
    }


def by_experiment(runs: list[RunRecord]) -> pd.DataFrame:
    """One row per experiment, over its reference runs (one per seed): the numbers a reader
    compares regimes by. The interval is the t interval over seeds, or the Wilson interval of
    the test set for a single run."""
    frame = runs_frame([run for run in runs if run.metrics.reference])
    if frame.empty:
        return pd.DataFrame()
    return pd.DataFrame([_experiment_row(name, group)
                         for name, group in frame.groupby("experiment", sort=False)])


