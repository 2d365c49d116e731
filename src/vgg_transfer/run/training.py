"""The training loop: Keras `fit`, seeded, one log line per epoch, timed.

Regimes with frozen leading blocks (frozen, partial, and two_phase in both phases) can train
the rest on those blocks' cached outputs: frozen convolutions are deterministic, so computing
their outputs once is the same computation as recomputing them every epoch, at a fraction of
the cost.
"""

from __future__ import annotations

import dataclasses
import json
import time
import zipfile
from dataclasses import dataclass, field

import keras
import numpy as np

from vgg_transfer.run import backend, flops, schedule
from vgg_transfer.run.epochs import (
    Checkpoint,
    EpochLog,
    Loop,
    Plateau,
    fit_epochs,
    load_checkpoint,
    one_hot,
)
from vgg_transfer.run.features import FeatureCache, block_outputs, predict_into
from vgg_transfer.run.flops import Budget, Meter
from vgg_transfer.run.models import Built, compile_model, freeze_blocks, top
from vgg_transfer.run.points import BudgetPoints, CooldownBranches, load_points, weights_digest
from vgg_transfer.spec import regimes

backend.quiet()


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
    phases: list[dict] = field(default_factory=list)  # per phase: budget, epochs run, stop
    points: BudgetPoints | None = None       # test scores at smaller FLOPs budgets (`run.points`)
    weights_sha256: str = ""           # the trained part's weights at the end, byte for byte


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


def cacheable_blocks(built: Built, cache: FeatureCache | None) -> int:
    """How many leading blocks may come from a cache: the frozen ones, unless there is no
    cache or the model augments its inputs (a cache would freeze one draw of the
    augmentation, so augmenting models always compute their frozen blocks on the fly)."""
    if cache is None or built.base is None or built.augment:
        return 0
    return built.frozen_blocks


def fit_inputs(built: Built, x_train: np.ndarray, x_val: np.ndarray, batch_size: int,
               cache: FeatureCache | None) -> Inputs:
    """Train on the frozen blocks' cached outputs when allowed (`cache` given, some leading
    blocks frozen, no augmentation), else on the images through the whole model."""
    blocks = cacheable_blocks(built, cache)
    if not blocks:
        return Inputs(built.model, x_train.astype("float32"), x_val.astype("float32"))
    start = time.perf_counter()
    train_f = block_outputs(built, x_train, batch_size, cache, "train", blocks)
    val_f = block_outputs(built, x_val, batch_size, cache, "val", blocks)
    seconds = time.perf_counter() - start
    computed = sum(len(f.values) for f in (train_f, val_f) if not f.hit)
    source = "read from the feature cache" if not computed else (
        f"computed from cached outputs of blocks 1-{train_f.from_blocks}"
        if train_f.from_blocks else "computed")
    print(f"outputs of frozen blocks 1-{blocks} {source}: {len(x_train)} train + {len(x_val)} "
          f"val images in {seconds:.1f} s", flush=True)
    what = {5: "the head", 4: "block 5 and the head"}.get(blocks,
                                                          f"blocks {blocks + 1}-5 and the head")
    return Inputs(top(built, blocks), train_f.values, val_f.values, blocks, seconds, computed,
                  train_f.rate, f"{what} trained on cached outputs of frozen blocks 1-{blocks}")


def predict(built: Built, images: np.ndarray, batch_size: int,
            cache: FeatureCache | None = None, split: str = "test") -> np.ndarray:
    """Class probabilities for images; through the cached outputs of the frozen blocks when
    the model has some and a cache is given (the same computation, done once)."""
    blocks = cacheable_blocks(built, cache)
    if not blocks:
        return predict_into(built.model, images.astype("float32"), batch_size)
    features = block_outputs(built, images, batch_size, cache, split, blocks)
    return predict_into(top(built, blocks), features.values, batch_size)


# ---------------------------------------------------------------- training

@dataclass(frozen=True)
class TrainingPhase:
    """One phase of training, with its numbers: what is frozen, for how long, how fast."""

    frozen: int                  # leading VGG16 blocks kept frozen (5: the whole base)
    epochs: int                  # the budget: at most this many epochs
    learning_rate: float
    patience: int | None = None  # stop once `monitor` has not improved for this many epochs
    label: str = ""              # prefix of the phase's epoch lines
    monitor: str = "val_loss"    # val_loss (lower is better) or val_accuracy (higher)
    restore_best: bool = False   # end the phase with the weights of its best epoch
    schedule: str = "constant"   # the rate over the phase's steps (`run.schedule`)
    warmup: int = 0              # wsd: warmup steps
    cooldown_fraction: float = 0.2  # wsd: the share of the steps that cools down to zero


