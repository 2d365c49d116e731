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


def head_features(built: Built, x_train: np.ndarray, x_val: np.ndarray, batch_size: int,
                  feature_files: tuple[Path, Path] | None) -> tuple:
    """The frozen base's outputs for the training and validation images, cached on disk.

    Returns:
        (train features, val features, seconds, "computed" or "read from the feature cache").
    """
    start = time.perf_counter()
    files = feature_files or (None, None)
    f_train, hit_train = cached_features(built, x_train, batch_size, files[0])
    f_val, hit_val = cached_features(built, x_val, batch_size, files[1])
    seconds = time.perf_counter() - start
    source = "read from the feature cache" if hit_train and hit_val else "computed"
    print(f"features {source}: {len(f_train)} train + {len(f_val)} val images "
          f"in {seconds:.1f} s", flush=True)
    return f_train, f_val, seconds, source


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
        regime: any but two_phase (see `train_two_phase`); only `frozen` uses the cache.
        x_*: uint8 or float images (N, 32, 32, 3), 0-255; y_*: integer labels.
        cache_features: frozen regime only: fit the head on precomputed base outputs.
        feature_files: where the (train, val) features live on disk, for reuse across runs.
        seed: seeds each epoch's shuffling and dropout (see `reseed_epoch`).
        checkpoint: a file for the state after each epoch; when it exists, training resumes
            from it, and ends with the same result as an uninterrupted run.
    """
    if regime == "two_phase":
        raise ValueError("the two_phase regime trains with train_two_phase()")
    y_train_1h, y_val_1h = one_hot(y_train), one_hot(y_val)
    log = EpochLog(epochs)
    cached = regime == "frozen" and cache_features
    feature_seconds = 0.0
    if cached:
        f_train, f_val, feature_seconds, source = head_features(built, x_train, x_val,
                                                                batch_size, feature_files)
        target, inputs, val_inputs = built.head, f_train, f_val
    else:
        target, inputs, val_inputs = built.model, x_train.astype("float32"), x_val.astype("float32")
    compile_model(target, learning_rate)
    hist, done = {}, 0
    if checkpoint is not None and checkpoint.is_file():
        done, hist = load_checkpoint(target, checkpoint)
        print(f"resuming after epoch {done}/{epochs} from {checkpoint.name}", flush=True)
    start = time.perf_counter()
    fit_epochs(target, (inputs, y_train_1h), (val_inputs, y_val_1h), range(done, epochs),
               batch_size, seed, log, hist, checkpoint, last=epochs)
    train_seconds = time.perf_counter() - start
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    # The full model shares the head's layers; compile it so it can be evaluated as a whole.
    compile_model(built.model, learning_rate)
    notes = [f"head trained on cached base features ({source})"] if cached else []
    if regime == "frozen" and not cached:
        notes.append("base features computed on the fly in every step "
                     "(augmentation, or the cache switched off)")
    if done:
        notes.append(f"resumed after epoch {done} from a checkpoint")
    return TrainResult(hist, log.seconds, train_seconds, feature_seconds, cached, notes)


def unfreeze(base: keras.Model, from_block: int) -> None:
    """Make blocks `from_block`..5 of a VGG16 base trainable, the earlier ones frozen."""
    base.trainable = True
    for layer in base.layers:
        block = int(layer.name[5]) if layer.name.startswith("block") else 0
        layer.trainable = block >= from_block


def train_two_phase(built: Built, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                    y_val: np.ndarray, *, epochs: int, head_epochs: int, batch_size: int,
                    learning_rate: float, finetune_learning_rate: float, unfreeze_from: int,
                    patience: int, cache_features: bool = True,
                    feature_files: tuple[Path, Path] | None = None, seed: int = 0,
                    checkpoint: Path | None = None) -> TrainResult:
    """The Keras guide's recipe: the head first, then the unfrozen base at a low rate.

    Phase 1 trains the head on the frozen base (on cached features when allowed) until
    validation accuracy stops improving for `patience` epochs, at most `head_epochs`.
    Phase 2 unfreezes blocks `unfreeze_from`..5, recompiles with `finetune_learning_rate` and
    trains the whole model for `epochs`. Phase 1 is deterministic and cheap, so a resumed run
    repeats it and restores phase 2 from the checkpoint.
    """
    head_log, tune_log = EpochLog(head_epochs, "head "), EpochLog(epochs, "fine-tune ")
    y_train_1h, y_val_1h = one_hot(y_train), one_hot(y_val)
    feature_seconds = 0.0
    if cache_features:
        f_train, f_val, feature_seconds, _ = head_features(built, x_train, x_val, batch_size,
                                                           feature_files)
        target, inputs, val_inputs = built.head, f_train, f_val
    else:
        target, inputs, val_inputs = built.model, x_train.astype("float32"), x_val.astype("float32")
    compile_model(target, learning_rate)
    start = time.perf_counter()
    head_hist = fit_epochs(target, (inputs, y_train_1h), (val_inputs, y_val_1h),
                           range(head_epochs), batch_size, seed, head_log, {},
                           patience=patience)
    head_seconds = time.perf_counter() - start

    unfreeze(built.base, unfreeze_from)
    compile_model(built.model, finetune_learning_rate)  # recompile after changing trainable
    hist, done = {}, 0
    if checkpoint is not None and checkpoint.is_file():
        done, hist = load_checkpoint(built.model, checkpoint)
        print(f"resuming fine-tuning after epoch {done}/{epochs}", flush=True)
    start = time.perf_counter()
    fit_epochs(built.model, (x_train.astype("float32"), y_train_1h),
               (x_val.astype("float32"), y_val_1h), range(done, epochs), batch_size,
               seed + 7919, tune_log, hist, checkpoint, last=epochs)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    history = {name: head_hist[name] + hist[name] for name in hist}
    history["phase"] = [1] * len(head_hist["loss"]) + [2] * len(hist["loss"])
    notes = [f"phase 1: head on the frozen base for {len(head_hist['loss'])} epoch(s)"
             f"{' (cached features)' if cache_features else ''}; phase 2: blocks "
             f"{unfreeze_from}-5 and the head at learning rate {finetune_learning_rate:g} "
             f"for {epochs} epoch(s)"]
    if done:
        notes.append(f"resumed after fine-tuning epoch {done} from a checkpoint")
    return TrainResult(history, head_log.seconds + tune_log.seconds,
                       head_seconds + time.perf_counter() - start, feature_seconds,
                       cache_features, notes)


def fit_epochs(target: keras.Model, train_data: tuple, val_data: tuple, epochs: range,
               batch_size: int, seed: int, log: EpochLog, hist: dict,
               checkpoint: Path | None = None, last: int | None = None,
               patience: int | None = None) -> dict:
    """Fit one epoch at a time, each seeded from (seed, epoch) and shuffled by our own order.

    Every epoch depends only on (seed, epoch) and the state at its start, which is what makes
    a resumed run end like an uninterrupted one. Extends `hist` in place.

    Args:
        last: the final epoch number of the whole run; no checkpoint is written after it.
        patience: stop when validation accuracy has not improved for this many epochs.
    """
    inputs, targets = train_data
    for epoch in epochs:
        reseed_epoch(target, seed, epoch)
        order = np.random.default_rng([seed, epoch]).permutation(len(inputs))
        history = target.fit(inputs[order], targets[order], validation_data=val_data,
                             initial_epoch=epoch, epochs=epoch + 1, batch_size=batch_size,
                             shuffle=False, verbose=0,
                             callbacks=[log, keras.callbacks.TerminateOnNaN()])
        for name, values in history.history.items():
            hist.setdefault(name, []).extend(float(v) for v in values)
        _check_finite(hist)
        if checkpoint is not None and epoch + 1 < (last or epochs.stop):
            save_checkpoint(target, checkpoint, epoch + 1, hist)
        if patience and epoch + 1 < epochs.stop and len(hist["val_accuracy"]) > patience and \
                max(hist["val_accuracy"][-patience:]) <= max(hist["val_accuracy"][:-patience]):
            print(f"validation accuracy has not improved for {patience} epochs: "
                  "moving on", flush=True)
            break
    return hist


def _check_finite(hist: dict) -> None:
    """Stop with a clear message once a loss or metric stops being a number."""
    for name, values in hist.items():
        if values and not np.isfinite(values[-1]):
            raise FloatingPointError(f"training diverged: {name} became {values[-1]} "
                                     f"in epoch {len(values)}")
