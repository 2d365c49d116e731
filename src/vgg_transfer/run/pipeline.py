"""One run, start to finish, in small steps:

    load_split -> build -> fit -> evaluate -> explain -> make_record -> RunRecord.write

The test set is read once, after training, by `evaluate`, and, for a run with
`budget_points`, inside training where each smaller budget's run would end, only to report
(`fit`); the validation split is carved from the training set by `load_split`.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vgg_transfer.core.data import CIFAR10, load_cifar10, split_indices
from vgg_transfer.core.metrics import (
    SAMPLES,
    evaluate_predictions,
    pick_examples,
    predictions_frame,
)
from vgg_transfer.record import (
    MODEL_FILE,
    SCHEMA_VERSION,
    Metrics,
    Params,
    Provenance,
    RunRecord,
    Timings,
)
from vgg_transfer.run import backend, fingerprint, flops, provenance
from vgg_transfer.run.epochs import Checkpoint, set_seed, steps
from vgg_transfer.run.explain import fixed_examples, gradcam
from vgg_transfer.run.models import Built, build_model, param_counts
from vgg_transfer.run.points import BudgetPoints, CooldownBranches
from vgg_transfer.run.training import FeatureCache, TrainResult, phases_of, predict, train
from vgg_transfer.spec import precision as compute_precision
from vgg_transfer.spec.config import ExperimentConfig


@dataclass
class Split:
    """The data of one run: CIFAR-10 and which training images train and validate."""

    data: CIFAR10
    train_idx: np.ndarray
    val_idx: np.ndarray

    @property
    def fit_arrays(self) -> tuple[np.ndarray, ...]:
        """(x_train, y_train, x_val, y_val)"""
        d = self.data
        return (d.x_train[self.train_idx], d.y_train[self.train_idx],
                d.x_train[self.val_idx], d.y_train[self.val_idx])


@dataclass
class Placement:
    """Where a run sits in its experiment's grid (see `spec.profiles.GridRun`)."""

    experiment: str
    axes: dict = field(default_factory=dict)
    reference: bool = True


def load_split(cfg: ExperimentConfig, timings: dict) -> Split:
    start = time.perf_counter()
    data = load_cifar10(cfg.data_dir)
    train_idx, val_idx = split_indices(data.y_train, cfg.val_size, cfg.train_size, cfg.seed)
    timings["data_seconds"] = time.perf_counter() - start
    print(f"[{cfg.name}] data: {len(train_idx)} train / {len(val_idx)} validation / "
          f"{len(data.y_test)} test images", flush=True)
    return Split(data, train_idx, val_idx)


def set_precision(policy: str) -> None:
    """Keras's global dtype policy for the models built next.

    mixed_float16 runs several times slower than float32 on CPUs, so it needs a GPU.
    """
    import keras

    if policy == "mixed_float16" and not backend.gpu_names():
        raise ValueError("precision: mixed_float16 needs a GPU (on CPUs it runs several times "
                         "slower); use float32 or mixed_bfloat16")
    keras.mixed_precision.set_global_policy(policy)


def build(cfg: ExperimentConfig, timings: dict) -> Built:
    """A fresh, seeded model for the run's regime."""
    set_precision(cfg.precision)
    set_seed(cfg.seed)
    start = time.perf_counter()
    built = build_model(cfg.regime, cfg.weights, cfg.image_size, cfg.head, cfg.augment)
    timings["build_seconds"] = time.perf_counter() - start
    return built


def planned_flops(cfg: ExperimentConfig, train_n: int) -> tuple[float, float]:
    """The least and the most training FLOPs a run of `cfg` can spend, before it trains
    (`flops.planned_range`), on `train_n` training images unless `train_size` says fewer:
    whether a profile compares its regimes at equal compute is known from its file."""
    built = build_model(cfg.regime, "none", cfg.image_size, cfg.head, cfg.augment)
    caches = cfg.cache_features and built.base is not None and not built.augment
    phases = [(phase.frozen, phase.frozen if caches else 0, phase.epochs, phase.patience)
              for phase in phases_of(cfg.regime, cfg)]
    return flops.planned_range(flops.forward_per_image(built), phases,
                               cfg.train_size or train_n, cfg.val_size, cfg.batch_size,
                               cfg.flops_budget)


