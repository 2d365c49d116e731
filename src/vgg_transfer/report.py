"""What the book's pages compute from run folders: tables, notebook parameters, glue.

Pages read artifacts only; none of this trains anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vgg_transfer import artifacts
from vgg_transfer.config import point_name
from vgg_transfer.evaluation import mcnemar_exact, seed_summary

REGIME_TEXT = {
    "scratch": "VGG16 architecture trained from random initialisation",
    "frozen": "pretrained VGG16 base frozen; only the head trains",
    "finetune": "pretrained VGG16 base and head all train (one phase)",
    "partial": "pretrained VGG16 base with blocks 1–4 frozen; block 5 and the head train",
    "scratch_bn": "VGG16 layout with batch normalisation, trained from random initialisation",
    "two_phase": "the head on the frozen base first, then the unfrozen base at a low rate",
    "mlp": "no convolutional base: the head alone on the pixels, from random initialisation",
}


def load_runs(runs_dir: str | Path, names: list[str]) -> list[dict]:
    """Finished runs in the given order; names with no finished run are skipped."""
    runs_dir = Path(runs_dir)
    return [artifacts.load_run(runs_dir / name) for name in names
            if (runs_dir / name / "metrics.json").is_file()]


def of_experiments(runs: list[dict], experiments: list[str],
                   reference: bool | None = None) -> list[dict]:
    """The runs of some experiments (in that order), optionally only reference points."""
    return [run for name in experiments for run in runs
            if run["metrics"]["experiment"] == name
            and (reference is None or run["metrics"]["reference"] == reference)]


def runs_frame(runs: list[dict]) -> pd.DataFrame:
    """One row per run: what it was (experiment, regime, grid values) and what it measured."""
    rows = []
    for run in runs:
        m, c, t = run["metrics"], run["config"], run["timings"]
        rows.append({
            "name": m["name"], "experiment": m["experiment"], "regime": m["regime"],
            "weights": m["weights_label"], "reference": m["reference"], "seed": c["seed"],
            "train_n": m["train_n"], "image_size": c["image_size"], "head": c["head"],
            "epochs": m["epochs"], "test_accuracy": m["test_accuracy"],
            "ci_low": m["test_accuracy_ci95"][0], "ci_high": m["test_accuracy_ci95"][1],
            "test_n": m["test_n"], "test_ece": m["test_ece"], "test_loss": m["test_loss"],
            "best_val_accuracy": m["best_val_accuracy"],
            "final_train_accuracy": m["final_train_accuracy"],
            "trainable": m["params"]["trainable"],
            "training_seconds": t["train_seconds"] + t["feature_seconds"],
            "wall_seconds": t["wall_seconds"],
            "feature_images_per_second": t.get("feature_images_per_second"),
        })
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame, by: list[str], value: str = "test_accuracy") -> pd.DataFrame:
    """Mean, sd, number of seeds and 95% t interval of `value` per group, in first-seen order."""
    rows = []
    for key, group in frame.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), **seed_summary(group[value])})
    return pd.DataFrame(rows)


def accuracy_cell(mean: float, sd: float, n: int, low: float, high: float) -> str:
    """"41.2% ± 1.3 (38.0–44.4%)" over seeds; "41.2% (38.2–44.3%)" for one run."""
    spread = f" ± {sd * 100:.1f}" if n > 1 else ""
    return f"{mean:.1%}{spread} ({max(low, 0):.1%}–{min(high, 1):.1%})"  # a share: 0 to 1


def comparison_table(runs: list[dict]) -> pd.DataFrame:
    """One row per experiment, over its reference runs (one per seed): the numbers a reader
    compares regimes by. The interval is the t interval over seeds, or the Wilson interval of
    the test set for a single run."""
    frame = runs_frame([r for r in runs if r["metrics"]["reference"]])
    rows = []
    for name, group in frame.groupby("experiment", sort=False):
        summary = seed_summary(group["test_accuracy"])
        single = summary["n"] == 1
        rows.append({
            "experiment": name,
            "regime": group["regime"].iloc[0],
            "weights": group["weights"].iloc[0],
            "train images": int(group["train_n"].iloc[0]),
            "epochs": phrase(group["epochs"], "epoch").removesuffix(" epochs")
            .removesuffix(" epoch"),
            "seeds": summary["n"],
            "test_accuracy": summary["mean"],
            "sd": summary["sd"],
            "ci_low": group["ci_low"].iloc[0] if single else summary["ci_low"],
            "ci_high": group["ci_high"].iloc[0] if single else summary["ci_high"],
            "test n": int(group["test_n"].iloc[0]),
            "best val accuracy": group["best_val_accuracy"].mean(),
            "trainable parameters": int(group["trainable"].iloc[0]),
            "training time (s)": group["training_seconds"].mean(),
            "wall time (s)": group["wall_seconds"].mean(),
        })
    return pd.DataFrame(rows)


def format_comparison(table: pd.DataFrame):
    """The comparison table as a reader sees it: accuracy with its spread and interval in
    one cell."""
    shown = table.copy()
    shown.insert(6, "test accuracy (95% CI)", [
        accuracy_cell(r["test_accuracy"], r["sd"], r["seeds"], r["ci_low"], r["ci_high"])
        for _, r in table.iterrows()])
    shown = shown.drop(columns=["test_accuracy", "sd", "ci_low", "ci_high"])
    return shown.style.hide(axis="index").format({
        "best val accuracy": "{:.1%}", "trainable parameters": "{:,}",
        "training time (s)": "{:,.0f}", "wall time (s)": "{:,.0f}", "train images": "{:,}",
        "test n": "{:,}"})


class Text(str):
    """A string that glues without quotes (`{glue:text}` shows text/plain, a repr otherwise)."""

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))


def phrase(values, unit: str) -> str:
    """Distinct counts as words: [3, 30, 3] -> "3 or 30 epochs", [2500] -> "2,500 images"."""
    counts = sorted({int(v) for v in values})
    words = [f"{n:,}" for n in counts]
    joined = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
    return f"{joined} {unit}{'' if counts == [1] else 's'}"


def glue_text(key: str, text: str) -> None:
    from myst_nb import glue

    glue(key, Text(text), display=False)


PAIR_COLUMNS = ["A", "B", "seeds", "accuracy A", "accuracy B", "difference (A − B)",
                "only A right", "only B right", "largest p (McNemar, exact)", "p per seed",
                "differences"]


def paired_test(runs_a: list[dict], runs_b: list[dict], a: str, b: str) -> dict | None:
    """McNemar's exact test between two groups of runs, seed by seed on the same test images.

    Runs are paired by seed (same data split, same test images); the row holds the mean
    accuracies, the discordant counts summed over seeds, the largest p-value (the claim "A
    beats B in every seed" needs every test) and each seed's p-value and difference.
    Returns None when no seed pairs.
    """
    by_seed = {r["config"]["seed"]: r for r in runs_b}
    pairs = [(r, by_seed[r["config"]["seed"]]) for r in runs_a if r["config"]["seed"] in by_seed]
    tests, diffs, used = [], [], []
    for ra, rb in pairs:
        pa, pb = ra["predictions"], rb["predictions"]
        if len(pa) != len(pb) or not (pa["true"].to_numpy() == pb["true"].to_numpy()).all():
            continue  # different test sets cannot be paired
        tests.append(mcnemar_exact(pa["true"] == pa["predicted"], pb["true"] == pb["predicted"]))
        diffs.append(ra["metrics"]["test_accuracy"] - rb["metrics"]["test_accuracy"])
        used.append((ra, rb))
    if not tests:
        return None
    return {"A": a, "B": b, "seeds": len(tests),
            "accuracy A": float(np.mean([ra["metrics"]["test_accuracy"] for ra, _ in used])),
            "accuracy B": float(np.mean([rb["metrics"]["test_accuracy"] for _, rb in used])),
            "difference (A − B)": float(np.mean(diffs)),
            "only A right": sum(t["a_only"] for t in tests),
            "only B right": sum(t["b_only"] for t in tests),
            "largest p (McNemar, exact)": max(t["p_value"] for t in tests),
            "p per seed": [t["p_value"] for t in tests], "differences": diffs}


def pairwise_tests(runs: list[dict], experiments: list[str] | None = None) -> pd.DataFrame:
    """Seed-paired McNemar tests for every pair of experiments, on their reference runs."""
    names = experiments or list(dict.fromkeys(r["metrics"]["experiment"] for r in runs))
    groups = {name: of_experiments(runs, [name], reference=True) for name in names}
    rows = [paired_test(groups[a], groups[b], a, b)
            for i, a in enumerate(names) for b in names[i + 1:]]
    return pd.DataFrame([row for row in rows if row], columns=PAIR_COLUMNS)


def format_tests(tests: pd.DataFrame):
    shown = tests.drop(columns=["differences"]).copy()
    column = "per seed: A − B in points (p)"
    shown = shown.rename(columns={"p per seed": column})
    shown[column] = [  # one seed per line
        "<br>".join(f"{d * 100:+.1f}&nbsp;({p:.2g})" for d, p in zip(ds, ps))
        for ds, ps in zip(tests["differences"], tests["p per seed"])]
    return shown.style.hide(axis="index").format({
        "accuracy A": "{:.1%}", "accuracy B": "{:.1%}", "difference (A − B)": "{:+.1%}",
        "largest p (McNemar, exact)": "{:.2g}"})


def _p_text(ps: list[float]) -> str:
    if len(ps) == 1:
        return f"McNemar p = {ps[0]:.2g}"
    return f"McNemar p = {', '.join(f'{p:.2g}' for p in ps)} in the {len(ps)} seeds"


def compare_sentence(row: dict, alpha: float = 0.05) -> str:
    """One pairwise comparison as a sentence, with its McNemar p-values.

    "A beats B" is said only when the difference has the same sign and p < alpha in every
    seed; otherwise the sentence counts the seeds significant each way round.
    """
    a, b, diff = row["A"], row["B"], row["difference (A − B)"]
    ps, diffs = list(row["p per seed"]), list(row["differences"])
    if not any(p < alpha for p in ps):
        return (f"**{a}** ({row['accuracy A']:.1%}) and **{b}** ({row['accuracy B']:.1%}) "
                f"are not distinguishable on these test images ({_p_text(ps)}).")
    sign = 1 if row["accuracy A"] >= row["accuracy B"] else -1
    (winner, won), (loser, lost) = [(a, row["accuracy A"]), (b, row["accuracy B"])][::sign]
    ahead = sum(p < alpha and d * sign > 0 for p, d in zip(ps, diffs))
    behind = sum(p < alpha and d * sign < 0 for p, d in zip(ps, diffs))
    acc = f"({won:.1%} against {lost:.1%}{', means over seeds' if len(ps) > 1 else ''})"
    if ahead == len(ps):
        every = " in every seed" if len(ps) > 1 else ""
        return (f"**{winner}** beats **{loser}** by {abs(diff) * 100:.1f} points {acc}"
                f"{every}; {_p_text(ps)}.")
    seeds = "in no seed" if ahead == 0 else f"in only {ahead} of {len(ps)} seeds"
    other = f", and significantly behind in {behind}" if behind else ""
    return (f"**{winner}** is ahead of **{loser}** by {abs(diff) * 100:.1f} points {acc}, but "
            f"significantly so {seeds}{other} ({_p_text(ps)}).")


def findings(table: pd.DataFrame, tests: pd.DataFrame) -> str:
    """The comparison's findings as markdown bullets, written from the numbers."""
    lines = []
    ranked = table.sort_values("test_accuracy", ascending=False)
    order = ", then ".join(f"**{r['experiment']}** "
                           + accuracy_cell(r["test_accuracy"], r["sd"], r["seeds"], r["ci_low"],
                                           r["ci_high"])
                           for _, r in ranked.iterrows())
    seeds = int(table["seeds"].max())
    lines.append(f"Ranked by test accuracy{' (mean ± sd over seeds, 95% t interval)' if seeds > 1 else ''}: {order}.")
    lines += [compare_sentence(row) for row in tests.to_dict("records")]
    near_chance = [r["experiment"] for _, r in table.iterrows() if r["ci_low"] <= 0.10]
    if near_chance:
        lines.append("Not distinguishable from chance (10%): "
                     + ", ".join(f"**{n}**" for n in near_chance) + ".")
    fastest = table.loc[table["training time (s)"].idxmin()]
    slowest = table.loc[table["training time (s)"].idxmax()]
    if fastest["experiment"] != slowest["experiment"]:
        lines.append(f"Training cost: **{fastest['experiment']}** trained in "
                     f"{fastest['training time (s)']:.0f} s, **{slowest['experiment']}** in "
                     f"{slowest['training time (s)']:.0f} s, "
                     f"{slowest['training time (s)'] / max(fastest['training time (s)'], 1e-9):.0f}× "
                     "longer.")
    return "\n".join(f"- {line}" for line in lines)


def per_class_frame(runs: list[dict]) -> pd.DataFrame:
    """Classes x experiments: test accuracy per class, averaged over an experiment's runs."""
    frame = pd.DataFrame({run["metrics"]["name"]: run["metrics"]["per_class_accuracy"]
                          for run in runs})
    experiments = [run["metrics"]["experiment"] for run in runs]
    return frame.T.groupby(experiments, sort=False).mean().T


def setting(run: dict) -> str:
    """A run's name without its seed: the runs of one setting differ only in the seed."""
    axes = {k: v for k, v in run["metrics"]["axes"].items() if k != "seed"}
    return point_name(run["metrics"]["experiment"], axes)


def cost_table(runs: list[dict]) -> pd.DataFrame:
    """Where the time went, per setting (mean over its seeds), and the throughput."""
    rows = []
    for run in runs:
        m, t = run["metrics"], run["timings"]
        rows.append({
            "setting": setting(run), "regime": m["regime"], "runs": 1,
            "trainable parameters": m["params"]["trainable"],
            "features (s)": t["feature_seconds"], "training (s)": t["train_seconds"],
            "test (s)": t["test_seconds"],
            "other (s)": t["wall_seconds"] - t["feature_seconds"] - t["train_seconds"]
            - t["test_seconds"],
            "wall (s)": t["wall_seconds"],
            "training images/s": m["train_n"] * m["epochs"] / t["train_seconds"],
            "test images/s": t["test_images_per_second"],
            "peak memory (MB)": run["provenance"]["peak_rss_mb"],
            "test accuracy": m["test_accuracy"],
        })
    frame = pd.DataFrame(rows)
    first = {"regime": "first", "trainable parameters": "first", "runs": "sum",
             "peak memory (MB)": "max"}
    return frame.groupby("setting", sort=False).agg(
        {col: first.get(col, "mean") for col in frame.columns if col != "setting"}).reset_index()


def format_cost(table: pd.DataFrame):
    return table.style.hide(axis="index").format({
        "trainable parameters": "{:,}", "features (s)": "{:.1f}", "training (s)": "{:.1f}",
        "runs": "{:,}",
        "test (s)": "{:.1f}", "other (s)": "{:.1f}", "wall (s)": "{:.0f}",
        "training images/s": "{:,.0f}", "test images/s": "{:,.0f}",
        "peak memory (MB)": "{:,.0f}", "test accuracy": "{:.1%}"})


def bench_frame(bench: dict) -> pd.DataFrame:
    """The benchmark JSON as a two-column table (measure, value)."""
    r = bench["regimes"]
    rows = [(f"{regime}: training images/s (on the fly)", f"{r[regime]['train_images_per_s']:.1f}")
            for regime in r]
    rows += [(f"{regime}: inference images/s", f"{r[regime]['inference_images_per_s']:.1f}")
             for regime in r]
    frozen = r["frozen"]
    rows += [("frozen on the fly: s/epoch", f"{frozen['epoch_seconds_on_the_fly']:.3f}"),
             ("frozen on cached features: s/epoch", f"{frozen['epoch_seconds_cached']:.3f}"),
             ("cached speed-up per epoch", f"{frozen['cached_speedup_per_epoch']:.1f}×")]
    if "partial" in r:
        partial = r["partial"]
        rows += [("partial on the fly: s/epoch", f"{partial['epoch_seconds_on_the_fly']:.3f}"),
                 ("partial on cached block-4 outputs: s/epoch",
                  f"{partial['epoch_seconds_cached']:.3f}"),
                 ("partial: cached speed-up per epoch",
                  f"{partial['cached_speedup_per_epoch']:.1f}×")]
    rows.append(("training loop / raw train_on_batch", f"{r['finetune']['loop_vs_raw_ratio']:.3f}"))
    if "bf16" in bench:
        rows.append(("mixed_bfloat16 / float32 training", f"{bench['bf16']['speedup']:.2f}×"))
    if "accuracy" in bench:
        a = bench["accuracy"]
        rows += [(f"frozen test accuracy, cached ({a['train_images']:,} images, {a['epochs']} "
                  f"epochs, {a['weights']})", f"{a['cached_test_accuracy']:.2%}"),
                 ("frozen test accuracy, on the fly (same run)",
                  f"{a['on_the_fly_test_accuracy']:.2%}"),
                 ("difference (points)", f"{a['difference_points']:+.2f}")]
        if "cached_bf16_test_accuracy" in a:
            rows.append(("frozen test accuracy, cached, mixed_bfloat16 (same run)",
                         f"{a['cached_bf16_test_accuracy']:.2%}"))
    rows += [("images per measurement", f"{bench['images']:,}"),
             ("peak resident memory (MB)", f"{bench['peak_rss_mb']:,.0f}"),
             ("hardware", f"{bench['hardware']['cpu']}, {bench['hardware']['cpu_count']} cores"
              + (f", {', '.join(bench['hardware']['gpus'])}" if bench["hardware"]["gpus"] else ""))]
    return pd.DataFrame(rows, columns=["measure", "value"])


def config_table(config: dict) -> pd.DataFrame:
    return pd.DataFrame({"parameter": list(config), "value": [str(v) for v in config.values()]})


def grid_table(points: list) -> pd.DataFrame:
    """One row per point of an experiment's grid: its run name and the values that vary."""
    return pd.DataFrame([{"run": p.name, **p.axes, "reference": p.reference} for p in points])


def runs_table(runs: list[dict]) -> pd.DataFrame:
    """One row per run of an experiment: its grid values and what it measured."""
    rows = []
    for run in runs:
        m, t = run["metrics"], run["timings"]
        rows.append({"run": m["name"], **{k: v for k, v in m["axes"].items()},
                     "train images": m["train_n"], "epochs": m["epochs"],
                     "test_accuracy": m["test_accuracy"], "ci_low": m["test_accuracy_ci95"][0],
                     "ci_high": m["test_accuracy_ci95"][1],
                     "best val accuracy": m["best_val_accuracy"],
                     "training time (s)": t["train_seconds"] + t["feature_seconds"]})
    return pd.DataFrame(rows)


def format_runs(table: pd.DataFrame):
    shown = table.copy()
    shown.insert(shown.columns.get_loc("test_accuracy"), "test accuracy (95% CI)", [
        f"{r['test_accuracy']:.1%} ({r['ci_low']:.1%}–{r['ci_high']:.1%})"
        for _, r in table.iterrows()])
    shown = shown.drop(columns=["test_accuracy", "ci_low", "ci_high"])
    return shown.style.hide(axis="index").format({
        "train images": "{:,}", "best val accuracy": "{:.1%}", "training time (s)": "{:,.1f}"})
