"""The training loop: Keras `fit`, seeded, one log line per epoch, timed.

The frozen regime can train its head on cached base outputs: the base is frozen and
deterministic, so computing its features once is the same computation as recomputing them
every epoch, at a fraction of the cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

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


def train(built: Built, regime: str, x_train: np.ndarray, y_train: np.ndarray,
          x_val: np.ndarray, y_val: np.ndarray, *, epochs: int, batch_size: int,
          learning_rate: float, cache_features: bool = True) -> TrainResult:
    """Compile and fit a freshly built model; validate on the held-out training split.

    Args:
        built: from `models.build_model`.
        regime: scratch | frozen | finetune; only `frozen` may use the feature cache.
        x_*: uint8 or float images (N, 32, 32, 3), 0-255; y_*: integer labels.
        cache_features: frozen regime only: fit the head on precomputed base outputs.
    """
    y_train_1h, y_val_1h = one_hot(y_train), one_hot(y_val)
    log = EpochLog(epochs)
    cached = regime == "frozen" and cache_features
    feature_seconds = 0.0
    if cached:
        start = time.perf_counter()
        f_train = extract_features(built, x_train, batch_size)
        f_val = extract_features(built, x_val, batch_size)
        feature_seconds = time.perf_counter() - start
        print(f"features cached: {len(f_train)} train + {len(f_val)} val images "
              f"in {feature_seconds:.1f} s", flush=True)
        target, inputs, val_inputs = built.head, f_train, f_val
    else:
        target, inputs, val_inputs = built.model, x_train.astype("float32"), x_val.astype("float32")
    compile_model(target, learning_rate)
    start = time.perf_counter()
    history = target.fit(inputs, y_train_1h, validation_data=(val_inputs, y_val_1h),
                         epochs=epochs, batch_size=batch_size, shuffle=True,
                         callbacks=[log], verbose=0)
    train_seconds = time.perf_counter() - start
    # The full model shares the head's layers; compile it so it can be evaluated as a whole.
    compile_model(built.model, learning_rate)
    notes = ["head trained on cached base features"] if cached else []
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    for name, values in hist.items():
        if not np.all(np.isfinite(values)):
            raise FloatingPointError(f"training diverged: {name} became {values[-1]} "
                                     f"by epoch {len(values)}")
    return TrainResult(hist, log.seconds, train_seconds, feature_seconds, cached, notes)