def _cache(cfg: ExperimentConfig, split: Split, weights: dict,
           folder: Path | None) -> FeatureCache:
    """The cache of frozen blocks' outputs for one run, keyed by what determines them: the
    weights (their hash; random weights by seed), input size and preprocessing, the data
    files, the Keras version, the backend and its version, the precision, and the code under
    run/ (as a run's key holds it)."""
    import keras

    source = split.data.source
    engine = backend.describe()
    key = {
        "weights": weights.get("sha256") or f"{weights['name']}-seed{cfg.seed}",
        "image_size": cfg.image_size,
        "preprocess": "keras.applications.vgg16.preprocess_input",
        "data": source.get("sha256") or source.get("kind"),
        "keras": keras.__version__,
        "backend": f"{engine['name']} {engine['version']}",
        "precision": cfg.precision,
        "code": fingerprint.code_hash(),
    }
    indices = {"train": split.train_idx, "val": split.val_idx,
               "test": np.arange(len(split.data.y_test))}
    return FeatureCache(folder, key, indices)


def fit(cfg: ExperimentConfig, built: Built, split: Split, cache: FeatureCache,
        run_dir: Path) -> TrainResult:
    """Train every phase of the regime on the training split (scoring the test set at the
    config's `budget_points` as it goes, which training never reads)."""
    points = None
    if cfg.budget_points:
        kind = BudgetPoints if cfg.schedule == "constant" else CooldownBranches
        points = kind(list(cfg.budget_points), lambda: predict(
            built, split.data.x_test, cfg.batch_size, cache if cfg.cache_features else None))
    return train(built, phases_of(cfg.regime, cfg), *split.fit_arrays, batch_size=cfg.batch_size,
                 cache_features=cfg.cache_features, cache=cache, seed=cfg.seed,
                 checkpoint=Checkpoint(run_dir / "checkpoint.npz", cfg.checkpoint_seconds),
                 flops_budget=cfg.flops_budget, points=points)


def evaluate(cfg: ExperimentConfig, built: Built, split: Split, cache: FeatureCache,
             timings: dict) -> np.ndarray:
    """Class probabilities for the test images: the only time a run reads them."""
    start = time.perf_counter()
    probs = predict(built, split.data.x_test, cfg.batch_size,
                    cache if cfg.cache_features else None)
    timings["test_seconds"] = time.perf_counter() - start
    return probs


def explain_run(built: Built, images: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                seed: int) -> dict | None:
    """Grad-CAM of the model's predicted class for two sets of test images: one per class
    (the same for every run) and the run's sample predictions (8 right, 8 wrong)."""
    if built.base is None:
        return None
    predicted = probs.argmax(axis=1)
    right, wrong = pick_examples(labels, predicted, SAMPLES, seed)
    indices = np.concatenate([fixed_examples(labels), right, wrong])
    cams = gradcam(built, images[indices], predicted[indices])
    return {"indices": indices, "heatmaps": cams["heatmaps"].astype("float16"),
            "predicted": predicted[indices], "layer": np.array(cams["layer"]),
            "side": np.array(cams["side"]),
            "set": np.array(["fixed"] * (len(indices) - len(right) - len(wrong))
                            + ["right"] * len(right) + ["wrong"] * len(wrong))}


def _timings(cfg: ExperimentConfig, split: Split, result: TrainResult, timings: dict) -> Timings:
    """The parts' seconds and the throughputs, in the order timings.json keeps them."""
    rate = result.feature_rate  # measured when the features were first computed
    return Timings(
        data_seconds=timings["data_seconds"], build_seconds=timings["build_seconds"],
        train_seconds=result.train_seconds, feature_seconds=result.feature_seconds,
        feature_images=result.feature_images, epoch_seconds=result.epoch_seconds,
        test_seconds=timings["test_seconds"], gradcam_seconds=timings["gradcam_seconds"],
        wall_seconds=timings["wall_seconds"],
        train_images_per_second=(len(split.train_idx) * len(result.history["loss"])
                                 / result.train_seconds if not result.cached else None),
        feature_images_per_second=float(rate) if rate and np.isfinite(rate) else None,
        test_images_per_second=len(split.data.y_test) / timings["test_seconds"],
        point_seconds=[p["train_seconds"] for p in (result.points.taken if result.points else [])])


