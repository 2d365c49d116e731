"""Findings as sentences: each function writes one claim from the numbers of a build, and
the discussion pages (limitations, improvements, conclusion) are bullets of such sentences.

Every number in a sentence is computed from the runs; a function whose evidence the build
did not produce returns "" (or no lines), and the pages leave the claim out.
"""

from __future__ import annotations

import pandas as pd

from vgg_transfer.record import RunRecord
from vgg_transfer.report import stats
from vgg_transfer.report.selection import (
    compute_curve,
    of_experiments,
    reference_runs,
    runs_frame,
)
from vgg_transfer.report.words import accuracy_cell, distinct, listing, phrase, plural
from vgg_transfer.spec import regimes
from vgg_transfer.spec.profiles import STUDIES

ALPHA = 0.05
EQUAL_COMPUTE = 0.10  # experiments within this share of each other in FLOPs: one budget


# ---------------------------------------------------------------- what a build is

def budget(runs: list[RunRecord]) -> str:
    """What produced a page, in words: images, epochs, optimizer steps and images seen, how
    training ended, seeds, test images and training time."""
    frame = runs_frame(runs)
    if frame.empty:
        return "no runs"
    low, high = int(frame["epochs"].min()), int(frame["epochs"].max())
    epochs = f"{low} epoch{'s' if low > 1 else ''}" if low == high else f"{low} to {high} epochs"
    return (f"{phrase(frame['train_n'], 'training image')}, {epochs}, "
            f"{span(frame['steps'], 'optimizer step')} and {span(frame['images_seen'], 'image')}"
            f" seen per run ({_endings(frame)}), "
            f"{phrase(stats.seeds_per_point(runs), 'seed')} per point, "
            f"{int(frame['test_n'].iloc[0]):,} test images, "
            f"{frame['training_seconds'].sum() / 60:.1f} min of training in all "
            f"({len(frame)} runs, {precisions(runs)})")


def span(values, unit: str) -> str:
    """"47 optimizer steps", or "47 to 1,056 optimizer steps"."""
    low, high = int(values.min()), int(values.max())
    return f"{low:,} {unit}s" if low == high else f"{low:,} to {high:,} {unit}s"


def _endings(frame) -> str:
    """How many runs stopped on a plateau of the validation split and how many ran out of
    budget."""
    plateau = int((frame["ended"] == "plateau").sum())
    if plateau == 0:
        return "every run used its whole budget"
    if plateau == len(frame):
        return "every run stopped on a validation plateau"
    return (f"{plateau} stopped on a validation plateau, {len(frame) - plateau} used their "
            "whole budget")


def compute_note(runs: list[RunRecord]) -> str:
    """Per run, the training time it took to reach its best validation accuracy."""
    parts = []
    for run in runs:
        curve = compute_curve(run)
        best = curve.loc[curve["val_accuracy"].idxmax()]
        parts.append(f"**{run.name}** {best['val_accuracy']:.1%} after {best['seconds']:,.0f} s")
    return ("Best validation accuracy, and the training time it took: " + "; ".join(parts) + "."
            if parts else "")


def run_count(runs: int, experiments: int) -> str:
    """"28 runs of 8 experiments"."""
    return f"{plural(runs, 'run')} of {plural(experiments, 'experiment')}"


def studies_note(titles: dict[str, str]) -> str:
    """Which Studies the build ran, by their pages' titles, and which it left out ("" for
    none)."""
    if not titles:
        return ""
    text = "It also ran the Studies: " + ", ".join(t.lower() for t in titles.values()) + "."
    left = [name.replace("_", " ") for name in STUDIES if name not in titles]
    if left:
        text += (f" It leaves out the {listing(left)} {'study' if len(left) == 1 else 'studies'},"
                 " for which this profile has no time; experiments.yaml names the profiles"
                 " that run them.")
    return text


def data_source(source: dict) -> str:
    return ("a local copy of the canonical python-version batches"
            if source["kind"] == "folder" else "the Keras download")


def test_set_note(test_n: int) -> str:
    """What a test set smaller than the official 10,000 images means for the numbers."""
    if test_n == 10_000:
        return ""
    return (f"This copy holds the first {test_n:,} of the 10,000 official test images, so its "
            "classes are not exactly balanced, and every test metric in this book is given "
            "with its test-set size and a 95% interval.")


def hardware(specs: dict) -> str:
    """A run's hardware (`provenance.hardware`): "Intel Xeon (2 cores; avx2), no GPU"."""
    gpus = f", GPU: {', '.join(specs['gpus'])}" if specs["gpus"] else ", no GPU"
    flags = f"; {', '.join(specs['cpu_flags'])}" if specs.get("cpu_flags") else ""
    return f"{specs['cpu']} ({specs['cpu_count']} cores{flags}){gpus}"


def precisions(runs: list[RunRecord]) -> str:
    """The compute precision the runs trained in: "mixed_bfloat16", or each with its count."""
    counts = pd.Series([run.config.precision for run in runs]).value_counts()
    if len(counts) == 1:
        return str(counts.index[0])
    return listing([f"{policy} ({plural(n, 'run')})" for policy, n in counts.items()])