def phases_of(regime: str, cfg) -> list[TrainingPhase]:
    """A regime's phases (from the registry) with their numbers from a config.

    A phase with a stopping rule of its own (two_phase's head phase) keeps it; every other
    phase stops early when the config asks (`early_stopping` epochs of patience on
    `monitor`, then the best epoch's weights are restored).

    Args:
        regime: a registry name.
        cfg: anything with the config's fields (an `ExperimentConfig`).
    """
    phases = []
    for phase in regimes.get(regime).phases:
        if phase.patience:
            rule = dict(patience=getattr(cfg, phase.patience), monitor=phase.monitor,
                        restore_best=phase.restore_best)
        elif getattr(cfg, "early_stopping", None):
            rule = dict(patience=cfg.early_stopping, monitor=cfg.monitor, restore_best=True)
        else:
            rule = {}
        if getattr(cfg, "schedule", "constant") != "constant":
            rule.update(schedule=cfg.schedule, warmup=cfg.warmup_steps,
                        cooldown_fraction=cfg.cooldown_fraction)
        phases.append(TrainingPhase(phase.frozen_blocks(cfg), getattr(cfg, phase.epochs),
                                  getattr(cfg, phase.learning_rate), label=phase.label, **rule))
    return phases


def one_phase(frozen: int, epochs: int, learning_rate: float) -> list[TrainingPhase]:
    """The phases of a regime trained in a single phase: one."""
    return [TrainingPhase(frozen, epochs, learning_rate)]


@dataclass
class _Done:
    """What one finished phase leaves behind."""

    inputs: Inputs
    history: dict
    seconds: float
    log: EpochLog
    resumed: int = 0             # epochs restored from a checkpoint
    restored: int | None = None  # the best epoch whose weights ended the phase
    spent_budget: bool = False   # the run's FLOPs budget ended the phase


def train(built: Built, phases: list[TrainingPhase], x_train: np.ndarray, y_train: np.ndarray,
          x_val: np.ndarray, y_val: np.ndarray, *, batch_size: int,
          cache_features: bool = True, cache: FeatureCache | None = None, seed: int = 0,
          checkpoint: Checkpoint | None = None, flops_budget: float | None = None,
          points: BudgetPoints | None = None) -> TrainResult:
    """Train a freshly built model phase by phase; validate on the held-out training split.

    Each phase freezes its leading blocks, recompiles (the optimiser sees only what is
    trainable when compiled), and fits, on the cached outputs of the frozen blocks when
    allowed. The test set plays no part.

    Args:
        built: from `models.build_model`.
        phases: from `phases_of` (or `one_phase`).
        x_*: uint8 or float images (N, 32, 32, 3), 0-255; y_*: integer labels.
        cache_features: train on frozen blocks' outputs computed once, not in every step.
        cache: where those outputs live on disk, for reuse across runs (None: not stored).
        seed: seeds each epoch's shuffling and dropout (see `reseed_epoch`).
        checkpoint: where and how often to save the state; training resumes from it.
        flops_budget: training FLOPs the run may spend (`run.flops`: `Budget`).
        points: smaller budgets scored inside the run (`run.points`), single-phase only.
    """
    if points is not None and (len(phases) > 1 or not flops_budget):
        raise ValueError("budget_points: a single-phase regime trained to a flops_budget only")
    labels = one_hot(y_train), one_hot(y_val)
    source = (cache or FeatureCache()) if cache_features else None
    start_phase, saved, restarted = _resume_point(checkpoint)
    if points is not None and saved:
        load_points(points, checkpoint.path)
    meter = Meter(flops.forward_per_image(built), Budget(flops_budget), len(x_train),
                   len(x_val)) if flops_budget else None
    done = []
    for index, phase in enumerate(phases):
        if index < start_phase:  # finished before the checkpoint: its weights are in it
            done.append(_finished_phase(built, phase, (x_train, x_val), batch_size, source,
                                        meter, saved[index]))
            continue
        if meter and meter.budget.exhausted:
            break  # the budget ended training in an earlier phase
        saver = None if checkpoint is None else dataclasses.replace(
            checkpoint, earlier=[d.history for d in done])
        phase_done = _train_phase(built, phase, index, (x_train, x_val), labels, batch_size,
                                  source, seed, saver, index == start_phase and bool(saved),
                                  meter, points)
        if not phase_done.history:  # the budget was spent before this phase's first epoch
            break
        done.append(phase_done)
    if checkpoint is not None:
        checkpoint.path.unlink(missing_ok=True)
    return _finish(built, phases, done, points, [restarted, meter and meter.note()])