def _metrics(cfg: ExperimentConfig, place: Placement, split: Split, built: Built,
             result: TrainResult, history: pd.DataFrame, probs: np.ndarray,
             points: list[np.ndarray], search: dict | None) -> Metrics:
    best = int(history["val_accuracy"].idxmax())
    per_image = flops.forward_per_image(built)
    return Metrics(
        schema_version=SCHEMA_VERSION, status="ok", name=cfg.name, experiment=place.experiment,
        axes=place.axes, reference=place.reference, regime=cfg.regime, weights=cfg.weights,
        weights_label=cfg.describe_weights(), **evaluate_predictions(probs, split.data.y_test),
        train_n=len(split.train_idx), val_n=int(len(split.val_idx)), epochs=len(history),
        final_train_accuracy=float(history["accuracy"].iloc[-1]),
        final_val_accuracy=float(history["val_accuracy"].iloc[-1]),
        best_val_accuracy=float(history["val_accuracy"].iloc[best]), best_val_epoch=best + 1,
        params=Params(**param_counts(built.model)),  # after training: phases unfreeze
        cached_features=result.cached, notes=result.notes,
        compute=with_cooldowns(flops.run_compute(per_image, result.phases, len(split.train_idx),
                                                 int(len(split.val_idx))), result),
        budget_points=budget_points(per_image, split, result, points, cfg.batch_size),
        weights_sha256=result.weights_sha256, lr_search=search, **spent(result, cfg.batch_size))


def with_cooldowns(compute: dict, result: TrainResult) -> dict:
    """The run's compute with what its budget points' cooldown branches cost on top of it
    (`run.points.CooldownBranches`): `cooldowns`, and `spent`, everything the run computed. Each
    point is charged its own budget; the run, what it really spent."""
    cooldowns = sum(p.get("cooldown_flops", 0.0)
                    for p in (result.points.taken if result.points else []))
    return {**compute, "cooldowns": cooldowns,
            "spent": compute["flops"]["total"] + cooldowns}


def budget_points(per_image: dict, split: Split, result: TrainResult,
                  points: list[np.ndarray], batch_size: int) -> list[dict]:
    """Each budget point as the run with that budget would record it: the FLOPs it spent
    (`run.flops`, from its epochs' images), what it trained, and its test scores (`points`:
    each point's test-set probabilities, `point_probabilities`)."""
    if result.points is None:
        return []
    labels, rows = split.data.y_test, []
    (phase,) = result.phases  # budget points need a single-phase run
    history = result.history["val_accuracy"]
    run_ends = history[phase["restored_epoch"] - 1] if phase["restored_epoch"] else history[-1]
    for point, scores in zip(result.points.taken, points, strict=False):
        images = point["epoch_images"]
        compute = flops.run_compute(per_image, [{**phase, "epoch_images": images}],
                                    len(split.train_idx), int(len(split.val_idx)))
        scored = evaluate_predictions(scores, labels)
        rows.append({"flops_budget": point["flops_budget"], "ended": point["ended"],
                     "flops": compute["flops"]["total"], "epochs": len(images),
                     **steps_and_images(images, batch_size),
                     "restored_epoch": point["restored_epoch"],
                     "cooldown_flops": point.get("cooldown_flops", 0.0),
                     "weights_sha256": point.get("weights_sha256", ""),
                     "val_accuracy": (run_ends if point["val_accuracy"] is None
                                      else float(point["val_accuracy"])),
                     **{key: scored[key] for key in ("test_accuracy", "test_accuracy_ci95",
                                                     "test_loss", "test_n", "test_correct")}})
    return rows


def point_probabilities(result: TrainResult, probs: np.ndarray) -> list[np.ndarray]:
    """The test-set probabilities of each budget point (the run's own where it ended as the
    run did)."""
    if result.points is None:
        return []
    return [probs if p is None else p for p in result.points.probabilities]


def spent(result: TrainResult, batch_size: int) -> dict:
    """The training budget a run used: optimizer steps and images seen, per phase too."""
    images = [n for p in result.phases for n in p["epoch_images"]]
    return {**steps_and_images(images, batch_size), "phases": result.phases}


