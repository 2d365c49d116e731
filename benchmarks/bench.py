"""Benchmarks: ratios measured within one run, printed as a table and written as JSON.

    python benchmarks/bench.py [--images 768] [--no-bf16] [--data-dir DIR] [--out FILE]

Measures, on the same random images and batches:
- the frozen regime trained on the fly (base forward every step) vs on cached features, and
  the partial regime (block 5 and the head) on the fly vs on cached block-4 outputs, and
  there block 5's convolutions (2x2 maps) as Conv2D layers vs as one matrix product each;
- fine-tuning every layer, in each precision: the project's training loop (`train_on_batch`
  batch by batch, `epochs.train_batches`) vs Keras `fit` over the same batches, and
  prediction batch by batch (`features.predict_into`) vs Keras `predict`;
- training and inference images/s for each regime;
- each regime's training step (as the project trains it: on the fly, or on cached block
  outputs) in float32 and in mixed_bfloat16, images/s and their ratio; bfloat16 only where the
  CPU has bf16 units (`spec.precision`), since elsewhere it falls back to slow generic kernels;
- with a CIFAR-10 folder: the frozen regime's test accuracy, cached vs on the fly, and the
  parity run: fine-tuning from block 4, one epoch of 45,000 images, in float32 and in
  mixed_bfloat16 (the same seed), their test accuracies with 95% intervals and McNemar's test;
- peak resident memory of the process;
- every installed Keras backend side by side (TensorFlow, JAX, PyTorch) in both precisions:
  VGG16 at 32x32 trained with Adam (every layer) and inferring, images/s, each backend and
  precision in a process of its own, since Keras fixes its backend when it is imported
  (`--backends` picks them).

The rest runs on the backend this process loaded (KERAS_BACKEND; TensorFlow by default).
Each timing excludes a warm-up (graph tracing, compilation), covers only the work it names,
and is the fastest of three repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import vgg_transfer  # noqa: F401  (sets the oneDNN switch before TensorFlow loads)
from vgg_transfer import files
from vgg_transfer.run import backend, provenance
from vgg_transfer.run.epochs import one_hot, set_seed, train_batches
from vgg_transfer.run.features import predict_into
from vgg_transfer.run.models import build_model, compile_model, stem, top
from vgg_transfer.spec import precision as compute_precision
from vgg_transfer.spec.config import PROJECT_ROOT


def images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 32, 32, 3)).astype("float32"), rng.integers(0, 10, n)


REPEATS = 3  # timed repeats per measurement, after a warm-up


def fastest(work) -> float:
    """Seconds of the fastest of `REPEATS` calls of `work()`: the least time the work took,
    which interference from outside the process can only lengthen."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def loop_epoch_seconds(model, x, y, batch_size: int) -> float:
    """Seconds of the fastest epoch of the project's training loop (`train_on_batch` batch
    by batch) after a first that traces the graph."""
    order = np.arange(len(x))
    train_batches(model, x, y, order, batch_size)
    return fastest(lambda: train_batches(model, x, y, order, batch_size))


