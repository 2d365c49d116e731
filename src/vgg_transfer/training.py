"""The training loop: Keras `fit`, seeded, one log line per epoch, timed.

Regimes with frozen leading blocks (frozen, partial, and two_phase in both phases) can train
the rest on those blocks' cached outputs: frozen convolutions are deterministic, so computing
their outputs once is the same computation as recomputing them every epoch, at a fraction of
the cost.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from vgg_transfer.data import NUM_CLASSES
from vgg_transfer.models import Built, compile_model, freeze_blocks, stem, top

_determinism_enabled = False
# Each run builds fresh models, and TensorFlow warns about every retrace that causes; the
# warning is expected here and would fill the pages' training logs.
tf.get_logger().setLevel("ERROR")


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


@dataclass
class Checkpoint:
    """Where training state is saved, and how often: after an epoch once `seconds` of
    training have passed since the last save (0: after every epoch).

    Saving copies every variable out of TensorFlow, and here that slowed the next epoch by
    up to 80%, so short epochs are not each saved; a killed run loses at most about
    `seconds` plus one epoch.
    """

    path: Path
    seconds: float = 0.0


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


class EpochLog:
    """One line per epoch (no progress bars), with the epoch's wall time."""

    def __init__(self, epochs: int, prefix: str = ""):
        self.epochs, self.prefix = epochs, prefix
        self.seconds: list[float] = []

    def epoch(self, epoch: int, logs: dict, seconds: float) -> None:
        self.seconds.append(seconds)
        shown = " ".join(f"{k} {v:.4f}" for k, v in logs.items())
        print(f"{self.prefix}epoch {epoch + 1}/{self.epochs}  {shown}  ({seconds:.1f} s)",
              flush=True)


def validate(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict:
    """Validation loss and accuracy over all of (x, y), batch by batch with `test_on_batch`.

    Keras's `evaluate`, and `fit(validation_data=...)`, build a tf.data iterator each time;
    here tearing it down stalled about every other epoch for some 9 s, half an epoch.
    """
    totals = {"val_loss": 0.0, "val_accuracy": 0.0}
    for i in range(0, len(x), batch_size):
        logs = model.test_on_batch(x[i:i + batch_size], y[i:i + batch_size], return_dict=True)
        n = len(x[i:i + batch_size])
        totals["val_loss"] += logs["loss"] * n
        totals["val_accuracy"] += logs["accuracy"] * n
    return {name: total / len(x) for name, total in totals.items()}


@dataclass
class TrainResult:
    history: dict                      # metric -> list per epoch
    epoch_seconds: list[float]
    train_seconds: float               # fit() only
    feature_seconds: float = 0.0       # computing the frozen blocks' outputs (0 when read)
    cached: bool = False               # trained on cached outputs of frozen blocks
    notes: list[str] = field(default_factory=list)
    feature_images: int = 0            # images whose features were computed, not read
    feature_rate: float | None = None  # images/s of the frozen blocks when first computed


# ---------------------------------------------------------------- the feature cache

@dataclass
class FeatureCache:
    """Where the outputs of a model's frozen leading blocks are kept between runs.

    A file is named by a hash of everything that determines its contents (the key: weights,
    input size, preprocessing, data files, versions, model code) plus the frozen blocks and
    the exact images, so a stale file is never read. `folder=None` computes without storing.
    """

    folder: Path | None = None
    key: dict = field(default_factory=dict)
    indices: dict = field(default_factory=dict)  # split -> image indices into its source array

    def path(self, split: str, blocks: int) -> Path | None:
        if self.folder is None or split not in self.indices:
            return None
        source = "test" if split == "test" else "train"  # train and val index the train set
        indices = np.asarray(self.indices[split], dtype=np.int64)
        payload = json.dumps({**self.key, "source": source, "blocks": blocks,
                              "indices": hashlib.sha256(indices.tobytes()).hexdigest()},
                             sort_keys=True)
        digest = hashlib.sha256(payload.encode()).hexdigest()[:24]
        return self.folder / f"{split}-b{blocks}-{digest}.npy"


def extract_features(built: Built, images: np.ndarray, batch_size: int,
                     blocks: int = 5) -> np.ndarray:
    """The outputs of blocks 1..`blocks` for a set of images (inference mode)."""
    return stem(built, blocks).predict(images, batch_size=batch_size, verbose=0)


def cached_features(built: Built, images: np.ndarray, batch_size: int, path: Path | None,
                    blocks: int = 5) -> tuple[np.ndarray, bool, float]:
    """Block outputs from the on-disk cache when `path` holds them, else computed (and stored).

    Beside each cache file a small JSON file keeps how long computing it took, so the cost
    of the features stays known when later runs read them.

    Returns:
        (features, hit, images per second when they were computed): hit is True when they
        came from disk.
    """
    timing = path.with_suffix(".json") if path is not None else None
    if path is not None and path.is_file():
        features = np.load(path)
        if len(features) == len(images):
            spent = json.loads(timing.read_text()) if timing.is_file() else {}
            rate = spent["images"] / spent["seconds"] if spent.get("seconds") else np.nan
            return features, True, rate
    start = time.perf_counter()
    features = extract_features(built, images, batch_size, blocks)
    seconds = time.perf_counter() - start
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, features)
        os.replace(tmp, path)
        timing.write_text(json.dumps({"images": len(images), "seconds": seconds}))
    return features, False, len(images) / seconds


