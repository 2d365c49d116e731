"""The original study's claims against this build's runs."""

from __future__ import annotations

import pandas as pd

from vgg_transfer.record import RunRecord
from vgg_transfer.report import original, stats
from vgg_transfer.report.selection import reference_runs
from vgg_transfer.report.words import phrase, summary_cell


def _reported(claim: dict) -> str:
    train = claim["train_accuracy"]
    return f"{claim['test_accuracy']:.1%}" + (f" (train {train:.1%})" if train else "")


def study_table(runs: list[RunRecord]) -> pd.DataFrame:
    """What the original printed for each regime, what this build measured, and why they
    differ, one line each."""
    return pd.DataFrame([{
        "the original's regime": regime, "its model": claim["model"],
        "it reported (test)": _reported(claim),
        "this build measured (test)": measured(runs, regime),
        "cause of the difference": cause(runs, regime)}
        for regime, claim in original.ORIGINAL.items()])


def _budget_of(runs: list[RunRecord], name: str) -> str:
    chosen = reference_runs(runs, name)
    if not chosen:
        return ""
    return (f"{chosen[0].metrics.train_n:,} images, "
            f"{phrase([run.metrics.epochs for run in chosen], 'epoch')}")


def measured(runs: list[RunRecord], regime: str) -> str:
    """What this build measured for one of the original's regimes: each of ours for it."""
    summaries = {name: stats.summary_of(runs, name) for name in original.ours(regime)}
    parts = [f"{name}: {summary_cell(s)}" for name, s in summaries.items() if s is not None]
    as_run = original.ORIGINAL[regime]["as_run"]
    if original.ORIGINAL[regime]["train_accuracy"] and summaries[as_run] is not None:
        train = stats.summary_of(runs, as_run, "final_train_accuracy")
        parts[0] += f", training accuracy in its last epoch {train['mean']:.1%} (dropout on)"
    return "; ".join(parts) or "not run in this build"


def _cause_scratch(runs: list[RunRecord], weights: str) -> str:
    as_run, vgg = original.ours("scratch")[:2]
    mlp_acc, vgg_acc = stats.summary_of(runs, as_run), stats.summary_of(runs, vgg)
    text = ("the original's number belongs to an MLP, not to VGG16, and was read off a test "
            "set that also served for validation")
    if mlp_acc and vgg_acc:
        text += (f"; on this build's budget VGG16 from random weights reaches "
                 f"{vgg_acc['mean']:.1%} ({_budget_of(runs, vgg)}) and an MLP "
                 f"{mlp_acc['mean']:.1%} ({_budget_of(runs, as_run)})")
    return text


def _cause_frozen(runs: list[RunRecord], weights: str) -> str:
    as_run = original.ORIGINAL["frozen"]["as_run"]
    return (f"the same regime (block 5 trainable, our {as_run}) on a far smaller budget "
            f"({_budget_of(runs, as_run) or 'see the seeds study'} against 50,000 "
            f"images × 10 epochs) and with {weights} instead of ImageNet weights")


def _cause_unfrozen(runs: list[RunRecord], weights: str) -> str:
    one = stats.collapse(runs, original.ORIGINAL["unfrozen"]["as_run"])
    if one is None:
        return "not run in this build"
    if one["collapsed"]:
        return (f"ours stayed at chance too (best validation accuracy {one['best_val']:.1%}), "
                "so one-phase fine-tuning at 1e-4 fails here as well")
    return (f"built fresh and recompiled, one-phase fine-tuning learns (best validation "
            f"accuracy {one['best_val']:.1%} in any epoch): the original's collapse came "
            "from its setup, not from fine-tuning")


CAUSES = {"scratch": _cause_scratch, "frozen": _cause_frozen, "unfrozen": _cause_unfrozen}


def cause(runs: list[RunRecord], regime: str) -> str:
    """Why this build's number differs from what the original printed for a regime."""
    weights = sorted({run.metrics.weights_label for run in runs if run.metrics.weights != "none"})
    return CAUSES[regime](runs, ", ".join(weights) or "no pretrained weights")
