"""The report's answer, first: for each training budget the build measured, the regime chosen
on validation, its test accuracy with its interval, the runner-up, and McNemar's test between
them; then the original study's own question (from scratch, frozen, fine-tune all) at one
budget.

Where the build ran the frontier study, its budgets (`frontier.best_per_budget`); otherwise
the compared experiments, as one budget when they trained on equal compute (within
`TOLERANCE` in FLOPs). Minutes are the chosen point's training time on the machine that ran
it. The test set chooses nothing here: it scores what validation chose.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vgg_transfer.core.metrics import mcnemar_exact
from vgg_transfer.record import RunRecord
from vgg_transfer.report import stats
from vgg_transfer.report.selection import of_experiments, reference_runs
from vgg_transfer.report.sentences import EQUAL_COMPUTE as TOLERANCE
from vgg_transfer.report.sentences import compare_sentence, hardware, ladder, ranked
from vgg_transfer.report.studies import frontier
from vgg_transfer.report.tables import plain
from vgg_transfer.report.words import accuracy_cell, distinct, listing

ORIGINAL = {"scratch": "scratch", "frozen": "frozen", "fine-tune all": "finetune"}


# ---------------------------------------------------------------- the answer table

def _from_comparison(runs: list[RunRecord], compare: list[str]) -> pd.DataFrame:
    """The compared experiments as one budget's row, when they trained on equal compute."""
    table = stats.by_experiment(of_experiments(runs, compare))
    if len(table) < 2 or not equal_compute(table):
        return pd.DataFrame()
    lines = ranked(table).rename(columns={"experiment": "series", "val accuracy": "val_accuracy"})
    first, note = lines.iloc[0], frontier.rivals_note(lines)
    row = {"budget": table["training TFLOPs"].mean() * 1e12, "best": None if note else
           first["series"], "first": first["series"], "note": note,
           "best val accuracy": first["val_accuracy"], "best accuracy": first["test_accuracy"],
           "best sd": first["sd"], "best seeds": first["seeds"],
           "best ci": (first["ci_low"], first["ci_high"]),
           "best seconds": first["training time (s)"], "precision": first["precision"],
           "runner-up": None, "runner-up val accuracy": np.nan, "runner-up accuracy": np.nan,
           "runner-up sd": np.nan, "runner-up seeds": 0, "runner-up ci": None,
           "p (McNemar, exact)": np.nan, "regimes": len(lines)}
    if not note:
        second = lines.iloc[1]
        pair = stats.paired_test(reference_runs(runs, first["series"]),
                                 reference_runs(runs, second["series"]), first["series"],
                                 second["series"])
        row.update({"runner-up": second["series"],
                    "runner-up val accuracy": second["val_accuracy"],
                    "runner-up accuracy": second["test_accuracy"], "runner-up sd": second["sd"],
                    "runner-up seeds": second["seeds"],
                    "runner-up ci": (second["ci_low"], second["ci_high"]),
                    "p (McNemar, exact)": (pair["largest p (McNemar, exact)"]
                                           if pair else np.nan)})
    best = pd.DataFrame([row])
    best["p (Holm)"] = best["p (McNemar, exact)"]  # one budget: nothing to adjust
    return best


def table(runs: list[RunRecord], studies: dict[str, list[str]],
          compare: list[str]) -> pd.DataFrame:
    """One row per budget (`frontier.best_per_budget`'s columns): the frontier's budgets
    where the build ran it, else the compared experiments' one budget (empty when they did
    not train on equal compute)."""
    if studies.get("frontier"):
        best = frontier.best_per_budget(runs, studies["frontier"])
        if not best.empty:
            return best
    return _from_comparison(runs, compare)


def equal_compute(table: pd.DataFrame, tolerance: float = TOLERANCE) -> bool:
    """Whether a comparison's experiments (`stats.by_experiment`) trained on one budget."""
    flops = table["training TFLOPs"].dropna()
    return len(flops) == len(table) and flops.max() <= (1 + tolerance) * flops.min()


def formatted(best: pd.DataFrame):
    """The answer as a reader sees it: one row per budget."""
    rows = [{"budget (TFLOPs)": row["budget"] / 1e12,
             "its training (min)": row["best seconds"] / 60,
             "chosen on validation": (f"none ({row['note']})" if pd.isna(row["best"])
                                      else row["best"]),
             "its validation": row["best val accuracy"],
             "its test (95% CI)": frontier.accuracy_of(row, "best"),
             "runner-up": row["runner-up"],
             "runner-up test (95% CI)": frontier.accuracy_of(row, "runner-up"),
             "p (McNemar, Holm)": row["p (Holm)"]} for _, row in best.iterrows()]
    return plain(pd.DataFrame(rows), {"budget (TFLOPs)": "{:,.3g}",
                                      "its training (min)": "{:,.1f}",
                                      "its validation": "{:.1%}",
                                      "p (McNemar, Holm)": "{:.2g}"}, missing="—")


