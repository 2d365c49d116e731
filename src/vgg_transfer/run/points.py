"""Budget points: the test scores of smaller FLOPs budgets, taken inside one run.

With a constant rate (`BudgetPoints`) the run with a smaller budget is the start of the
larger one, so its score is taken where it would end. With a schedule that ends at the budget
(`CooldownBranches`, WSD) the smaller run follows the larger one until its own cooldown
starts: there the state is copied, the cooldown is trained on the same data order as that
run would train it, scored, and the larger run carries on from the copy it kept.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from vgg_transfer.run.epochs import (
    Cut,
    EpochLog,
    Loop,
    Plateau,
    fit_epochs,
    steps,
    validation_scores,
)
from vgg_transfer.run.flops import Budget


def load_points(points: "BudgetPoints", path: Path) -> None:
    """The budget points a checkpoint scored before it was saved, back into `points`."""
    with np.load(path, allow_pickle=False) as saved:
        if "points" in saved.files:
            points.taken = json.loads(str(saved["points"]))
            points.probabilities = [saved[f"p{i}"] for i in range(len(points.taken))]


@dataclass
class BudgetPoints:
    """Test scores taken inside a run at smaller FLOPs budgets (`budget_points`), each the
    score the run with that budget ends with.

    `Budget` makes a run with a smaller budget exactly the start of one with a larger: the
    same seed, data order and constant rate, its last epoch a prefix of the larger run's.
    So where a smaller budget's run would end, the larger run stops fitting for a moment,
    validates, picks the weights that run would end with (its best epoch's when early
    stopping restores them and this epoch is not better), scores the test set with them and
    goes on with its own weights. A budget the run does not reach (it stopped on a plateau
    or at its epoch cap first) ends as the run does: `finish` marks it so.

    The scores only report: nothing in training reads them.
    """

    budgets: list[float]                     # ascending, each below the run's budget
    score: Callable[[], np.ndarray]          # test-set class probabilities of the model now
    taken: list[dict] = field(default_factory=list)   # one per budget, in order
    probabilities: list = field(default_factory=list)  # per taken point (None: the run's own)

    @property
    def pending(self) -> list[float]:
        return self.budgets[len(self.taken):]

    def cuts(self, budget: Budget, n: int, batch_size: int, hist: dict,
             length: int) -> list[tuple[int, float]]:
        """(images into this epoch, budget) for each pending budget whose run ends within
        the epoch about to start (0 images: it ended with the epoch before)."""
        ends = []
        for flops in self.pending:
            images = budget.images(n, batch_size, flops)
            if images >= n:
                break  # this budget's run trains the whole epoch: so do the larger ones
            ends.append((images, flops))
        return ends

    def take(self, cut: Cut) -> None:
        """Score the run the cut's budget makes: its full epochs, and the cut's images of a
        short last epoch (none: it ended with the epoch before)."""
        self._score_run(cut.model, cut.flops, cut.loop.hist, cut.images or None, cut.val_data,
                        cut.loop.batch_size, cut.loop.plateau, cut.seconds)

    def _score_run(self, model: keras.Model, flops: float, hist: dict, images: int | None,
                   val_data: tuple, batch_size: int, plateau: Plateau | None,
                   seconds: float) -> None:
        epoch_images = list(hist.get("images", []))
        last = None
        if images is not None:  # the short epoch is validated, and counts, as that run's is
            epoch_images.append(images)
            last = validation_scores(model, *val_data, batch_size)
        best = plateau.ending(len(epoch_images), last) if plateau is not None else None
        if best is not None:  # the validation accuracy of the weights it ends with
            val_accuracy = hist["val_accuracy"][plateau.best_epoch - 1]
        else:
            val_accuracy = (last or {}).get("val_accuracy", hist["val_accuracy"][-1]
                                            if hist.get("val_accuracy") else None)
        current = model.get_weights() if best is not None else None
        if best is not None:
            model.set_weights(best)
        try:
            probabilities = self.score()
        finally:
            if current is not None:
                model.set_weights(current)
        self.taken.append({"flops_budget": flops, "epoch_images": epoch_images,
                           "restored_epoch": plateau.best_epoch if best is not None else None,
                           "val_accuracy": None if val_accuracy is None else float(val_accuracy),
                           "ended": "budget",
                           "train_seconds": seconds})
        self.probabilities.append(probabilities)
        print(f"budget point {flops:.3g} FLOPs: {sum(epoch_images):,} images seen, test "
              f"scored", flush=True)

    def finish(self, hist: dict, seconds: float) -> None:
        """The budgets the run did not reach end as the run does."""
        for flops in self.pending:
            self.taken.append({"flops_budget": flops,
                               "epoch_images": list(hist.get("images", [])),
                               "restored_epoch": None, "val_accuracy": None,
                               "ended": "with the run",
                               "train_seconds": seconds})
            self.probabilities.append(None)


def weights_digest(model: keras.Model) -> str:
    """SHA-256 of a model's weights, in order, byte for byte."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


