"""The protocol, corrected: each of the original study's flaws measured, one correction at a
time."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from vgg_transfer.record import RunRecord
from vgg_transfer.report import original, stats
from vgg_transfer.report.figures import chance_line, percent_axis
from vgg_transfer.report.selection import reference_runs
from vgg_transfer.report.stats import PAIR_COLUMNS, paired_test
from vgg_transfer.report.words import counts, phrase, rate, summary_cell
from vgg_transfer.spec import regimes
from vgg_transfer.spec.regimes import color


def corrections_tested(runs: list[RunRecord], pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """For each (before, after) pair of experiments: after (A) against before (B), paired."""
    rows = []
    for before, after in pairs:
        a, b = reference_runs(runs, before), reference_runs(runs, after)
        if a and b:
            rows.append(paired_test(b, a, after, before))
    return pd.DataFrame([r for r in rows if r], columns=PAIR_COLUMNS)


def collapse_sentence(runs: list[RunRecord]) -> str:
    """Whether one-phase fine-tuning collapsed in this build, and how two-phase compares."""
    one = stats.collapse(runs, "finetune")
    if one is None:
        return "One-phase fine-tuning was not run in this build."
    text = (f"Across its {one['seeds']} seed(s), one-phase fine-tuning at 1e-4 reached a best "
            f"validation accuracy of {one['best_val']:.1%} in any epoch: "
            + ("it stayed at chance, as the original's did." if one["collapsed"] else
               "unlike the original's run, it did not collapse to chance."))
    two, tuned = stats.summary_of(runs, "two_phase"), stats.summary_of(runs, "finetune")
    if two is not None and tuned is not None:
        text += (f" Its test accuracy was {summary_cell(tuned)}, against {summary_cell(two)} "
                 "for the two-phase recipe.")
    return text


def changes_table() -> pd.DataFrame:
    return pd.DataFrame(original.CHANGES, columns=["regime", "the original", "this report",
                                                   "why"])


def _learning_rates(runs: list[RunRecord]) -> str:
    configs = [run.config for run in runs]
    text = "Adam " + ", ".join(sorted({rate(c.learning_rate) for c in configs}))
    phased = [c for c in configs if regimes.get(c.regime).phased]
    if phased:
        text += (" (two_phase's second phase: "
                 + ", ".join(sorted({rate(c.finetune_learning_rate) for c in phased})) + ")")
    return text


def _epochs_by_regime(runs: list[RunRecord]) -> str:
    by_regime: dict[str, set] = {}
    for run in runs:
        by_regime.setdefault(run.metrics.regime, set()).add(run.metrics.epochs)
    return "; ".join(f"{regime} {phrase(sorted(e), 'epoch')}" for regime, e in by_regime.items())


def _this_build(runs: list[RunRecord]) -> dict[str, str]:
    metrics, configs = [run.metrics for run in runs], [run.config for run in runs]
    seeds = sorted({c.seed for c in configs})
    weights = sorted({m.weights_label for m in metrics if m.weights != "none"})
    return {
        "training images": phrase([m.train_n for m in metrics], "image"),
        "validation": phrase([m.val_n for m in metrics], "image")
        + " carved from the training set",
        "test images": f"{metrics[0].test_n:,}, used once per run",
        "epochs": _epochs_by_regime(runs), "batch": counts([c.batch_size for c in configs]),
        "learning rate": _learning_rates(runs),
        "seeds": f"{len(seeds)} ({', '.join(map(str, seeds))}), every source of randomness "
                 "seeded",
        "pretrained weights": ", ".join(weights) or "none",
        "input": ", ".join(sorted({f"{c.image_size}×{c.image_size}" for c in configs})),
    }


def settings(runs: list[RunRecord]) -> pd.DataFrame:
    """The original study's settings next to this build's, read from the runs' configs."""
    ours = _this_build([run for run in runs if run.metrics.reference])
    return pd.DataFrame({"setting": list(original.PROTOCOL),
                         "the original study": list(original.PROTOCOL.values()),
                         "this build": [ours[k] for k in original.PROTOCOL]})


def plot(groups: dict[str, list[RunRecord]]):
    """Validation accuracy per epoch, one panel per experiment and one line per seed, with
    chance marked; for two-phase runs a dotted line marks where the base was unfrozen."""
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 3.8), sharey=True,
                             squeeze=False)
    for ax, (name, runs) in zip(axes[0], groups.items(), strict=False):
        for run in runs:
            history = run.history
            c = color(run.metrics.regime)
            ax.plot(history["epoch"], history["val_accuracy"], "-o", ms=3, color=c, alpha=0.8,
                    label=f"seed {run.seed}")
            if "phase" in history:
                switch = history.loc[history["phase"] == 2, "epoch"]
                if len(switch):
                    ax.axvline(switch.iloc[0] - 0.5, color=c, ls=":", lw=1)
        chance_line(ax, vertical=False)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize="x-small")
    axes[0][0].set_ylabel("validation accuracy")
    percent_axis(axes[0][0].yaxis)
    fig.tight_layout()
    return fig
