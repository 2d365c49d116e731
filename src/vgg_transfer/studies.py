"""What the Studies pages compute from run folders: one function family per study.

Every table here is built from the runs' own files; the only numbers typed in are the ones
the original notebook printed (`ORIGINAL`), quoted so that ours can stand next to them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vgg_transfer import report
from vgg_transfer.evaluation import reliability_bins, seed_summary

CHANCE = 0.10
TITLES = {"protocol": "Original vs corrected protocol", "data_efficiency": "Data efficiency",
          "seeds": "Repeated seeds and significance", "resolution": "Input resolution",
          "calibration": "Calibration", "gradcam": "Where the models look",
          "claims": "The original's claims next to ours"}

# What the original notebook printed (its cell outputs), quoted; it trained on all 50,000
# training images for 10 epochs with ImageNet weights and validated on the test set.
ORIGINAL = {
    "scratch": {"model": "a multilayer perceptron on the pixels", "test_accuracy": 0.337,
                "train_accuracy": None},
    "frozen": {"model": "VGG16 with block 5 left trainable", "test_accuracy": 0.737,
               "train_accuracy": 0.894},
    "unfrozen": {"model": "VGG16, everything trainable, one phase at 1e-4",
                 "test_accuracy": 0.100, "train_accuracy": None},
}
ORIGINAL_PROTOCOL = {"training images": "50,000 (all)", "validation": "the 10,000 test images",
                     "test images": "10,000 (also the validation set)", "epochs": "10",
                     "batch": "128", "learning rate": "Adam 1e-4", "seeds": "1, unseeded",
                     "pretrained weights": "ImageNet", "input": "32×32"}

# Each change to the protocol, the regime it concerns, and why.
CHANGES = [
    ("scratch", "a multilayer perceptron (no convolutions)",
     "the VGG16 architecture from random weights (scratch), and a fair baseline: VGG16 with "
     "batch normalisation and augmentation (scratch_bn)",
     "the question is what pretraining adds to the same network"),
    ("frozen", "VGG16 base with block 5 trainable",
     "the whole base frozen and run in inference mode (frozen); block 5 trainable is a "
     "regime of its own (partial)",
     "frozen means frozen; a partly frozen base answers a different question"),
    ("unfrozen", "everything trainable from the first step, Adam 1e-4; collapsed to chance",
     "kept as finetune (built fresh, recompiled after setting trainable), and the Keras "
     "guide's two-phase recipe beside it (two_phase: head first, then the base at 1e-5)",
     "a collapse to chance points at a broken setup; a random head's large gradients can "
     "wreck pretrained features, which the two-phase recipe avoids"),
    ("all", "the test set as validation set",
     "validation carved from the training set; the test set used once per run",
     "choosing or stopping on test data biases the reported accuracy"),
    ("all", "one unseeded run per regime, compared by eye",
     "several seeds per point, mean ± sd and 95% t intervals, seed-paired McNemar tests",
     "a difference needs its uncertainty to mean anything"),
    ("all", "preprocessing varied by regime",
     "preprocess_input as a layer of every model",
     "the regimes must differ only in what they train"),
]

# (as the original ran it, as this report runs it): the measured side of each change
PAIRS = [("mlp", "scratch"), ("scratch", "scratch_bn"), ("partial", "frozen"),
         ("finetune", "two_phase")]


def reference_runs(runs: list[dict], experiment: str) -> list[dict]:
    return report.of_experiments(runs, [experiment], reference=True)


def summary_of(runs: list[dict], experiment: str, value: str = "test_accuracy") -> dict | None:
    """Mean, sd, n and t interval of one experiment's reference runs (None if it has none)."""
    chosen = reference_runs(runs, experiment)
    if not chosen:
        return None
    return seed_summary([run["metrics"][value] for run in chosen])


def cell(summary: dict | None) -> str:
    """"41.2% ± 1.3 (n = 3)", or "not run" when the experiment is not in this build."""
    if summary is None:
        return "not run in this build"
    if summary["n"] == 1:
        return f"{summary['mean']:.1%} (one run)"
    return f"{summary['mean']:.1%} ± {summary['sd'] * 100:.1f} (n = {summary['n']})"


