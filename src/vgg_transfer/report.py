"""What the book's pages compute from run folders: tables, notebook parameters, glue.

Pages read artifacts only; none of this trains anything.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vgg_transfer import artifacts
from vgg_transfer.config import PROJECT_ROOT, load_experiments, resolve

REGIME_TEXT = {
    "scratch": "VGG16 architecture trained from random initialisation",
    "frozen": "pretrained VGG16 base frozen; only the head trains",
    "finetune": "pretrained VGG16 base and head all train (one phase)",
    "partial": "pretrained VGG16 base with blocks 1–4 frozen; block 5 and the head train",
    "scratch_bn": "VGG16 layout with batch normalisation, trained from random initialisation",
    "two_phase": "the head on the frozen base first, then the unfrozen base at a low rate",
}


def notebook_config(experiment: str | None, profile: str, experiments_file: str | None,
                    fields: dict):
    """Resolve a template notebook's parameters into a validated config.

    Parameters left as None come from the experiments file; the rest override it.
    The experiment name defaults to the regime's name, so `-p regime finetune` alone works.
    """
    name = experiment or fields.get("regime") or "frozen"
    spec = load_experiments(experiments_file)
    spec.setdefault("experiments", {}).setdefault(name, {})
    overrides = {key: value for key, value in fields.items() if value is not None}
    return resolve(spec, name, profile, overrides)


def default_run_dir(name: str) -> Path:
    return PROJECT_ROOT / "outputs" / "manual" / name


def load_runs(runs_dir: str | Path, names: list[str]) -> list[dict]:
    """Finished runs in the given order; names with no finished run are skipped."""
    runs_dir = Path(runs_dir)
    return [artifacts.load_run(runs_dir / name) for name in names
            if (runs_dir / name / "metrics.json").is_file()]


def comparison_table(runs: list[dict]) -> pd.DataFrame:
    """One row per run: the numbers a reader compares regimes by."""
    rows = []
    for run in runs:
        m = run["metrics"]
        rows.append({
            "experiment": m["name"],
            "regime": m["regime"],
            "weights": m["weights_label"],
            "train images": m["train_n"],
            "epochs": m["epochs"],
            "test_accuracy": m["test_accuracy"],
            "ci_low": m["test_accuracy_ci95"][0],
            "ci_high": m["test_accuracy_ci95"][1],
            "test n": m["test_n"],
            "best val accuracy": m["best_val_accuracy"],
            "trainable parameters": m["params"]["trainable"],
            "training time (s)": run["timings"]["train_seconds"]
            + run["timings"]["feature_seconds"],
            "wall time (s)": run["timings"]["wall_seconds"],
        })
    return pd.DataFrame(rows)


def format_comparison(table: pd.DataFrame):
    """The comparison table as a reader sees it: accuracy with its interval in one cell."""
    shown = table.copy()
    shown.insert(5, "test accuracy (95% CI)", [
        f"{a:.1%} ({lo:.1%}–{hi:.1%})"
        for a, lo, hi in zip(table["test_accuracy"], table["ci_low"], table["ci_high"])])
    shown = shown.drop(columns=["test_accuracy", "ci_low", "ci_high"])
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


PAIR_COLUMNS = ["A", "B", "accuracy A", "accuracy B", "difference (A − B)", "only A right",
                "only B right", "p (McNemar, exact)"]


def pairwise_tests(runs: list[dict]) -> pd.DataFrame:
    """McNemar's exact test for every pair of runs, on their shared test predictions."""
    from vgg_transfer.evaluation import mcnemar_exact

    rows = []
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            pa, pb = a["predictions"], b["predictions"]
            if len(pa) != len(pb) or not (pa["true"].to_numpy() == pb["true"].to_numpy()).all():
                continue  # different test sets cannot be paired
            test = mcnemar_exact(pa["true"] == pa["predicted"], pb["true"] == pb["predicted"])
            ma, mb = a["metrics"], b["metrics"]
            rows.append({"A": ma["name"], "B": mb["name"],
                         "accuracy A": ma["test_accuracy"], "accuracy B": mb["test_accuracy"],
                         "difference (A − B)": ma["test_accuracy"] - mb["test_accuracy"],
                         "only A right": test["a_only"], "only B right": test["b_only"],
                         "p (McNemar, exact)": test["p_value"]})
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def compare_sentence(row: dict, alpha: float = 0.05) -> str:
    """One pairwise comparison as a sentence, with its McNemar p-value."""
    a, b, diff, p = row["A"], row["B"], row["difference (A − B)"], row["p (McNemar, exact)"]
    if p >= alpha:
        return (f"**{a}** ({row['accuracy A']:.1%}) and **{b}** ({row['accuracy B']:.1%}) "
                f"are not distinguishable on these test images (McNemar p = {p:.2g}).")
    winner, loser = (a, b) if diff > 0 else (b, a)
    return (f"**{winner}** beats **{loser}** by {abs(diff) * 100:.1f} points "
            f"({max(row['accuracy A'], row['accuracy B']):.1%} against "
            f"{min(row['accuracy A'], row['accuracy B']):.1%}; McNemar p = {p:.2g}).")


def findings(table: pd.DataFrame, tests: pd.DataFrame) -> str:
    """The comparison's findings as markdown bullets, written from the numbers."""
    lines = []
    ranked = table.sort_values("test_accuracy", ascending=False)
    order = ", then ".join(f"**{r['experiment']}** {r['test_accuracy']:.1%} "
                           f"({r['ci_low']:.1%}–{r['ci_high']:.1%})"
                           for _, r in ranked.iterrows())
    lines.append(f"Ranked by test accuracy: {order}.")
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
    """Classes x experiments: test accuracy per class."""
    return pd.DataFrame({run["metrics"]["name"]: run["metrics"]["per_class_accuracy"]
                         for run in runs})


def cost_table(runs: list[dict]) -> pd.DataFrame:
    """Where each run's time went, and its throughput."""
    rows = []
    for run in runs:
        m, t = run["metrics"], run["timings"]
        rows.append({
            "experiment": m["name"], "regime": m["regime"],
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
    return pd.DataFrame(rows)


def format_cost(table: pd.DataFrame):
    return table.style.hide(axis="index").format({
        "trainable parameters": "{:,}", "features (s)": "{:.1f}", "training (s)": "{:.1f}",
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
             ("cached speed-up per epoch", f"{frozen['cached_speedup_per_epoch']:.1f}×"),
             ("training loop / raw train_on_batch", f"{r['finetune']['loop_vs_raw_ratio']:.3f}")]
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
