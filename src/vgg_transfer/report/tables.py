"""The pages' tables: what a reader sees, built from runs and summaries, and their styling.

A `format_*` function takes a table that `stats` (or this module) computed and returns a
pandas Styler: numbers as percentages or counts, an accuracy with its spread in one cell,
no index.
"""

from __future__ import annotations

import pandas as pd

from vgg_transfer import CLASS_NAMES
from vgg_transfer.record import RunRecord
from vgg_transfer.report.selection import ending, setting
from vgg_transfer.report.words import accuracy_cell, distinct
from vgg_transfer.spec import regimes
from vgg_transfer.spec.profiles import GridRun


def plain(table: pd.DataFrame, formats: dict | None = None, missing: str | None = None):
    """A table without its index, with these column formats (and `missing` for a missing
    value, where given)."""
    return table.style.hide(axis="index").format(formats or {}, na_rep=missing)


# ---------------------------------------------------------------- an experiment's page

def config_table(values: dict) -> pd.DataFrame:
    """Two columns, parameter and value."""
    return pd.DataFrame({"parameter": list(values), "value": [str(v) for v in values.values()]})


def grid_table(points: list[GridRun]) -> pd.DataFrame:
    """One row per point of an experiment's grid: its run name and the values that vary."""
    return pd.DataFrame([{"run": p.name, **p.axes, "reference": p.reference} for p in points])


def runs_table(runs: list[RunRecord]) -> pd.DataFrame:
    """One row per run of an experiment: its grid values and what it measured."""
    return pd.DataFrame([{
        "run": run.name, **run.metrics.axes, "train images": run.metrics.train_n,
        "epochs": run.metrics.epochs, "optimizer steps": run.metrics.steps,
        "images seen": run.metrics.images_seen, "ended on": ending(run),
        "test_accuracy": run.metrics.test_accuracy,
        "ci_low": run.metrics.test_accuracy_ci95[0], "ci_high": run.metrics.test_accuracy_ci95[1],
        "best val accuracy": run.metrics.best_val_accuracy,
        "training time (s)": run.training_seconds, "precision": run.config.precision}
        for run in runs])


def format_runs(table: pd.DataFrame):
    shown = table.copy()
    shown.insert(shown.columns.get_loc("test_accuracy"), "test accuracy (95% CI)", [
        f"{r['test_accuracy']:.1%} ({r['ci_low']:.1%}–{r['ci_high']:.1%})"
        for _, r in table.iterrows()])
    shown = shown.drop(columns=["test_accuracy", "ci_low", "ci_high"])
    return plain(shown, {"train images": "{:,}", "best val accuracy": "{:.1%}",
                         "training time (s)": "{:,.1f}", "optimizer steps": "{:,}",
                         "images seen": "{:,}"})


def run_summary(run: RunRecord) -> pd.DataFrame:
    """One run's test metrics, validation, parameters and time: two columns, metric and value."""
    m = run.metrics
    low, high = m.test_accuracy_ci95
    return pd.DataFrame({"metric": [
        "test accuracy", "95% interval", "test images", "test loss",
        "expected calibration error", "best validation accuracy",
        "trainable / total parameters", "training time", "wall time", "precision"], "value": [
        f"{m.test_accuracy:.2%}", f"{low:.2%} – {high:.2%}", f"{m.test_n:,}",
        f"{m.test_loss:.3f}", f"{m.test_ece:.3f}",
        f"{m.best_val_accuracy:.2%} (epoch {m.best_val_epoch})",
        f"{m.params.trainable:,} / {m.params.total:,}", f"{run.training_seconds:.0f} s",
        f"{run.timings.wall_seconds:.0f} s", run.config.precision]})


# ---------------------------------------------------------------- comparisons

def format_comparison(table: pd.DataFrame):
    """The comparison table (`stats.by_experiment`) as a reader sees it: accuracy with its
    spread and interval in one cell."""
    shown = table.copy()
    shown.insert(shown.columns.get_loc("test_accuracy"), "test accuracy (95% CI)", [
        accuracy_cell(r["test_accuracy"], r["sd"], r["seeds"], r["ci_low"], r["ci_high"])
        for _, r in table.iterrows()])
    shown = shown.drop(columns=["test_accuracy", "sd", "ci_low", "ci_high"])
    return plain(shown, {
        "val accuracy": "{:.1%}", "trainable parameters": "{:,}",
        "training time (s)": "{:,.0f}", "training TFLOPs": "{:,.1f}", "wall time (s)": "{:,.0f}",
        "train images": "{:,}", "test n": "{:,}"})


