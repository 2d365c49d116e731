"""Findings as sentences: each function writes one claim from the numbers of a build, and
the discussion pages (limitations, improvements, conclusion) are bullets of such sentences.

Every number in a sentence is computed from the runs; a function whose evidence the build
did not produce returns "" (or no lines), and the pages leave the claim out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vgg_transfer import original, regimes, stats
from vgg_transfer.evaluation import wilson_interval
from vgg_transfer.original import FULL_PROTOCOL_IMAGES
from vgg_transfer.record import RunRecord
from vgg_transfer.selection import (at, compute_curve, ending, first_of_each, of_experiments,
                                    reference_runs, runs_frame, trains_whole_network)
from vgg_transfer.words import accuracy_cell, bullets, phrase, plural, summary_cell

ALPHA = 0.05


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
            f"{_span(frame['steps'], 'optimizer step')} and {_span(frame['images_seen'], 'image')}"
            f" seen per run ({_endings(frame)}), "
            f"{phrase(stats.seeds_per_point(runs), 'seed')} per point, "
            f"{int(frame['test_n'].iloc[0]):,} test images, "
            f"{frame['training_seconds'].sum() / 60:.1f} min of training in all "
            f"({len(frame)} runs)")


def _span(values, unit: str) -> str:
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
    return f"{plateau} stopped on a validation plateau, {len(frame) - plateau} used their whole budget"


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
    """Which Studies the build ran, by their pages' titles ("" for none)."""
    if not titles:
        return ""
    return "It also ran the Studies: " + ", ".join(t.lower() for t in titles.values()) + "."


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
    """A run's hardware (`provenance.hardware`): "Intel Xeon (2 cores), no GPU"."""
    gpus = f", GPU: {', '.join(specs['gpus'])}" if specs["gpus"] else ", no GPU"
    return f"{specs['cpu']} ({specs['cpu_count']} cores){gpus}"


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
    tests = list(zip(row["p per seed"], row["differences"]))
    ahead = sum(p < alpha and d * sign > 0 for p, d in tests)
    behind = sum(p < alpha and d * sign < 0 for p, d in tests)
    return ahead, behind


def compare_sentence(row: dict, alpha: float = ALPHA) -> str:
    """One pairwise comparison as a sentence, with its McNemar p-values.

    "A beats B" is said only when the difference has the same sign and p < alpha in every
    seed; otherwise the sentence counts the seeds significant each way round.
    """
    a, b, diff, ps = row["A"], row["B"], row["difference (A − B)"], list(row["p per seed"])
    if not any(p < alpha for p in ps):
        return (f"**{a}** ({row['accuracy A']:.1%}) and **{b}** ({row['accuracy B']:.1%}) "
                f"are not distinguishable on these test images ({_p_text(ps)}).")
    sign = 1 if row["accuracy A"] >= row["accuracy B"] else -1
    (winner, won), (loser, lost) = [(a, row["accuracy A"]), (b, row["accuracy B"])][::sign]
    ahead, behind = _significant(row, sign, alpha)
    acc = f"({won:.1%} against {lost:.1%}{', means over seeds' if len(ps) > 1 else ''})"
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


def ladder(table: pd.DataFrame, tests: pd.DataFrame) -> list[str]:
    """Down the ranking by test accuracy, each experiment against the next one."""
    ranked = table.sort_values("test_accuracy", ascending=False)["experiment"].tolist()
    rows = tests.to_dict("records")
    return [compare_sentence(row) for a, b in zip(ranked, ranked[1:]) for row in rows
            if {row["A"], row["B"]} == {a, b}]


def _ranking(table: pd.DataFrame) -> str:
    ranked = table.sort_values("test_accuracy", ascending=False)
    order = ", then ".join(f"**{r['experiment']}** " + accuracy_cell(
        r["test_accuracy"], r["sd"], r["seeds"], r["ci_low"], r["ci_high"])
        for _, r in ranked.iterrows())
    spread = " (mean ± sd over seeds, 95% t interval)" if int(table["seeds"].max()) > 1 else ""
    return f"Ranked by test accuracy{spread}: {order}."


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
    return (f"Training cost: **{fastest['experiment']}** trained in {fastest[seconds]:.0f} s, "
            f"**{slowest['experiment']}** in {slowest[seconds]:.0f} s, "
            f"{slowest[seconds] / max(fastest[seconds], 1e-9):.0f}× longer.")