def _gathered(x, y, batch_size: int):
    """The batches of (x, y) in order, each gathered when it is due: a `PyDataset`, as the
    loop once handed them to Keras `fit`."""
    import keras

    class Gathered(keras.utils.PyDataset):
        def __len__(self):
            return -(-len(x) // batch_size)

        def __getitem__(self, i):
            rows = np.arange(i * batch_size, min(len(x), (i + 1) * batch_size))
            return x[rows], y[rows]

    return Gathered()


def predict_seconds(model, x, batch_size: int) -> float:
    """Seconds of the fastest prediction over `x` as the project predicts, after a warm-up."""
    predict_into(model, x[:batch_size], batch_size)
    return fastest(lambda: predict_into(model, x, batch_size))


def bench(n: int, batch_size: int, bf16: bool) -> dict:
    x, labels = images(n)
    y = one_hot(labels)
    results = {"images": n, "batch_size": batch_size, "regimes": {}}

    for regime in ("scratch", "frozen", "partial", "finetune"):
        set_seed(0)
        built = build_model(regime, "none")
        compile_model(built.model, 1e-4)
        train_s = loop_epoch_seconds(built.model, x, y, batch_size)
        infer_s = predict_seconds(built.model, x, batch_size)
        row = {"train_images_per_s": n / train_s, "epoch_seconds_on_the_fly": train_s,
               "inference_images_per_s": n / infer_s}
        if built.frozen_blocks:  # the trainable rest on the cached outputs of frozen blocks
            start = time.perf_counter()
            features = stem(built, built.frozen_blocks).predict(x, batch_size=batch_size,
                                                                 verbose=0)
            row["feature_seconds"] = time.perf_counter() - start
            rest = top(built, built.frozen_blocks)
            compile_model(rest, 1e-4)
            cached_s = loop_epoch_seconds(rest, features, y, batch_size)
            row.update(epoch_seconds_cached=cached_s,
                       train_images_per_s_cached=n / cached_s,
                       cached_speedup_per_epoch=train_s / cached_s)
            if regime == "partial":  # the same, with block 5's convolutions left as Conv2D
                plain = top(built, built.frozen_blocks, small_maps=False)
                compile_model(plain, 1e-4)
                conv_s = loop_epoch_seconds(plain, features, y, batch_size)
                row.update(epoch_seconds_cached_conv2d=conv_s, small_map_speedup=conv_s / cached_s)
        results["regimes"][regime] = row
        print(f"{regime}: {json.dumps({k: round(v, 3) for k, v in row.items()})}", flush=True)

    results["precision"] = {}
    for regime in STEP_REGIMES:
        row = {policy: n / training_step_seconds(regime, policy, x, y, batch_size)
               for policy in policies(bf16)}
        if "mixed_bfloat16" in row:
            row["ratio"] = row["mixed_bfloat16"] / row["float32"]
        results["precision"][regime] = row
        print(f"{regime} training step, images/s: {json.dumps(row)}", flush=True)
    results["keras"] = {}
    for policy in policies(bf16):
        row = keras_comparison(policy, x, y, batch_size)
        results["keras"][policy] = row
        print(f"Keras fit and predict vs the loop, {policy}: {json.dumps(row)}", flush=True)
    results["peak_rss_mb"] = provenance.peak_rss_mb()
    results["hardware"] = provenance.hardware()
    results["packages"] = provenance.package_versions()
    results["backend"] = backend.describe()
    return results


STEP_REGIMES = ("scratch", "scratch_bn", "frozen", "partial", "finetune")


def policies(bf16: bool) -> tuple[str, ...]:
    return ("float32", "mixed_bfloat16") if bf16 else ("float32",)


def training_step_seconds(regime: str, policy: str, x, y, batch_size: int) -> float:
    """Seconds of one epoch of a regime's training step as runs train it (the loop), under
    `policy`: the whole network on the images, or (frozen, partial) the layers after the
    frozen blocks on those blocks' cached outputs, computed under the same policy."""
    import keras

    keras.mixed_precision.set_global_policy(policy)
    try:
        set_seed(0)
        built = build_model(regime, "none", augment=regime == "scratch_bn")
        model, inputs = built.model, x
        if built.frozen_blocks:
            inputs = predict_into(stem(built, built.frozen_blocks), x, batch_size)
            model = top(built, built.frozen_blocks)
        compile_model(model, 1e-4)
        return loop_epoch_seconds(model, inputs, y, batch_size)
    finally:
        keras.mixed_precision.set_global_policy("float32")


KERAS_REPEATS = 5  # Keras's stall comes and goes: these timings keep every repeat


def keras_comparison(policy: str, x, y, batch_size: int) -> dict:
    """Fine-tuning every layer under `policy`: the project's loop (`train_on_batch` batch by
    batch) against Keras `fit` over the same batches, and batch-by-batch prediction against
    Keras `predict`, each in `KERAS_REPEATS` alternating repeats after a warm-up: images/s of
    every repeat, and the ratio of the medians (above 1: Keras is slower). Not the fastest
    repeat: `fit` and `predict` stall in some repeats and not in others, and a run pays for
    every one."""
    import keras

    keras.mixed_precision.set_global_policy(policy)
    try:
        set_seed(0)
        model = build_model("finetune", "none").model
        compile_model(model, 1e-4)
        works = {"loop": lambda: train_batches(model, x, y, np.arange(len(x)), batch_size),
                 "keras_fit": lambda: model.fit(_gathered(x, y, batch_size), epochs=1,
                                                verbose=0, shuffle=False),
                 "predict": lambda: predict_into(model, x, batch_size),
                 "keras_predict": lambda: model.predict(x, batch_size=batch_size, verbose=0)}
        seconds = {name: [] for name in works}
        for repeat in range(KERAS_REPEATS + 1):  # the first traces the graphs
            for name, work in works.items():
                start = time.perf_counter()
                work()
                if repeat:
                    seconds[name].append(time.perf_counter() - start)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    row = {f"{name}_images_per_s": [len(x) / s for s in times] for name, times in seconds.items()}
    median = {name: float(np.median(times)) for name, times in seconds.items()}
    row.update(fit_vs_loop_ratio=median["keras_fit"] / median["loop"],
               predict_vs_loop_ratio=median["keras_predict"] / median["predict"])
    return row


def parity(data_dir: str, weights: str, folder: Path, bf16: bool) -> dict:
    """Fine-tuning from block 4 for one epoch of 45,000 images (5,000 validation), the same
    seed and data order, in each precision, through the project's own pipeline (each run's
    record lands in `folder`): test accuracy with its 95% interval, validation accuracy,
    seconds, and McNemar's test between the two on the same test images. A run whose folder
    holds a finished record with the same run key (config, data, weights, schema and run
    code, as the runner keys runs) is read, not trained again."""
    from vgg_transfer.core.metrics import mcnemar_exact
    from vgg_transfer.record import RunRecord
    from vgg_transfer.run import fingerprint, pipeline
    from vgg_transfer.runner.sweep import is_current, run_key
    from vgg_transfer.spec.config import make_config

    out, correct = {}, {}
    for policy in policies(bf16):
        cfg = make_config({"name": f"finetune-from4-{policy}", "regime": "finetune",
                           "unfreeze_from": 4, "weights": weights, "data_dir": data_dir,
                           "epochs": 1, "val_size": 5000, "precision": policy,
                           "save_model": False}, where="parity")
        key = run_key(cfg, fingerprint.code_hash())
        if not is_current(folder / cfg.name, key):
            pipeline.run(cfg, folder / cfg.name)
            (folder / cfg.name / "run_key").write_text(key)
        record = RunRecord.load(folder / cfg.name)
        m, correct[policy] = record.metrics, record.correct
        out[policy] = {"test_accuracy": m.test_accuracy, "test_accuracy_ci95": m.test_accuracy_ci95,
                       "best_val_accuracy": m.best_val_accuracy, "test_n": m.test_n,
                       "train_n": m.train_n, "training_seconds": record.training_seconds,
                       "training_flops": record.training_flops}
    if len(out) == 2:
        low, high = out["float32"]["test_accuracy_ci95"]
        loss = out["float32"]["test_accuracy"] - out["mixed_bfloat16"]["test_accuracy"]
        out.update(loss_points=100 * loss, half_width_points=100 * (high - low) / 2,
                   mcnemar_p=mcnemar_exact(correct["float32"],
                                           correct["mixed_bfloat16"])["p_value"])
        out["bf16_within"] = out["loss_points"] <= out["half_width_points"]
    return out


def backend_speed(n: int, batch_size: int, policy: str = "float32") -> dict:
    """VGG16 at 32x32 (random init, every layer trained, Adam) on the backend this process
    loaded, under `policy`: training and inference images/s, with the backend's name, version
    and determinism."""
    import keras

    keras.mixed_precision.set_global_policy(policy)
    x, labels = images(n)
    y = one_hot(labels)
    set_seed(0)
    built = build_model("finetune", "none")
    compile_model(built.model, 1e-4)
    train_s = loop_epoch_seconds(built.model, x, y, batch_size)
    infer_s = predict_seconds(built.model, x, batch_size)
    return {**backend.describe(), "precision": policy, "train_images_per_s": n / train_s,
            "inference_images_per_s": n / infer_s}


def backend_speeds(names: list[str], n: int, batch_size: int, bf16: bool,
                   timeout: float) -> dict:
    """`backend_speed` for each backend and precision, each in a child process started with
    KERAS_BACKEND set to it: {backend: {policy: row}}. A child that fails or runs past
    `timeout` seconds gets its error instead of numbers."""
    out = {}
    for name in names:
        out[name] = {}
        for policy in policies(bf16):
            args = [sys.executable, __file__, "--one-backend", "--images", str(n),
                    "--batch-size", str(batch_size), "--precision", policy]
            try:
                child = subprocess.run(args, env={**os.environ, backend.ENV: name},
                                       capture_output=True, text=True, check=False,
                                       timeout=timeout)
            except subprocess.TimeoutExpired:
                row = {"name": name, "precision": policy,
                       "error": f"not finished after {timeout:.0f} s"}
            else:
                lines = child.stdout.strip().splitlines()
                if child.returncode == 0 and lines:
                    row = json.loads(lines[-1])
                else:
                    error = (child.stderr.strip().splitlines() or ["no output"])[-1]
                    row = {"name": name, "precision": policy, "error": error[:300]}
            out[name][policy] = row
            print(f"backend {name} {policy}: {json.dumps(row)}", flush=True)
    return out


def accuracy_check(data_dir: str, weights: str, n: int, epochs: int, bf16: bool) -> dict:
    """Test accuracy of the frozen regime trained on cached features vs on the fly
    (and, with `bf16`, cached under mixed_bfloat16).

    Same seed, same images, same epochs: the cache must not change what is learnt.
    """
    import keras

    from vgg_transfer.core.data import load_cifar10, split_indices
    from vgg_transfer.core.metrics import evaluate_predictions
    from vgg_transfer.run.training import one_phase, train

    data = load_cifar10(data_dir)
    train_idx, val_idx = split_indices(data.y_train, 500, n, seed=0)
    out = {"train_images": n, "epochs": epochs, "weights": weights, "test_n": len(data.y_test)}
    variants = [("cached", True, "float32"), ("on_the_fly", False, "float32")]
    if bf16:
        variants.append(("cached_bf16", True, "mixed_bfloat16"))
    for key, cached, policy in variants:
        keras.mixed_precision.set_global_policy(policy)
        set_seed(0)
        built = build_model("frozen", weights)
        result = train(built, one_phase(5, epochs, 1e-4), data.x_train[train_idx],
                       data.y_train[train_idx], data.x_train[val_idx], data.y_train[val_idx],
                       batch_size=128, cache_features=cached, seed=0)
        probs = built.model.predict(data.x_test.astype("float32"), batch_size=256, verbose=0)
        keras.mixed_precision.set_global_policy("float32")
        out[f"{key}_test_accuracy"] = evaluate_predictions(probs, data.y_test)["test_accuracy"]
        out[f"{key}_seconds"] = result.train_seconds + result.feature_seconds
    out["difference_points"] = 100 * (out["cached_test_accuracy"] - out["on_the_fly_test_accuracy"])
    return out


def _row(label: str, value: float, digits: int) -> str:
    """One line of the printed table: the measure, then its value."""
    return f"{label:<52}{value:>12.{digits}f}"


def table(results: dict) -> str:
    r = results["regimes"]
    frozen, partial = r["frozen"], r["partial"]
    lines = [f"{'measure':<52}{'value':>12}",
             "-" * 64,
             *(_row(f"{regime} training, images/s", r[regime]["train_images_per_s"], 1)
               for regime in r),
             *(_row(f"{regime} inference, images/s", r[regime]["inference_images_per_s"], 1)
               for regime in r),
             _row("frozen on the fly, s/epoch", frozen["epoch_seconds_on_the_fly"], 3),
             _row("frozen on cached features, s/epoch", frozen["epoch_seconds_cached"], 3),
             _row("frozen: cached speed-up per epoch (x)", frozen["cached_speedup_per_epoch"], 1),
             _row("frozen: one-off feature extraction, s", frozen["feature_seconds"], 2),
             _row("partial on the fly, s/epoch", partial["epoch_seconds_on_the_fly"], 3),
             _row("partial on cached block-4 outputs, s/epoch", partial["epoch_seconds_cached"],
                  3),
             _row("partial: cached speed-up per epoch (x)", partial["cached_speedup_per_epoch"],
                  1),
             _row("partial cached, block 5 as Conv2D, s/epoch",
                  partial["epoch_seconds_cached_conv2d"], 3),
             _row("partial cached: matrix products vs Conv2D (x)", partial["small_map_speedup"],
                  1)]
    for policy, k in results.get("keras", {}).items():
        lines += [_row(f"Keras fit / the loop, median s, {policy}", k["fit_vs_loop_ratio"], 2),
                  _row(f"Keras predict / batch by batch, median s, {policy}",
                       k["predict_vs_loop_ratio"], 2)]
    lines += precision_lines(results.get("precision", {}), results.get("parity"))
    if "accuracy" in results:
        a = results["accuracy"]
        lines += [_row("frozen test accuracy, cached features", a["cached_test_accuracy"], 4),
                  _row("frozen test accuracy, on the fly", a["on_the_fly_test_accuracy"], 4),
                  _row("difference, points", a["difference_points"], 2)]
        if "cached_bf16_test_accuracy" in a:
            lines.append(f"{'frozen test accuracy, cached, mixed_bfloat16':<52}"
                         f"{a['cached_bf16_test_accuracy']:>12.4f}")
    lines += backend_lines(results.get("backends", {}))
    lines.append(f"{'peak resident memory, MB':<52}{results['peak_rss_mb']:>12.0f}")
    return "\n".join(lines)


def precision_lines(steps: dict, parity_run: dict | None) -> list[str]:
    """Per regime, its training step's images/s in each precision and their ratio; then the
    parity run's test accuracies."""
    lines = []
    for regime, row in steps.items():
        cells = "  ".join(f"{policy} {row[policy]:.1f}" for policy in ("float32", "mixed_bfloat16")
                          if policy in row)
        ratio = f"{row['ratio']:>11.2f}x" if "ratio" in row else ""
        lines.append(f"{regime + ' step, images/s: ' + cells:<52}{ratio:>12}")
    for policy in ("float32", "mixed_bfloat16"):
        if parity_run and policy in parity_run:
            run = parity_run[policy]
            low, high = run["test_accuracy_ci95"]
            lines.append(f"{'parity, ' + policy + ': test accuracy (95% CI)':<52}"
                         f"{run['test_accuracy']:>7.1%} ({low:.1%}-{high:.1%})")
    if parity_run and "loss_points" in parity_run:
        lines.append(f"{'parity: bfloat16 loses, points (half-width)':<52}"
                     f"{parity_run['loss_points']:>+7.2f} ({parity_run['half_width_points']:.2f})")
        lines.append(f"{'parity: McNemar p':<52}{parity_run['mcnemar_p']:>12.3g}")
    return lines


def backend_lines(backends: dict) -> list[str]:
    """Per backend and precision, training and inference images/s, or its error."""
    lines = []
    for name, rows in backends.items():
        for policy, row in rows.items():
            if "error" in row:
                lines.append(f"{name + ' ' + policy + ': failed':<52}{row['error'][:60]}")
                continue
            label = f"{name} {row['version']} {policy}"
            lines.append(f"{label + ' VGG16 train / infer, images/s':<52} "
                         f"{row['train_images_per_s']:>5.1f} / {row['inference_images_per_s']:.1f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=768)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction,
                        default=bool(compute_precision.bf16_units()),
                        help="also time mixed_bfloat16 (default: where the CPU has bf16 units)")
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--backend-timeout", type=float, default=300,
                        help="seconds each backend and precision may take")
    parser.add_argument("--parity", action=argparse.BooleanOptionalAction, default=True,
                        help="with --data-dir: the float32 / bfloat16 fine-tuning run (minutes)")
    parser.add_argument("--out",
                        default=str(PROJECT_ROOT / "outputs" / "benchmarks" / "bench.json"))
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"),
                        help="CIFAR-10 folder for the cached-vs-on-the-fly accuracy check")
    parser.add_argument("--weights", default=os.environ.get("WEIGHTS", "hed-bsds500"))
    parser.add_argument("--check-images", type=int, default=2000)
    parser.add_argument("--check-epochs", type=int, default=3)
    parser.add_argument("--backends", default=",".join(backend.installed()),
                        help="Keras backends to compare, comma-separated (default: every "
                             "installed one; empty: none)")
    parser.add_argument("--one-backend", action="store_true",
                        help="only print this process's backend's speeds as JSON (how "
                             "--backends measures each backend)")
    args = parser.parse_args()
    if args.one_backend:
        print(json.dumps(backend_speed(args.images, args.batch_size, args.precision)))
        return
    print(f"CPU: {provenance.cpu_model()}, flags {provenance.hardware()['cpu_flags']}",
          flush=True)
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    backends = backend_speeds(names, args.images, args.batch_size, args.bf16,
                              args.backend_timeout)  # first, while this process is idle
    results = bench(args.images, args.batch_size, args.bf16)
    if args.data_dir:
        results["accuracy"] = accuracy_check(args.data_dir, args.weights, args.check_images,
                                             args.check_epochs, args.bf16)
        if args.parity:
            results["parity"] = parity(args.data_dir, args.weights,
                                       Path(args.out).parent / "parity", args.bf16)
    results["backends"] = backends
    files.write_json(Path(args.out), results)
    print("\n" + table(results))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