def format_tests(tests: pd.DataFrame):
    """Paired tests (`stats.pairwise_tests`), each seed's difference and p on its own line."""
    column = "per seed: A − B in points (p)"
    shown = tests.drop(columns=["differences", "paired on"], errors="ignore").rename(
        columns={"p per seed": column})
    shown[column] = [
        "<br>".join(f"{d * 100:+.1f}&nbsp;({p:.2g})" for d, p in zip(ds, ps, strict=False))
        for ds, ps in zip(tests["differences"], tests["p per seed"], strict=False)]
    return plain(shown, {
        "accuracy A": "{:.1%}", "accuracy B": "{:.1%}", "difference (A − B)": "{:+.1%}",
        "largest p (McNemar, exact)": "{:.2g}"})


def format_by_setting(table: pd.DataFrame, axis: str, label: str):
    """Experiments as columns, the axis as rows, "mean ± sd (t interval)" in each cell."""
    cells = table.assign(cell=[
        accuracy_cell(r["mean"], r["sd"], r["n"], r["ci_low"], r["ci_high"])
        if r["n"] > 1 else f"{r['mean']:.1%} (one run)" for _, r in table.iterrows()])
    wide = cells.pivot(index=axis, columns="experiment", values="cell")
    wide = wide[[e for e in dict.fromkeys(table["experiment"]) if e in wide.columns]]
    return plain(wide.rename_axis(label).reset_index())


def per_class_frame(runs: list[RunRecord]) -> pd.DataFrame:
    """Classes x experiments: test accuracy per class, averaged over an experiment's runs."""
    frame = pd.DataFrame({run.name: run.metrics.per_class_accuracy for run in runs})
    return frame.T.groupby([run.experiment for run in runs], sort=False).mean().T


# ---------------------------------------------------------------- studies


# ---------------------------------------------------------------- cost

def _cost_row(run: RunRecord) -> dict:
    m, t = run.metrics, run.timings
    return {
        "setting": setting(run), "regime": m.regime, "runs": 1,
        "trainable parameters": m.params.trainable, "features (s)": t.feature_seconds,
        "training (s)": t.train_seconds, "test (s)": t.test_seconds,
        "other (s)": t.wall_seconds - t.feature_seconds - t.train_seconds - t.test_seconds,
        "wall (s)": t.wall_seconds, "precision": run.config.precision,
        "training images/s": m.train_n * m.epochs / t.train_seconds,
        "test images/s": t.test_images_per_second,
        "peak memory (MB)": run.provenance.peak_rss_mb, "test accuracy": m.test_accuracy,
    }


def cost_table(runs: list[RunRecord]) -> pd.DataFrame:
    """Where the time went, per setting (mean over its seeds), and the throughput."""
    frame = pd.DataFrame([_cost_row(run) for run in runs])
    first = {"regime": "first", "trainable parameters": "first", "runs": "sum",
             "precision": distinct,
             "peak memory (MB)": "max"}
    return frame.groupby("setting", sort=False).agg(
        {col: first.get(col, "mean") for col in frame.columns if col != "setting"}).reset_index()


def format_cost(table: pd.DataFrame):
    return plain(table, {
        "trainable parameters": "{:,}", "features (s)": "{:.1f}", "training (s)": "{:.1f}",
        "runs": "{:,}", "test (s)": "{:.1f}", "other (s)": "{:.1f}", "wall (s)": "{:.0f}",
        "training images/s": "{:,.0f}", "test images/s": "{:,.0f}",
        "peak memory (MB)": "{:,.0f}", "test accuracy": "{:.1%}"})


def _cache_rows(regime: str, timing: dict, cached: str) -> list[tuple[str, str]]:
    return [(f"{regime} on the fly: s/epoch", f"{timing['epoch_seconds_on_the_fly']:.3f}"),
            (f"{regime} on {cached}: s/epoch", f"{timing['epoch_seconds_cached']:.3f}"),
            (f"{'cached' if regime == 'frozen' else regime + ': cached'} speed-up per epoch",
             f"{timing['cached_speedup_per_epoch']:.1f}×")]