def findings(table: pd.DataFrame, tests: pd.DataFrame) -> str:
    """The comparison's findings as markdown bullets, written from the numbers."""
    lines = [_ranking(table), *compare_sentences(tests), _near_chance(table),
             _training_cost(table)]
    return "\n".join(f"- {line}" for line in lines if line)


def answer(runs: list[RunRecord], experiments: list[str]) -> str:
    """The report's answer to its question, from the reference runs: the best pretrained
    regime against the best from-scratch one, with the seed-paired test."""
    table = stats.by_experiment(of_experiments(runs, experiments))
    if table.empty:
        return ""
    pretrained = table["regime"].map(lambda r: regimes.get(r).pretrained)
    scratch, transfer = table[~pretrained], table[pretrained]
    if scratch.empty or transfer.empty:
        return ""
    best_t = transfer.loc[transfer["test_accuracy"].idxmax(), "experiment"]
    best_s = scratch.loc[scratch["test_accuracy"].idxmax(), "experiment"]
    row = stats.paired_test(reference_runs(runs, best_t), reference_runs(runs, best_s),
                            best_t, best_s)
    if row is None:
        return ""
    return ("Does transfer learning beat training from scratch, on this build's budget? The "
            "best pretrained regime against the best from-scratch one: "
            + compare_sentence(row))


# ---------------------------------------------------------------- one sentence per study

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


def where_transfer_pays(runs: list[RunRecord], baseline: str, transfer: list[str]) -> list[str]:
    """Per training-set size: the best transfer regime against the from-scratch baseline,
    as sentences with their seed-paired McNemar p-values."""
    tests = stats.tests_at(runs, [baseline, *transfer], "train_n")
    lines = []
    for size, group in tests.groupby("train_n", sort=True):
        against = group[(group["A"] == baseline) & group["B"].isin(transfer)]
        if not against.empty:
            best = against.loc[against["accuracy B"].idxmax()].to_dict()
            lines.append(f"**{size:,} images**: " + compare_sentence(stats.swapped(best)))
    return lines


