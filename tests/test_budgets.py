"""Budgets that reach each regime's behaviour: frozen blocks' outputs cached at any boundary
(and built from one another), fine-tuning from block k on them, early stopping that restores
the best epoch without reading the test set."""

import numpy as np
import pytest

from vgg_transfer.run import pipeline
from vgg_transfer.run.epochs import Plateau, set_seed
from vgg_transfer.run.features import FeatureCache, block_outputs
from vgg_transfer.run.models import build_model, stem
from vgg_transfer.run.training import TrainingPhase, one_phase, phases_of, train
from vgg_transfer.spec.config import load_experiments
from vgg_transfer.spec.profiles import resolve


def _tiny(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3)).astype("uint8"), rng.integers(0, 10, n)


def _cache(folder, n=16):
    return FeatureCache(folder, {"test": 1}, {"train": np.arange(n)})


@pytest.fixture(scope="module")
def hed():
    return build_model("finetune", "hed-bsds500")


@pytest.mark.parametrize("blocks", [1, 2, 3, 4, 5])
def test_cached_outputs_equal_recomputed_ones_at_every_boundary(hed, tmp_path, blocks):
    x, _ = _tiny(16)
    direct = stem(hed, blocks).predict(x.astype("float32"), verbose=0)
    first = block_outputs(hed, x, 8, _cache(tmp_path), "train", blocks)
    again = block_outputs(hed, x, 8, _cache(tmp_path), "train", blocks)
    assert not first.hit and again.hit
    assert again.from_blocks == (4 if blocks == 5 else 0)  # block 5 goes through block 4
    assert np.array_equal(first.values, again.values)
    assert np.allclose(again.values, direct, atol=1e-5)


@pytest.mark.parametrize("start, end", [(2, 5), (4, 5), (1, 3), (3, 4)])
def test_a_boundary_built_from_another_boundarys_cache_equals_a_direct_one(hed, tmp_path,
                                                                          start, end):
    x, _ = _tiny(16)
    block_outputs(hed, x, 8, _cache(tmp_path), "train", start)
    derived = block_outputs(hed, x, 8, _cache(tmp_path), "train", end)
    assert derived.from_blocks == start and not derived.hit
    direct = stem(hed, end).predict(x.astype("float32"), verbose=0)
    assert np.allclose(derived.values, direct, atol=1e-4, rtol=1e-4)
    # and the derived file is what the next run reads
    assert block_outputs(hed, x, 8, _cache(tmp_path), "train", end).hit


@pytest.mark.parametrize("unfreeze_from", [3, 4])
def test_fine_tuning_from_block_k_on_cached_outputs_matches_on_the_fly(tmp_path,
                                                                      unfreeze_from):
    """On the cached path block 5's convolutions run as matrix products (SmallMapConv), which
    rounds differently; Adam turns a rounding-level gradient into a step of up to the learning
    rate, so a weight whose gradient is near zero may move up to lr per step either way. Any
    real difference (a wrong tap, a missed layer) moves far more entries than that allows."""
    x, y = _tiny(32)
    finals, losses = [], []
    lr, steps = 1e-4, 2 * 2  # 2 epochs of 2 batches
    for cache_features in (False, True):
        set_seed(0)
        built = build_model("finetune", "hed-bsds500")
        cache = FeatureCache(tmp_path, {"test": 1}, {"train": np.arange(32), "val": np.arange(8)})
        result = train(built, one_phase(unfreeze_from - 1, 2, lr), x, y, x[:8], y[:8],
                       batch_size=16, cache_features=cache_features, cache=cache, seed=0)
        assert result.cached == cache_features
        assert result.phases[0]["cached_blocks"] == (unfreeze_from - 1 if cache_features else 0)
        finals.append([w.copy() for w in built.model.get_weights()])
        losses.append(result.history["loss"])
    assert np.allclose(*losses, rtol=1e-4)
    for a, b in zip(*finals, strict=False):
        gap = np.abs(a - b)
        assert gap.max() <= 2 * lr * steps
        assert np.mean(gap <= 1e-5) >= 0.9999


def test_plateau_restores_the_best_epoch():
    plateau = Plateau(patience=2, monitor="val_accuracy", restore=True)

    class Model:
        weights = [np.zeros(1)]

        def get_weights(self):
            return [w.copy() for w in self.weights]

        def set_weights(self, weights):
            self.weights = weights

    model, hist = Model(), {"val_accuracy": []}
    stops = []
    for epoch, value in enumerate([0.2, 0.5, 0.4, 0.45], 1):
        model.weights = [np.full(1, epoch)]
        hist["val_accuracy"].append(value)
        stops.append(plateau.update(model, hist))
    assert stops == [False, False, False, True] and plateau.best_epoch == 2
    assert plateau.finish(model, 4) == 2 and model.weights[0][0] == 2


def test_early_stopping_restores_the_best_epoch_in_a_real_run():
    """Train with patience 1 on a validation split that cannot improve after epoch 1:
    the phase stops, and the model ends with epoch 1's weights."""
    x, y = _tiny(32)
    set_seed(0)
    built = build_model("frozen", "none")
    phases = [TrainingPhase(5, 6, 1e-2, patience=1, monitor="val_accuracy", restore_best=True)]
    snapshots = []
    original = Plateau.update

    def spy(self, model, hist):
        snapshots.append([w.copy() for w in model.get_weights()])
        return original(self, model, hist)

    Plateau.update = spy
    try:
        result = train(built, phases, x, y, x[:8], y[:8], batch_size=16, cache_features=False,
                       seed=0)
    finally:
        Plateau.update = original
    summary = result.phases[0]
    run = summary["epochs_run"]
    accuracies = result.history["val_accuracy"]
    best = int(np.argmax(accuracies)) + 1  # first best, as the rule keeps it
    assert run == min(best + 1, 6) and summary["stopped_on_plateau"] == (run < 6)
    if best < run:
        assert summary["restored_epoch"] == best
        ends = built.model.get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(ends, snapshots[best - 1], strict=False))


def test_early_stopping_never_reads_the_test_set(tiny_cifar, tmp_path, monkeypatch):
    """The test images are read once, after training: a run whose test arrays refuse to be
    read while `fit` runs still finishes, with early stopping on."""
    spec = load_experiments()
    cfg = resolve(spec, "frozen", "smoke", overrides={
        "data_dir": str(tiny_cifar), "weights": "none", "train_size": 40, "val_size": 20,
        "epochs": 4, "early_stopping": 1, "save_model": False}, env={})
    assert phases_of(cfg.regime, cfg)[0].restore_best
    state = {"fitting": False}
    real_fit, real_split = pipeline.fit, pipeline.load_split

    class Guarded:
        def __init__(self, data):
            self._data = data

        def __getattr__(self, name):
            if name in ("x_test", "y_test") and state["fitting"]:
                raise AssertionError("the test set was read during training")
            return getattr(self._data, name)

    def guarded_split(cfg, timings):
        split = real_split(cfg, timings)
        split.data = Guarded(split.data)
        return split

    def watched_fit(*args, **kwargs):
        state["fitting"] = True
        try:
            return real_fit(*args, **kwargs)
        finally:
            state["fitting"] = False

    monkeypatch.setattr(pipeline, "load_split", guarded_split)
    monkeypatch.setattr(pipeline, "fit", watched_fit)
    metrics = pipeline.run(cfg, tmp_path / "run")
    assert metrics.phases[0]["patience"] == 1 and metrics.test_n == 10
    assert metrics.steps == metrics.epochs * 1 and metrics.images_seen == metrics.epochs * 40