def parity(bench: dict) -> str:
    """Whether mixed bfloat16 trains as well as float32 (the benchmark's parity run), and what
    `precision: auto` does about it; "" when the benchmark has no parity run in both."""
    run = bench.get("parity") or {}
    if "loss_points" not in run:
        return ""
    f32, bf16 = run["float32"], run["mixed_bfloat16"]
    speed = (bench.get("precision") or {}).get("finetune", {}).get("ratio")
    faster = f" and its training step ran {speed:.2f}× as fast" if speed else ""
    same = (f"Fine-tuning from block 4 for one epoch of {f32['train_n']:,} images reached "
            f"{f32['test_accuracy']:.1%} in float32 and {bf16['test_accuracy']:.1%} in mixed "
            f"bfloat16 (the same seed and data order; McNemar p = {run['mcnemar_p']:.2g}): "
            f"bfloat16 lost {run['loss_points']:+.1f} points, ")
    if run["bf16_within"]:
        return (same + f"within the float32 run's 95% interval half-width of "
                f"{run['half_width_points']:.1f}{faster}, so `precision: auto` trains in mixed "
                "bfloat16 where the CPU has bf16 units.")
    return (same + f"more than the float32 run's 95% interval half-width of "
            f"{run['half_width_points']:.1f}: on this evidence mixed bfloat16 costs accuracy "
            "here, and `precision: float32` is the setting to use.")


def machine(specs: dict) -> str:
    """A run's hardware with its memory: "Intel Xeon, 2 cores, 7.8 GB"."""
    return f"{specs['cpu']}, {specs['cpu_count']} cores, {specs['memory_gb']} GB"


def commit(git: dict) -> str:
    """The code's commit, shortened, and whether it had uncommitted changes."""
    return ((git["commit"] or "unknown")[:12]
            + (" (with uncommitted changes)" if git["dirty"] else ""))


def pretrained_weights(table: pd.DataFrame) -> str:
    """The weights the pretrained experiments of a comparison table started from."""
    pretrained = table["regime"].map(lambda r: regimes.get(r).pretrained)
    return ", ".join(sorted(set(table.loc[pretrained, "weights"]))) or "none"


# ---------------------------------------------------------------- comparisons

def _p_text(ps: list[float]) -> str:
    if len(ps) == 1:
        return f"McNemar p = {ps[0]:.2g}"
    return f"McNemar p = {', '.join(f'{p:.2g}' for p in ps)} in the {len(ps)} seeds"


def _significant(row: dict, sign: int, alpha: float) -> tuple[int, int]:
    """Seeds significant in the winner's favour, and against it."""
    tests = list(zip(row["p per seed"], row["differences"], strict=False))
    ahead = sum(p < alpha and d * sign > 0 for p, d in tests)
    behind = sum(p < alpha and d * sign < 0 for p, d in tests)
    return ahead, behind


def _which(row: dict, ps: list[float]) -> str:
    """Which runs a comparison's accuracies are: "means over seeds", or "seed N" where the
    experiments have several and one paired ("": one run each). A mean never stands beside
    one seed's value unlabelled."""
    return "means over seeds" if len(ps) > 1 else (row.get("paired on") or "")


def compare_sentence(row: dict, alpha: float = ALPHA) -> str:
    """One pairwise comparison as a sentence, with its McNemar p-values.

    "A beats B" is said only when the difference has the same sign and p < alpha in every
    seed; otherwise the sentence counts the seeds significant each way round.
    """
    a, b, diff, ps = row["A"], row["B"], row["difference (A − B)"], list(row["p per seed"])
    if not any(p < alpha for p in ps):
        which = _which(row, ps)
        return (f"**{a}** ({row['accuracy A']:.1%}) and **{b}** ({row['accuracy B']:.1%})"
                f"{f' ({which})' if which else ''} are not distinguishable on these test "
                f"images ({_p_text(ps)}).")
    sign = 1 if row["accuracy A"] >= row["accuracy B"] else -1
    (winner, won), (loser, lost) = [(a, row["accuracy A"]), (b, row["accuracy B"])][::sign]
    ahead, behind = _significant(row, sign, alpha)
    which = _which(row, ps)
    acc = f"({won:.1%} against {lost:.1%}{f', {which}' if which else ''})"
    if ahead == len(ps):
        every = " in every seed" if len(ps) > 1 else ""
        return (f"**{winner}** beats **{loser}** by {abs(diff) * 100:.1f} points {acc}"
                f"{every}; {_p_text(ps)}.")
    seeds = "in no seed" if ahead == 0 else f"in only {ahead} of {len(ps)} seeds"
    other = f", and significantly behind in {behind}" if behind else ""
    return (f"**{winner}** is ahead of **{loser}** by {abs(diff) * 100:.1f} points {acc}, but "
            f"significantly so {seeds}{other} ({_p_text(ps)}).")


def compare_sentences(tests: pd.DataFrame) -> list[str]:
    return [compare_sentence(row) for row in tests.to_dict("records")]


