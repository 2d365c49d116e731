"""The learning rate over a run's steps: constant, or warmup-stable-decay (WSD) ending at
the run's budget.

WSD warms up linearly over a fixed number of steps, holds the peak rate, and cools down
linearly to zero over the last fraction of the steps the run's budget affords. Runs of one
line that differ only in their budget follow the same rate until the shorter one's cooldown
starts, which is what lets a shorter budget branch off the longer run (`run.branches`).
"""

from __future__ import annotations

import dataclasses
import math

import keras

from vgg_transfer.run.epochs import steps
from vgg_transfer.run.flops import Budget


@keras.saving.register_keras_serializable(package="vgg_transfer")
class WarmupStableDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`peak` x a linear warmup over `warmup` steps x a linear decay over the last
    `cooldown` of `total` steps: the rate of step s (0-based) is
    peak * min(1, (s + 1) / warmup) * min(1, (total - s) / cooldown), zero from `total` on."""

    def __init__(self, peak: float, warmup: int, total: int, cooldown: int):
        self.peak, self.warmup, self.total, self.cooldown = (float(peak), int(warmup),
                                                             int(total), int(cooldown))
        # the end, as variables the compiled step reads: a branch retargets them in place
        self._end = keras.Variable(float(total), trainable=False, dtype="float32")
        self._length = keras.Variable(float(cooldown), trainable=False, dtype="float32")

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        rate = keras.ops.clip((self._end - step) / self._length, 0.0, 1.0) * self.peak
        if self.warmup:
            rate = rate * keras.ops.minimum(1.0, (step + 1.0) / self.warmup)
        return rate

    def retarget(self, other: "WarmupStableDecay") -> None:
        """End as `other` does (the same peak and warmup, another budget), without a new
        compiled step."""
        self.total, self.cooldown = other.total, other.cooldown
        self._end.assign(float(other.total))
        self._length.assign(float(other.cooldown))

    @property
    def cooldown_start(self) -> int:
        """The first step whose rate is below the peak's plateau (the branch point)."""
        return self.total - self.cooldown

    def get_config(self) -> dict:
        return {"peak": self.peak, "warmup": self.warmup, "total": self.total,
                "cooldown": self.cooldown}


def cooldown_steps(total: int, fraction: float) -> int:
    """Steps of the cooldown: `fraction` of the run's steps, at least one."""
    return max(1, min(total, round(fraction * total)))


def planned_steps(budget: Budget | None, n: int, batch_size: int, epochs: int) -> int:
    """The optimizer steps a single-phase run takes from its first epoch: every epoch of `n`
    images, each cut to what the budget (charged as training will charge it) still affords,
    until the budget or `epochs` ends it."""
    ledger = dataclasses.replace(budget) if budget else Budget(math.inf)
    return steps(ledger.afford_epochs(n, batch_size, epochs), batch_size)


def make(kind: str, peak: float, warmup: int, fraction: float, steps: int):
    """What the optimizer is given: the rate itself (constant), or a `WarmupStableDecay`
    ending after `steps`."""
    if kind == "constant":
        return peak
    if kind != "wsd":
        raise ValueError(f"schedule: unknown kind {kind!r} (allowed: constant, wsd)")
    if steps <= 0:
        raise ValueError("schedule: wsd needs at least one step to train")
    return WarmupStableDecay(peak, warmup, steps, cooldown_steps(steps, fraction))
