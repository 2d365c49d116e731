"""Which regime for which budget: test accuracy against training compute (FLOPs counted from
the layers, `run.flops`), one line per regime, the upper envelope, and at each budget the
regime chosen on validation, tested against the runner-up on the same test images.

Nothing here is chosen on the test set: each budget's regimes are ranked by the validation
accuracy of the weights each point ended with (the mean over seeds where a point has
several), and the test set only reports the two ranked first. A budget names a winner only
when at least `MIN_RIVALS` regimes ran at it, one of them from random weights.

A line trains with one of two recipes: budget-aware (a schedule that ends at each budget,
at the rate its search chose on validation) or the original's constant rate. Where both ran,
the answer comes from the budget-aware lines; the constant ones show what the recipe moves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vgg_transfer.core.metrics import mcnemar_exact, seed_summary
from vgg_transfer.record import RunRecord
from vgg_transfer.report.figures import chance_line, new_axes, percent_axis
from vgg_transfer.report.selection import ending, ending_val_accuracy, of_experiments
from vgg_transfer.report.stats import holm
from vgg_transfer.report.tables import plain
from vgg_transfer.report.words import accuracy_cell, distinct
from vgg_transfer.spec.regimes import color

SCRATCH = ("scratch", "scratch_bn")  # the regimes that start from random weights
MIN_RIVALS = 3  # regimes a budget needs (one from random weights) before it names a winner
# fine-tuning from different blocks shares the finetune colour: a line style each
LINES = {"fine-tune from block 5": ":", "fine-tune from block 4": "-.",
         "fine-tune from block 3": "--", "fine-tune all": "-"}


def series(run: RunRecord) -> str:
    """The frontier line a run belongs to: its regime, or where fine-tuning starts."""
    if run.metrics.regime == "finetune":
        start = run.config.unfreeze_from
        return "fine-tune all" if start == 1 else f"fine-tune from block {start}"
    return run.metrics.regime


def frozen_blocks(run: RunRecord) -> str:
    """How a point ran its frozen leading blocks, as its record's phases say: "cached",
    "on the fly", or "none"."""
    phases = run.metrics.phases
    if not any(phase["frozen_blocks"] for phase in phases):
        return "none"
    return "cached" if any(phase["cached_blocks"] for phase in phases) else "on the fly"


def budgeted(runs: list[RunRecord], experiments: list[str]) -> list[RunRecord]:
    """The runs of these experiments that trained to a FLOPs budget."""
    return [run for run in of_experiments(runs, experiments) if run.config.flops_budget]


BUDGET_AWARE = "budget-aware"


def recipe(run: RunRecord) -> str:
    """How a run's rate moved: "budget-aware" (a schedule ending at its budget), or
    "constant 1e-4"."""
    if run.config.schedule != "constant":
        return BUDGET_AWARE
    return "constant " + f"{run.config.learning_rate:.0e}".replace("e-0", "e-")


def frontier_recipe(points: pd.DataFrame) -> pd.DataFrame:
    """The points the answer is drawn from: the budget-aware lines where any ran."""
    aware = points[points["recipe"] == BUDGET_AWARE]
    return aware if len(aware) else points


def study_table(runs: list[RunRecord], experiments: list[str]) -> pd.DataFrame:
    """One row per budget point: a run trained to its own budget, or a smaller budget scored
    inside one (`budget_points`: exactly where the run with that budget would end). Each row
    has its line, the budget, what it spent in FLOPs and seconds, images seen, test accuracy,
    how it ended and where it was taken."""
    rows = []
    for run in budgeted(runs, experiments):
        common = {"series": series(run), "regime": run.metrics.regime, "run": run.name,
                  "training images": run.metrics.train_n, "frozen blocks": frozen_blocks(run),
                  "precision": run.config.precision, "seed": run.config.seed,
                  "recipe": recipe(run), "learning rate": run.config.learning_rate}
        taken = f"inside the {run.config.flops_budget / 1e12:,.3g}-TFLOPs run"
        for index, point in enumerate(run.metrics.budget_points):
            seconds = run.timings.point_seconds[index] + run.feature_cost
            rows.append({**common, "point": point_key(run, index),
                         "budget": point["flops_budget"], "flops": point["flops"],
                         "seconds": seconds, "images seen": point["images_seen"],
                         "val_accuracy": point.get("val_accuracy", np.nan),
                         "test_accuracy": point["test_accuracy"],
                         "ci_low": point["test_accuracy_ci95"][0],
                         "ci_high": point["test_accuracy_ci95"][1],
                         "ended on": "budget" if point["ended"] == "budget" else ending(run),
                         "taken": taken})
        rows.append({**common, "point": point_key(run), "budget": run.config.flops_budget,
                     "flops": run.training_flops, "seconds": run.training_seconds,
                     "images seen": run.metrics.images_seen,
                     "val_accuracy": ending_val_accuracy(run),
                     "test_accuracy": run.metrics.test_accuracy,
                     "ci_low": run.metrics.test_accuracy_ci95[0],
                     "ci_high": run.metrics.test_accuracy_ci95[1], "ended on": ending(run),
                     "taken": "its own run"})
    columns = ["series", "regime", "run", "point", "seed", "budget", "flops", "seconds",
               "precision", "training images", "images seen", "frozen blocks", "val_accuracy",
               "test_accuracy", "ci_low", "ci_high", "ended on", "taken", "recipe",
               "learning rate"]
    table = pd.DataFrame(rows, columns=columns)
    if (table["recipe"] == BUDGET_AWARE).any():  # the original recipe's lines, named so
        constant = table["recipe"] != BUDGET_AWARE
        table.loc[constant, "series"] = (table.loc[constant, "series"] + " ("
                                         + table.loc[constant, "recipe"] + ")")
    return table.sort_values(["series", "budget"], ignore_index=True)


def point_key(run: RunRecord, index: int | None = None) -> str:
    """`study_table`'s "point": the run's own name, or its `index`-th budget point's."""
    return run.name if index is None else f"{run.name}@{index}"


