"""Calibration: expected calibration error and reliability per regime."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vgg_transfer.core.metrics import reliability_bins, seed_summary
from vgg_transfer.record import RunRecord
from vgg_transfer.report.selection import reference_runs
from vgg_transfer.report.tables import plain
from vgg_transfer.spec.regimes import color


def pooled_reliability(runs: list[RunRecord], experiments: list[str]) -> dict[str, pd.DataFrame]:
    """Reliability bins per experiment, over the predictions of all its reference runs."""
    out = {}
    for name in experiments:
        chosen = reference_runs(runs, name)
        if chosen:
            confidence = np.concatenate([r.predictions["confidence"].to_numpy() for r in chosen])
            correct = np.concatenate([r.correct for r in chosen])
            out[name] = reliability_bins(confidence, correct)
    return out


def _row(name: str, chosen: list[RunRecord]) -> dict:
    ece = seed_summary([run.metrics.test_ece for run in chosen])
    conf = np.mean([run.predictions["confidence"].mean() for run in chosen])
    acc = np.mean([run.metrics.test_accuracy for run in chosen])
    return {"experiment": name, "regime": chosen[0].metrics.regime,
            "seeds": ece["n"], "accuracy": acc, "mean confidence": conf,
            "confidence − accuracy": conf - acc, "ECE": ece["mean"], "ECE sd": ece["sd"],
            "ECE ci_low": ece["ci_low"], "ECE ci_high": ece["ci_high"]}


def study_table(runs: list[RunRecord], experiments: list[str]) -> pd.DataFrame:
    """Per experiment (reference runs): accuracy, mean confidence and ECE over seeds."""
    groups = {name: reference_runs(runs, name) for name in experiments}
    return pd.DataFrame([_row(name, chosen)
                         for name, chosen in groups.items() if chosen])


def finding(runs: list[RunRecord], experiments: list[str]) -> str:
    table = study_table(runs, experiments)
    if table.empty:
        return ""
    best, worst = table.loc[table["ECE"].idxmin()], table.loc[table["ECE"].idxmax()]
    gap = table["confidence − accuracy"]
    text = (f"Expected calibration error ranges from {best['ECE']:.3f} ({best['experiment']}) "
            f"to {worst['ECE']:.3f} ({worst['experiment']}).")
    for names, kind, side in ((table[gap > 0.02]["experiment"], "Over", "above"),
                              (table[gap < -0.02]["experiment"], "Under", "below")):
        if len(names):
            text += (f" {kind}-confident (mean confidence {side} accuracy by more than 2 "
                     f"points): {', '.join(names)}.")
    return text


def formatted(table: pd.DataFrame):
    shown = table.copy()
    shown["ECE (95% CI)"] = [
        f"{r['ECE']:.3f} ± {r['ECE sd']:.3f} ({max(r['ECE ci_low'], 0):.3f}–"
        f"{r['ECE ci_high']:.3f})"
        if r["seeds"] > 1 else f"{r['ECE']:.3f}" for _, r in table.iterrows()]
    shown = shown.drop(columns=["ECE", "ECE sd", "ECE ci_low", "ECE ci_high"])
    return plain(shown, {"accuracy": "{:.1%}", "mean confidence": "{:.1%}",
                         "confidence − accuracy": "{:+.1%}"})


def plot(bins: dict[str, pd.DataFrame], regime_of: dict[str, str]):
    """Reliability diagrams: accuracy against confidence per bin, one panel per experiment.

    The diagonal is perfect calibration; bars below it are over-confidence. The grey bars
    at the bottom show how many predictions fall in each bin.
    """
    n = len(bins)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4 * rows), squeeze=False)
    for ax, (name, table) in zip(axes.flat, bins.items(), strict=False):
        width = table["high"] - table["low"]
        ax.bar(table["low"], table["accuracy"].fillna(0), width=width, align="edge",
               color=color(regime_of[name]), alpha=0.8, edgecolor="white", label="accuracy")
        share = table["count"] / max(table["count"].sum(), 1)
        ax.bar(table["low"], share * 0.25, width=width, align="edge", color="0.6", alpha=0.6,
               label="share of predictions (×¼)")
        ax.plot([0, 1], [0, 1], ls="--", color="0.3", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(name)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize="x-small", loc="upper left")
    fig.tight_layout()
    return fig