@dataclass
class Inputs:
    """What `fit` trains: the model (the whole one, or the part after the frozen blocks) and
    its training and validation inputs, with the cost of computing cached ones."""

    target: keras.Model
    train: np.ndarray
    val: np.ndarray
    blocks: int = 0            # frozen blocks whose outputs are cached (0: none)
    seconds: float = 0.0
    computed: int = 0          # images whose features were computed rather than read
    rate: float | None = None  # images per second when the training features were computed
    note: str = ""


def fit_inputs(built: Built, x_train: np.ndarray, x_val: np.ndarray, batch_size: int,
               cache: FeatureCache | None) -> Inputs:
    """Train on the frozen blocks' cached outputs when allowed (`cache` given and some
    leading blocks frozen), else on the images through the whole model."""
    blocks = built.frozen_blocks if cache is not None and built.base is not None else 0
    if not blocks:
        return Inputs(built.model, x_train.astype("float32"), x_val.astype("float32"))
    start = time.perf_counter()
    f_train, hit_train, rate = cached_features(built, x_train, batch_size,
                                               cache.path("train", blocks), blocks)
    f_val, hit_val, _ = cached_features(built, x_val, batch_size, cache.path("val", blocks),
                                        blocks)
    seconds = time.perf_counter() - start
    computed = (0 if hit_train else len(x_train)) + (0 if hit_val else len(x_val))
    source = "read from the feature cache" if not computed else "computed"
    print(f"outputs of frozen blocks 1-{blocks} {source}: {len(f_train)} train + {len(f_val)} "
          f"val images in {seconds:.1f} s", flush=True)
    what = {5: "the head", 4: "block 5 and the head"}.get(blocks,
                                                          f"blocks {blocks + 1}-5 and the head")
    return Inputs(top(built, blocks), f_train, f_val, blocks, seconds, computed, rate,
                  f"{what} trained on cached outputs of frozen blocks 1-{blocks} ({source})")


def predict(built: Built, images: np.ndarray, batch_size: int,
            cache: FeatureCache | None = None, split: str = "test") -> np.ndarray:
    """Class probabilities for images; through the cached outputs of the frozen blocks when
    the model has some and a cache is given (the same computation, done once)."""
    blocks = built.frozen_blocks if cache is not None and built.base is not None else 0
    if not blocks:
        return built.model.predict(images.astype("float32"), batch_size=batch_size, verbose=0)
    features, _, _ = cached_features(built, images, batch_size, cache.path(split, blocks),
                                     blocks)
    return top(built, blocks).predict(features, batch_size=batch_size, verbose=0)


# ---------------------------------------------------------------- training

