"""Data efficiency: test accuracy against training-set size, and where transfer pays."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from vgg_transfer.record import RunRecord
from vgg_transfer.report import stats
from vgg_transfer.report.figures import chance_line, new_axes, percent_axis
from vgg_transfer.report.selection import ending, of_experiments, reference_runs, still_improving
from vgg_transfer.report.sentences import compare_sentence, span
from vgg_transfer.spec import regimes
from vgg_transfer.spec.regimes import color


def where_transfer_pays(runs: list[RunRecord], baseline: str, transfer: list[str]) -> list[str]:
    """Per training-set size: the transfer regime best on validation against the from-scratch
    baseline,
    as sentences with their seed-paired McNemar p-values."""
    tests = stats.tests_at(runs, [baseline, *transfer], "train_n")
    lines = []
    for size, group in tests.groupby("train_n", sort=True):
        against = group[(group["A"] == baseline) & group["B"].isin(transfer)]
        if not against.empty:
            best = against.loc[against["val B"].idxmax()].to_dict()  # chosen on validation
            lines.append(f"**{size:,} images**: " + compare_sentence(stats.swapped(best)))
    return lines


def findings(runs: list[RunRecord], experiments: list[str]) -> list[str]:
    """`where_transfer_pays`, against the first experiment that trains a convolutional
    network from random weights."""
    def from_scratch(name: str) -> bool:
        chosen = reference_runs(runs, name)
        regime = regimes.get(chosen[0].metrics.regime) if chosen else None
        return regime is not None and not regime.pretrained and regime.base != "none"
    baseline = next((e for e in experiments if from_scratch(e)), None)
    if baseline is None:
        return []
    return where_transfer_pays(runs, baseline, [e for e in experiments if e != baseline])


def _how_it_ended(run: RunRecord) -> str:
    if ending(run) == "plateau":
        return "plateau"
    return "budget, still improving" if still_improving(run) else "budget, past its best"


def _point_endings(runs: list[RunRecord]) -> str:
    """"plateau", or "2× plateau, 1× budget, still improving" over a point's seeds."""
    ended = [_how_it_ended(run) for run in runs]
    if len(set(ended)) == 1:
        return ended[0] if len(ended) == 1 else f"all {ended[0]}"
    return ", ".join(f"{ended.count(e)}× {e}" for e in dict.fromkeys(ended))


def endings_by_size(runs: list[RunRecord], experiments: list[str]) -> list[str]:
    """Per experiment, how its runs at each training-set size ended (a validation plateau,
    or the budget: still improving or past its best) and the optimizer steps they took."""
    lines = []
    for name in experiments:
        sizes: dict[int, list[RunRecord]] = {}
        for run in sorted(of_experiments(runs, [name]), key=lambda r: r.metrics.train_n):
            sizes.setdefault(run.metrics.train_n, []).append(run)
        parts = [f"{size:,} images: {span(pd.Series([r.metrics.steps for r in group]), 'step')}"
                 f" ({_point_endings(group)})" for size, group in sizes.items()]
        if parts:
            lines.append(f"**{name}**: " + "; ".join(parts))
    return lines


def budget_caveat(runs: list[RunRecord], experiments: list[str]) -> str:
    """Whether the data-efficiency curves are about data: every point on its plateau, or
    which points ran out of budget while still improving."""
    rising = [run for run in of_experiments(runs, experiments) if still_improving(run)]
    if not rising:
        return ("Every point stopped on a validation plateau or had passed its best before "
                "its budget ran out: the differences between sizes are about data, not steps.")
    points = sorted({(run.experiment, run.metrics.train_n) for run in rising})
    named = ", ".join(f"{name} at {size:,} images" for name, size in points)
    return (f"Still improving when the budget ran out: {named}. More training would raise "
            "these points, so a gap there mixes data with budget; the other points reached "
            "their plateau or had passed their best.")


def plot(table: pd.DataFrame, x: str = "train_n", ax=None,
                         xlabel: str = "training images (log scale)"):
    """Test accuracy against training-set size per experiment: mean with sd error bars and
    the 95% t interval as a band.

    Args:
        table: `stats.by_setting` rows (experiment, regime, x, mean, sd, n, ci_low, ci_high).
    """
    fig, (ax,) = new_axes(ax, figsize=(7.5, 4.6))
    for name, group in table.groupby("experiment", sort=False):
        group = group.sort_values(x)
        c = color(group["regime"].iloc[0])
        ax.errorbar(group[x], group["mean"], yerr=group["sd"].fillna(0), fmt="-o", color=c,
                    capsize=4, label=name, lw=2)
        if (group["n"] > 1).any():
            ax.fill_between(group[x], group["ci_low"], group["ci_high"], color=c, alpha=0.15)
    ax.set_xscale("log")
    ax.set_xticks(sorted(table[x].unique()))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    percent_axis(ax.yaxis)
    chance_line(ax, vertical=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.legend(title="experiment", fontsize="small")
    ax.set_title("Mean ± sd over seeds; band: 95% t interval")
    return fig
