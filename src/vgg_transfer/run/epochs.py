"""The epoch loop under every phase: seeding, checkpoints, one log line per epoch, the
validation-plateau rule, and Keras `fit` one epoch at a time."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from vgg_transfer.core.data import NUM_CLASSES
from vgg_transfer.run import backend


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
    tearing it down stalls training (README, "Two stalls").
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
class Budget:
    """A run's training FLOPs budget (`flops_budget`), shared by its phases and charged as
    `run.flops` counts a run: each epoch trains on as many images as the budget still
    affords after that epoch's validation, in whole batches, and the epoch that cannot
    afford all of them is the last. Its images are a prefix of the full epoch's order, so a
    run with a smaller budget is exactly the start of one with a larger."""

    flops: float
    spent: float = 0.0
    per_image: float = 0.0       # this phase: one training image (3x forward of what trains,
    # plus the frozen blocks when they run on the fly)
    per_epoch: float = 0.0       # this phase: the validation pass after each epoch
    exhausted: bool = False
    epochs: int = 0              # epochs charged so far, every phase together

    def charge(self, flops: float) -> None:
        self.spent += flops

    def images(self, n: int, batch_size: int, flops: float | None = None) -> int:
        """Training images the next epoch may use: all `n`, or whole batches of them (under
        a budget of `flops` when given, for a `Points` budget, else the run's)."""
        left = (self.flops if flops is None else flops) - self.spent - self.per_epoch
        if left >= n * self.per_image:
            return n
        return max(0, int(left // (self.per_image * batch_size)) * batch_size)

    def charge_epochs(self, images: list) -> None:
        """Charge epochs already trained (a resumed run's, from its history)."""
        for count in images:
            self.charge(count * self.per_image + self.per_epoch)
            self.epochs += 1

    def plan(self, n: int, batch_size: int, epochs: int) -> list[int]:
        """The training images of each of up to `epochs` epochs of `n` images, as training
        charges them, charged to this ledger: the ones the budget affords, the short one
        last."""
        planned = []
        for _ in range(epochs):
            images = self.images(n, batch_size)
            if not images:
                break
            self.charge_epochs([images])
            planned.append(images)
            if images < n:
                break
        return planned

    def epoch_order(self, order: np.ndarray, batch_size: int) -> np.ndarray:
        """The part of an epoch's order the budget affords (empty: it is spent; an error
        before the run's first epoch, which would leave it untrained)."""
        order = order[:self.images(len(order), batch_size)]
        if not len(order) and not self.epochs:
            raise ValueError(f"flops_budget: {self.flops:.3g} FLOPs do not pay for one batch "
                             f"of {batch_size} and its validation ({self.spent:.3g} FLOPs "
                             "spent before it)")
        if not len(order):
            self.exhausted = True
            print("the FLOPs budget is spent: training stops", flush=True)
        return order

    def spend(self, images: int, total: int, epoch: int) -> bool:
        """Charge an epoch of `images` of `total`; True when it was the budget's last."""
        self.charge_epochs([images])
        if images < total:
            self.exhausted = True
            print(f"the FLOPs budget is spent: epoch {epoch + 1} trained on {images:,} of "
                  f"{total:,} images, and training stops", flush=True)
        return self.exhausted


class Batches(keras.utils.PyDataset):
    """One epoch's batches, in `order`, gathered batch by batch: no shuffled copy of the
    training set (nor the tensor Keras would make of one) is ever held, so a run on cached
    block outputs keeps one copy of them."""

    def __init__(self, inputs: np.ndarray, targets: np.ndarray, order: np.ndarray,
                 batch_size: int):
        super().__init__()
        self.inputs, self.targets, self.order, self.batch_size = (inputs, targets, order,
                                                                  batch_size)

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        return self.inputs[rows], self.targets[rows]

    def release(self) -> None:
        """Drop the arrays once the epoch is fitted. Keras keeps a reference to every
        dataset `fit` was given, past the end of the run; without this, each run of a sweep
        left its training inputs in the kernel."""
        self.inputs = self.targets = self.order = None


@dataclass
class Cut:
    """Where a run pauses inside an epoch for a budget point (`run.points`): what the point
    may read of the run, and the run's state so far."""

    model: keras.Model
    flops: float                 # the point's budget
    images: int                  # images of this epoch trained so far
    epoch: int
    logs: dict                   # this epoch's training logs so far
    hist: dict
    train_data: tuple
    val_data: tuple
    batch_size: int
    seed: int
    epochs: range                # the run's epochs
    plateau: "Plateau | None"
    budget: Budget
    seconds: float               # training seconds so far


def fit_epochs(target: keras.Model, train_data: tuple, val_data: tuple, epochs: range,
               batch_size: int, seed: int, log: EpochLog, hist: dict,
               checkpoint: Checkpoint | None = None, last: int | None = None,
               plateau: Plateau | None = None, budget: Budget | None = None,
               points=None, start: tuple[int, dict] | None = None) -> dict:
    """Fit one epoch at a time, each seeded from (seed, epoch) and shuffled by our own order.

    Every epoch depends only on (seed, epoch) and the state at its start, which is what makes
    a resumed run end like an uninterrupted one. Extends `hist` in place.

    Args:
        last: the final epoch number of the whole run; no checkpoint is written after it.
        plateau: stop once the validation split stops improving (see `Plateau`).
        budget: stop once the training FLOPs budget is spent (see `Budget`).
        points: budget points (`run.points`): the run pauses where each one's `cuts` says
            and hands it a `Cut`; an epoch with a pause is fitted in parts, and its logged
            training loss and accuracy are the parts' means weighted by their images.
        start: (images, logs) to go on from inside the first epoch, which is then not
            reseeded: a branch taken at a `Cut` (its state is the run's at that point).
    """
    inputs, targets = train_data
    saved, elapsed = time.perf_counter(), 0.0
    for epoch in epochs:
        if start is None:
            reseed_epoch(target, seed, epoch)
        order = np.random.default_rng([seed, epoch]).permutation(len(inputs))
        if budget is not None:
            order = budget.epoch_order(order, batch_size)
            if not len(order):
                break
        begin = time.perf_counter()
        done, logs = start or (0, {})
        start = None
        cuts = points.cuts(budget, len(inputs), batch_size, hist, len(order)) if points else []
        for images, flops in [*cuts, (len(order), None)]:
            if images > done:  # the epoch's batches up to the next pause
                part = _fit_part(target, inputs, targets, order[done:images], batch_size,
                                 epoch)
                logs = {name: (logs.get(name, 0.0) * done + value * (images - done)) / images
                        for name, value in part.items()}
                done = images
            if flops is not None:
                points.take(Cut(target, flops, images, epoch, logs, hist, train_data,
                                val_data, batch_size, seed, epochs, plateau, budget,
                                elapsed + time.perf_counter() - begin))
        logs.update(validation_scores(target, *val_data, batch_size))
        log.epoch(epoch, logs, time.perf_counter() - begin)
        elapsed += log.seconds[-1]
        for name, value in logs.items():
            hist.setdefault(name, []).append(value)
        hist.setdefault("images", []).append(len(order))  # trained on in this epoch
        _check_finite(hist)
        stop = plateau is not None and plateau.update(target, hist)
        if budget is not None and budget.spend(len(order), len(inputs), epoch):
            break
        if checkpoint is not None and epoch + 1 < (last or epochs.stop) and not stop and \
                time.perf_counter() - saved >= checkpoint.seconds:
            checkpoint.save(target, epoch + 1, hist, plateau, points)
            saved = time.perf_counter()
        if stop and epoch + 1 < epochs.stop:
            print(f"{plateau.monitor} has not improved for {plateau.patience} epochs "
                  f"(best: epoch {plateau.best_epoch}): stopping this phase", flush=True)
            break
    return hist


def _fit_part(target: keras.Model, inputs: np.ndarray, targets: np.ndarray, order: np.ndarray,
              batch_size: int, epoch: int) -> dict:
    """Fit the batches of `order` as (part of) epoch `epoch`; the part's training logs."""
    batches = Batches(inputs, targets, order, batch_size)
    try:
        history = target.fit(batches, initial_epoch=epoch, epochs=epoch + 1, shuffle=False,
                             verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()])
    finally:
        batches.release()
    return {name: float(values[-1]) for name, values in history.history.items()}


def _check_finite(hist: dict) -> None:
    """Stop with a clear message once a loss or metric stops being a number."""
    for name, values in hist.items():
        if values and not np.isfinite(values[-1]):
            raise FloatingPointError(f"training diverged: {name} became {values[-1]} "
                                     f"in epoch {len(values)}")