def train(built: Built, regime: str, x_train: np.ndarray, y_train: np.ndarray,
          x_val: np.ndarray, y_val: np.ndarray, *, epochs: int, batch_size: int,
          learning_rate: float, cache_features: bool = True, cache: FeatureCache | None = None,
          seed: int = 0, checkpoint: Checkpoint | None = None) -> TrainResult:
    """Compile and fit a freshly built model; validate on the held-out training split.

    Args:
        built: from `models.build_model`.
        regime: any but two_phase (see `train_two_phase`).
        x_*: uint8 or float images (N, 32, 32, 3), 0-255; y_*: integer labels.
        cache_features: regimes with frozen leading blocks (frozen, partial) train the rest
            on those blocks' outputs, computed once instead of in every step.
        cache: where those outputs live on disk, for reuse across runs (None: not stored).
        seed: seeds each epoch's shuffling and dropout (see `reseed_epoch`).
        checkpoint: where and how often to save the state after an epoch; when the file
            exists, training resumes from it, and ends with the same result as an
            uninterrupted run.
    """
    if regime == "two_phase":
        raise ValueError("the two_phase regime trains with train_two_phase()")
    y_train_1h, y_val_1h = one_hot(y_train), one_hot(y_val)
    log = EpochLog(epochs)
    fit = fit_inputs(built, x_train, x_val, batch_size,
                     (cache or FeatureCache()) if cache_features else None)
    compile_model(fit.target, learning_rate)
    hist, done = {}, 0
    if checkpoint is not None and checkpoint.path.is_file():
        done, hist = load_checkpoint(fit.target, checkpoint.path)
        print(f"resuming after epoch {done}/{epochs} from {checkpoint.path.name}", flush=True)
    start = time.perf_counter()
    fit_epochs(fit.target, (fit.train, y_train_1h), (fit.val, y_val_1h), range(done, epochs),
               batch_size, seed, log, hist, checkpoint, last=epochs)
    train_seconds = time.perf_counter() - start
    if checkpoint is not None:
        checkpoint.path.unlink(missing_ok=True)
    # The full model shares the trained layers; compile it so it can be evaluated as a whole.
    compile_model(built.model, learning_rate)
    notes = [fit.note] if fit.blocks else []
    if built.frozen_blocks and not fit.blocks:
        notes.append("frozen blocks computed on the fly in every step "
                     "(augmentation, or the cache switched off)")
    if done:
        notes.append(f"resumed after epoch {done} from a checkpoint")
    return TrainResult(hist, log.seconds, train_seconds, fit.seconds, bool(fit.blocks), notes,
                       fit.computed, fit.rate)


def train_two_phase(built: Built, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                    y_val: np.ndarray, *, epochs: int, head_epochs: int, batch_size: int,
                    learning_rate: float, finetune_learning_rate: float, unfreeze_from: int,
                    patience: int, cache_features: bool = True,
                    cache: FeatureCache | None = None, seed: int = 0,
                    checkpoint: Checkpoint | None = None) -> TrainResult:
    """The Keras guide's recipe: the head first, then the unfrozen base at a low rate.

    Phase 1 trains the head on the frozen base (on cached features when allowed) until the
    validation loss stops falling for `patience` epochs, at most `head_epochs`.
    Phase 2 unfreezes blocks `unfreeze_from`..5, recompiles with `finetune_learning_rate` and
    trains for `epochs` (on the cached outputs of blocks 1..unfreeze_from-1 when allowed).
    Phase 1 is deterministic and cheap, so a resumed run repeats it and restores phase 2 from
    the checkpoint.
    """
    head_log, tune_log = EpochLog(head_epochs, "head "), EpochLog(epochs, "fine-tune ")
    y_train_1h, y_val_1h = one_hot(y_train), one_hot(y_val)
    use_cache = (cache or FeatureCache()) if cache_features else None
    head = fit_inputs(built, x_train, x_val, batch_size, use_cache)
    compile_model(head.target, learning_rate)
    start = time.perf_counter()
    head_hist = fit_epochs(head.target, (head.train, y_train_1h), (head.val, y_val_1h),
                           range(head_epochs), batch_size, seed, head_log, {},
                           patience=patience)
    head_seconds = time.perf_counter() - start

    freeze_blocks(built.base, unfreeze_from - 1)
    built.frozen_blocks = unfreeze_from - 1
    tune = fit_inputs(built, x_train, x_val, batch_size, use_cache)
    compile_model(tune.target, finetune_learning_rate)  # recompile after changing trainable
    hist, done = {}, 0
    if checkpoint is not None and checkpoint.path.is_file():
        done, hist = load_checkpoint(tune.target, checkpoint.path)
        print(f"resuming fine-tuning after epoch {done}/{epochs}", flush=True)
    start = time.perf_counter()
    fit_epochs(tune.target, (tune.train, y_train_1h), (tune.val, y_val_1h), range(done, epochs),
               batch_size, seed + 7919, tune_log, hist, checkpoint, last=epochs)
    if checkpoint is not None:
        checkpoint.path.unlink(missing_ok=True)
    compile_model(built.model, finetune_learning_rate)
    history = {name: head_hist[name] + hist[name] for name in hist}
    history["phase"] = [1] * len(head_hist["loss"]) + [2] * len(hist["loss"])
    notes = [f"phase 1: the head on the frozen base for {len(head_hist['loss'])} epoch(s)"
             f"{' (cached features)' if head.blocks else ''}; phase 2: blocks "
             f"{unfreeze_from}-5 and the head at learning rate {finetune_learning_rate:g} "
             f"for {epochs} epoch(s)"
             f"{f' (on cached outputs of blocks 1-{tune.blocks})' if tune.blocks else ''}"]
    if done:
        notes.append(f"resumed after fine-tuning epoch {done} from a checkpoint")
    return TrainResult(history, head_log.seconds + tune_log.seconds,
                       head_seconds + time.perf_counter() - start,
                       head.seconds + tune.seconds, bool(head.blocks), notes,
                       head.computed + tune.computed, head.rate)