def _bench_accuracy_rows(a: dict) -> list[tuple[str, str]]:
    rows = [(f"frozen test accuracy, cached ({a['train_images']:,} images, {a['epochs']} "
             f"epochs, {a['weights']})", f"{a['cached_test_accuracy']:.2%}"),
            ("frozen test accuracy, on the fly (same run)",
             f"{a['on_the_fly_test_accuracy']:.2%}"),
            ("difference (points)", f"{a['difference_points']:+.2f}")]
    if "cached_bf16_test_accuracy" in a:
        rows.append(("frozen test accuracy, cached, mixed_bfloat16 (same run)",
                     f"{a['cached_bf16_test_accuracy']:.2%}"))
    return rows


def backend_rows(backends: dict) -> list[dict]:
    """Per Keras backend and precision (benchmarks/bench.py measures each in its own
    process): VGG16 at 32x32 training and inference images/s, or the error that stopped it.
    A file written before the precisions were measured holds one float32 row per backend."""
    rows = []
    for name, by_policy in backends.items():
        if "name" in by_policy:  # one row, float32
            by_policy = {"float32": by_policy}
        for policy, row in by_policy.items():
            failed = "error" in row
            rows.append({"backend": name, "version": row.get("version", "—"),
                         "precision": policy,
                         "deterministic": "—" if failed else ("yes" if row["deterministic"]
                                                             else "no"),
                         "training images/s": None if failed else row["train_images_per_s"],
                         "inference images/s": None if failed else row["inference_images_per_s"],
                         "note": f"failed: {row['error']}" if failed else ""})
    return rows


def backends_frame(bench: dict):
    """`backend_rows` as a reader sees them."""
    frame = pd.DataFrame(backend_rows(bench.get("backends", {})),
                         columns=["backend", "version", "precision", "deterministic",
                                  "training images/s", "inference images/s", "note"])
    return plain(frame, {"training images/s": "{:,.1f}", "inference images/s": "{:,.1f}"},
                 missing="—")


def precision_frame(bench: dict):
    """Per regime, its training step (as runs train it) in float32 and mixed_bfloat16,
    images/s, and the ratio; None when the benchmark measured no precisions."""
    steps = bench.get("precision")
    if not steps:
        return None
    frame = pd.DataFrame([{"regime": regime, "float32 images/s": row["float32"],
                           "mixed_bfloat16 images/s": row.get("mixed_bfloat16"),
                           "bfloat16 / float32": row.get("ratio")}
                          for regime, row in steps.items()])
    return plain(frame, {"float32 images/s": "{:,.1f}", "mixed_bfloat16 images/s": "{:,.1f}",
                         "bfloat16 / float32": "{:.2f}×"}, missing="not measured")


def parity_frame(bench: dict):
    """The parity run (fine-tuning from block 4, one epoch of 45,000 images) in each
    precision: test accuracy with its interval, validation accuracy, seconds, TFLOPs."""
    run = bench.get("parity") or {}
    rows = [{"precision": policy, "training images": r["train_n"],
             "test accuracy (95% CI)": f"{r['test_accuracy']:.1%} "
                                       f"({r['test_accuracy_ci95'][0]:.1%}–"
                                       f"{r['test_accuracy_ci95'][1]:.1%})",
             "best val accuracy": r["best_val_accuracy"], "training (s)": r["training_seconds"],
             "training TFLOPs": r["training_flops"] / 1e12}
            for policy, r in run.items() if isinstance(r, dict)]
    if not rows:
        return None
    return plain(pd.DataFrame(rows), {"training images": "{:,}", "best val accuracy": "{:.1%}",
                                      "training (s)": "{:,.0f}", "training TFLOPs": "{:,.1f}"})


def _hardware(hardware: dict) -> str:
    gpus = f", {', '.join(hardware['gpus'])}" if hardware["gpus"] else ""
    flags = f" ({', '.join(hardware['cpu_flags'])})" if hardware.get("cpu_flags") else ""
    return f"{hardware['cpu']}{flags}, {hardware['cpu_count']} cores{gpus}"


