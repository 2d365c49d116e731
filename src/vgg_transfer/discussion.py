"""The limitations, improvements and conclusion pages, written from the evidence of a build.

Each function returns markdown bullets in which every number is computed from the runs; a
claim whose evidence this build did not produce (a study it did not run) is left out.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from vgg_transfer import report, studies
from vgg_transfer.evaluation import wilson_interval

FULL_PROTOCOL_IMAGES = 45_000 * 10  # training images seen per regime by the original protocol


def bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines if line)


def _seeds(runs: list[dict]) -> int:
    frame = report.runs_frame(runs)
    return int(frame.groupby(["experiment", "train_n", "image_size", "head"])["seed"]
               .nunique().min())


def seed_noise(runs: list[dict], experiments: list[str]) -> dict | None:
    """Run-to-run spread against test-set noise: the median sd of accuracy over seeds, and the
    binomial sd of one accuracy on this test set."""
    frame = report.runs_frame(report.of_experiments(runs, experiments, reference=True))
    sds = frame.groupby("experiment")["test_accuracy"].std(ddof=1).dropna()
    if sds.empty:
        return None
    p, n = frame["test_accuracy"].mean(), int(frame["test_n"].iloc[0])
    return {"seed_sd": float(sds.median()), "seed_sd_max": float(sds.max()),
            "worst": str(sds.idxmax()), "test_sd": float(np.sqrt(p * (1 - p) / n)), "test_n": n}


def seed_noise_sentence(runs: list[dict], experiments: list[str]) -> str:
    noise = seed_noise(runs, experiments)
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


def resolution_sentence(runs: list[dict], experiments: list[str]) -> str:
    """The lowest against the highest input size with the Flatten head, seed-paired."""
    table = studies.resolution_table(runs, experiments)
    flat = table[table["head"] == "flatten"].sort_values("input size")
    if len(flat) < 2:
        return ""
    low, high = flat.iloc[0], flat.iloc[-1]
    chosen = [r for r in report.of_experiments(runs, experiments) if r["config"]["head"] == "flatten"]
    row = report.paired_test(
        [r for r in chosen if r["config"]["image_size"] == high["input size"]],
        [r for r in chosen if r["config"]["image_size"] == low["input size"]],
        f"{high['input size']} px", f"{low['input size']} px")
    text = (f"With the Flatten head, the frozen base's test accuracy is {low['mean']:.1%} at "
            f"{low['input size']} px and {high['mean']:.1%} at {high['input size']} px"
            + (f" ({report.compare_sentence(row).rstrip('.')})" if row else "") + ".")
    if np.isfinite(low["s per 1,000 images"]) and np.isfinite(high["s per 1,000 images"]):
        text += (f" Computing the features costs {high['s per 1,000 images'] / low['s per 1,000 images']:.0f}× "
                 f"more at {high['input size']} px ({low['s per 1,000 images']:.1f} against "
                 f"{high['s per 1,000 images']:.1f} s per 1,000 images on this machine).")
    return text


def calibration_sentence(runs: list[dict], experiments: list[str]) -> str:
    table = studies.calibration_table(runs, experiments)
    if table.empty:
        return ""
    best, worst = table.loc[table["ECE"].idxmin()], table.loc[table["ECE"].idxmax()]
    over = table[table["confidence − accuracy"] > 0.02]["experiment"].tolist()
    under = table[table["confidence − accuracy"] < -0.02]["experiment"].tolist()
    text = (f"Expected calibration error ranges from {best['ECE']:.3f} ({best['experiment']}) "
            f"to {worst['ECE']:.3f} ({worst['experiment']}).")
    if over:
        text += (f" Over-confident (mean confidence above accuracy by more than 2 points): "
                 f"{', '.join(over)}.")
    if under:
        text += (f" Under-confident (mean confidence below accuracy by more than 2 points): "
                 f"{', '.join(under)}.")
    return text


def gradcam_sentence(runs: list[dict], experiments: list[str]) -> str:
    table, _ = studies.gradcam_table(runs, experiments)
    if table.empty:
        return ""
    parts = ", ".join(f"{r['experiment']} {r['centre share, right']:.0%} (right) / "
                      f"{r['centre share, wrong']:.0%} (wrong)" for _, r in table.iterrows())
    return (f"Grad-CAM puts this share of its heatmap mass in the central quarter of the image "
            f"(a uniform map: 25%): {parts}.")


def data_efficiency_sentences(runs: list[dict], experiments: list[str]) -> list[str]:
    baseline = next((e for e in experiments
                     if studies.reference_runs(runs, e)
                     and studies.reference_runs(runs, e)[0]["metrics"]["regime"]
                     in ("scratch_bn", "scratch")), None)
    if baseline is None:
        return []
    transfer = [e for e in experiments if e != baseline]
    return studies.where_transfer_pays(runs, baseline, transfer)


# ---------------------------------------------------------------- the pages

def limitations(runs: list[dict], studies_run: dict[str, list[str]]) -> str:
    frame = report.runs_frame(runs)
    test_n = int(frame["test_n"].iloc[0])
    low, high = wilson_interval(test_n // 2, test_n)
    seen = (frame["train_n"] * frame["epochs"]).max()
    lines = [
        f"**Budget.** The largest run of this build saw {seen:,.0f} training images "
        f"({report.phrase(frame['train_n'], 'image')}, {report.phrase(frame['epochs'], 'epoch')});"
        f" the original protocol sees {FULL_PROTOCOL_IMAGES:,} per regime. Regimes that learn "
        "slowly, from scratch above all, are furthest from what they would reach, and the "
        "ranking can change with more data and epochs.",
        f"**A small test set.** {test_n:,} test images: at 50% accuracy the 95% Wilson "
        f"interval spans {low:.1%}–{high:.1%}, so differences of a few points need the paired "
        "test to be read at all, and classes are not exactly balanced.",
    ]
    seeds = _seeds(runs)
    if seeds == 1:
        lines.append("**One seed.** Each setting ran once: the intervals capture the test "
                     "set's sampling noise, not the run-to-run variation of training.")
    else:
        t = stats.t.ppf(0.975, seeds - 1)
        lines.append(f"**Few seeds.** {seeds} seeds per point: the 95% t interval of a mean "
                     f"over {seeds} runs is ±{t:.2f} standard errors wide, so the intervals "
                     "in the tables are wide by construction.")
        tests = report.pairwise_tests(runs, studies_run.get("seeds"))
        if len(tests) > 1:
            lines.append(f"**Many comparisons.** The seeds study runs {len(tests)} pairwise "
                         f"tests without a correction for multiplicity; if no regime differed, "
                         f"about {0.05 * len(tests):.1f} of them would still come out below "
                         "p = 0.05 in any one seed. Claims here require p < 0.05 in every "
                         "seed, which is stricter.")
    weights = sorted({r["metrics"]["weights_label"] for r in runs
                      if r["metrics"]["weights"] == "hed-bsds500"})
    if weights:
        lines.append("**Not ImageNet weights.** Offline, the pretrained regimes start from "
                     "HED-BSDS500: ImageNet VGG16 fine-tuned for edge detection. Its top "
                     "blocks were pushed towards edges, so its transfer to object classes is "
                     "likely weaker than ImageNet's; every result made with it says so.")
    if "resolution" in studies_run:
        lines.append("**Resolution.** " + resolution_sentence(runs, studies_run["resolution"])
                     + " The other studies ran at the original 32×32, where the base ends at a "
                     "single 1×1 position.")
    if "gradcam" in studies_run:
        cam, _ = studies.gradcam_table(runs, studies_run["gradcam"])
        if not cam.empty:
            lines.append(f"**Coarse heatmaps.** At 32×32 input Grad-CAM's layer "
                         f"({cam['layer'].iloc[0]}) has a {cam['map'].iloc[0]} map: the "
                         "heatmaps say which part of the image, not which pixels.")
    if "calibration" in studies_run:
        lines.append(f"**Calibration on few images.** Reliability bins hold "
                     f"{test_n:,} predictions per run in 10 bins; sparse bins are noisy.")
    return bullets(lines)


def rise_margin(before, after) -> float:
    """Two standard errors of the difference between two means over seeds (rows with mean,
    sd, n); 0 when either has a single run, so any rise counts."""
    if min(before["n"], after["n"]) < 2:
        return 0.0
    return 2 * float(np.sqrt(before["sd"] ** 2 / before["n"] + after["sd"] ** 2 / after["n"]))


def improvements(runs: list[dict], studies_run: dict[str, list[str]]) -> str:
    frame = report.runs_frame(runs)
    full = frame[frame["regime"].isin(["scratch", "finetune", "scratch_bn"])]
    lines = []
    if not full.empty:
        rate = (full["train_n"] * full["epochs"] / full["training_seconds"]).median()
        hours = FULL_PROTOCOL_IMAGES / rate / 3600
        lines.append(f"**The full protocol on a GPU.** A regime that trains the whole network "
                     f"ran at {rate:.0f} images/s here (validation and checkpoints included), "
                     f"so the original's "
                     f"{FULL_PROTOCOL_IMAGES:,} training images per regime would take about "
                     f"{hours:.1f} h per regime and seed on this CPU. The `study_gpu` profile "
                     "declares every study at full size for a GPU.")
    if "data_efficiency" in studies_run:
        table = studies.by_setting(runs, studies_run["data_efficiency"], "train_n")
        rising, level = [], []
        for name, group in table.groupby("experiment", sort=False):
            group = group.sort_values("train_n")
            if len(group) < 2:
                continue
            before, last = group.iloc[-2], group.iloc[-1]
            text = f"{name} ({before['mean']:.1%} → {last['mean']:.1%})"
            (rising if last["mean"] - before["mean"] > rise_margin(before, last)
             else level).append(text)
        if rising:
            flat = (f"; {', '.join(level)} had levelled off (a change within two standard "
                    "errors of the seeds' spread)") if level else ""
            lines.append(f"**More data.** Between the two largest training sets accuracy was "
                         f"still rising for {', '.join(rising)}{flat}. Runs on more than "
                         f"{table['train_n'].max():,} images would show where the curves go "
                         "next.")
    if "resolution" in studies_run:
        lines.append("**Larger inputs.** " + resolution_sentence(runs, studies_run["resolution"])
                     + " 128 or 224 px, nearer ImageNet's scale, is the next step on a GPU "
                     "(`study_gpu` declares it).")
    if "calibration" in studies_run:
        table = studies.calibration_table(runs, studies_run["calibration"])
        if not table.empty:
            worst = table.loc[table["ECE"].idxmax()]
            lines.append(f"**Temperature scaling.** One temperature fitted on the validation "
                         f"split would shrink the calibration error, largest for "
                         f"{worst['experiment']} (ECE {worst['ECE']:.3f}).")
    two = studies.summary_of(runs, "two_phase")
    if two is not None:
        unfreeze = {r["config"]["unfreeze_from"] for r in studies.reference_runs(runs, "two_phase")}
        lines.append(f"**How much to unfreeze.** Two-phase fine-tuning here unfroze blocks "
                     f"{min(unfreeze)}–5 (test accuracy {studies.cell(two)}); "
                     "`unfreeze_from` is a parameter, and a sweep over it would show how much "
                     "of the base is worth adapting.")
    weights = {r["metrics"]["weights"] for r in runs}
    if "hed-bsds500" in weights:
        lines.append("**True ImageNet weights.** Where the download works, `WEIGHTS=imagenet` "
                     "(the default) gives the canonical starting point; every page would then "
                     "say so instead of HED-BSDS500.")
    lines.append("**Schedules and regularisation.** A learning-rate schedule, weight decay and "
                 "longer training for the from-scratch baseline; the defaults here are the "
                 "original study's, not tuned ones.")
    return bullets(lines)


def answer(runs: list[dict], experiments: list[str]) -> str:
    """The report's answer to its question, from the reference runs: the best pretrained
    regime against the best from-scratch one, with the seed-paired test."""
    table = report.comparison_table(report.of_experiments(runs, experiments))
    if table.empty:
        return ""
    scratch = table[table["regime"].isin(["scratch", "scratch_bn", "mlp"])]
    transfer = table[~table["regime"].isin(["scratch", "scratch_bn", "mlp"])]
    if scratch.empty or transfer.empty:
        return ""
    best_t = transfer.loc[transfer["test_accuracy"].idxmax(), "experiment"]
    best_s = scratch.loc[scratch["test_accuracy"].idxmax(), "experiment"]
    row = report.paired_test(studies.reference_runs(runs, best_t),
                             studies.reference_runs(runs, best_s), best_t, best_s)
    if row is None:
        return ""
    return ("Does transfer learning beat training from scratch, on this build's budget? The "
            "best pretrained regime against the best from-scratch one: "
            + report.compare_sentence(row))


def conclusion(runs: list[dict], studies_run: dict[str, list[str]],
               compare: list[str]) -> str:
    lines = [answer(runs, studies_run.get("seeds") or compare)]
    if "protocol" in studies_run:
        lines.append(studies.collapse_sentence(runs))
        pairs = studies.protocol_pairs(runs)
        for row in pairs.to_dict("records"):
            if row["B"] == "partial":
                lines.append("Frozen as the original ran it (block 5 trainable) against truly "
                             "frozen: " + report.compare_sentence(row))
    if "data_efficiency" in studies_run:
        found = data_efficiency_sentences(runs, studies_run["data_efficiency"])
        if found:
            lines.append("The best transfer regime against the from-scratch baseline, by "
                         "training-set size: " + " ".join(found))
    if "seeds" in studies_run:
        lines.append(seed_noise_sentence(runs, studies_run["seeds"]))
    if "resolution" in studies_run:
        lines.append(resolution_sentence(runs, studies_run["resolution"]))
    if "calibration" in studies_run:
        lines.append(calibration_sentence(runs, studies_run["calibration"]))
    if "gradcam" in studies_run:
        lines.append(gradcam_sentence(runs, studies_run["gradcam"]))
    return bullets(lines)
