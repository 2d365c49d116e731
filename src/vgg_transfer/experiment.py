"""One experiment, start to finish: data -> fresh model -> training -> test -> run folder."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from vgg_transfer import artifacts
from vgg_transfer.config import ExperimentConfig
from vgg_transfer.data import load_cifar10, split_indices
from vgg_transfer.evaluation import predictions_frame, test_metrics
from vgg_transfer.models import build_model, param_counts
from vgg_transfer.training import set_seed, train


def run(cfg: ExperimentConfig, run_dir: str | Path) -> dict:
    """Train and evaluate one configuration and write its run folder.

    The test set is used once, after training, for the final evaluation; the validation
    split is carved from the training set.

    Returns:
        The metrics dict written to metrics.json.
    """
    run_dir = Path(run_dir)
    wall_start = time.perf_counter()
    timings = {}
    print(f"[{cfg.name}] regime {cfg.regime}, weights {cfg.describe_weights()}", flush=True)

    start = time.perf_counter()
    data = load_cifar10(cfg.data_dir)
    train_idx, val_idx = split_indices(data.y_train, cfg.val_size, cfg.train_size, cfg.seed)
    timings["data_seconds"] = time.perf_counter() - start
    print(f"[{cfg.name}] data: {len(train_idx)} train / {len(val_idx)} validation / "
          f"{len(data.y_test)} test images", flush=True)

    set_seed(cfg.seed)
    start = time.perf_counter()
    built = build_model(cfg.regime, cfg.weights, cfg.image_size)
    timings["build_seconds"] = time.perf_counter() - start
    params = param_counts(built.model)

    result = train(built, cfg.regime,
                   data.x_train[train_idx], data.y_train[train_idx],
                   data.x_train[val_idx], data.y_train[val_idx],
                   epochs=cfg.epochs, batch_size=cfg.batch_size,
                   learning_rate=cfg.learning_rate, cache_features=cfg.cache_features)
    timings.update(train_seconds=result.train_seconds, feature_seconds=result.feature_seconds,
                   epoch_seconds=result.epoch_seconds)

    start = time.perf_counter()
    probs = built.model.predict(data.x_test.astype("float32"), batch_size=cfg.batch_size,
                                verbose=0)
    timings["test_seconds"] = time.perf_counter() - start
    timings["wall_seconds"] = time.perf_counter() - wall_start
    n_train = len(train_idx)
    timings["train_images_per_second"] = (
        n_train * cfg.epochs / result.train_seconds if not result.cached else None)
    timings["test_images_per_second"] = len(data.y_test) / timings["test_seconds"]

    history = pd.DataFrame(result.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    best = int(history["val_accuracy"].idxmax())
    metrics = {
        "status": "ok",
        "name": cfg.name,
        "regime": cfg.regime,
        "weights": cfg.weights,
        "weights_label": cfg.describe_weights(),
        **test_metrics(probs, data.y_test),
        "train_n": n_train,
        "val_n": int(len(val_idx)),
        "epochs": cfg.epochs,
        "final_train_accuracy": float(history["accuracy"].iloc[-1]),
        "final_val_accuracy": float(history["val_accuracy"].iloc[-1]),
        "best_val_accuracy": float(history["val_accuracy"].iloc[best]),
        "best_val_epoch": best + 1,
        "params": params,
        "cached_features": result.cached,
        "notes": result.notes,
        "timings": timings,
    }
    provenance = {
        "data": data.source,
        "split": {"train_n": n_train, "val_n": int(len(val_idx)), "seed": cfg.seed,
                  "train_per_class": np.bincount(data.y_train[train_idx], minlength=10).tolist()},
        "weights": built.weights,
        "packages": artifacts.package_versions(),
        "hardware": artifacts.hardware(),
        "git": artifacts.git_state(),
        "wall_seconds": timings["wall_seconds"],
        "peak_rss_mb": artifacts.peak_rss_mb(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    artifacts.write_json(run_dir / "config.json", cfg.model_dump())
    artifacts.write_csv(run_dir / "history.csv", history)
    artifacts.write_csv(run_dir / "predictions.csv", predictions_frame(probs, data.y_test))
    artifacts.write_json(run_dir / "provenance.json", provenance)
    artifacts.write_json(run_dir / "metrics.json", metrics)  # last: its presence marks success
    print(f"[{cfg.name}] test accuracy {metrics['test_accuracy']:.4f} on "
          f"{metrics['test_n']} images (95% CI {metrics['test_accuracy_ci95'][0]:.3f}–"
          f"{metrics['test_accuracy_ci95'][1]:.3f}); wall {timings['wall_seconds']:.1f} s",
          flush=True)
    return metrics