def budget(runs: list[dict]) -> str:
    """What produced a page: images, epochs, seeds, test images and training time, in words."""
    frame = report.runs_frame(runs)
    if frame.empty:
        return "no runs"
    seeds = frame.groupby(["experiment", "train_n", "image_size", "head"])["seed"].nunique()
    low, high = int(frame["epochs"].min()), int(frame["epochs"].max())
    epochs = f"{low} epoch{'s' if low > 1 else ''}" if low == high else f"{low} to {high} epochs"
    return (f"{report.phrase(frame['train_n'], 'training image')}, {epochs}, "
            f"{report.phrase(seeds, 'seed')} per point, "
            f"{int(frame['test_n'].iloc[0]):,} test images, "
            f"{frame['training_seconds'].sum() / 60:.1f} min of training in all "
            f"({len(frame)} runs)")


# ---------------------------------------------------------------- 1. protocol

def protocol_settings(runs: list[dict]) -> pd.DataFrame:
    """The original study's settings next to this build's, read from the runs' configs."""
    configs = [run["config"] for run in runs if run["metrics"]["reference"]]
    metrics = [run["metrics"] for run in runs if run["metrics"]["reference"]]
    seeds = sorted({c["seed"] for c in configs})
    by_regime = {}
    for m in metrics:
        by_regime.setdefault(m["regime"], set()).add(m["epochs"])
    epochs = "; ".join(f"{regime} {report.phrase(sorted(e), 'epoch')}"
                       for regime, e in by_regime.items())
    weights = sorted({m["weights_label"] for m in metrics if m["weights"] != "none"})
    ours = {
        "training images": report.phrase([m["train_n"] for m in metrics], "image"),
        "validation": report.phrase([m["val_n"] for m in metrics], "image")
        + " carved from the training set",
        "test images": f"{metrics[0]['test_n']:,}, used once per run",
        "epochs": epochs,
        "batch": report.phrase([c["batch_size"] for c in configs], "image")
        .replace(" images", "").replace(" image", ""),
        "learning rate": "Adam " + ", ".join(sorted({_rate(c["learning_rate"]) for c in configs}))
        + (" (two_phase's second phase: "
           + ", ".join(sorted({_rate(c["finetune_learning_rate"]) for c in configs
                               if c["regime"] == "two_phase"})) + ")"
           if any(c["regime"] == "two_phase" for c in configs) else ""),
        "seeds": f"{len(seeds)} ({', '.join(map(str, seeds))}), every source of randomness "
                 "seeded",
        "pretrained weights": ", ".join(weights) or "none",
        "input": ", ".join(sorted({f"{c['image_size']}×{c['image_size']}" for c in configs})),
    }
    return pd.DataFrame({"setting": list(ORIGINAL_PROTOCOL),
                         "the original study": list(ORIGINAL_PROTOCOL.values()),
                         "this build": [ours[k] for k in ORIGINAL_PROTOCOL]})


def _rate(value: float) -> str:
    """1e-4 rather than 0.0001."""
    mantissa, exponent = f"{value:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def changes_table() -> pd.DataFrame:
    return pd.DataFrame(CHANGES, columns=["regime", "the original", "this report", "why"])


def protocol_pairs(runs: list[dict]) -> pd.DataFrame:
    """Each regime as the original ran it against as this report runs it, seed-paired."""
    rows = []
    for before, after in PAIRS:
        a, b = reference_runs(runs, before), reference_runs(runs, after)
        if a and b:
            rows.append(report.paired_test(b, a, after, before))
    return pd.DataFrame([r for r in rows if r], columns=report.PAIR_COLUMNS)


def collapse(runs: list[dict], experiment: str) -> dict | None:
    """Did an experiment stay at chance? Its best validation accuracy in any epoch of any
    seed, and whether that is within 2 points of chance."""
    chosen = reference_runs(runs, experiment)
    if not chosen:
        return None
    best = max(float(run["history"]["val_accuracy"].max()) for run in chosen)
    worst_final = min(float(run["history"]["val_accuracy"].iloc[-1]) for run in chosen)
    return {"best_val": best, "worst_final_val": worst_final,
            "collapsed": best <= CHANCE + 0.02, "seeds": len(chosen)}