def _finished_phase(built: Built, phase: TrainingPhase, images: tuple, batch_size: int,
                    source: FeatureCache | None, meter: Meter | None, history: dict) -> _Done:
    """A phase a checkpoint holds as finished: its inputs again, its epochs charged."""
    inputs = _phase_inputs(built, phase, images, batch_size, source)
    if meter:
        meter.enter(phase.frozen, inputs.blocks).charge_epochs(history.get("images", []))
    return _Done(inputs, history, 0.0, EpochLog(phase.epochs))


def _finish(built: Built, phases: list[TrainingPhase], done: list[_Done],
            points: BudgetPoints | None, notes: list) -> TrainResult:
    """The run's result, the model whole and compiled, the budget points finished."""
    # The full model shares the trained layers; compile it so it can be evaluated as a whole.
    compile_model(built.model, phases[-1].learning_rate)
    result = _result(built, phases[:len(done)], done)
    result.notes += [note for note in notes if note]
    if points is not None:
        points.finish(done[-1].history, result.train_seconds)
        result.points = points
    result.weights_sha256 = weights_digest(done[-1].inputs.target)
    return result


def _resume_point(checkpoint: Checkpoint | None) -> tuple[int, list, str | None]:
    """(phase to resume in, histories of the phases before it and of it so far, a note when
    the checkpoint could not be read and the run starts again from the beginning)."""
    if checkpoint is None or not checkpoint.path.is_file():
        return 0, [], None
    try:
        with np.load(checkpoint.path, allow_pickle=False) as saved:
            histories = json.loads(str(saved["history"]))
            for name in saved.files:  # reads every array, so a damaged one shows here
                saved[name]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        checkpoint.path.unlink(missing_ok=True)
        note = (f"its checkpoint could not be read ({type(err).__name__}); the run started "
                "again from the beginning")
        print(note, flush=True)
        return 0, [], note
    return len(histories) - 1, histories, None


def _phase_inputs(built: Built, phase: TrainingPhase, images: tuple, batch_size: int,
                  source: FeatureCache | None) -> Inputs:
    """Freeze the phase's leading blocks and pick what it trains on."""
    if built.base is not None:
        freeze_blocks(built.base, phase.frozen)
    return fit_inputs(built, *images, batch_size, source)


def _train_phase(built: Built, phase: TrainingPhase, index: int, images: tuple, labels: tuple,
                 batch_size: int, source: FeatureCache | None, seed: int,
                 checkpoint: Checkpoint | None, restore: bool,
                 meter: Meter | None = None, points: BudgetPoints | None = None) -> _Done:
    """Freeze, pick the inputs, recompile and fit one phase (resuming from `checkpoint`
    when `restore`; within the run's FLOPs budget when `meter`)."""
    inputs = _phase_inputs(built, phase, images, batch_size, source)
    budget = meter.enter(phase.frozen, inputs.blocks) if meter else None
    rate = _rates(phase, budget, len(inputs.train), batch_size)
    main = rate(budget.flops if budget else None)
    compile_model(inputs.target, main)  # recompile after changing trainable
    if isinstance(points, CooldownBranches):
        points.compile = compile_model
        points.prepare(rate, main)
    plateau = (Plateau(phase.patience, phase.monitor, phase.restore_best)
               if phase.patience else None)
    hist, resumed = {}, 0
    if restore:
        resumed, histories, best = load_checkpoint(inputs.target, checkpoint.path)
        hist = histories[index]
        if plateau is not None:
            plateau.replay(hist, best)
        if budget is not None:
            budget.charge_epochs(hist.get("images", []))
        print(f"resuming {phase.label}after epoch {resumed}/{phase.epochs} from "
              f"{checkpoint.path.name}", flush=True)
    log = EpochLog(phase.epochs, phase.label)
    start = time.perf_counter()
    fit_epochs(inputs.target, (inputs.train, labels[0]), (inputs.val, labels[1]),
               Loop(range(resumed, phase.epochs), batch_size, seed + 7919 * index, log, hist,
                    checkpoint, phase.epochs, plateau, budget, points))
    # (a phase the budget left no batch for trained no epoch: its history is empty)
    restored = plateau.finish(inputs.target, len(hist.get("loss", []))) if plateau else None
    return _Done(inputs, hist, time.perf_counter() - start, log, resumed, restored,
                 bool(budget and budget.exhausted))


