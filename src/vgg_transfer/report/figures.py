"""Figures. Each function takes data (and an optional `ax`) and returns the figure.

One colour per regime throughout the book: the registry's (`regimes.color`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from vgg_transfer import CLASS_NAMES
from vgg_transfer.core.metrics import SAMPLES, pick_examples, seed_summary
from vgg_transfer.record import RunRecord
from vgg_transfer.report.selection import compute_curve
from vgg_transfer.report.stats import CHANCE
from vgg_transfer.report.words import distinct
from vgg_transfer.spec.regimes import color

CORRECT, WRONG = "#1a7f37", "#cf222e"


def chance_line(ax, vertical: bool = True) -> None:
    """A dotted line at chance accuracy."""
    (ax.axvline if vertical else ax.axhline)(CHANCE, color="0.4", ls=":", lw=1)


def percent_axis(axis) -> None:
    axis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))


def setup(retina: bool = True) -> None:
    """Book-wide style; retina PNGs in notebooks so figures stay crisp."""
    sns.set_theme(context="notebook", style="whitegrid")
    plt.rcParams.update({"figure.dpi": 100, "savefig.bbox": "tight", "axes.titleweight": "bold"})
    if retina:
        try:
            from matplotlib_inline.backend_inline import set_matplotlib_formats
            set_matplotlib_formats("retina")
        except ImportError:
            pass


def new_axes(ax, ncols=1, figsize=(6, 4)):
    if ax is not None:
        axes = np.atleast_1d(ax)
        return axes[0].figure, axes
    fig, axes = plt.subplots(1, ncols, figsize=figsize)
    return fig, np.atleast_1d(axes)


def plot_history(history: pd.DataFrame, regime: str, label: str | None = None, axes=None):
    """Accuracy and loss per epoch, training (solid) against validation (dashed).

    Args:
        history: a run's history.csv (columns epoch, accuracy, loss, val_accuracy, val_loss).
        axes: two axes (accuracy, loss) to draw into, e.g. to overlay several runs.
    """
    fig, (ax_acc, ax_loss) = new_axes(axes, ncols=2, figsize=(11, 3.8))
    label = label or regime
    for ax, metric in ((ax_acc, "accuracy"), (ax_loss, "loss")):
        ax.plot(history["epoch"], history[metric], "-o", color=color(regime), ms=4,
                label=f"{label} train")
        ax.plot(history["epoch"], history[f"val_{metric}"], "--s", color=color(regime), ms=4,
                label=f"{label} validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_acc.set_title("Accuracy")
    ax_loss.set_title("Loss")
    ax_acc.legend(fontsize="small")
    return fig


def plot_histories(runs: list[RunRecord]):
    """All runs' curves overlaid on one accuracy and one loss panel."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for run in runs:
        plot_history(run.history, run.metrics.regime, run.name, axes=axes)
    axes[0].legend(fontsize="small", ncol=1)
    return fig


def plot_accuracy_vs_compute(runs: list[RunRecord], axes=None):
    """Each run's validation accuracy after every epoch against the training compute it had
    used by then, in FLOPs (left: the same on any machine) and in seconds on this machine
    (right), both on log scales, and its test accuracy at the end (a larger marker): what a
    fixed budget buys with each regime."""
    fig, axes = new_axes(axes, ncols=2, figsize=(12, 4.6))
    for ax, key, total, label in (
            (axes[0], "flops", lambda r: r.training_flops, "training FLOPs so far (log scale)"),
            (axes[1], "seconds", lambda r: r.training_seconds,
             "training wall time so far (s, log scale, this machine)")):
        for run in runs:
            curve, regime = compute_curve(run), run.metrics.regime
            ax.plot(curve[key], curve["val_accuracy"], "-o", ms=3, color=color(regime),
                    label=f"{run.name} (validation)")
            ax.plot(total(run), run.metrics.test_accuracy, "D", ms=9, color=color(regime),
                    markeredgecolor="black")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy")
        percent_axis(ax.yaxis)
        chance_line(ax, vertical=False)
    axes[0].set_title("In FLOPs (diamonds: test accuracy at the end)")
    axes[1].set_title(f"In seconds ({distinct(run.config.precision for run in runs)})")
    axes[1].legend(fontsize="small", loc="best")
    return fig