def sentence(best: pd.DataFrame, runs: list[RunRecord], studies: dict[str, list[str]],
             compare: list[str], test_n: int) -> str:
    """What the answer table is, where it came from, and where to look for other budgets."""
    if best.empty:
        flops = stats.by_experiment(of_experiments(runs, compare))
        spend = ", ".join(f"{r['experiment']} {r['training TFLOPs']:,.1f}"
                          for _, r in flops.iterrows()) if len(flops) else "none"
        return ("This build's compared experiments did not train on equal compute (within "
                f"{TOLERANCE:.0%} in FLOPs; TFLOPs: {spend}), so it names no regime for a "
                "budget; the comparison page compares them as they ran.")
    machines = distinct([hardware(run.provenance.hardware) for run in runs])
    text = (f"Each budget's regimes ranked on validation accuracy; the test set ({test_n:,} "
            "images) scores each point once and only reports. Minutes: the chosen point's "
            f"training time ({distinct(best['precision'])}) on {machines}. A p-value is "
            "McNemar's exact test between the first two on the same test images"
            + (", Holm-adjusted across the budgets." if len(best) > 1 else "."))
    if not studies.get("frontier"):
        text += (" This build trains every compared regime to one budget; the study "
                 "profile's frontier (`make report PROFILE=study`) answers for other budgets.")
    return text


def recipe(runs: list[RunRecord], studies: dict[str, list[str]]) -> str:
    """What the budget-aware recipe changed against the original constant rate, where the
    frontier ran a line with both (`frontier.recipe_sentence`), and each line's rate."""
    experiments = studies.get("frontier")
    if not experiments:
        return ""
    points = frontier.study_table(runs, experiments)
    search = frontier.search_table(runs, experiments)
    rates = ", ".join(f"{row['series']} {row['chosen']:g}" for _, row in search.iterrows())
    text = frontier.recipe_sentence(points)
    if rates:
        text = (f"Each line above trained for its budget, at the peak rate its search chose on "
                f"validation ({rates}), cooling down to zero at the budget. " + text)
    return text


# ---------------------------------------------------------------- the original question

def original_question(runs: list[RunRecord], studies: dict[str, list[str]],
                      compare: list[str]) -> str:
    """The original study's three regimes at one budget, ranked on validation, with the
    test between neighbours: the frontier's largest budget at which all three ran, or the
    compared experiments when they trained on equal compute."""
    if studies.get("frontier"):
        return _original_on_frontier(runs, studies["frontier"])
    table = stats.by_experiment(of_experiments(runs, compare))
    three = table[table["regime"].isin(ORIGINAL.values())]
    if len(three) < 2 or not equal_compute(table):
        return ""
    tests = stats.pairwise_tests(of_experiments(runs, compare), compare)
    order = ", then ".join(
        f"**{r['experiment']}** (validation {r['val accuracy']:.1%}; test "
        + accuracy_cell(r["test_accuracy"], r["sd"], r["seeds"], r["ci_low"], r["ci_high"])
        + ")" for _, r in ranked(three).iterrows())
    budget = three["training TFLOPs"].mean()
    minutes = listing([f"{r['experiment']} {r['training time (s)'] / 60:,.1f}"
                       for _, r in three.iterrows()])
    return (f"At one budget of {budget:,.1f} TFLOPs (minutes of training: {minutes}), the "
            f"original's regimes ranked on validation: {order}. "
            + " ".join(ladder(three, tests)))


def _original_on_frontier(runs: list[RunRecord], experiments: list[str]) -> str:
    points = frontier.frontier_recipe(frontier.study_table(runs, experiments))
    means = frontier.line_means(points)
    if means.empty:
        return ""
    wanted = means[means["series"].isin(ORIGINAL)]
    full = [b for b, group in wanted.groupby("budget") if len(group) == len(ORIGINAL)]
    if not full:
        return ""
    budget = max(full)
    lines = wanted[wanted["budget"] == budget].sort_values(
        ["val_accuracy", "flops"], ascending=[False, True], ignore_index=True)
    order = ", then ".join(
        f"**{r['series']}** (validation {r['val_accuracy']:.1%}; test "
        + accuracy_cell(r["test_accuracy"], r["sd"], r["seeds"], r["ci_low"], r["ci_high"])
        + f"; {r['seconds'] / 60:,.1f} min)" for _, r in lines.iterrows())
    right = frontier.correct(runs, experiments)
    tests = []
    for (_, a), (_, b) in zip(lines.iloc[:-1].iterrows(), lines.iloc[1:].iterrows(), strict=True):
        right_a, right_b = right[a["point"]], right[b["point"]]
        difference = right_a.mean() - right_b.mean()
        tests.append(compare_sentence({
            "A": a["series"], "B": b["series"], "accuracy A": right_a.mean(),
            "accuracy B": right_b.mean(), "difference (A − B)": difference,
            "p per seed": [mcnemar_exact(right_a, right_b)["p_value"]],
            "differences": [difference]}))
    return (f"The original study's question, at {budget / 1e12:,.3g} TFLOPs (the largest "
            f"budget at which all three ran): ranked on validation, {order}. On the first "
            "seed's test predictions: " + " ".join(tests))
