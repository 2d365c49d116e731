"""Input resolution: the frozen base across input sizes and heads, and what the features cost."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vgg_transfer.core.metrics import seed_summary
from vgg_transfer.record import RunRecord
from vgg_transfer.report import stats
from vgg_transfer.report.figures import percent_axis
from vgg_transfer.report.selection import at, of_experiments, runs_frame
from vgg_transfer.report.sentences import compare_sentence
from vgg_transfer.report.tables import plain
from vgg_transfer.report.words import accuracy_cell
from vgg_transfer.spec.regimes import color


def _row(size, head, group: pd.DataFrame) -> dict:
    acc = seed_summary(group["test_accuracy"])
    rate = group["feature_images_per_second"].dropna()
    return {"input size": int(size), "head": head, "seeds": acc["n"],
            "mean": acc["mean"], "sd": acc["sd"], "ci_low": acc["ci_low"],
            "ci_high": acc["ci_high"],
            "features images/s": float(rate.mean()) if len(rate) else np.nan,
            "training (s)": float(group["training_seconds"].mean()),
            "trainable parameters": int(group["trainable"].iloc[0])}


def study_table(runs: list[RunRecord], experiments: list[str]) -> pd.DataFrame:
    """Accuracy and cost per input size and head: mean ± sd over seeds, feature throughput."""
    frame = runs_frame(of_experiments(runs, experiments))
    if frame.empty:
        return pd.DataFrame()
    table = pd.DataFrame([_row(size, head, group) for (size, head), group
                          in frame.groupby(["image_size", "head"], sort=True)])
    table["s per 1,000 images"] = 1000 / table["features images/s"]
    return table


def _paired(runs: list[RunRecord], experiments: list[str], low, high) -> str:
    """The highest against the lowest input size with the Flatten head, seed-paired."""
    flat = at(of_experiments(runs, experiments), head="flatten")
    row = stats.paired_test(at(flat, image_size=high["input size"]),
                            at(flat, image_size=low["input size"]),
                            f"{high['input size']} px", f"{low['input size']} px")
    return f" ({compare_sentence(row).rstrip('.')})" if row else ""


def _feature_cost(low, high) -> str:
    key = "s per 1,000 images"
    if not (np.isfinite(low[key]) and np.isfinite(high[key])):
        return ""
    return (f" Computing the features costs {high[key] / low[key]:.0f}× more at "
            f"{high['input size']} px ({low[key]:.1f} against {high[key]:.1f} s per 1,000 "
            "images on this machine).")


def finding(runs: list[RunRecord], experiments: list[str]) -> str:
    """The lowest against the highest input size with the Flatten head, and the cost."""
    table = study_table(runs, experiments)
    flat = table[table["head"] == "flatten"].sort_values("input size") if len(table) else table
    if len(flat) < 2:
        return ""
    low, high = flat.iloc[0], flat.iloc[-1]
    return (f"With the Flatten head, the frozen base's test accuracy is {low['mean']:.1%} at "
            f"{low['input size']} px and {high['mean']:.1%} at {high['input size']} px"
            + _paired(runs, experiments, low, high) + "."
            + _feature_cost(low, high))


def formatted(table: pd.DataFrame):
    shown = table.copy()
    shown.insert(3, "test accuracy", [
        accuracy_cell(r["mean"], r["sd"], r["seeds"], r["ci_low"], r["ci_high"])
        if r["seeds"] > 1 else f"{r['mean']:.1%}" for _, r in table.iterrows()])
    shown = shown.drop(columns=["mean", "sd", "ci_low", "ci_high"])
    return plain(shown, {"features images/s": "{:,.0f}", "training (s)": "{:,.1f}",
                         "trainable parameters": "{:,}", "s per 1,000 images": "{:,.1f}"})


GAP_HEAD = "#56b4e9"  # the GAP head's line on the resolution figure (colour-blind palette)


def plot(table: pd.DataFrame):
    """Accuracy (left) and feature-extraction cost (right) against input size, per head."""
    fig, (ax_acc, ax_cost) = plt.subplots(1, 2, figsize=(11, 4))
    styles = {"flatten": ("-o", color("frozen")), "gap": ("--s", GAP_HEAD)}
    for head, group in table.groupby("head", sort=False):
        style, c = styles.get(head, ("-^", "0.3"))
        ax_acc.errorbar(group["input size"], group["mean"], yerr=group["sd"].fillna(0),
                        fmt=style, color=c, capsize=4, label=f"{head} head")
        if (group["seeds"] > 1).any():
            ax_acc.fill_between(group["input size"], group["ci_low"], group["ci_high"], color=c,
                                alpha=0.15)
    cost = table.drop_duplicates("input size").sort_values("input size")
    ax_cost.plot(cost["input size"], cost["s per 1,000 images"], "-o", color="0.25")
    for ax in (ax_acc, ax_cost):
        ax.set_xticks(sorted(table["input size"].unique()))
        ax.set_xlabel("input size (pixels per side, upsampled from 32)")
    percent_axis(ax_acc.yaxis)
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_title("Accuracy (mean ± sd; band: 95% t interval)")
    ax_acc.legend(fontsize="small")
    ax_cost.set_ylabel("seconds per 1,000 images")
    ax_cost.set_title("Cost of the frozen base's features")
    fig.tight_layout()
    return fig