def right_and_wrong(rows: tuple, n: int, height: float, label_size: float, draw):
    """A grid of test images, correctly classified on top and misclassified below.

    Args:
        rows: what each row shows (two sequences); `draw(ax, item, colour)` fills a cell.
    """
    fig, axes = plt.subplots(2, n, figsize=(1.45 * n, height), squeeze=False)
    for row, (members, name) in enumerate(zip(rows, ("correct", "incorrect"), strict=False)):
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col < len(members):
                draw(ax, members[col], CORRECT if row == 0 else WRONG)
        axes[row][0].text(-0.15, 0.5, name, transform=axes[row][0].transAxes, rotation=90,
                          va="center", ha="right", fontsize=label_size, fontweight="bold")
    return fig


def plot_predictions(images: np.ndarray, true: np.ndarray, predicted: np.ndarray,
                     confidence: np.ndarray | None = None, n: int = SAMPLES, seed: int = 0,
                     title: str = ""):
    """A grid: `n` correctly classified test images on top, `n` misclassified below."""
    def draw(ax, i, colour):
        ax.imshow(images[i])
        shown = f"{CLASS_NAMES[predicted[i]]}"
        if confidence is not None:
            shown += f" {confidence[i]:.0%}"
        ax.set_title(f"{CLASS_NAMES[true[i]]}\n→ {shown}", fontsize=8, color=colour)

    fig = right_and_wrong(pick_examples(true, predicted, n, seed), n, 3.9, 10, draw)
    fig.suptitle(title or "Test images: true class → predicted class (confidence)", fontsize=11)
    fig.tight_layout()
    return fig


def plot_predictions_across(images: np.ndarray, true: np.ndarray, predicted: dict[str, np.ndarray],
                            indices: np.ndarray):
    """The same test images under every model: one column per image, one line per model."""
    fig, axes = plt.subplots(1, len(indices),
                             figsize=(1.6 * len(indices), 2.6 + 0.25 * len(predicted)))
    for ax, i in zip(np.atleast_1d(axes), indices, strict=False):
        ax.imshow(images[i])
        ax.axis("off")
        ax.set_title(CLASS_NAMES[true[i]], fontsize=9, fontweight="bold")
        for k, (name, pred) in enumerate(predicted.items()):
            ok = pred[i] == true[i]
            ax.text(0.5, -0.08 - 0.16 * k, f"{name}: {CLASS_NAMES[pred[i]]}",
                    transform=ax.transAxes, ha="center", va="top", fontsize=7.5,
                    color=CORRECT if ok else WRONG)
    fig.tight_layout()
    return fig


def plot_confusion(matrix: np.ndarray, title: str = "", ax=None):
    """Confusion matrix as a seaborn heatmap, rows normalised to recall."""
    fig, (ax,) = new_axes(ax, figsize=(6.8, 5.6))
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    sns.heatmap(share, annot=matrix, fmt="d", cmap="Blues", vmin=0, vmax=1, ax=ax,
                xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES, square=True,
                cbar_kws={"label": "share of the true class", "shrink": 0.8},
                annot_kws={"fontsize": 7})
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "Confusion matrix (counts; colour = row share)")
    return fig


def plot_per_class(per_class: dict, regime: str, ax=None):
    """Test accuracy per class as horizontal bars."""
    fig, (ax,) = new_axes(ax, figsize=(6, 3.8))
    names, values = list(per_class), [per_class[k] for k in per_class]
    ax.barh(names, values, color=color(regime))
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy")
    ax.set_title("Accuracy per class")
    return fig