def fit_epochs(target: keras.Model, train_data: tuple, val_data: tuple, epochs: range,
               batch_size: int, seed: int, log: EpochLog, hist: dict,
               checkpoint: Checkpoint | None = None, last: int | None = None,
               patience: int | None = None) -> dict:
    """Fit one epoch at a time, each seeded from (seed, epoch) and shuffled by our own order.

    Every epoch depends only on (seed, epoch) and the state at its start, which is what makes
    a resumed run end like an uninterrupted one. Extends `hist` in place.

    Args:
        last: the final epoch number of the whole run; no checkpoint is written after it.
        patience: stop when the validation loss has not fallen for this many epochs.
    """
    inputs, targets = train_data
    saved = time.perf_counter()
    for epoch in epochs:
        reseed_epoch(target, seed, epoch)
        order = np.random.default_rng([seed, epoch]).permutation(len(inputs))
        start = time.perf_counter()
        history = target.fit(inputs[order], targets[order], initial_epoch=epoch,
                             epochs=epoch + 1, batch_size=batch_size, shuffle=False, verbose=0,
                             callbacks=[keras.callbacks.TerminateOnNaN()])
        logs = {name: float(values[-1]) for name, values in history.history.items()}
        logs.update(validate(target, *val_data, batch_size))
        log.epoch(epoch, logs, time.perf_counter() - start)
        for name, value in logs.items():
            hist.setdefault(name, []).append(value)
        _check_finite(hist)
        if checkpoint is not None and epoch + 1 < (last or epochs.stop) and \
                time.perf_counter() - saved >= checkpoint.seconds:
            save_checkpoint(target, checkpoint.path, epoch + 1, hist)
            saved = time.perf_counter()
        if patience and epoch + 1 < epochs.stop and stalled(hist["val_loss"], patience):
            print(f"validation loss has not fallen for {patience} epochs: moving on", flush=True)
            break
    return hist


def stalled(losses: list[float], patience: int) -> bool:
    """True when none of the last `patience` losses is below the best one before them."""
    return len(losses) > patience and min(losses[-patience:]) >= min(losses[:-patience])


def _check_finite(hist: dict) -> None:
    """Stop with a clear message once a loss or metric stops being a number."""
    for name, values in hist.items():
        if values and not np.isfinite(values[-1]):
            raise FloatingPointError(f"training diverged: {name} became {values[-1]} "
                                     f"in epoch {len(values)}")
