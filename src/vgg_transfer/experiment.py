"""One experiment, start to finish: data -> fresh model -> training -> test -> run folder."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vgg_transfer import artifacts, models
from vgg_transfer.config import ExperimentConfig
from vgg_transfer.data import load_cifar10, split_indices
from vgg_transfer.evaluation import predictions_frame, evaluate_predictions
from vgg_transfer.models import build_model, param_counts
from vgg_transfer.training import set_seed, train, train_two_phase


def feature_files(cfg: ExperimentConfig, source: dict, weights: dict, train_idx: np.ndarray,
                  val_idx: np.ndarray, folder: Path) -> tuple[Path, Path]:
    """Cache files for the frozen base's features, named by what determines them.

    The key covers the weights (their hash; random weights by seed), input size and
    preprocessing, the data files and the exact images, and the Keras/TensorFlow versions.
    """
    import keras

    common = {
        "weights": weights.get("sha256") or f"{weights['name']}-seed{cfg.seed}",
        "image_size": cfg.image_size,
        "preprocess": "keras.applications.vgg16.preprocess_input",
        "data": source.get("sha256") or source.get("kind"),
        "keras": keras.__version__,
        "features_code": hashlib.sha256(Path(models.__file__).read_bytes()).hexdigest(),
    }

    def path(split: str, idx: np.ndarray) -> Path:
        payload = json.dumps({**common, "indices": hashlib.sha256(idx.tobytes()).hexdigest()},
                             sort_keys=True)
        return folder / f"{split}-{hashlib.sha256(payload.encode()).hexdigest()[:24]}.npy"

    return path("train", train_idx), path("val", val_idx)


def set_precision(policy: str) -> None:
    """Keras's global dtype policy for the models built next.

    mixed_float16 runs several times slower than float32 on CPUs, so it needs a GPU.
    """
    import keras

    if policy == "mixed_float16" and not artifacts.gpu_names():
        raise ValueError("precision: mixed_float16 needs a GPU (on CPUs it runs several times "
                         "slower); use float32 or mixed_bfloat16")
    keras.mixed_precision.set_global_policy(policy)


def run(cfg: ExperimentConfig, run_dir: str | Path) -> dict:
    """Train and evaluate one configuration and write its run folder.

    The test set is used once, after training, for the final evaluation; the validation
    split is carved from the training set.

    Returns:
        The metrics dict written to metrics.json.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    wall_start = time.perf_counter()
    timings = {}
    print(f"[{cfg.name}] regime {cfg.regime}, weights {cfg.describe_weights()}", flush=True)

    start = time.perf_counter()
    data = load_cifar10(cfg.data_dir)
    train_idx, val_idx = split_indices(data.y_train, cfg.val_size, cfg.train_size, cfg.seed)
    timings["data_seconds"] = time.perf_counter() - start
    print(f"[{cfg.name}] data: {len(train_idx)} train / {len(val_idx)} validation / "
          f"{len(data.y_test)} test images", flush=True)

    set_precision(cfg.precision)
    set_seed(cfg.seed)
    start = time.perf_counter()
    built = build_model(cfg.regime, cfg.weights, cfg.image_size, cfg.head, cfg.augment)
    timings["build_seconds"] = time.perf_counter() - start

    files = feature_files(cfg, data.source, built.weights, train_idx, val_idx,
                          run_dir.parent / ".feature-cache")
    splits = (data.x_train[train_idx], data.y_train[train_idx],
              data.x_train[val_idx], data.y_train[val_idx])
    common = dict(epochs=cfg.epochs, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
                  cache_features=cfg.cache_features and not cfg.augment, feature_files=files,
                  seed=cfg.seed, checkpoint=run_dir / "checkpoint.npz")
    if cfg.regime == "two_phase":
        result = train_two_phase(built, *splits, head_epochs=cfg.head_epochs,
                                 finetune_learning_rate=cfg.finetune_learning_rate,
                                 unfreeze_from=cfg.unfreeze_from, patience=cfg.patience,
                                 **common)
    else:
        result = train(built, cfg.regime, *splits, **common)
    params = param_counts(built.model)  # after training: two_phase unfreezes on the way
    timings.update(train_seconds=result.train_seconds, feature_seconds=result.feature_seconds,
                   epoch_seconds=result.epoch_seconds)

    start = time.perf_counter()
    probs = built.model.predict(data.x_test.astype("float32"), batch_size=cfg.batch_size,
                                verbose=0)
    timings["test_seconds"] = time.perf_counter() - start
    timings["wall_seconds"] = time.perf_counter() - wall_start
    n_train = len(train_idx)
    timings["train_images_per_second"] = (
        n_train * len(result.history["loss"]) / result.train_seconds
        if not result.cached else None)
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
        **evaluate_predictions(probs, data.y_test),
        "train_n": n_train,
        "val_n": int(len(val_idx)),
        "epochs": len(history),
        "final_train_accuracy": float(history["accuracy"].iloc[-1]),
        "final_val_accuracy": float(history["val_accuracy"].iloc[-1]),
        "best_val_accuracy": float(history["val_accuracy"].iloc[best]),
        "best_val_epoch": best + 1,
        "params": params,
        "cached_features": result.cached,
        "notes": result.notes,
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
    artifacts.write_json(run_dir / "timings.json", timings)
    artifacts.write_json(run_dir / "metrics.json", metrics)  # last: its presence marks success
    print(f"[{cfg.name}] test accuracy {metrics['test_accuracy']:.4f} on "
          f"{metrics['test_n']} images (95% CI {metrics['test_accuracy_ci95'][0]:.3f}–"
          f"{metrics['test_accuracy_ci95'][1]:.3f}); wall {timings['wall_seconds']:.1f} s, "
          f"peak memory {provenance['peak_rss_mb']:,.0f} MB", flush=True)
    return metrics