def correct(runs: list[RunRecord], experiments: list[str]) -> dict:
    """Per budget point (`point_key`), which test images it got right."""
    right = {}
    for run in budgeted(runs, experiments):
        right[point_key(run)] = run.correct
        right.update({point_key(run, index): run.point_correct(index)
                      for index in range(len(run.metrics.budget_points))})
    return right


def by_series(group: pd.DataFrame) -> pd.DataFrame:
    """One budget's points, one row per line: validation and test accuracy (means over its
    seeds), the test accuracy's spread and interval (over seeds; a single point's Wilson
    interval), and the point of its lowest seed, whose predictions the tests use."""
    rows = []
    for name, points in group.sort_values("seed").groupby("series", sort=False):
        first = points.iloc[0]
        summary = seed_summary(points["test_accuracy"])
        single = len(points) == 1
        rows.append({"series": name, "regime": first["regime"], "point": first["point"],
                     "budget": first["budget"], "seeds": len(points),
                     "flops": points["flops"].mean(), "seconds": points["seconds"].mean(),
                     "val_accuracy": points["val_accuracy"].mean(),
                     "test_accuracy": summary["mean"], "sd": summary["sd"],
                     "ci_low": first["ci_low"] if single else summary["ci_low"],
                     "ci_high": first["ci_high"] if single else summary["ci_high"]})
    return pd.DataFrame(rows)


def rivals_note(lines: pd.DataFrame) -> str:
    """Why a budget names no winner ("" when it may name one): fewer than `MIN_RIVALS`
    regimes, or none from random weights."""
    measured, from_random = len(lines), bool(lines["regime"].isin(SCRATCH).any())
    if measured >= MIN_RIVALS and from_random:
        return ""
    reasons = [f"only {measured} regime{'s' if measured != 1 else ''} measured"] \
        if measured < MIN_RIVALS else []
    reasons += [] if from_random else ["none from random weights"]
    return (" and ".join(reasons)
            + f"; a winner needs {MIN_RIVALS} regimes, one from random weights")