def _rates(phase: TrainingPhase, budget: Budget | None, n: int, batch_size: int):
    """The learning rate (or schedule) of the phase's run with a budget of `flops` FLOPs (the
    phase's own, or a budget point's), planned from the ledger as the phase starts."""
    def rate(flops: float | None):
        ledger = dataclasses.replace(budget, flops=flops) if budget else None
        steps = (schedule.planned_steps(ledger, n, batch_size, phase.epochs)
                 if phase.schedule != "constant" else 0)
        return schedule.make(phase.schedule, phase.learning_rate, phase.warmup,
                             phase.cooldown_fraction, steps)
    return rate


def _result(built: Built, phases: list[TrainingPhase], done: list[_Done]) -> TrainResult:
    """The phases' histories, times and notes as one `TrainResult`."""
    history = {name: [v for d in done for v in d.history[name]] for name in done[-1].history}
    if len(phases) > 1:
        history["phase"] = [i + 1 for i, d in enumerate(done) for _ in d.history["loss"]]
    first = done[0].inputs
    return TrainResult(history, [s for d in done for s in d.log.seconds],
                       sum(d.seconds for d in done), sum(d.inputs.seconds for d in done),
                       bool(first.blocks), _notes(phases, done),
                       sum(d.inputs.computed for d in done), first.rate,
                       [_phase_summary(p, d) for p, d in zip(phases, done, strict=False)])


def _phase_summary(phase: TrainingPhase, done: _Done) -> dict:
    """What one phase was allowed and what it did: the pages tell runs that stopped on a
    plateau from runs that ran out of budget."""
    run = len(done.history.get("loss", []))
    return {"frozen_blocks": phase.frozen, "epochs_budget": phase.epochs, "epochs_run": run,
            "epoch_images": [int(n) for n in done.history["images"]],
            "learning_rate": phase.learning_rate, "patience": phase.patience,
            "monitor": phase.monitor if phase.patience else None,
            "stopped_on_plateau": run < phase.epochs and not done.spent_budget,
            "stopped_on_flops_budget": done.spent_budget,
            "restored_epoch": done.restored, "cached_blocks": done.inputs.blocks,
            "schedule": phase.schedule, "warmup_steps": phase.warmup,
            "cooldown_fraction": phase.cooldown_fraction}


def _notes(phases: list[TrainingPhase], done: list[_Done]) -> list[str]:
    """What a reader should know about how the run trained, in words."""
    resumed = [(i, d.resumed) for i, d in enumerate(done) if d.resumed]
    if len(phases) == 1:
        fit = done[0].inputs
        notes = [fit.note] if fit.blocks else []
        if phases[0].frozen and not fit.blocks:
            notes.append("frozen blocks computed on the fly in every step "
                         "(augmentation, or the cache switched off)")
        notes += [f"resumed after epoch {n} from a checkpoint" for _, n in resumed]
        return notes
    parts = [f"phase {i + 1}: {_phase_words(p, d)}"
             for i, (p, d) in enumerate(zip(phases, done, strict=False))]
    return ["; ".join(parts)] + [f"resumed after {phases[i].label}epoch {n} from a checkpoint"
                                 for i, n in resumed]


def _phase_words(phase: TrainingPhase, done: _Done) -> str:
    epochs = len(done.history.get("loss", []))
    if phase.frozen == 5:
        return (f"the head on the frozen base for {epochs} epoch(s)"
                f"{' (cached features)' if done.inputs.blocks else ''}")
    cached = done.inputs.blocks
    return (f"blocks {phase.frozen + 1}-5 and the head at learning rate "
            f"{phase.learning_rate:g} for {epochs} epoch(s)"
            f"{f' (on cached outputs of blocks 1-{cached})' if cached else ''}")