def ranked(table: pd.DataFrame) -> pd.DataFrame:
    """The experiments of a comparison table (`stats.by_experiment`), best first by
    validation accuracy (of the weights each run ended with; the mean over seeds): the test
    set ranks nothing."""
    return table.sort_values(["val accuracy", "experiment"], ascending=[False, True])


def ladder(table: pd.DataFrame, tests: pd.DataFrame) -> list[str]:
    """Down the ranking on validation, each experiment against the next one."""
    ranked_names = ranked(table)["experiment"].tolist()
    rows = tests.to_dict("records")
    return [compare_sentence(row) for a, b in zip(ranked_names, ranked_names[1:], strict=False)
            for row in rows if {row["A"], row["B"]} == {a, b}]


def _ranking(table: pd.DataFrame) -> str:
    order = ", then ".join(
        f"**{r['experiment']}** (validation {r['val accuracy']:.1%}; test " + accuracy_cell(
            r["test_accuracy"], r["sd"], r["seeds"], r["ci_low"], r["ci_high"]) + ")"
        for _, r in ranked(table).iterrows())
    spread = (" (test: mean ± sd over seeds, 95% t interval)"
              if int(table["seeds"].max()) > 1 else "")
    return f"Ranked on validation accuracy, with each test accuracy{spread}: {order}."


def _near_chance(table: pd.DataFrame) -> str:
    names = [r["experiment"] for _, r in table.iterrows() if r["ci_low"] <= stats.CHANCE]
    if not names:
        return ""
    return ("Not distinguishable from chance (10%): "
            + ", ".join(f"**{n}**" for n in names) + ".")


def _training_cost(table: pd.DataFrame) -> str:
    seconds = "training time (s)"
    fastest, slowest = table.loc[table[seconds].idxmin()], table.loc[table[seconds].idxmax()]
    if fastest["experiment"] == slowest["experiment"]:
        return ""
    precision = distinct(table["precision"]) if "precision" in table else ""
    return (f"Training cost: **{fastest['experiment']}** trained in {fastest[seconds]:.0f} s, "
            f"**{slowest['experiment']}** in {slowest[seconds]:.0f} s, "
            f"{slowest[seconds] / max(fastest[seconds], 1e-9):.0f}× longer"
            + (f" ({precision})." if precision else "."))


def findings(table: pd.DataFrame, tests: pd.DataFrame) -> str:
    """The comparison's findings as markdown bullets, written from the numbers."""
    lines = [_ranking(table), *compare_sentences(tests), _near_chance(table),
             _training_cost(table)]
    return "\n".join(f"- {line}" for line in lines if line)


def answer(runs: list[RunRecord], experiments: list[str],
           lead: str = "Does transfer learning beat training from scratch, on this build's "
                       "budget? ") -> str:
    """The best pretrained regime of these experiments against the best from-scratch one,
    each chosen on validation, with the seed-paired test on the test set (`lead` first)."""
    table = stats.by_experiment(of_experiments(runs, experiments))
    if table.empty:
        return ""
    pretrained = table["regime"].map(lambda r: regimes.get(r).pretrained)
    scratch, transfer = table[~pretrained], table[pretrained]
    if scratch.empty or transfer.empty:
        return ""
    best_t = ranked(transfer)["experiment"].iloc[0]
    best_s = ranked(scratch)["experiment"].iloc[0]
    row = stats.paired_test(reference_runs(runs, best_t), reference_runs(runs, best_s),
                            best_t, best_s)
    if row is None:
        return ""
    return (lead + "The best pretrained regime against the best from-scratch one (each chosen "
            "on validation): " + compare_sentence(row))


def equal_compute(table: pd.DataFrame, tolerance: float = EQUAL_COMPUTE) -> str:
    """Which compared experiments trained on equal compute (mean training FLOPs within
    `tolerance` of each other), and how unequal the rest are: only differences between
    experiments of one group compare regimes at one budget."""
    flops = table.set_index("experiment")["training TFLOPs"].dropna().sort_values()
    if len(flops) < 2:
        return ""
    groups, current = [], [flops.index[0]]
    for name in flops.index[1:]:
        if flops[name] <= flops[current[0]] * (1 + tolerance):
            current.append(name)
        else:
            groups.append(current)
            current = [name]
    groups.append(current)
    equal = [g for g in groups if len(g) > 1]
    spend = ", ".join(f"{name} {flops[name]:,.1f}" for name in flops.index)
    text = (f"Training compute, in TFLOPs counted from the layers: {spend} "
            f"({flops.iloc[-1] / flops.iloc[0]:,.0f}× from the least to the most). ")
    if not equal:
        return text + ("No two of these experiments trained on equal compute (within "
                       f"{tolerance:.0%}): every difference above is at unequal budgets.")
    pairs = "; ".join(" and ".join(g) for g in equal)
    return text + (f"At equal compute (within {tolerance:.0%}): {pairs}; their differences "
                   "compare regimes at one budget, the others' compare regimes and budgets "
                   "together.")