def best_per_budget(runs: list[RunRecord], experiments: list[str]) -> pd.DataFrame:
    """For each budget: its lines ranked by validation accuracy (ties: the cheaper first);
    the first two's test accuracy with its interval, and McNemar's exact test between them
    on the same test images, Holm-adjusted across the budgets that name a winner. A budget
    without enough rivals (`rivals_note`) names none; its row says why."""
    right = correct(runs, experiments)
    points, rows = frontier_recipe(study_table(runs, experiments)), []
    for budget, group in points.groupby("budget", sort=True):
        lines = by_series(group).sort_values(["val_accuracy", "flops", "series"],
                                             ascending=[False, True, True], ignore_index=True)
        first, note = lines.iloc[0], rivals_note(lines)
        row = {"budget": budget, "best": None if note else first["series"],
               "best val accuracy": first["val_accuracy"],
               "best accuracy": first["test_accuracy"], "best sd": first["sd"],
               "best ci": (first["ci_low"], first["ci_high"]), "best seeds": first["seeds"],
               "best FLOPs": first["flops"], "best seconds": first["seconds"],
               "precision": distinct(group["precision"]), "runner-up": None,
               "runner-up val accuracy": np.nan, "runner-up accuracy": np.nan,
               "runner-up ci": None, "runner-up sd": np.nan, "runner-up seeds": 0,
               "difference": np.nan, "p (McNemar, exact)": np.nan,
               "points": len(group), "regimes": len(lines), "note": note,
               "first": first["series"]}
        if len(lines) > 1 and not note:
            second = lines.iloc[1]
            test = mcnemar_exact(right[first["point"]], right[second["point"]])
            row.update({"runner-up": second["series"],
                        "runner-up val accuracy": second["val_accuracy"],
                        "runner-up accuracy": second["test_accuracy"],
                        "runner-up ci": (second["ci_low"], second["ci_high"]),
                        "runner-up sd": second["sd"], "runner-up seeds": second["seeds"],
                        "difference": first["test_accuracy"] - second["test_accuracy"],
                        "p (McNemar, exact)": test["p_value"]})
        rows.append(row)
    best = pd.DataFrame(rows)
    if not best.empty:
        best["p (Holm)"] = holm(best["p (McNemar, exact)"])
    return best


def line_means(points: pd.DataFrame) -> pd.DataFrame:
    """One row per line and budget (`by_series` of each budget): its seeds' mean validation
    and test accuracy, the test accuracy's sd, FLOPs and seconds."""
    if points.empty:
        return by_series(points)
    return pd.concat([by_series(group) for _, group in points.groupby("budget", sort=True)],
                     ignore_index=True)


def envelope(points: pd.DataFrame) -> pd.DataFrame:
    """The upper envelope: the best test accuracy any point (or line mean: `line_means`)
    reached with at most each one's compute. It describes; it chooses nothing."""
    ordered = points.sort_values("flops", ignore_index=True)
    return pd.DataFrame({"flops": ordered["flops"],
                         "test_accuracy": ordered["test_accuracy"].cummax()})


def scratch_gap(points: pd.DataFrame) -> dict | None:
    """How much more compute training from scratch needs to reach what transfer reaches: the
    test accuracy (seed mean) of the pretrained line best on validation at the smallest
    budget, and the least compute a scratch line reached it with, in its seed mean (None
    there when none did: then the ratio is a lower bound, from scratch's largest point)."""
    points = line_means(frontier_recipe(points)) if len(points) else line_means(points)
    if points.empty:
        return None
    scratch, transfer = (points[points["regime"].isin(SCRATCH)],
                         points[~points["regime"].isin(SCRATCH)])
    if scratch.empty or transfer.empty:
        return None
    first = transfer[transfer["budget"] == transfer["budget"].min()]
    cheapest = first.sort_values(["val_accuracy", "flops"], ascending=[False, True]).iloc[0]
    reached = scratch[scratch["test_accuracy"] >= cheapest["test_accuracy"]]
    needed = reached["flops"].min() if len(reached) else None
    most = scratch["flops"].max()
    return {"transfer": cheapest["series"], "accuracy": cheapest["test_accuracy"],
            "transfer_flops": cheapest["flops"], "scratch_flops": needed,
            "ratio": (needed if needed is not None else most) / cheapest["flops"],
            "reached": needed is not None, "scratch_best": scratch["test_accuracy"].max(),
            "scratch_most": most}


def _ci(cell) -> str:
    low, high = cell
    return f"{low:.1%}–{high:.1%}"


def test_text(row, prefix: str = "best") -> str:
    """A chosen row's test accuracy, labelled: "41.2% (95% CI 38.2–44.3%)" for one run,
    "41.2% ± 1.3, mean ± sd of 3 seeds (95% t interval 38.0–44.4%)" over seeds."""
    accuracy, seeds = row[f"{prefix} accuracy"], int(row[f"{prefix} seeds"])
    low, high = row[f"{prefix} ci"]
    if seeds > 1:
        return (f"{accuracy:.1%} ± {row[f'{prefix} sd'] * 100:.1f}, mean ± sd of {seeds} "
                f"seeds (95% t interval {_ci((max(low, 0), min(high, 1)))})")
    return f"{accuracy:.1%} (95% CI {_ci((low, high))})"