@dataclass
class CooldownBranches(BudgetPoints):
    """Budget points under a schedule that ends at each budget (`run.schedule`): each is a
    cooldown branch off the run.

    `schedules` maps each budget to the schedule of the run with that budget (set when its
    phase starts, `prepare`); `compile` compiles a model with a schedule. At a budget's
    cooldown start the model's and optimizer's variables are copied, the model is compiled
    with that budget's schedule and trains on, through `fit_epochs`, exactly as the shorter
    run would: the rest of the epoch in the same order, its validations, to its budget. It
    is scored, and the copy is put back under the run's own schedule. Each point records
    the FLOPs its cooldown cost beyond the run (`cooldown_flops`).
    """

    compile: Callable | None = None          # (model, schedule) -> None
    schedules: dict = field(default_factory=dict)
    main: object = None                      # the run's own schedule

    def prepare(self, schedule_for: Callable, main) -> None:
        """The schedules of the run and of each pending budget's run."""
        self.schedules = {flops: schedule_for(flops) for flops in self.budgets}
        self.main = main

    def cuts(self, budget: Budget, n: int, batch_size: int, hist: dict,
             length: int) -> list[tuple[int, float]]:
        """(images into this epoch, budget) for each pending budget whose cooldown starts
        within the epoch about to start."""
        before = steps(hist.get("images", []), batch_size)
        within = steps([length], batch_size)
        ends = []
        for flops in self.pending:
            start = self.schedules[flops].cooldown_start
            if start >= before + within:
                break
            ends.append((min((start - before) * batch_size, length), flops))
        return ends

    def take(self, cut: Cut) -> None:
        model, main_budget = cut.model, cut.loop.budget
        if not model.optimizer.built:  # a cut before the first step: the slots, still zero
            model.optimizer.build(model.trainable_variables)
        state = ([v.numpy() for v in model.variables],
                 [v.numpy() for v in model.optimizer.variables])
        ledger = Budget(cut.flops, main_budget.spent, main_budget.per_image,
                        main_budget.per_epoch, epochs=main_budget.epochs)
        hist = copy.deepcopy(cut.loop.hist)
        own = copy.copy(self.main)  # the run's own end, to go back to
        begin = time.perf_counter()
        self._switch(model, self.schedules[cut.flops], state)
        try:
            print(f"budget point {cut.flops:.3g} FLOPs: cooldown branch", flush=True)
            stop = cut.loop.epochs.stop
            fit_epochs(model, cut.train_data, cut.val_data,
                       Loop(range(cut.epoch, stop), cut.loop.batch_size, cut.loop.seed,
                            EpochLog(stop, "  branch "), hist, budget=ledger),
                       start=(cut.images, dict(cut.logs)))
            probabilities = self.score()
            digest = weights_digest(model)
        finally:
            self._switch(model, own, state)
        cooldown = ledger.spent - main_budget.spent - cut.images * main_budget.per_image
        self.taken.append({"flops_budget": cut.flops, "epoch_images": list(hist["images"]),
                           "restored_epoch": None,
                           "val_accuracy": float(hist["val_accuracy"][-1]),
                           "ended": "budget",
                           "train_seconds": cut.seconds + time.perf_counter() - begin,
                           "cooldown_flops": float(cooldown), "weights_sha256": digest})
        self.probabilities.append(probabilities)

    def _switch(self, model: keras.Model, schedule, state: tuple) -> None:
        """Give `model` the copied variables under `schedule`'s end: the run's schedule is
        retargeted in place where the compiled step reads it as a variable; on JAX, which
        compiles what a schedule reads into the step, the model is compiled again."""
        if keras.backend.backend() == "jax":
            self.compile(model, schedule)
            model.optimizer.build(model.trainable_variables)
        else:
            self.main.retarget(schedule)
        for variable, value in zip(model.variables, state[0], strict=True):
            variable.assign(value)
        for variable, value in zip(model.optimizer.variables, state[1], strict=True):
            variable.assign(value)