def plot_class_samples(images: np.ndarray, labels: np.ndarray, per_class: int = 8, seed: int = 0):
    """A grid with one row per class and `per_class` random images of it."""
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(CLASS_NAMES), per_class, figsize=(per_class * 0.95, 10))
    for cls, row in enumerate(axes):
        picks = rng.permutation(np.flatnonzero(labels == cls))[:per_class]
        for ax, i in zip(row, picks, strict=False):
            ax.imshow(images[i])
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        row[0].set_ylabel(CLASS_NAMES[cls], rotation=0, ha="right", va="center", fontsize=9)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def plot_class_counts(counts: pd.DataFrame, ax=None):
    """Images per class for each split (a long frame: class, split, images)."""
    fig, (ax,) = new_axes(ax, figsize=(9, 3.6))
    sns.barplot(counts, x="class", y="images", hue="split", ax=ax)
    ax.tick_params(axis="x", rotation=30)
    ax.set_xlabel("")
    ax.set_title("Images per class in the data actually loaded")
    return fig


def plot_accuracy_bars(table: pd.DataFrame, ax=None):
    """Test accuracy per run with its 95% interval, coloured by regime."""
    fig, (ax,) = new_axes(ax, figsize=(6.5, 0.6 + 0.55 * len(table)))
    y = np.arange(len(table))
    acc = table["test_accuracy"].to_numpy()
    low, high = table["ci_low"].to_numpy(), table["ci_high"].to_numpy()
    ax.barh(y, acc, xerr=[acc - low, high - acc], capsize=4,
            color=[color(r) for r in table["regime"]])
    ax.set_yticks(y, table["experiment"])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    chance_line(ax)
    ax.text(0.102, len(table) - 0.6, "chance", fontsize=8, color="0.4")
    ax.set_xlabel("test accuracy (95% Wilson interval)")
    return fig


def plot_per_class_across(frame: pd.DataFrame, ax=None):
    """Heatmap of test accuracy per class (rows) for each experiment (columns)."""
    fig, (ax,) = new_axes(ax, figsize=(1.6 + 1.3 * frame.shape[1], 4.8))
    sns.heatmap(frame, annot=True, fmt=".0%", cmap="viridis", vmin=0, vmax=1, ax=ax,
                cbar_kws={"label": "test accuracy"})
    ax.set_title("Accuracy per class")
    return fig


def plot_cost(cost: pd.DataFrame):
    """Training time (log scale) against test accuracy: what each run bought for its time."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for _, row in cost.iterrows():
        seconds = row["training (s)"] + row["features (s)"]
        ax.scatter(seconds, row["test accuracy"], s=80, color=color(row["regime"]), zorder=3)
        ax.annotate(row["setting"], (seconds, row["test accuracy"]),
                    textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("training time, s (log scale; features included)")
    ax.set_ylabel("test accuracy")
    policies = f" ({distinct(cost['precision'])})" if "precision" in cost else ""
    ax.set_title("Accuracy for the time spent" + policies)
    return fig


# ---------------------------------------------------------------- studies

def plot_seed_points(frame: pd.DataFrame, order: list[str], ax=None):
    """Each run's test accuracy as a dot, with the mean and its 95% t interval per
    experiment (one row each), coloured by regime.

    Args:
        frame: `selection.runs_frame` rows (experiment, regime, test_accuracy).
    """
    fig, (ax,) = new_axes(ax, figsize=(7, 0.8 + 0.6 * len(order)))
    for y, name in enumerate(order):
        group = frame[frame["experiment"] == name]
        if group.empty:
            continue
        c = color(group["regime"].iloc[0])
        s = seed_summary(group["test_accuracy"])
        ax.scatter(group["test_accuracy"], np.full(len(group), y), color=c, alpha=0.55, s=28,
                   zorder=3)
        if s["n"] > 1:
            ax.errorbar(s["mean"], y, xerr=[[s["mean"] - s["ci_low"]], [s["ci_high"] - s["mean"]]],
                        fmt="D", color=c, ms=7, capsize=5, lw=2, zorder=4)
        else:
            ax.scatter(s["mean"], y, marker="D", color=c, s=50, zorder=4)
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    chance_line(ax)
    ax.set_xlabel("test accuracy (dots: seeds; diamond: mean with 95% t interval)")
    percent_axis(ax.xaxis)
    return fig