def sentence(best: pd.DataFrame, points: pd.DataFrame, alpha: float = 0.05) -> str:
    """Which regime at which budget (chosen on validation), whether the runner-up is beaten
    on the test set after Holm's correction, and what training from scratch needs to reach
    transfer."""
    if best.empty:
        return ""
    parts = []
    for _, row in best.iterrows():
        at = f"at {row['budget'] / 1e12:,.3g} TFLOPs"
        if row["note"]:
            parts.append(f"{at}, no winner: {row['note']} (the best on validation, "
                         f"{row['first']}, reached {test_text(row)} on the test set)")
            continue
        text = (f"{at}, {row['best']} (validation {row['best val accuracy']:.1%}; test "
                f"{test_text(row)})")
        verdict = "ahead of" if row["p (Holm)"] < alpha else "not separable from"
        text += (f", {verdict} {row['runner-up']} (validation "
                 f"{row['runner-up val accuracy']:.1%}; test {test_text(row, 'runner-up')}; "
                 f"McNemar p = {row['p (McNemar, exact)']:.2g} on the first seeds, "
                 f"Holm-adjusted {row['p (Holm)']:.2g})")
        parts.append(text)
    answer = ("The regime chosen on validation at each budget: " + "; ".join(parts) + ".")
    return answer + gap_sentence(points)


def gap_sentence(points: pd.DataFrame) -> str:
    """What training from scratch needs to reach what transfer reached first (`scratch_gap`),
    as a sentence with a leading space (\"\" without both kinds of line)."""
    gap = scratch_gap(points)
    answer = ""
    if gap is not None:
        if gap["reached"]:
            answer += (f" Training from scratch first reaches the {gap['accuracy']:.1%} that "
                       f"{gap['transfer']} reached with {gap['transfer_flops'] / 1e12:,.3g} "
                       f"TFLOPs at {gap['scratch_flops'] / 1e12:,.3g} TFLOPs: "
                       f"{gap['ratio']:,.1f}× the compute.")
        else:
            answer += (f" Training from scratch did not reach the {gap['accuracy']:.1%} that "
                       f"{gap['transfer']} reached with {gap['transfer_flops'] / 1e12:,.3g} "
                       f"TFLOPs, even with {gap['scratch_most'] / 1e12:,.3g} TFLOPs (its best: "
                       f"{gap['scratch_best']:.1%}): it needs more than {gap['ratio']:,.1f}× "
                       "the compute.")
    return answer


def accuracy_of(row, prefix: str) -> str | None:
    """A `best_per_budget` row's test accuracy of its "best" or "runner-up" as a table
    cell (`words.accuracy_cell`: mean ± sd over seeds, or one run's), None where it has
    none."""
    if pd.isna(row[f"{prefix} accuracy"]) or (prefix == "runner-up"
                                              and pd.isna(row["runner-up"])):
        return None
    low, high = row[f"{prefix} ci"]
    return accuracy_cell(row[f"{prefix} accuracy"], row[f"{prefix} sd"],
                         int(row[f"{prefix} seeds"]), low, high)


def formatted(best: pd.DataFrame):
    """The per-budget table as a reader sees it: the winner and runner-up chosen on
    validation, their test accuracy with its interval, and the tests; a budget without
    enough rivals shows why in place of a winner."""
    shown = pd.DataFrame({
        "budget (TFLOPs)": best["budget"] / 1e12,
        "chosen on validation": [f"none: {row['note']}" if row["note"] else row["best"]
                                 for _, row in best.iterrows()],
        "its validation": best["best val accuracy"],
        "its test (95% CI)": [accuracy_of(row, "best") for _, row in best.iterrows()],
        "runner-up": best["runner-up"],
        "runner-up test (95% CI)": [accuracy_of(row, "runner-up")
                                    for _, row in best.iterrows()],
        "p (McNemar, exact)": best["p (McNemar, exact)"], "p (Holm)": best["p (Holm)"],
        "regimes": best["regimes"], "points": best["points"]})
    return plain(shown, {"budget (TFLOPs)": "{:,.3g}", "its validation": "{:.1%}",
                         "p (McNemar, exact)": "{:.2g}", "p (Holm)": "{:.2g}"},
                 missing="—")  # a budget that names no winner has no runner-up