def collapse_sentence(runs: list[dict]) -> str:
    """Whether one-phase fine-tuning collapsed in this build, and how two-phase compares."""
    one = collapse(runs, "finetune")
    if one is None:
        return "One-phase fine-tuning was not run in this build."
    text = (f"Across its {one['seeds']} seed(s), one-phase fine-tuning at 1e-4 reached a best "
            f"validation accuracy of {one['best_val']:.1%} in any epoch: "
            + ("it stayed at chance, as the original's did." if one["collapsed"] else
               "unlike the original's run, it did not collapse to chance."))
    two = summary_of(runs, "two_phase")
    tuned = summary_of(runs, "finetune")
    if two is not None and tuned is not None:
        text += (f" Its test accuracy was {cell(tuned)}, against {cell(two)} for the "
                 "two-phase recipe.")
    return text


# ---------------------------------------------------------------- 2. data efficiency

def by_setting(runs: list[dict], experiments: list[str], axis: str,
               value: str = "test_accuracy") -> pd.DataFrame:
    """Mean, sd, seeds and t interval per experiment and value of one axis (all points)."""
    frame = report.runs_frame(report.of_experiments(runs, experiments))
    if frame.empty:
        return frame
    summary = report.summarise(frame, ["experiment", "regime", axis], value)
    return summary.sort_values(["experiment", axis], key=lambda c: c.map(
        {e: i for i, e in enumerate(experiments)}) if c.name == "experiment" else c,
        kind="stable").reset_index(drop=True)


def format_by_setting(table: pd.DataFrame, axis: str, label: str):
    """Experiments as columns, the axis as rows, "mean ± sd (t interval)" in each cell."""
    cells = table.assign(cell=[
        report.accuracy_cell(r["mean"], r["sd"], r["n"], r["ci_low"], r["ci_high"])
        if r["n"] > 1 else f"{r['mean']:.1%} (one run)" for _, r in table.iterrows()])
    wide = cells.pivot(index=axis, columns="experiment", values="cell")
    wide = wide[[e for e in dict.fromkeys(table["experiment"]) if e in wide.columns]]
    return wide.rename_axis(label).reset_index().style.hide(axis="index")


def tests_at(runs: list[dict], experiments: list[str], axis: str) -> pd.DataFrame:
    """Seed-paired McNemar tests between every pair of experiments at each axis value."""
    rows = []
    values = sorted({_axis_value(r, axis) for r in report.of_experiments(runs, experiments)},
                    key=lambda v: (v is None, v))
    for value in values:
        groups = {e: [r for r in report.of_experiments(runs, [e]) if _axis_value(r, axis) == value]
                  for e in experiments}
        for i, a in enumerate(experiments):
            for b in experiments[i + 1:]:
                if groups[a] and groups[b]:
                    row = report.paired_test(groups[a], groups[b], a, b)
                    if row:
                        rows.append({axis: value, **row})
    return pd.DataFrame(rows, columns=[axis, *report.PAIR_COLUMNS])


def _axis_value(run: dict, axis: str):
    if axis == "train_n":
        return run["metrics"]["train_n"]
    return run["config"][axis]


def where_transfer_pays(runs: list[dict], baseline: str, transfer: list[str]) -> list[str]:
    """Per training-set size: the best transfer regime against the from-scratch baseline,
    as sentences with their seed-paired McNemar p-values."""
    tests = tests_at(runs, [baseline, *transfer], "train_n")
    lines = []
    for size, group in tests.groupby("train_n", sort=True):
        against = group[(group["A"] == baseline) & group["B"].isin(transfer)]
        if against.empty:
            continue
        best = against.loc[against["accuracy B"].idxmax()]
        flipped = {**best.to_dict(), "A": best["B"], "B": best["A"],
                   "accuracy A": best["accuracy B"], "accuracy B": best["accuracy A"],
                   "difference (A − B)": -best["difference (A − B)"],
                   "differences": [-d for d in best["differences"]]}
        lines.append(f"**{size:,} images**: " + report.compare_sentence(flipped))
    return lines


# ---------------------------------------------------------------- 4. resolution