def bench_frame(bench: dict) -> pd.DataFrame:
    """The benchmark JSON (benchmarks/bench.py) as a two-column table (measure, value)."""
    r = bench["regimes"]
    rows = [(f"{regime}: training images/s (on the fly)", f"{r[regime]['train_images_per_s']:.1f}")
            for regime in r]
    rows += [(f"{regime}: inference images/s", f"{r[regime]['inference_images_per_s']:.1f}")
             for regime in r]
    rows += _cache_rows("frozen", r["frozen"], "cached features")
    if "partial" in r:
        rows += _cache_rows("partial", r["partial"], "cached block-4 outputs")
        if "small_map_speedup" in r["partial"]:
            rows += [("partial on cached outputs, block 5 as Conv2D: s/epoch",
                      f"{r['partial']['epoch_seconds_cached_conv2d']:.3f}"),
                     ("partial on cached outputs: block 5 as matrix products, speed-up",
                      f"{r['partial']['small_map_speedup']:.1f}×")]
    for policy, k in bench.get("keras", {}).items():
        rows += [(f"Keras fit / the training loop (train_on_batch), median s, {policy}",
                  f"{k['fit_vs_loop_ratio']:.2f}×"),
                 (f"Keras predict / batch by batch (predict_on_batch), median s, {policy}",
                  f"{k['predict_vs_loop_ratio']:.2f}×")]
    if "loop_vs_raw_ratio" in r["finetune"]:  # a file from when the loop was Keras fit
        rows.append(("training loop / raw train_on_batch",
                     f"{r['finetune']['loop_vs_raw_ratio']:.3f}"))
    if "bf16" in bench:  # a file written before every regime was measured in both
        rows.append(("mixed_bfloat16 / float32 training", f"{bench['bf16']['speedup']:.2f}×"))
    if "accuracy" in bench:
        rows += _bench_accuracy_rows(bench["accuracy"])
    if "backend" in bench:  # what measured the rows so far
        rows.append(("backend and precision of the rows above",
                     f"{bench['backend']['name']} {bench['backend']['version']}, float32"))
    rows += [("images per measurement", f"{bench['images']:,}"),
             ("peak resident memory (MB)", f"{bench['peak_rss_mb']:,.0f}"),
             ("hardware", _hardware(bench["hardware"]))]
    return pd.DataFrame(rows, columns=["measure", "value"])


# ---------------------------------------------------------------- background and provenance

def class_counts(counts: dict) -> pd.DataFrame:
    """Images per class and split (`CIFAR10.counts()`), as a long frame: class, split, images."""
    return pd.DataFrame({"class": CLASS_NAMES * 2, "split": ["train"] * 10 + ["test"] * 10,
                         "images": counts["train_per_class"] + counts["test_per_class"]})


def regime_parameters(counts_by_regime: dict[str, dict]) -> pd.DataFrame:
    """Per regime: what trains (from the registry) and its parameter counts."""
    table = pd.DataFrame(counts_by_regime).T.rename_axis("regime").reset_index()
    table.insert(1, "what trains", [regimes.describe(r) for r in table["regime"]])
    return table


def provenance_table(runs: list[RunRecord]) -> pd.DataFrame:
    """Per run: its weights, split, seed, wall time, memory and when it finished."""
    rows = []
    for run in runs:
        p = run.provenance
        rows.append({"run": run.name, "weights": p.weights["name"],
                     "weights sha256": (p.weights["sha256"] or "—")[:16],
                     "train / val / test": f"{p.split['train_n']:,} / {p.split['val_n']:,} / "
                                           f"{run.metrics.test_n:,}",
                     "seed": p.split["seed"], "wall time (s)": round(p.wall_seconds),
                     "peak memory (MB)": round(p.peak_rss_mb), "finished": p.finished})
    return pd.DataFrame(rows)


def weights_table(runs: list[RunRecord]) -> pd.DataFrame:
    """Each set of weights the runs started from, once."""
    seen: dict[str, dict] = {}
    for run in runs:
        seen.setdefault(run.provenance.weights["name"], run.provenance.weights)
    return pd.DataFrame(seen.values())


def backends_table(runs: list[RunRecord]) -> pd.DataFrame:
    """Each Keras backend the runs used, once: its version, whether its ops were
    deterministic, and how many runs it computed."""
    rows: dict[tuple, dict] = {}
    for run in runs:
        b = run.provenance.backend
        key = (b["name"], b["version"], b["deterministic"], run.config.precision)
        row = rows.setdefault(key, {"backend": b["name"], "version": b["version"],
                                    "deterministic": "yes" if b["deterministic"] else "no",
                                    "precision": run.config.precision, "runs": 0})
        row["runs"] += 1
    return pd.DataFrame(rows.values(),
                        columns=["backend", "version", "deterministic", "precision", "runs"])


def data_files_table(data: dict) -> pd.DataFrame:
    """The data files a run read and their SHA-256."""
    return pd.DataFrame({"file": list(data["sha256"]), "sha256": list(data["sha256"].values())})


def packages_table(packages: dict) -> pd.DataFrame:
    return pd.DataFrame({"package": list(packages), "version": [str(v) for v in packages.values()]})