def plot(points: pd.DataFrame, ax=None):
    """Test accuracy against training FLOPs (log scale), a line per regime through its seed
    means (bars: ± sd where a budget has several seeds, each seed a small dot), and the
    upper envelope of those means: the best any line reached with at most that compute."""
    fig, (ax,) = new_axes(ax, figsize=(8.5, 5))
    means = line_means(points)
    constant = set(points.loc[points["recipe"] != BUDGET_AWARE, "series"]) \
        if (points["recipe"] == BUDGET_AWARE).any() else set()
    for name, group in means.groupby("series", sort=False):
        group = group.sort_values("flops")
        colour = color(group["regime"].iloc[0])
        ax.errorbar(group["flops"], group["test_accuracy"], yerr=group["sd"].fillna(0),
                    marker="x" if name in constant else "o", ms=5, capsize=3,
                    ls=(0, (1, 2)) if name in constant else LINES.get(name, "-"),
                    color=colour, alpha=0.55 if name in constant else 1.0, label=name)
        seeds = points[(points["series"] == name)
                       & points["budget"].isin(group.loc[group["seeds"] > 1, "budget"])]
        ax.scatter(seeds["flops"], seeds["test_accuracy"], s=9, alpha=0.45, color=colour)
    if len(means):
        top = envelope(means[~means["series"].isin(constant)])
        ax.step(top["flops"], top["test_accuracy"], where="post", color="black", lw=1.5,
                ls="--", label="upper envelope")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs (log scale; counted from the layers)")
    ax.set_ylabel("test accuracy (seed mean where several)")
    percent_axis(ax.yaxis)
    chance_line(ax, vertical=False)
    ax.set_title("Which regime for which budget"
                 + (" (faint, dotted: the original constant rate)" if constant else ""))
    ax.legend(fontsize="small", loc="best")
    return fig


def formatted_lines(points: pd.DataFrame):
    """Each line at each budget as a reader sees it: seeds, mean validation accuracy, and
    the test accuracy as mean ± sd over seeds (95% t interval), or one run's (Wilson)."""
    means = line_means(points)
    shown = pd.DataFrame({
        "series": means["series"], "budget (TFLOPs)": means["budget"] / 1e12,
        "seeds": means["seeds"], "validation accuracy": means["val_accuracy"],
        "test accuracy (95% CI)": [accuracy_cell(r["test_accuracy"], r["sd"], r["seeds"],
                                                 r["ci_low"], r["ci_high"])
                                   for _, r in means.iterrows()]})
    shown = shown.sort_values(["series", "budget (TFLOPs)"], ignore_index=True)
    return plain(shown, {"budget (TFLOPs)": "{:,.3g}", "validation accuracy": "{:.1%}"})


def formatted_points(points: pd.DataFrame):
    """Every budget point as a reader sees it."""
    shown = points.assign(**{"budget (TFLOPs)": points["budget"] / 1e12,
                             "spent (TFLOPs)": points["flops"] / 1e12,
                             "validation accuracy": points["val_accuracy"],
                             "test accuracy": points["test_accuracy"]})
    shown = shown[["series", "budget (TFLOPs)", "spent (TFLOPs)", "seconds", "precision",
                   "training images", "images seen", "frozen blocks", "seed",
                   "validation accuracy", "test accuracy", "ended on", "taken"]]
    return plain(shown, {"budget (TFLOPs)": "{:,.3g}", "spent (TFLOPs)": "{:,.3g}",
                         "seconds": "{:,.0f}", "training images": "{:,}", "images seen": "{:,}",
                         "validation accuracy": "{:.1%}", "test accuracy": "{:.1%}"},
                 missing="—")


# ---------------------------------------------------------------- the recipe

def search_table(runs: list[RunRecord], experiments: list[str]) -> pd.DataFrame:
    """One row per line whose rate a search chose (`runner.search`): the candidates'
    validation accuracy, the rate chosen, and what the search cost in FLOPs and seconds."""
    rows, seen = [], set()
    for run in sorted(budgeted(runs, experiments), key=lambda r: (r.config.seed, r.name)):
        found = run.metrics.lr_search
        if not found or series(run) in seen:
            continue
        seen.add(series(run))
        rows.append({"series": series(run), "chosen": found["chosen"],
                     "candidates": " · ".join(f"{c['learning_rate']:g}: {c['val_accuracy']:.1%}"
                                              for c in found["candidates"]),
                     "at (TFLOPs)": _search_budget(found, run),
                     "search TFLOPs": found["flops"] / 1e12,
                     "search minutes": found["seconds"] / 60})
    return pd.DataFrame(rows, columns=["series", "chosen", "candidates", "at (TFLOPs)",
                                       "search TFLOPs", "search minutes"])


