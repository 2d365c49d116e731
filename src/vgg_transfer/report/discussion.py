"""The discussion pages' sentences: limitations, improvements, the cost page's answer
and the conclusion, each read from the runs and the studies a build holds."""

from __future__ import annotations

import pandas as pd

from vgg_transfer.core.metrics import wilson_interval
from vgg_transfer.record import RunRecord
from vgg_transfer.report import original, stats
from vgg_transfer.report.original import FULL_PROTOCOL_IMAGES
from vgg_transfer.report.selection import (
    ending,
    ending_val_accuracy,
    first_of_each,
    reference_runs,
    runs_frame,
    still_improving,
    trains_whole_network,
)
from vgg_transfer.report.sentences import ALPHA, answer, compare_sentence, precisions
from vgg_transfer.report.studies import (
    calibration,
    data_efficiency,
    depth,
    frontier,
    gradcam,
    protocol,
    resolution,
    seeds,
)
from vgg_transfer.report.words import bullets, phrase, summary_cell

# ---------------------------------------------------------------- the limitations page


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
    times += f"; {precisions(reference)}"
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
    return f"**{title}** {resolution.finding(runs, experiments)} {after}"


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
    cam, _ = gradcam.study_table(runs, experiments)
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
    table = calibration.study_table(runs, experiments)
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
        found = depth.finding(runs, studies["depth"])
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
    lines = [protocol.collapse_sentence(runs)]
    for row in protocol.corrections_tested(runs, original.corrections()).to_dict("records"):
        if row["B"] == original.ORIGINAL["frozen"]["as_run"]:
            lines.append("Frozen as the original ran it (block 5 trainable) against truly "
                         "frozen: " + compare_sentence(row))
    return lines


def _data_findings(runs: list[RunRecord], experiments: list[str]) -> str:
    found = data_efficiency.findings(runs, experiments)
    if not found:
        return ""
    return ("The best transfer regime against the from-scratch baseline, by training-set "
            "size: " + " ".join(found))


def _bought(run: RunRecord) -> str:
    features = run.feature_cost
    how = ("computed" if run.timings.feature_images
           else "read from the cache, charged at the rate measured when it was filled")
    cached = (f", {features:,.0f} s of it the frozen blocks' outputs ({how})"
              if features >= 1 else "")
    return (f"**{run.metrics.name}** {run.metrics.test_accuracy:.1%} for "
            f"{run.training_seconds:,.0f} s of training{cached}, "
            f"{run.metrics.steps:,} steps, {run.metrics.images_seen:,} images seen")


def cost_answer(runs: list[RunRecord], experiments: list[str]) -> str:
    """What each compared regime's reference run bought with its training time, and how the
    best one's images seen and time compare with one-phase fine-tuning's."""
    chosen = sorted((run for name in experiments for run in reference_runs(runs, name)[:1]),
                    key=lambda run: -ending_val_accuracy(run))  # best on validation first
    if len(chosen) < 2:
        return ""
    text = (f"What the training time bought ({precisions(chosen)}): "
            + "; ".join(map(_bought, chosen)) + ".")
    best, whole = chosen[0], next((r for r in chosen if r.metrics.regime == "finetune"), None)
    if whole is not None and best is not whole and whole.training_seconds > 0:
        text += (f" **{best.metrics.name}** saw "
                 f"{best.metrics.images_seen / whole.metrics.images_seen:.0f}× the images "
                 f"of {whole.metrics.name} in {best.training_seconds / whole.training_seconds:.1f}"
                 "× its time: frozen blocks computed once make each further epoch cheap.")
    return text


def _frontier_gap(runs: list[RunRecord], experiments: list[str]) -> str:
    return frontier.gap_sentence(frontier.study_table(runs, experiments)).strip()


STUDY_FINDINGS = {"frontier": _frontier_gap, "seeds": seeds.finding,
                  "resolution": resolution.finding, "depth": depth.finding,
                  "calibration": calibration.finding, "gradcam": gradcam.finding}


def conclusion(runs: list[RunRecord], studies: dict[str, list[str]], compare: list[str]) -> str:
    """What the runs add to the answer (`answer.table`, which the page shows first), as
    markdown bullets: the best pretrained regime against the best from scratch, what the
    training time bought, then each study's finding. Where the frontier gives the answer,
    the protocol's runs are labelled as what they are: each regime at its own compute."""
    experiments = studies.get("protocol") or compare
    lead = ("The corrected protocol's runs train each regime at its own compute, so they "
            "answer no budget's question. " if studies.get("frontier") else
            "Does transfer learning beat training from scratch, on this build's budget? ")
    lines = [answer(runs, experiments, lead), cost_answer(runs, experiments)]
    if "protocol" in studies:
        lines += _protocol_findings(runs)
    if "data_efficiency" in studies:
        lines.append(_data_findings(runs, studies["data_efficiency"]))
    lines += [finding(runs, studies[study]) for study, finding in STUDY_FINDINGS.items()
              if study in studies]
    return bullets(lines)
