"""The epoch loop under every phase: seeding, checkpoints, one log line per epoch, the
validation-plateau rule, and each epoch trained batch by batch with `train_on_batch`."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import keras
import numpy as np

from vgg_transfer.core.data import NUM_CLASSES
from vgg_transfer.run import backend

if TYPE_CHECKING:
    from vgg_transfer.run.flops import Budget


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the backend, and make the backend's ops deterministic."""
    backend.seed(seed)


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

    Saving copies every variable out of the backend, which slows the next epoch, so short
    epochs are not each saved; a killed run loses at most about `seconds` plus one epoch.
    """

    path: Path
    seconds: float = 0.0
    earlier: list = field(default_factory=list)  # histories of the phases already finished
    saved_at: float = 0.0        # perf_counter() of the last save

    def save(self, model: keras.Model, epoch: int, history: dict,
             plateau: "Plateau | None" = None, points=None) -> None:
        """Model and optimizer state after `epoch` epochs of the current phase, atomically
        (with the best epoch's weights when early stopping will restore them, and the
        budget points scored so far)."""
        arrays = {f"m{i}": v.numpy() for i, v in enumerate(model.variables)}
        arrays.update({f"o{i}": v.numpy() for i, v in enumerate(model.optimizer.variables)})
        if plateau is not None and plateau.weights is not None:
            arrays.update({f"b{i}": w for i, w in enumerate(plateau.weights)})
        if points is not None and points.taken:
            arrays["points"] = json.dumps(points.taken)
            arrays.update({f"p{i}": p for i, p in enumerate(points.probabilities)})
        tmp = self.path.with_name(f".{self.path.name}.tmp.npz")
        np.savez(tmp, **arrays, epoch=epoch, history=json.dumps([*self.earlier, history]))
        os.replace(tmp, self.path)
        self.saved_at = time.perf_counter()


def load_checkpoint(model: keras.Model, path: Path) -> tuple[int, list, list | None]:
    """Restore a checkpoint into a freshly built and compiled model.

    Returns:
        (completed epochs of the phase it was saved in, every phase's history so far, the
        best epoch's weights when the checkpoint kept them).
    """
    with np.load(path) as saved:
        model.optimizer.build(model.trainable_variables)
        for i, v in enumerate(model.variables):
            v.assign(saved[f"m{i}"])
        for i, v in enumerate(model.optimizer.variables):
            v.assign(saved[f"o{i}"])
        best = sorted(k for k in saved.files if k.startswith("b"))
        weights = [saved[f"b{i}"] for i in range(len(best))] or None
        return int(saved["epoch"]), json.loads(str(saved["history"])), weights


def steps(epoch_images: list[int], batch_size: int) -> int:
    """Optimizer steps of epochs that trained on `epoch_images` images (a last batch may be
    short)."""
    return sum(-(-n // batch_size) for n in epoch_images)


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


def validation_scores(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict:
    """Validation loss and accuracy over all of (x, y), batch by batch with `test_on_batch`.

    Keras's `evaluate`, and `fit(validation_data=...)`, build a tf.data iterator each time;
    tearing it down stalls training (README, "Three stalls").
    """
    totals = {"val_loss": 0.0, "val_accuracy": 0.0}
    for i in range(0, len(x), batch_size):
        logs = model.test_on_batch(x[i:i + batch_size], y[i:i + batch_size], return_dict=True)
        n = len(x[i:i + batch_size])
        totals["val_loss"] += logs["loss"] * n
        totals["val_accuracy"] += logs["accuracy"] * n
    return {name: total / len(x) for name, total in totals.items()}


@dataclass
class Plateau:
    """Early stopping on the validation split: the best epoch so far by `monitor`, its
    weights (when `restore` asks for them), and whether the phase has stalled."""

    patience: int
    monitor: str = "val_loss"
    restore: bool = False
    best: float | None = None
    best_epoch: int = 0          # 1-based within the phase
    weights: list | None = None

    def better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.monitor == "val_loss" else value > self.best

    def update(self, model: keras.Model, hist: dict) -> bool:
        """Take the epoch just logged into account; True once the phase has stalled."""
        value = hist[self.monitor][-1]
        if self.better(value):
            self.best, self.best_epoch = value, len(hist[self.monitor])
            if self.restore:
                self.weights = [w.copy() for w in model.get_weights()]
        return len(hist[self.monitor]) - self.best_epoch >= self.patience

    def replay(self, hist: dict, weights: list | None) -> None:
        """The state after the epochs in `hist` (a resumed phase), with the best weights a
        checkpoint kept."""
        values = hist.get(self.monitor, [])
        for i, value in enumerate(values, 1):
            if self.better(value):
                self.best, self.best_epoch = value, i
        self.weights = weights

    def ending(self, epochs_run: int, last: dict | None = None) -> list | None:
        """The weights a phase of `epochs_run` epochs ends with when they are not the
        model's own: the best epoch's, when asked to restore them and it was not the last
        (`last`: the scores of a last epoch not yet taken into account)."""
        if not self.restore or self.weights is None:
            return None
        if last is not None:
            return None if self.better(last[self.monitor]) else self.weights
        return None if self.best_epoch == epochs_run else self.weights

    def finish(self, model: keras.Model, epochs_run: int) -> int | None:
        """Restore the best epoch's weights when asked and it was not the last; returns the
        restored epoch (None when nothing was restored)."""
        weights = self.ending(epochs_run)
        if weights is None:
            return None
        model.set_weights(weights)
        return self.best_epoch


@dataclass
class Loop:
    """What the epochs of one phase share: how each is seeded, logged, cut short, saved and
    stopped. `fit_epochs` extends `hist` in place."""

    epochs: range                # the phase's epochs (from the one to resume in)
    batch_size: int
    seed: int
    log: EpochLog
    hist: dict
    checkpoint: Checkpoint | None = None
    last: int | None = None      # the whole run's final epoch: no checkpoint after it
    plateau: Plateau | None = None   # stop once validation stops improving
    budget: Budget | None = None     # stop once the training FLOPs budget is spent
    points: Pauses | None = None     # budget points, called where the run pauses for them


class Pauses(Protocol):
    """Budget points (`run.points`), as the loop calls them: `cuts` says where in the epoch
    about to start the run pauses (images into it, the point's budget); `take` is handed the
    run's state there."""

    def cuts(self, budget: Budget, n: int, batch_size: int, hist: dict,
             length: int) -> list[tuple[int, float]]: ...

    def take(self, cut: Cut) -> None: ...


@dataclass
class Cut:
    """Where a run pauses inside an epoch for a budget point: what the point may read of the
    run, and the run's state so far."""

    model: keras.Model
    flops: float                 # the point's budget
    images: int                  # images of this epoch trained so far
    epoch: int
    logs: dict                   # this epoch's training logs so far
    loop: Loop
    train_data: tuple
    val_data: tuple
    seconds: float               # training seconds so far


def fit_epochs(target: keras.Model, train_data: tuple, val_data: tuple, loop: Loop,
               start: tuple[int, dict] | None = None) -> dict:
    """Fit one epoch at a time, each seeded from (seed, epoch) and shuffled by our own order.

    Every epoch depends only on (seed, epoch) and the state at its start, which is what makes
    a resumed run end like an uninterrupted one.

    Args:
        start: (images, logs) to go on from inside the first epoch, which is then not
            reseeded: a branch taken at a `Cut` (its state is the run's at that point).
    """
    elapsed = 0.0
    if loop.checkpoint is not None:
        loop.checkpoint.saved_at = time.perf_counter()
    for epoch in loop.epochs:
        if start is None:
            reseed_epoch(target, loop.seed, epoch)
        order = np.random.default_rng([loop.seed, epoch]).permutation(len(train_data[0]))
        if loop.budget is not None:
            order = loop.budget.epoch_order(order, loop.batch_size)
            if not len(order):
                break
        begin = time.perf_counter()
        logs = _fit_epoch(target, train_data, val_data, order, epoch, loop, start or (0, {}),
                          (elapsed, begin))
        start = None
        logs.update(validation_scores(target, *val_data, loop.batch_size))
        loop.log.epoch(epoch, logs, time.perf_counter() - begin)
        elapsed += loop.log.seconds[-1]
        if _end_epoch(target, loop, epoch, logs, len(order), len(train_data[0])):
            break
    return loop.hist


def _fit_epoch(target: keras.Model, train_data: tuple, val_data: tuple, order: np.ndarray,
               epoch: int, loop: Loop, start: tuple[int, dict],
               clock: tuple[float, float]) -> dict:
    """Fit the epoch's batches of `order` from `start`, in parts where budget points pause
    it; the training logs are the parts' means weighted by their images. `clock`: training
    seconds before this epoch, and when it began."""
    done, logs = start[0], dict(start[1])
    cuts = (loop.points.cuts(loop.budget, len(train_data[0]), loop.batch_size, loop.hist,
                             len(order)) if loop.points else [])
    for images, flops in [*cuts, (len(order), None)]:
        if images > done:  # the epoch's batches up to the next pause
            part = train_batches(target, *train_data, order[done:images], loop.batch_size)
            logs = {name: (logs.get(name, 0.0) * done + value * (images - done)) / images
                    for name, value in part.items()}
            done = images
        if flops is not None:
            loop.points.take(Cut(target, flops, images, epoch, logs, loop, train_data,
                                 val_data, clock[0] + time.perf_counter() - clock[1]))
    return logs


def _end_epoch(target: keras.Model, loop: Loop, epoch: int, logs: dict, images: int,
               total: int) -> bool:
    """Record the epoch, then decide: True when training stops (a plateau, the budget);
    saves a checkpoint when one is due."""
    for name, value in logs.items():
        loop.hist.setdefault(name, []).append(value)
    loop.hist.setdefault("images", []).append(images)  # trained on in this epoch
    _check_finite(loop.hist)
    plateau = loop.plateau
    stop = plateau is not None and plateau.update(target, loop.hist)
    if loop.budget is not None and loop.budget.spend(images, total, epoch):
        return True
    checkpoint = loop.checkpoint
    if checkpoint is not None and epoch + 1 < (loop.last or loop.epochs.stop) and not stop \
            and time.perf_counter() - checkpoint.saved_at >= checkpoint.seconds:
        checkpoint.save(target, epoch + 1, loop.hist, plateau, loop.points)
    if stop and epoch + 1 < loop.epochs.stop:
        print(f"{plateau.monitor} has not improved for {plateau.patience} epochs "
              f"(best: epoch {plateau.best_epoch}): stopping this phase", flush=True)
        return True
    return False


def train_batches(target: keras.Model, inputs: np.ndarray, targets: np.ndarray,
                  order: np.ndarray, batch_size: int) -> dict:
    """Train on the batches of `order`, each gathered when it is due (no shuffled copy of
    the training set is ever held), one `train_on_batch` call each; the part's training
    logs, each the mean over its images. A loss that stops being a number ends the part
    there, its logs those of the batch that diverged.

    Keras's `fit` would feed the same batches through a tf.data pipeline, which made each
    step of VGG16 about a third slower here (README, "Three stalls"); the steps themselves,
    and so the weights, are the same (tests/test_memory.py).
    """
    totals: dict[str, float] = {}
    for i in range(0, len(order), batch_size):
        rows = order[i:i + batch_size]
        logs = target.train_on_batch(inputs[rows], targets[rows], return_dict=True)
        if not math.isfinite(logs["loss"]):
            return {name: float(value) for name, value in logs.items()}
        for name, value in logs.items():
            totals[name] = totals.get(name, 0.0) + float(value) * len(rows)
    return {name: total / len(order) for name, total in totals.items()}


def _check_finite(hist: dict) -> None:
    """Stop with a clear message once a loss or metric stops being a number."""
    for name, values in hist.items():
        if values and not np.isfinite(values[-1]):
            raise FloatingPointError(f"training diverged: {name} became {values[-1]} "
                                     f"in epoch {len(values)}")