def _search_budget(found: dict, run: RunRecord) -> float:
    return found["set"].get("flops_budget", run.config.flops_budget) / 1e12


def formatted_search(table: pd.DataFrame):
    """`search_table` as a reader sees it."""
    shown = table.rename(columns={"series": "line", "chosen": "rate chosen",
                                  "candidates": "validation accuracy of each rate",
                                  "at (TFLOPs)": "search budget (TFLOPs)"})
    return plain(shown, {"rate chosen": "{:g}", "search budget (TFLOPs)": "{:,.3g}",
                         "search TFLOPs": "{:,.1f}", "search minutes": "{:,.1f}"})


def recipe_table(points: pd.DataFrame) -> pd.DataFrame:
    """Each line that ran with both recipes, at each budget both reached: validation and
    test accuracy (seed means) with the original constant rate and budget-aware, and the
    change in test accuracy."""
    means = line_means(points)
    if means.empty or "recipe" not in points:
        return pd.DataFrame()
    recipes = points.drop_duplicates("series").set_index("series")["recipe"]
    means["recipe"] = means["series"].map(recipes)
    aware = means[means["recipe"] == BUDGET_AWARE]
    rows = []
    for _, old in means[means["recipe"] != BUDGET_AWARE].iterrows():
        line = old["series"].rsplit(" (", 1)[0]
        new = aware[(aware["series"] == line) & (aware["budget"] == old["budget"])]
        if new.empty:
            continue
        new = new.iloc[0]
        rows.append({"line": line, "budget": old["budget"], "constant": old["recipe"],
                     "constant val": old["val_accuracy"], "constant test": old["test_accuracy"],
                     "budget-aware val": new["val_accuracy"],
                     "budget-aware test": new["test_accuracy"],
                     "change": new["test_accuracy"] - old["test_accuracy"]})
    return pd.DataFrame(rows)


def formatted_recipes(table: pd.DataFrame):
    shown = table.assign(**{"budget (TFLOPs)": table["budget"] / 1e12,
                            "change (points)": table["change"] * 100})
    shown = shown[["line", "budget (TFLOPs)", "constant", "constant val", "constant test",
                   "budget-aware val", "budget-aware test", "change (points)"]]
    return plain(shown, {"budget (TFLOPs)": "{:,.3g}", "constant val": "{:.1%}",
                         "constant test": "{:.1%}", "budget-aware val": "{:.1%}",
                         "budget-aware test": "{:.1%}", "change (points)": "{:+.1f}"})


def recipe_sentence(points: pd.DataFrame) -> str:
    """How much the budget-aware recipe moved the lines that ran with both, and whether it
    changed which of them validation chooses at a budget ("" without such lines)."""
    table = recipe_table(points)
    if table.empty:
        return ""
    moved = "; ".join(
        f"{line} by {group['change'].min() * 100:+.1f} to {group['change'].max() * 100:+.1f} "
        f"points over {len(group)} budgets" for line, group in table.groupby("line"))
    text = (f"Against the original constant rate at the same budgets, the budget-aware recipe "
            f"(its rate chosen on validation, a cooldown to zero at the budget) moved the test "
            f"accuracy of {moved}.")
    changed, kept = [], []
    for budget, group in table.groupby("budget"):
        if len(group) < 2:
            continue
        before = group.sort_values("constant val", ascending=False)["line"].iloc[0]
        after = group.sort_values("budget-aware val", ascending=False)["line"].iloc[0]
        (changed if before != after else kept).append(
            f"{budget / 1e12:,.3g} TFLOPs ({before} → {after})" if before != after
            else f"{budget / 1e12:,.3g}")
    if changed:
        text += (" Between these lines, validation chooses differently with the new recipe "
                 f"at {', '.join(changed)}")
        text += f", and the same at {', '.join(kept)} TFLOPs." if kept else "."
    elif kept:
        text += (f" Between these lines, validation chooses the same one with either recipe "
                 f"at every budget both reached ({', '.join(kept)} TFLOPs).")
    return text
