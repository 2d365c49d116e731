"""The FLOPs budget in one place: what a run's compute costs, counted from the model's layers
(the same config gives the same count on any machine), and the ledger that charges it
(`Budget`, what was spent and what an epoch may still buy; `Meter`, phase by phase).

What is counted: two FLOPs per multiply-add of every Conv2D and Dense layer, at the shapes
the model computes for one image (a 3x3 'same' convolution counts its nine taps at every
output position, however it is executed). Bias adds, activations, pooling, batch
normalisation, dropout and the preprocessing are left out: for VGG16 they are well under 1%
of the total.

What a run is charged (`run_compute`), per phase of training:

- the layers that train: forward and backward, 3x their forward FLOPs, per image seen;
- validation after each epoch: one forward pass of the layers that train per validation image;
- frozen leading blocks trained on the fly: one forward pass per image seen and per
  validation image of every epoch;
- frozen leading blocks trained on cached outputs: one forward pass per training and
  validation image, once per run, whether the outputs were computed now or read from the
  cache another run filled (a cache hit is charged what filling the cache cost, as its
  seconds are: `RunRecord.training_seconds`).

The test set's forward pass is evaluation, not training, and is not charged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np

from vgg_transfer.run.models import Built, block_of

BLOCKS = 5
BACKWARD = 2  # a backward pass costs about twice the forward pass: 3x forward in all


def layer_flops(layer) -> int:
    """Forward FLOPs of one layer for one image (0 for layers that are not counted)."""
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, c_in, c_out = layer.kernel.shape
        positions = math.prod(layer.output.shape[1:-1])
        return 2 * positions * kh * kw * c_in * c_out
    if isinstance(layer, keras.layers.Dense):
        c_in, c_out = layer.kernel.shape
        positions = math.prod(layer.output.shape[1:-1]) if len(layer.output.shape) > 2 else 1
        return 2 * positions * c_in * c_out
    return 0


def forward_per_image(built: Built) -> dict[str, int]:
    """Forward FLOPs for one image of each part: `block1` ... `block5` of the base (none for
    a model without one) and `head`."""
    parts = {}
    if built.base is not None:
        for layer in built.base.layers:
            if block_of(layer):
                key = f"block{block_of(layer)}"
                parts[key] = parts.get(key, 0) + layer_flops(layer)
    parts["head"] = sum(layer_flops(layer) for layer in built.head.layers)
    return parts


def _blocks(per_image: dict, first: int, last: int) -> int:
    return sum(per_image.get(f"block{k}", 0) for k in range(first, last + 1))


def epoch_flops(per_image: dict, frozen: int, cached: int, images: int,
                val_n: int) -> tuple[int, int, int]:
    """(trained, validation, frozen) FLOPs of one epoch on `images` training images, in a
    phase that keeps `frozen` leading blocks frozen, trained on their cached outputs when
    `cached` (whose cost is charged once: `cached_cost`) and on the fly otherwise."""
    forward = _blocks(per_image, frozen + 1, BLOCKS) + per_image["head"]
    on_the_fly = _blocks(per_image, 1, frozen) if frozen and not cached else 0
    return ((1 + BACKWARD) * forward * images, forward * val_n,
            on_the_fly * (images + val_n))


def phase_costs(per_image: dict, frozen: int, cached: int, val_n: int) -> tuple[int, int]:
    """(FLOPs per training image, FLOPs per epoch for validation) of a phase: `epoch_flops`
    split into what grows with the images and what does not."""
    return (sum(epoch_flops(per_image, frozen, cached, 1, 0)),
            sum(epoch_flops(per_image, frozen, cached, 0, val_n)))


def cached_cost(per_image: dict, charged: int, blocks: int, images: int) -> int:
    """What caching blocks `charged`+1..`blocks` for `images` images costs beyond what is
    charged already (0 when the deeper boundary is charged)."""
    return _blocks(per_image, charged + 1, blocks) * images if blocks > charged else 0


def run_compute(per_image: dict, phases: list[dict], train_n: int, val_n: int) -> dict:
    """The FLOPs a run spent training (see the module's docstring), from the per-image
    forward FLOPs and each phase's summary (`frozen_blocks`, `cached_blocks`, and
    `epoch_images`: the training images of each epoch).

    Returns:
        {"trained", "validation", "frozen", "total"} in FLOPs; `before_training`, the cached
        blocks' share (spent before the first epoch); `per_epoch`, each epoch's FLOPs in
        order (all phases); and the per-image forward FLOPs they were counted from.
    """
    trained = validation = frozen = 0
    per_epoch = []
    cached = 0  # the deepest boundary whose outputs the run trained on
    for phase in phases:
        blocks = int(phase["frozen_blocks"])
        on_cache = int(phase["cached_blocks"]) if blocks else 0
        cached = max(cached, on_cache)
        for count in phase["epoch_images"]:
            epoch = epoch_flops(per_image, blocks, on_cache, count, val_n)
            trained, validation, frozen = (trained + epoch[0], validation + epoch[1],
                                           frozen + epoch[2])
            per_epoch.append(sum(epoch))
    before = cached_cost(per_image, 0, cached, train_n + val_n)
    frozen += before
    return {"flops": {"trained": trained, "validation": validation, "frozen": frozen,
                      "total": trained + validation + frozen},
            "before_training": before, "per_epoch": per_epoch,
            "forward_per_image": dict(per_image)}


def planned_range(per_image: dict, phases: list[tuple[int, int, int, int | None]],
                  train_n: int, val_n: int, batch_size: int,
                  budget: float | None = None) -> tuple[float, float]:
    """The least and the most training FLOPs a run can spend, before it runs: its epochs
    charged as `run_compute` counts them, through the run's own ledger (`Budget`:
    under a `budget`, each epoch trains on the whole batches it still affords after its
    validation, and the epoch that cannot afford them all is the last).

    Args:
        per_image: `forward_per_image` of the run's model.
        phases: (frozen blocks, cached blocks, epoch cap, patience or None) per phase; a
            phase with patience may stop after patience + 1 epochs (a plateau needs them).
        train_n, val_n: training and validation images.
        budget: the run's `flops_budget`, if any.
    """
    cached = max((blocks for frozen, blocks, _, _ in phases if frozen), default=0)
    before = cached_cost(per_image, 0, cached, train_n + val_n)
    bounds = []
    for least in (True, False):
        ledger = Budget(math.inf if budget is None else budget, spent=before)
        for frozen, blocks, epochs, patience in phases:
            ledger.per_image, ledger.per_epoch = phase_costs(per_image, frozen,
                                                             blocks if frozen else 0, val_n)
            fewest = min(epochs, patience + 1) if patience else epochs
            ledger.afford_epochs(train_n, batch_size, fewest if least else epochs)
        bounds.append(float(ledger.spent))
    return bounds[0], bounds[1]


# ---------------------------------------------------------------- the ledger

@dataclass
class Budget:
    """A run's training FLOPs budget (`flops_budget`), shared by its phases and charged as
    `run_compute` counts a run: each epoch trains on as many images as the budget still
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
    before: str = ""             # what was charged before the first epoch, in words

    def charge(self, flops: float) -> None:
        self.spent += flops

    def affords(self, n: int, batch_size: int, flops: float | None = None) -> int:
        """Training images the next epoch may use: all `n`, or whole batches of them (under
        a budget of `flops` when given, a budget point's, else the run's)."""
        left = (self.flops if flops is None else flops) - self.spent - self.per_epoch
        if left >= n * self.per_image:
            return n
        return max(0, int(left // (self.per_image * batch_size)) * batch_size)

    def images(self, n: int, batch_size: int, flops: float | None = None) -> int:
        """`affords`, refusing a budget that leaves the run's first epoch no batch: a run
        that would end untrained is an error, not a result."""
        images = self.affords(n, batch_size, flops)
        if not images and not self.epochs:
            what = "flops_budget" if flops is None else "budget_points"
            before = f", on {self.before}" if self.before else ""
            raise ValueError(f"{what}: {self.flops if flops is None else flops:.3g} FLOPs do "
                             f"not pay for one batch of {batch_size} and its validation "
                             f"({self.spent:.3g} FLOPs spent before it{before}); give a "
                             "larger budget or fewer images")
        return images

    def charge_epochs(self, images: list) -> None:
        """Charge epochs already trained (a resumed run's, from its history)."""
        for count in images:
            self.charge(count * self.per_image + self.per_epoch)
            self.epochs += 1

    def afford_epochs(self, n: int, batch_size: int, epochs: int) -> list[int]:
        """The training images of each of up to `epochs` epochs of `n` images, as training
        charges them, charged to this ledger: the ones the budget affords, the short one
        last."""
        planned = []
        for _ in range(epochs):
            images = self.affords(n, batch_size)
            if not images:
                break
            self.charge_epochs([images])
            planned.append(images)
            if images < n:
                break
        return planned

    def epoch_order(self, order: np.ndarray, batch_size: int) -> np.ndarray:
        """The part of an epoch's order the budget affords (empty: it is spent)."""
        order = order[:self.images(len(order), batch_size)]
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


@dataclass
class Meter:
    """A run's FLOPs budget and what its phases cost, phase by phase."""

    per_image: dict
    budget: Budget
    train_n: int
    val_n: int
    cached: int = 0  # the deepest boundary whose outputs are charged already

    def enter(self, frozen: int, blocks: int) -> Budget:
        """Set the costs of a phase that keeps `frozen` blocks frozen and reads `blocks` of
        them from the cache; charge the blocks it newly reads from the cache, once."""
        blocks = blocks if frozen else 0
        images = self.train_n + self.val_n
        self.budget.charge(cached_cost(self.per_image, self.cached, blocks, images))
        if blocks > self.cached:
            self.budget.before = f"caching blocks 1-{blocks} of {images:,} images"
        self.cached = max(self.cached, blocks)
        self.budget.per_image, self.budget.per_epoch = phase_costs(
            self.per_image, frozen, blocks, self.val_n)
        return self.budget

    def note(self) -> str:
        ended = ("the budget ended training" if self.budget.exhausted
                 else "the epoch budget ended training first")
        return (f"trained to a budget of {self.budget.flops:.3g} FLOPs "
                f"({self.budget.spent:.3g} spent; {ended})")
