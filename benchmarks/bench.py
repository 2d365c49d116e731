"""Benchmarks: ratios measured within one run, printed as a table and written as JSON.

    python benchmarks/bench.py [--images 768] [--bf16] [--out outputs/benchmarks/bench.json]

Measures, on the same random images and batches:
- the frozen regime trained on the fly (base forward every step) vs on cached features;
- the project's training loop (`training.train`, i.e. Keras `fit`) vs raw `train_on_batch`;
- training and inference images/s for each regime;
- optionally mixed_bfloat16 against float32 for a full training step;
- peak resident memory of the process.

Each timing excludes a warm-up (graph tracing) and covers only the work it names.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import vgg_transfer  # noqa: F401  (sets the oneDNN switch before TensorFlow loads)
from vgg_transfer import artifacts
from vgg_transfer.config import PROJECT_ROOT
from vgg_transfer.models import build_model, compile_model
from vgg_transfer.training import extract_features, one_hot, set_seed


def images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 32, 32, 3)).astype("float32"), rng.integers(0, 10, n)


def fit_epoch_seconds(model, x, y, batch_size: int) -> float:
    """Seconds of the second of two `fit` epochs (the first traces the graph)."""
    model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0, shuffle=False)
    start = time.perf_counter()
    model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0, shuffle=False)
    return time.perf_counter() - start


def raw_epoch_seconds(model, x, y, batch_size: int) -> float:
    """Seconds of one epoch of bare `train_on_batch` calls over the same batches."""
    model.train_on_batch(x[:batch_size], y[:batch_size])
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        model.train_on_batch(x[i:i + batch_size], y[i:i + batch_size])
    return time.perf_counter() - start


def predict_seconds(model, x, batch_size: int) -> float:
    model.predict(x[:batch_size], batch_size=batch_size, verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=batch_size, verbose=0)
    return time.perf_counter() - start


def bench(n: int, batch_size: int, bf16: bool) -> dict:
    x, labels = images(n)
    y = one_hot(labels)
    results = {"images": n, "batch_size": batch_size, "regimes": {}}

    for regime in ("scratch", "frozen", "finetune"):
        set_seed(0)
        built = build_model(regime, "none")
        compile_model(built.model, 1e-4)
        train_s = fit_epoch_seconds(built.model, x, y, batch_size)
        infer_s = predict_seconds(built.model, x, batch_size)
        row = {"train_images_per_s": n / train_s, "epoch_seconds_on_the_fly": train_s,
               "inference_images_per_s": n / infer_s}
        if regime == "frozen":
            start = time.perf_counter()
            features = extract_features(built, x, batch_size)
            row["feature_seconds"] = time.perf_counter() - start
            compile_model(built.head, 1e-4)
            cached_s = fit_epoch_seconds(built.head, features, y, batch_size)
            row.update(epoch_seconds_cached=cached_s,
                       train_images_per_s_cached=n / cached_s,
                       cached_speedup_per_epoch=train_s / cached_s)
        if regime == "finetune":
            raw_s = raw_epoch_seconds(built.model, x, y, batch_size)
            row.update(raw_train_on_batch_images_per_s=n / raw_s,
                       loop_vs_raw_ratio=raw_s / train_s)
        results["regimes"][regime] = row
        print(f"{regime}: {json.dumps({k: round(v, 3) for k, v in row.items()})}", flush=True)

    if bf16:
        import keras

        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        set_seed(0)
        built = build_model("finetune", "none")
        compile_model(built.model, 1e-4)
        bf16_s = fit_epoch_seconds(built.model, x, y, batch_size)
        keras.mixed_precision.set_global_policy("float32")
        fp32 = results["regimes"]["finetune"]["train_images_per_s"]
        results["bf16"] = {"train_images_per_s": n / bf16_s,
                           "float32_train_images_per_s": fp32,
                           "speedup": (n / bf16_s) / fp32}
    results["peak_rss_mb"] = artifacts.peak_rss_mb()
    results["hardware"] = artifacts.hardware()
    results["packages"] = artifacts.package_versions()
    return results


def table(results: dict) -> str:
    r = results["regimes"]
    lines = [f"{'measure':<52}{'value':>12}",
             "-" * 64,
             *(f"{regime + ' training, images/s':<52}{r[regime]['train_images_per_s']:>12.1f}"
               for regime in r),
             *(f"{regime + ' inference, images/s':<52}{r[regime]['inference_images_per_s']:>12.1f}"
               for regime in r),
             f"{'frozen on the fly, s/epoch':<52}{r['frozen']['epoch_seconds_on_the_fly']:>12.3f}",
             f"{'frozen on cached features, s/epoch':<52}{r['frozen']['epoch_seconds_cached']:>12.3f}",
             f"{'frozen: cached speed-up per epoch (x)':<52}{r['frozen']['cached_speedup_per_epoch']:>12.1f}",
             f"{'frozen: one-off feature extraction, s':<52}{r['frozen']['feature_seconds']:>12.2f}",
             f"{'training loop / raw train_on_batch (throughput)':<52}"
             f"{r['finetune']['loop_vs_raw_ratio']:>12.3f}"]
    if "bf16" in results:
        lines.append(f"{'mixed_bfloat16 / float32 training (x)':<52}{results['bf16']['speedup']:>12.2f}")
    lines.append(f"{'peak resident memory, MB':<52}{results['peak_rss_mb']:>12.0f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=768)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--bf16", action="store_true", help="also time mixed_bfloat16")
    parser.add_argument("--out", default=str(PROJECT_ROOT / "outputs" / "benchmarks" / "bench.json"))
    args = parser.parse_args()
    results = bench(args.images, args.batch_size, args.bf16)
    artifacts.write_json(Path(args.out), results)
    print("\n" + table(results))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