def resolution_table(runs: list[dict], experiments: list[str]) -> pd.DataFrame:
    """Accuracy and cost per input size and head: mean ± sd over seeds, feature throughput."""
    frame = report.runs_frame(report.of_experiments(runs, experiments))
    rows = []
    for (size, head), group in frame.groupby(["image_size", "head"], sort=True):
        acc = seed_summary(group["test_accuracy"])
        rate = group["feature_images_per_second"].dropna()
        rows.append({"input size": int(size), "head": head, "seeds": acc["n"],
                     "mean": acc["mean"], "sd": acc["sd"], "ci_low": acc["ci_low"],
                     "ci_high": acc["ci_high"], "features images/s":
                     float(rate.mean()) if len(rate) else np.nan,
                     "training (s)": float(group["training_seconds"].mean()),
                     "trainable parameters": int(group["trainable"].iloc[0])})
    table = pd.DataFrame(rows)
    if not table.empty:
        table["s per 1,000 images"] = 1000 / table["features images/s"]
    return table


def format_resolution(table: pd.DataFrame):
    shown = table.copy()
    shown.insert(3, "test accuracy", [
        report.accuracy_cell(r["mean"], r["sd"], r["seeds"], r["ci_low"], r["ci_high"])
        if r["seeds"] > 1 else f"{r['mean']:.1%}" for _, r in table.iterrows()])
    shown = shown.drop(columns=["mean", "sd", "ci_low", "ci_high"])
    return shown.style.hide(axis="index").format({
        "features images/s": "{:,.0f}", "training (s)": "{:,.1f}",
        "trainable parameters": "{:,}", "s per 1,000 images": "{:,.1f}"})


# ---------------------------------------------------------------- 5. calibration

def calibration_table(runs: list[dict], experiments: list[str]) -> pd.DataFrame:
    """Per experiment (reference runs): accuracy, mean confidence and ECE over seeds."""
    rows = []
    for name in experiments:
        chosen = reference_runs(runs, name)
        if not chosen:
            continue
        ece = seed_summary([r["metrics"]["test_ece"] for r in chosen])
        conf = np.mean([r["predictions"]["confidence"].mean() for r in chosen])
        acc = np.mean([r["metrics"]["test_accuracy"] for r in chosen])
        rows.append({"experiment": name, "regime": chosen[0]["metrics"]["regime"],
                     "seeds": ece["n"], "accuracy": acc, "mean confidence": conf,
                     "confidence − accuracy": conf - acc, "ECE": ece["mean"], "ECE sd": ece["sd"],
                     "ECE ci_low": ece["ci_low"], "ECE ci_high": ece["ci_high"]})
    return pd.DataFrame(rows)


def format_calibration(table: pd.DataFrame):
    shown = table.copy()
    shown["ECE (95% CI)"] = [
        f"{r['ECE']:.3f} ± {r['ECE sd']:.3f} ({max(r['ECE ci_low'], 0):.3f}–"
        f"{r['ECE ci_high']:.3f})"
        if r["seeds"] > 1 else f"{r['ECE']:.3f}" for _, r in table.iterrows()]
    shown = shown.drop(columns=["ECE", "ECE sd", "ECE ci_low", "ECE ci_high"])
    return shown.style.hide(axis="index").format({
        "accuracy": "{:.1%}", "mean confidence": "{:.1%}", "confidence − accuracy": "{:+.1%}"})


def pooled_reliability(runs: list[dict], experiments: list[str]) -> dict[str, pd.DataFrame]:
    """Reliability bins per experiment, over the predictions of all its reference runs."""
    out = {}
    for name in experiments:
        chosen = reference_runs(runs, name)
        if chosen:
            preds = pd.concat([r["predictions"] for r in chosen])
            out[name] = reliability_bins(preds["confidence"].to_numpy(),
                                         (preds["true"] == preds["predicted"]).to_numpy())
    return out


# ---------------------------------------------------------------- 6. Grad-CAM

