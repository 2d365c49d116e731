"""The training loop: Keras `fit`, seeded, one log line per epoch, timed.

The frozen regime can train its head on cached base outputs: the base is frozen and
deterministic, so computing its features once is the same computation as recomputing them
every epoch, at a fraction of the cost.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from vgg_transfer.data import NUM_CLASSES
from vgg_transfer.models import Built, compile_model

_determinism_enabled = False


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow ops deterministic."""
    global _determinism_enabled
    keras.utils.set_random_seed(seed)
    if not _determinism_enabled:
        tf.config.experimental.enable_op_determinism()
        _determinism_enabled = True


def reseed_epoch(model: keras.Model, seed: int, epoch: int) -> None:
    """Seed everything random in one epoch from (seed, epoch) alone.

    A run resumed after epoch k then draws exactly what an uninterrupted run draws in
    epoch k + 1: the global seeds and every layer's dropout seed state are reset here.
    """
    value = seed * 100_003 + epoch
    keras.utils.set_random_seed(value)
    for layer in model._flatten_layers(include_self=False):
        generator = getattr(layer, "seed_generator", None)
        if isinstance(generator, keras.random.SeedGenerator):
            generator.state.assign(np.array([value, 0], dtype=generator.state.dtype))


def save_checkpoint(model: keras.Model, path: Path, epoch: int, history: dict) -> None:
    """Model and optimizer state after `epoch` epochs, written atomically."""
    arrays = {f"m{i}": v.numpy() for i, v in enumerate(model.variables)}
    arrays.update({f"o{i}": v.numpy() for i, v in enumerate(model.optimizer.variables)})
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays, epoch=epoch, history=json.dumps(history))
    os.replace(tmp, path)


def load_checkpoint(model: keras.Model, path: Path) -> tuple[int, dict]:
    """Restore a checkpoint into a freshly built and compiled model.

    Returns:
        (completed epochs, history so far).
    """
    with np.load(path) as saved:
        model.optimizer.build(model.trainable_variables)
        for i, v in enumerate(model.variables):
            v.assign(saved[f"m{i}"])
        for i, v in enumerate(model.optimizer.variables):
            v.assign(saved[f"o{i}"])
        return int(saved["epoch"]), json.loads(str(saved["history"]))


def one_hot(labels: np.ndarray) -> np.ndarray:
    return keras.utils.to_categorical(labels, NUM_CLASSES).astype("float32")


class EpochLog(keras.callbacks.Callback):
    """One line per epoch (no progress bars), with the epoch's wall time."""

    def __init__(self, epochs: int, prefix: str = ""):
        super().__init__()
        self.epochs, self.prefix = epochs, prefix
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        shown = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
        print(f"{self.prefix}epoch {epoch + 1}/{self.epochs}  {shown}  "
              f"({self.seconds[-1]:.1f} s)", flush=True)


@dataclass
class TrainResult:
    history: dict                      # metric -> list per epoch
    epoch_seconds: list[float]
    train_seconds: float               # fit() only
    feature_seconds: float = 0.0       # computing cached features (frozen regime)
    cached: bool = False
    notes: list[str] = field(default_factory=list)


def extract_features(built: Built, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The frozen base's outputs for a set of images (inference mode)."""
    return built.features.predict(images, batch_size=batch_size, verbose=0)


def cached_features(built: Built, images: np.ndarray, batch_size: int,
                    path: Path | None) -> tuple[np.ndarray, bool]:
    """Features from the on-disk cache when `path` holds them, else computed (and stored).

    The caller names the file by a hash of everything that determines the features
    (weights, input size, preprocessing, images), so a stale file is never read.

    Returns:
        (features, hit): hit is True when they came from disk.
    """
    if path is not None and path.is_file():
        features = np.load(path)
        if len(features) == len(images):
            return features, True
    features = extract_features(built, images, batch_size)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, features)
        os.replace(tmp, path)
    return features, False


def train(built: Built, regime: str, x_train: np.ndarray, y_train: np.ndarray,
          x_val: np.ndarray, y_val: np.ndarray, *, epochs: int, batch_size: int,
          learning_rate: float, cache_features: bool = True,
          feature_files: tuple[Path, Path] | None = None, seed: int = 0,
          checkpoint: Path | None = None) -> TrainResult:
    """Compile and fit a freshly built model; validate on the held-out training split.

    Args:
        built: from `models.build_model`.
        regime: scratch | frozen | finetune; only `frozen` may use the feature cache.
        x_*: uint8 or float images (N, 32, 32, 3), 0-255; y_*: integer labels.
        cache_features: frozen regime only: fit the head on precomputed base outputs.
        feature_files: where the (train, val) features live on disk, for reuse across runs.
        seed: seeds each epoch's shuffling and dropout (see `reseed_epoch`).
        checkpoint: a file for the state after each epoch; when it exists, training resumes
            from it, and ends with the same result as an uninterrupted run.
    """
    y_train_1h, y_val_1h = one_hot(y_train), one_hot(y_val)
    log = EpochLog(epochs)
    cached = regime == "frozen" and cache_features
    feature_seconds = 0.0
    if cached:
        start = time.perf_counter()
        files = feature_files or (None, None)
        f_train, hit_train = cached_features(built, x_train, batch_size, files[0])
        f_val, hit_val = cached_features(built, x_val, batch_size, files[1])
        feature_seconds = time.perf_counter() - start
        source = "read from the feature cache" if hit_train and hit_val else "computed"
        print(f"features {source}: {len(f_train)} train + {len(f_val)} val images "
              f"in {feature_seconds:.1f} s", flush=True)
        target, inputs, val_inputs = built.head, f_train, f_val
    else:
        target, inputs, val_inputs = built.model, x_train.astype("float32"), x_val.astype("float32")
    compile_model(target, learning_rate)
    hist, done = {}, 0
    if checkpoint is not None and checkpoint.is_file():
        done, hist = load_checkpoint(target, checkpoint)
        print(f"resuming after epoch {done}/{epochs} from {checkpoint.name}", flush=True)
    start = time.perf_counter()
    for epoch in range(done, epochs):
        # One fit() call per epoch, shuffled by our own seeded order, so that every epoch
        # depends only on (seed, epoch) and the state at its start.
        reseed_epoch(target, seed, epoch)
        order = np.random.default_rng([seed, epoch]).permutation(len(inputs))
        history = target.fit(inputs[order], y_train_1h[order],
                             validation_data=(val_inputs, y_val_1h), initial_epoch=epoch,
                             epochs=epoch + 1, batch_size=batch_size, shuffle=False,
                             callbacks=[log, keras.callbacks.TerminateOnNaN()], verbose=0)
        for name, values in history.history.items():
            hist.setdefault(name, []).extend(float(v) for v in values)
        _check_finite(hist)
        if checkpoint is not None and epoch + 1 < epochs:
            save_checkpoint(target, checkpoint, epoch + 1, hist)
    train_seconds = time.perf_counter() - start
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    # The full model shares the head's layers; compile it so it can be evaluated as a whole.
    compile_model(built.model, learning_rate)
    notes = [f"head trained on cached base features ({source})"] if cached else []
    if done:
        notes.append(f"resumed after epoch {done} from a checkpoint")
    return TrainResult(hist, log.seconds, train_seconds, feature_seconds, cached, notes)


def _check_finite(hist: dict) -> None:
    """Stop with a clear message once a loss or metric stops being a number."""
    for name, values in hist.items():
        if values and not np.isfinite(values[-1]):
            raise FloatingPointError(f"training diverged: {name} became {values[-1]} "
                                     f"in epoch {len(values)}")
