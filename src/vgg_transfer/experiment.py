"""One run, start to finish: data -> fresh model -> training -> test -> Grad-CAM -> run folder."""

from __future__ import annotations

import gc
import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vgg_transfer import artifacts, models
from vgg_transfer.config import ExperimentConfig
from vgg_transfer.data import load_cifar10, split_indices
from vgg_transfer.evaluation import SAMPLES, evaluate_predictions, pick_examples, predictions_frame
from vgg_transfer.explain import fixed_examples, gradcam
from vgg_transfer.models import build_model, param_counts
from vgg_transfer.training import (Checkpoint, FeatureCache, predict, set_seed, train,
                                   train_two_phase)


def feature_cache(cfg: ExperimentConfig, source: dict, weights: dict, indices: dict,
                  folder: Path) -> FeatureCache:
    """The cache of frozen blocks' outputs for one run, keyed by what determines them: the
    weights (their hash; random weights by seed), input size and preprocessing, the data
    files, the Keras version and the model code."""
    import keras

    key = {
        "weights": weights.get("sha256") or f"{weights['name']}-seed{cfg.seed}",
        "image_size": cfg.image_size,
        "preprocess": "keras.applications.vgg16.preprocess_input",
        "data": source.get("sha256") or source.get("kind"),
        "keras": keras.__version__,
        "features_code": hashlib.sha256(Path(models.__file__).read_bytes()).hexdigest(),
    }
    return FeatureCache(folder, key, indices)


def set_precision(policy: str) -> None:
    """Keras's global dtype policy for the models built next.

    mixed_float16 runs several times slower than float32 on CPUs, so it needs a GPU.
    """
    import keras

    if policy == "mixed_float16" and not artifacts.gpu_names():
        raise ValueError("precision: mixed_float16 needs a GPU (on CPUs it runs several times "
                         "slower); use float32 or mixed_bfloat16")
    keras.mixed_precision.set_global_policy(policy)


def run(cfg: ExperimentConfig, run_dir: str | Path, experiment: str | None = None,
        axes: dict | None = None, reference: bool = True) -> dict:
    """Train and evaluate one configuration and write its run folder.

    The test set is used once, after training, for the final evaluation; the validation
    split is carved from the training set.

    Args:
        experiment, axes, reference: where the run sits in its experiment's grid (see
            `config.Point`); recorded in metrics.json so pages can group runs.

    Returns:
        The metrics dict written to metrics.json.
    """
    import keras

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.backend.clear_session()  # a sweep runs many models in one process
    gc.collect()
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

    use_cache = cfg.cache_features and not cfg.augment
    cache = feature_cache(cfg, data.source, built.weights,
                          {"train": train_idx, "val": val_idx,
                           "test": np.arange(len(data.y_test))},
                          run_dir.parent / ".feature-cache")
    splits = (data.x_train[train_idx], data.y_train[train_idx],
              data.x_train[val_idx], data.y_train[val_idx])
    common = dict(epochs=cfg.epochs, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
                  cache_features=use_cache, cache=cache, seed=cfg.seed,
                  checkpoint=Checkpoint(run_dir / "checkpoint.npz", cfg.checkpoint_seconds))
    if cfg.regime == "two_phase":
        result = train_two_phase(built, *splits, head_epochs=cfg.head_epochs,
                                 finetune_learning_rate=cfg.finetune_learning_rate,
                                 unfreeze_from=cfg.unfreeze_from, patience=cfg.patience,
                                 **common)
    else:
        result = train(built, cfg.regime, *splits, **common)
    params = param_counts(built.model)  # after training: two_phase unfreezes on the way
    timings.update(train_seconds=result.train_seconds, feature_seconds=result.feature_seconds,
                   feature_images=result.feature_images, epoch_seconds=result.epoch_seconds)

    start = time.perf_counter()
    probs = predict(built, data.x_test, cfg.batch_size, cache if use_cache else None)
    timings["test_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    cams = explain_run(built, data.x_test, data.y_test, probs, cfg.seed)
    timings["gradcam_seconds"] = time.perf_counter() - start
    timings["wall_seconds"] = time.perf_counter() - wall_start
    n_train = len(train_idx)
    timings["train_images_per_second"] = (
        n_train * len(result.history["loss"]) / result.train_seconds
        if not result.cached else None)
    # measured when the features were first computed, by this run or an earlier one
    timings["feature_images_per_second"] = (
        float(result.feature_rate) if result.feature_rate and np.isfinite(result.feature_rate)
        else None)
    timings["test_images_per_second"] = len(data.y_test) / timings["test_seconds"]

    history = pd.DataFrame(result.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    best = int(history["val_accuracy"].idxmax())
    metrics = {
        "status": "ok",
        "name": cfg.name,
        "experiment": experiment or cfg.name,
        "axes": axes or {},
        "reference": reference,
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
    if cams is not None:
        artifacts.write_npz(run_dir / "gradcam.npz", **cams)
    artifacts.write_json(run_dir / "provenance.json", provenance)
    artifacts.write_json(run_dir / "timings.json", timings)
    artifacts.write_json(run_dir / "metrics.json", metrics)  # last: its presence marks success
    print(f"[{cfg.name}] test accuracy {metrics['test_accuracy']:.4f} on "
          f"{metrics['test_n']} images (95% CI {metrics['test_accuracy_ci95'][0]:.3f}–"
          f"{metrics['test_accuracy_ci95'][1]:.3f}); wall {timings['wall_seconds']:.1f} s, "
          f"peak memory {provenance['peak_rss_mb']:,.0f} MB", flush=True)
    return metrics


def explain_run(built, images: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                seed: int) -> dict | None:
    """Grad-CAM of the model's predicted class for two sets of test images: one per class
    (the same for every run) and the run's sample predictions (8 right, 8 wrong)."""
    if built.base is None:
        return None
    predicted = probs.argmax(axis=1)
    right, wrong = pick_examples(labels, predicted, SAMPLES, seed)
    indices = np.concatenate([fixed_examples(labels), right, wrong])
    cams = gradcam(built, images[indices], predicted[indices])
    return {"indices": indices, "heatmaps": cams["heatmaps"].astype("float16"),
            "predicted": predicted[indices], "layer": np.array(cams["layer"]),
            "side": np.array(cams["side"]),
            "set": np.array(["fixed"] * (len(indices) - len(right) - len(wrong))
                            + ["right"] * len(right) + ["wrong"] * len(wrong))}
