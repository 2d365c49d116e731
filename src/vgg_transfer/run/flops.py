"""Compute in FLOPs, counted from a model's layers: the same config gives the same count on
any machine.

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

import keras

from vgg_transfer.run.epochs import Budget
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
    charged as `run_compute` counts them, through the run's own ledger (`epochs.Budget`:
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
            ledger.plan(train_n, batch_size, fewest if least else epochs)
        bounds.append(float(ledger.spent))
    return bounds[0], bounds[1]