def data_efficiency_sentences(runs: list[RunRecord], experiments: list[str]) -> list[str]:
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
        parts = [f"{size:,} images: {_span(pd.Series([r.metrics.steps for r in group]), 'step')}"
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


def seed_noise_sentence(runs: list[RunRecord], experiments: list[str]) -> str:
    noise = stats.seed_noise(runs, experiments)
    if noise is None:
        return ""
    ratio = noise["seed_sd"] / noise["test_sd"]
    order = ("smaller than" if ratio < 0.5 else "larger than" if ratio > 2
             else "of the same order as")
    chance = np.sqrt(2 * (noise["seed_sd"] ** 2 + noise["test_sd"] ** 2))
    return (f"Training noise is {order} test-set noise: the median sd of test accuracy over "
            f"seeds is {noise['seed_sd'] * 100:.1f} points (largest "
            f"{noise['seed_sd_max'] * 100:.1f}, for {noise['worst']}), against "
            f"{noise['test_sd'] * 100:.1f} points of binomial sd for one accuracy on "
            f"{noise['test_n']:,} test images. Together they give two single runs of equally "
            f"good regimes a difference with an sd of about {chance * 100:.1f} points: the "
            "original's one run per regime could not separate regimes closer than that.")


def _resolution_test(runs: list[RunRecord], experiments: list[str], low, high) -> str:
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


def resolution_sentence(runs: list[RunRecord], experiments: list[str]) -> str:
    """The lowest against the highest input size with the Flatten head, and the cost."""
    table = stats.by_resolution(runs, experiments)
    flat = table[table["head"] == "flatten"].sort_values("input size") if len(table) else table
    if len(flat) < 2:
        return ""
    low, high = flat.iloc[0], flat.iloc[-1]
    return (f"With the Flatten head, the frozen base's test accuracy is {low['mean']:.1%} at "
            f"{low['input size']} px and {high['mean']:.1%} at {high['input size']} px"
            + _resolution_test(runs, experiments, low, high) + "."
            + _feature_cost(low, high))


def depth_sentence(runs: list[RunRecord], experiments: list[str]) -> str:
    """How deep fine-tuning paid: the best starting block against fine-tuning everything,
    at the same images seen."""
    table = stats.by_depth(runs, experiments)
    if len(table) < 2:
        return ""
    best = table.loc[table["mean"].idxmax()]
    text = (f"At {int(best['images seen']):,} images seen, fine-tuning from block "
            f"{int(best['unfreeze from block'])} reached the highest test accuracy, "
            f"{best['mean']:.1%}, in {best['training (s)']:,.0f} s of training.")
    whole = table[table["unfreeze from block"] == 1]
    if len(whole) and int(best["unfreeze from block"]) != 1:
        w = whole.iloc[0]
        text += (f" Fine-tuning everything reached {w['mean']:.1%} in "
                 f"{w['training (s)']:,.0f} s, {w['training (s)'] / best['training (s)']:.1f}× "
                 "the time.")
    return text


def calibration_sentence(runs: list[RunRecord], experiments: list[str]) -> str:
    table = stats.calibration(runs, experiments)
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


def gradcam_sentence(runs: list[RunRecord], experiments: list[str]) -> str:
    table, _ = stats.gradcam(runs, experiments)
    if table.empty:
        return ""
    parts = ", ".join(f"{r['experiment']} {r['centre share, right']:.0%} (right) / "
                      f"{r['centre share, wrong']:.0%} (wrong)" for _, r in table.iterrows())
    return (f"Grad-CAM puts this share of its heatmap mass in the central quarter of the image "
            f"(a uniform map: 25%): {parts}.")


# ---------------------------------------------------------------- the limitations page

def still_improving(run: RunRecord) -> bool:
    """Did a run use its whole budget with its validation accuracy best in its last epoch?"""
    return ending(run) == "budget" and run.metrics.best_val_epoch == len(run.history)


def _run_budget(run: RunRecord) -> str:
    m = run.metrics
    return f"**{m.name}** ({m.steps:,} steps, {m.images_seen:,} images seen)"


def _one_per_experiment(runs: list[RunRecord]) -> list[RunRecord]:
    """Each experiment's first reference run (its first seed), in the runs' order."""
    return list(first_of_each([run for run in runs if run.metrics.reference]).values())


def _limit_budget(runs: list[RunRecord]) -> str:
    reference = _one_per_experiment(runs)
    rising = [_run_budget(run) for run in reference if still_improving(run)]
    level = [f"**{run.metrics.name}**" for run in reference if ending(run) == "plateau"]
    whole = [run.metrics.images_seen for run in reference if trains_whole_network(run)]
    text = "**Budgets, not convergence.** "
    if rising:
        text += (f"Still improving when their budget ran out (best validation accuracy in "
                 f"the last epoch): {', '.join(rising)}. More training would raise them, "
                 "and the ranking can change. ")
    if level:
        text += f"Stopped on a validation plateau: {', '.join(level)}. "
    if whole:
        text += (f"The regimes that train the whole network saw {phrase(whole, 'image')}, "
                 f"{max(whole) / FULL_PROTOCOL_IMAGES:.0%} of the {FULL_PROTOCOL_IMAGES:,} the "
                 "original protocol gives each regime.")
    return text.rstrip()


def _limit_compute(runs: list[RunRecord]) -> str:
    """Whether the reference runs had very different training times."""
    reference = sorted(_one_per_experiment(runs), key=lambda run: run.training_seconds)
    if len(reference) < 2 or reference[-1].training_seconds < 2 * reference[0].training_seconds:
        return ""
    times = ", ".join(f"{run.metrics.name} {run.training_seconds:,.0f} s" for run in reference)
    return ("**Unequal compute.** The regimes are compared at the budgets declared for them, "
            f"not at equal training time ({times}); the accuracy-against-compute figure on "
            "the comparison page puts them on one time axis.")


def _limit_test_set(test_n: int) -> str:
    low, high = wilson_interval(test_n // 2, test_n)
    return (f"**A small test set.** {test_n:,} test images: at 50% accuracy the 95% Wilson "
            f"interval spans {low:.1%}–{high:.1%}, so differences of a few points need the "
            "paired test to be read at all, and classes are not exactly balanced.")


def _limit_seeds(runs: list[RunRecord]) -> str:
    per_point = stats.seeds_per_point([run for run in runs if run.metrics.reference] or runs)
    seeds = int(per_point.min())
    if int(per_point.max()) == 1:
        return ("**One seed.** Each setting ran once: the intervals capture the test set's "
                "sampling noise, not the run-to-run variation of training.")
    if seeds == 1:
        by_experiment = per_point.groupby(level="experiment").min()
        once = [name for name, n in by_experiment.items() if n == 1]
        more = [f"{name} ({n})" for name, n in by_experiment.items() if n > 1]
        return (f"**One seed for the costly runs.** {', '.join(once)} ran once: their "
                "intervals capture the test set's sampling noise, not the run-to-run "
                f"variation of training. Seeds where they cost little: {', '.join(more)}; the "
                "seeds page measures that variation.")
    return (f"**Few seeds.** {seeds} seeds per point: the 95% t interval of a mean over "
            f"{seeds} runs is ±{stats.t_quantile(seeds):.2f} standard errors wide, so the "
            "intervals in the tables are wide by construction.")


def _limit_comparisons(runs: list[RunRecord], experiments: list[str] | None) -> str:
    tests = stats.pairwise_tests(runs, experiments)
    if len(tests) < 2:
        return ""
    return (f"**Many comparisons.** The seeds study runs {len(tests)} pairwise tests without "
            f"a correction for multiplicity; if no regime differed, about "
            f"{ALPHA * len(tests):.1f} of them would still come out below p = 0.05 in any one "
            "seed. Claims here require p < 0.05 in every seed, which is stricter.")


def _offline_weights(runs: list[RunRecord]) -> bool:
    """Did the pretrained runs start from the offline HED-BSDS500 base?"""
    return any(run.metrics.weights == "hed-bsds500" for run in runs)


def _resolution_bullet(title: str, runs: list[RunRecord], experiments: list[str],
                       after: str) -> str:
    return f"**{title}** {resolution_sentence(runs, experiments)} {after}"


def _limit_weights(runs: list[RunRecord]) -> str:
    if not _offline_weights(runs):
        return ""
    return ("**Not ImageNet weights.** Offline, the pretrained regimes start from "
            "HED-BSDS500: ImageNet VGG16 fine-tuned for edge detection. Its top blocks were "
            "pushed towards edges, so its transfer to object classes is likely weaker than "
            "ImageNet's; every result made with it says so.")


def _limit_resolution(runs: list[RunRecord], experiments: list[str]) -> str:
    return _resolution_bullet("Resolution.", runs, experiments, "The other studies ran at the "
                              "original 32×32, where the base ends at a single 1×1 position.")


def _limit_heatmaps(runs: list[RunRecord], experiments: list[str]) -> str:
    cam, _ = stats.gradcam(runs, experiments)
    if cam.empty:
        return ""
    return (f"**Coarse heatmaps.** At 32×32 input Grad-CAM's layer ({cam['layer'].iloc[0]}) "
            f"has a {cam['map'].iloc[0]} map: the heatmaps say which part of the image, not "
            "which pixels.")


def _limit_calibration(test_n: int) -> str:
    return (f"**Calibration on few images.** Reliability bins hold {test_n:,} predictions per "
            "run in 10 bins; sparse bins are noisy.")


def limitations(runs: list[RunRecord], studies: dict[str, list[str]]) -> str:
    """What the numbers of a build can and cannot say, as markdown bullets."""
    test_n = runs[0].metrics.test_n
    lines = [_limit_budget(runs), _limit_compute(runs), _limit_test_set(test_n),
             _limit_seeds(runs)]
    if int(stats.seeds_per_point(runs).max()) > 1:
        lines.append(_limit_comparisons(runs, studies.get("seeds")))
    lines.append(_limit_weights(runs))
    if "resolution" in studies:
        lines.append(_limit_resolution(runs, studies["resolution"]))
    if "gradcam" in studies:
        lines.append(_limit_heatmaps(runs, studies["gradcam"]))
    if "calibration" in studies:
        lines.append(_limit_calibration(test_n))
    return bullets(lines)


# ---------------------------------------------------------------- the improvements page

def _better_gpu(frame: pd.DataFrame) -> str:
    full = frame[frame["whole_network"]]
    if full.empty:
        return ""
    rate = (full["train_n"] * full["epochs"] / full["training_seconds"]).median()
    hours = FULL_PROTOCOL_IMAGES / rate / 3600
    return (f"**The full protocol on a GPU.** A regime that trains the whole network ran at "
            f"{rate:.0f} images/s here (validation and checkpoints included), so the "
            f"original's {FULL_PROTOCOL_IMAGES:,} training images per regime would take about "
            f"{hours:.1f} h per regime and seed on this CPU. The `study_gpu` profile declares "
            "every study at full size for a GPU.")


def _still_rising(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Experiments whose accuracy rose beyond the seeds' noise between the two largest
    training sets, and those that levelled off, as "name (before → after)"."""
    rising, level = [], []
    for name, group in table.groupby("experiment", sort=False):
        if len(group) < 2:
            continue
        before, last = group.sort_values("train_n").iloc[-2:].to_dict("records")
        text = f"{name} ({before['mean']:.1%} → {last['mean']:.1%})"
        grew = last["mean"] - before["mean"] > stats.rise_margin(before, last)
        (rising if grew else level).append(text)
    return rising, level


def _better_data(runs: list[RunRecord], experiments: list[str]) -> str:
    table = stats.by_setting(runs, experiments, "train_n")
    if table.empty:
        return ""
    rising, level = _still_rising(table)
    if not rising:
        return ""
    flat = (f"; {', '.join(level)} had levelled off (a change within two standard errors of "
            "the seeds' spread)") if level else ""
    return (f"**More data.** Between the two largest training sets accuracy was still rising "
            f"for {', '.join(rising)}{flat}. Runs on more than {table['train_n'].max():,} "
            "images would show where the curves go next.")


def _better_resolution(runs: list[RunRecord], experiments: list[str]) -> str:
    return _resolution_bullet("Larger inputs.", runs, experiments, "128 or 224 px, nearer "
                              "ImageNet's scale, is the next step on a GPU (`study_gpu` "
                              "declares it).")


def _better_calibration(runs: list[RunRecord], experiments: list[str]) -> str:
    table = stats.calibration(runs, experiments)
    if table.empty:
        return ""
    worst = table.loc[table["ECE"].idxmax()]
    return (f"**Temperature scaling.** One temperature fitted on the validation split would "
            f"shrink the calibration error, largest for {worst['experiment']} "
            f"(ECE {worst['ECE']:.3f}).")


def _last_gain(run: RunRecord) -> str:
    val = run.history["val_accuracy"].to_numpy()
    if len(val) < 2:
        return f"{_run_budget(run)} reached {val[-1]:.1%} after its only epoch"
    return (f"{_run_budget(run)} gained {(val[-1] - val[-2]) * 100:.1f} points of validation "
            f"accuracy in its last epoch, to {val[-1]:.1%}")


def _better_budget(runs: list[RunRecord]) -> str:
    rising = [run for run in _one_per_experiment(runs) if still_improving(run)]
    if not rising:
        return ""
    return ("**Longer training where it still paid.** " + "; ".join(map(_last_gain, rising))
            + ". Each ran out of budget, not out of progress: `early_stopping` with a larger "
            "`epochs` would train it to its plateau.")


def _better_unfreezing(runs: list[RunRecord], studies: dict[str, list[str]]) -> str:
    if "depth" in studies:
        found = depth_sentence(runs, studies["depth"])
        return (f"**The best depth, on more data.** {found} Every start was trained on the "
                "same images seen; whether the ranking holds at the original's budget is "
                "what `study_gpu` would show.") if found else ""
    two = stats.summary_of(runs, "two_phase")
    if two is None:
        return ""
    first = min(run.config.unfreeze_from for run in reference_runs(runs, "two_phase"))
    return (f"**How much to unfreeze.** Two-phase fine-tuning here unfroze blocks {first}–5 "
            f"(test accuracy {summary_cell(two)}); the depth study (`depth`, in the `study` "
            "profile) compares starting blocks at equal images seen.")


def _better_weights(runs: list[RunRecord]) -> str:
    if not _offline_weights(runs):
        return ""
    return ("**True ImageNet weights.** Where the download works, `WEIGHTS=imagenet` (the "
            "default) gives the canonical starting point; every page would then say so "
            "instead of HED-BSDS500.")


SCHEDULES = ("**Schedules and regularisation.** A learning-rate schedule, weight decay and "
             "longer training for the from-scratch baseline; the defaults here are the "
             "original study's, not tuned ones.")


def improvements(runs: list[RunRecord], studies: dict[str, list[str]]) -> str:
    """What would answer the questions the limitations leave open, as markdown bullets."""
    lines = [_better_gpu(runs_frame(runs))]
    if "data_efficiency" in studies:
        lines.append(_better_data(runs, studies["data_efficiency"]))
    if "resolution" in studies:
        lines.append(_better_resolution(runs, studies["resolution"]))
    if "calibration" in studies:
        lines.append(_better_calibration(runs, studies["calibration"]))
    lines += [_better_budget(runs), _better_unfreezing(runs, studies), _better_weights(runs),
              SCHEDULES]
    return bullets(lines)


# ---------------------------------------------------------------- the conclusion page

def _protocol_findings(runs: list[RunRecord]) -> list[str]:
    lines = [collapse_sentence(runs)]
    for row in stats.corrections_tested(runs, original.corrections()).to_dict("records"):
        if row["B"] == original.ORIGINAL["frozen"]["as_run"]:
            lines.append("Frozen as the original ran it (block 5 trainable) against truly "
                         "frozen: " + compare_sentence(row))
    return lines


def _data_findings(runs: list[RunRecord], experiments: list[str]) -> str:
    found = data_efficiency_sentences(runs, experiments)
    if not found:
        return ""
    return ("The best transfer regime against the from-scratch baseline, by training-set "
            "size: " + " ".join(found))


def _bought(run: RunRecord) -> str:
    features = run.feature_cost
    how = ("computed" if run.timings.feature_images
           else "read from the cache, charged at the rate measured when it was filled")
    cached = f", {features:,.0f} s of it the frozen blocks' outputs ({how})" if features >= 1 else ""
    return (f"**{run.metrics.name}** {run.metrics.test_accuracy:.1%} for "
            f"{run.training_seconds:,.0f} s of training{cached}, "
            f"{run.metrics.steps:,} steps, {run.metrics.images_seen:,} images seen")


def cost_answer(runs: list[RunRecord], experiments: list[str]) -> str:
    """What each compared regime's reference run bought with its training time, and how the
    best one's images seen and time compare with one-phase fine-tuning's."""
    chosen = sorted((run for name in experiments for run in reference_runs(runs, name)[:1]),
                    key=lambda run: -run.metrics.test_accuracy)
    if len(chosen) < 2:
        return ""
    text = "What the training time bought: " + "; ".join(map(_bought, chosen)) + "."
    best, whole = chosen[0], next((r for r in chosen if r.metrics.regime == "finetune"), None)
    if whole is not None and best is not whole and whole.training_seconds > 0:
        text += (f" **{best.metrics.name}** saw "
                 f"{best.metrics.images_seen / whole.metrics.images_seen:.0f}× the images "
                 f"of {whole.metrics.name} in {best.training_seconds / whole.training_seconds:.1f}"
                 "× its time: frozen blocks computed once make each further epoch cheap.")
    return text


STUDY_FINDINGS = {"seeds": seed_noise_sentence, "resolution": resolution_sentence,
                  "depth": depth_sentence,
                  "calibration": calibration_sentence, "gradcam": gradcam_sentence}


def conclusion(runs: list[RunRecord], studies: dict[str, list[str]], compare: list[str]) -> str:
    """The answer to the report's question, then what each study adds, as markdown bullets."""
    lines = [answer(runs, studies.get("protocol") or compare),
             cost_answer(runs, studies.get("protocol") or compare)]
    if "protocol" in studies:
        lines += _protocol_findings(runs)
    if "data_efficiency" in studies:
        lines.append(_data_findings(runs, studies["data_efficiency"]))
    lines += [finding(runs, studies[study]) for study, finding in STUDY_FINDINGS.items()
              if study in studies]
    return bullets(lines)


# ---------------------------------------------------------------- the original's claims

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