def load_gradcam(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "gradcam.npz"
    if not path.is_file():
        return None
    with np.load(path) as saved:
        return {key: saved[key] for key in saved.files}


def centre_share(heatmaps: np.ndarray, margin: int = 8) -> np.ndarray:
    """Share of each heatmap's mass in the central square (16×16 of 32×32 by default).

    A uniform map puts a quarter of its mass there; CIFAR's objects are mostly centred.
    """
    heatmaps = np.asarray(heatmaps, dtype=float)
    total = heatmaps.sum(axis=(1, 2))
    inner = heatmaps[:, margin:-margin, margin:-margin].sum(axis=(1, 2))
    return np.divide(inner, total, out=np.full_like(total, np.nan), where=total > 0)


def gradcam_table(runs: list[dict], experiments: list[str]) -> tuple[pd.DataFrame, dict]:
    """Per experiment, its first reference run's Grad-CAM: the layer, and the centre share of
    the heatmaps of right and wrong predictions. Also returns the loaded heatmaps by name."""
    rows, cams = [], {}
    for name in experiments:
        chosen = reference_runs(runs, name)
        cam = load_gradcam(chosen[0]["dir"]) if chosen else None
        if cam is None:
            continue
        cams[name] = {**cam, "run": chosen[0]}
        share = centre_share(cam["heatmaps"])
        kinds = cam["set"]
        rows.append({"experiment": name, "run": chosen[0]["metrics"]["name"],
                     "layer": str(cam["layer"]), "map": f"{int(cam['side'])}×{int(cam['side'])}",
                     "centre share, right": float(np.nanmean(share[kinds == "right"])),
                     "centre share, wrong": float(np.nanmean(share[kinds == "wrong"])),
                     "centre share, one per class": float(np.nanmean(share[kinds == "fixed"]))})
    return pd.DataFrame(rows), cams


# ---------------------------------------------------------------- 7. claims

def claims_table(runs: list[dict]) -> pd.DataFrame:
    """What the original printed for each regime, what this build measured, and why they
    differ, one line each."""
    rows = []
    for regime, original in ORIGINAL.items():
        rows.append({"the original's regime": regime, "its model": original["model"],
                     "it reported (test)": f"{original['test_accuracy']:.1%}"
                     + (f" (train {original['train_accuracy']:.1%})"
                        if original["train_accuracy"] else ""),
                     "this build measured (test)": _ours(runs, regime),
                     "cause of the difference": _cause(runs, regime)})
    return pd.DataFrame(rows)


def _ours(runs: list[dict], regime: str) -> str:
    names = {"scratch": ["mlp", "scratch", "scratch_bn"], "frozen": ["partial", "frozen"],
             "unfrozen": ["finetune", "two_phase"]}[regime]
    parts = [f"{name}: {cell(summary_of(runs, name))}" for name in names
             if summary_of(runs, name) is not None]
    if regime == "frozen" and summary_of(runs, "partial") is not None:
        train = summary_of(runs, "partial", "final_train_accuracy")
        parts[0] += f", training accuracy in its last epoch {train['mean']:.1%} (dropout on)"
    return "; ".join(parts) or "not run in this build"


def _budget_of(runs: list[dict], name: str) -> str:
    chosen = reference_runs(runs, name)
    if not chosen:
        return ""
    m = chosen[0]["metrics"]
    return f"{m['train_n']:,} images, {report.phrase([r['metrics']['epochs'] for r in chosen], 'epoch')}"


def _cause(runs: list[dict], regime: str) -> str:
    weights = sorted({r["metrics"]["weights_label"] for r in runs
                      if r["metrics"]["weights"] != "none"})
    weights = ", ".join(weights) or "no pretrained weights"
    if regime == "scratch":
        mlp, vgg = summary_of(runs, "mlp"), summary_of(runs, "scratch")
        text = ("the original's number belongs to an MLP, not to VGG16, and was read off a "
                "test set that also served for validation")
        if mlp and vgg:
            text += (f"; on this build's budget VGG16 from random weights reaches "
                     f"{vgg['mean']:.1%} ({_budget_of(runs, 'scratch')}) and an MLP "
                     f"{mlp['mean']:.1%} ({_budget_of(runs, 'mlp')})")
        return text
    if regime == "frozen":
        return (f"the same regime (block 5 trainable, our partial) on a far smaller budget "
                f"({_budget_of(runs, 'partial') or 'see the seeds study'} against 50,000 "
                f"images × 10 epochs) and with {weights} instead of ImageNet weights")
    one = collapse(runs, "finetune")
    if one is None:
        return "not run in this build"
    if one["collapsed"]:
        return (f"ours stayed at chance too (best validation accuracy {one['best_val']:.1%}), "
                "so one-phase fine-tuning at 1e-4 fails here as well")
    return (f"built fresh and recompiled, one-phase fine-tuning learns (best validation "
            f"accuracy {one['best_val']:.1%} in any epoch): the original's collapse came "
            "from its setup, not from fine-tuning")