def steps_and_images(epoch_images: list[int], batch_size: int) -> dict:
    """Optimizer steps and images seen of epochs that trained on `epoch_images` images."""
    return {"steps": steps(epoch_images, batch_size), "images_seen": sum(epoch_images)}


def _provenance(cfg: ExperimentConfig, split: Split, built: Built, wall: float) -> Provenance:
    y_train = split.data.y_train[split.train_idx]
    return Provenance(
        data=split.data.source,
        split={"train_n": len(split.train_idx), "val_n": int(len(split.val_idx)),
               "seed": cfg.seed, "train_per_class": np.bincount(y_train, minlength=10).tolist()},
        weights=built.weights,
        backend={**backend.describe(), "precision": compute_precision.describe(cfg.precision)},
        packages=provenance.package_versions(),
        hardware=provenance.hardware(), git=provenance.git_state(), wall_seconds=wall,
        peak_rss_mb=provenance.peak_rss_mb(), finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def make_record(cfg: ExperimentConfig, place: Placement, split: Split, built: Built,
                result: TrainResult, probs: np.ndarray, cams: dict | None,
                timings: dict, search: dict | None = None) -> RunRecord:
    """Everything the run measured, as one typed record."""
    history = pd.DataFrame(result.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    points = point_probabilities(result, probs)
    return RunRecord(cfg, _metrics(cfg, place, split, built, result, history, probs, points,
                                   search),
                     _timings(cfg, split, result, timings),
                     _provenance(cfg, split, built, timings["wall_seconds"]), history,
                     predictions_frame(probs, split.data.y_test), cams,
                     budget_predictions=pd.DataFrame(
                         {f"predicted_{i}": p.argmax(axis=1) for i, p in enumerate(points)})
                     if points else None)


def run(cfg: ExperimentConfig, run_dir: str | Path, experiment: str | None = None,
        axes: dict | None = None, reference: bool = True,
        search: dict | None = None, feature_cache: Path | None = None) -> Metrics:
    """Train and evaluate one configuration and write its run folder.

    Args:
        experiment, axes, reference: where the run sits in its experiment's grid (see
            `spec.profiles.GridRun`); recorded in metrics.json so pages can group runs.
        search: how its learning rate was chosen (`runner.search`), for its record.
        feature_cache: the folder of frozen blocks' outputs runs share (None: computed,
            not kept).

    Returns:
        The metrics written to metrics.json.
    """
    import keras

    backend.require(cfg.backend)  # before anything else: Keras cannot switch backends
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.backend.clear_session()  # a sweep runs many models in one process
    gc.collect()
    provenance.start_run()  # the peak memory recorded is this run's
    wall_start, timings = time.perf_counter(), {}
    print(f"[{cfg.name}] regime {cfg.regime}, weights {cfg.describe_weights()}, backend "
          f"{cfg.backend}", flush=True)
    split = load_split(cfg, timings)
    policy = keras.mixed_precision.global_policy().name
    try:  # the run's precision holds for every model it builds, and for nothing after it
        with backend.traces_released():  # its step graphs go with it
            built = build(cfg, timings)
            cache = _cache(cfg, split, built.weights, feature_cache)
            result = fit(cfg, built, split, cache, run_dir)
            probs = evaluate(cfg, built, split, cache, timings)
            start = time.perf_counter()
            cams = explain_run(built, split.data.x_test, split.data.y_test, probs, cfg.seed)
            timings["gradcam_seconds"] = time.perf_counter() - start
    finally:
        keras.mixed_precision.set_global_policy(policy)
    timings["wall_seconds"] = time.perf_counter() - wall_start
    record = make_record(cfg, Placement(experiment or cfg.name, axes or {}, reference), split,
                         built, result, probs, cams, timings, search)
    if cfg.save_model:
        built.model.save(run_dir / MODEL_FILE)
    record.write(run_dir)
    _report(record)
    return record.metrics


def _report(record: RunRecord) -> None:
    m = record.metrics
    low, high = m.test_accuracy_ci95
    print(f"[{m.name}] test accuracy {m.test_accuracy:.4f} on {m.test_n} images (95% CI "
          f"{low:.3f}–{high:.3f}); wall {record.timings.wall_seconds:.1f} s, peak memory "
          f"{record.provenance.peak_rss_mb:,.0f} MB", flush=True)
