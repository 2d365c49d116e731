"""One copy of the training inputs: block outputs are predicted into one array, chunk by
chunk, and each epoch's batches are gathered batch by batch; both compute exactly what the
whole-array calls compute; and the peak memory a run records is its own."""

import keras
import numpy as np
import pytest

from vgg_transfer.run import epochs, features, provenance
from vgg_transfer.run.epochs import Batches, one_hot


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 4, 8))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))


def test_predict_into_equals_one_predict_call(monkeypatch):
    monkeypatch.setattr(features, "CHUNK_BATCHES", 2)  # chunks of 16 images: 4 and a part
    model, x = _model(), np.random.default_rng(0).normal(size=(70, 4, 4, 8)).astype("float32")
    whole = model.predict(x, batch_size=8, verbose=0)
    chunked = features.predict_into(model, x, batch_size=8)
    assert chunked.dtype == whole.dtype and np.array_equal(chunked, whole)


def test_batches_follow_the_order_without_a_copy():
    x, y = np.arange(50)[:, None] * np.ones((1, 3)), np.arange(50)
    order = np.random.default_rng(1).permutation(50)[:37]
    batches = Batches(x, y, order, 8)
    assert len(batches) == 5
    got = np.concatenate([batches[i][1] for i in range(len(batches))])
    assert np.array_equal(got, y[order])


def test_fitting_on_batches_equals_fitting_on_the_shuffled_arrays():
    x = np.random.default_rng(2).normal(size=(64, 4, 4, 8)).astype("float32")
    y = one_hot(np.random.default_rng(3).integers(0, 10, 64))
    order = np.random.default_rng(4).permutation(64)
    weights = []
    for data in ("arrays", "batches"):
        model = _model()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
        if data == "arrays":
            model.fit(x[order], y[order], batch_size=16, epochs=1, shuffle=False, verbose=0)
        else:
            model.fit(Batches(x, y, order, 16), epochs=1, shuffle=False, verbose=0)
        weights.append([w.numpy() for w in model.weights])
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=False))


@pytest.mark.skipif(not provenance.CLEAR_REFS.exists(), reason="Linux's clear_refs only")
def test_a_runs_peak_memory_is_its_own_not_the_kernels():
    """A sweep runs many runs in one kernel: each records the peak since it started, so a
    small run after a large one does not report the large one's peak."""
    large = np.ones(400 * 2**20 // 8)  # 400 MB, touched
    before = provenance.peak_rss_mb()
    del large
    provenance.start_run()
    after = provenance.peak_rss_mb()
    assert before - after > 300
    small = np.ones(100 * 2**20 // 8)
    assert provenance.peak_rss_mb() - after > 80  # the count goes on from there
    del small


def test_no_epoch_keeps_the_training_inputs(monkeypatch):
    """Keras keeps every dataset `fit` was given: each epoch's batches drop their arrays
    once fitted, so a finished run leaves no copy of its inputs in the kernel."""
    made = []

    class Spy(epochs.Batches):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(epochs, "Batches", Spy)
    x = np.random.default_rng(5).normal(size=(40, 4, 4, 8)).astype("float32")
    y = one_hot(np.random.default_rng(6).integers(0, 10, 40))
    model = _model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    hist = epochs.fit_epochs(model, (x, y), (x[:8], y[:8]),
                             epochs.Loop(range(2), 16, 0, epochs.EpochLog(2), {}))
    assert len(hist["loss"]) == 2 and len(made) == 2
    assert all(b.inputs is None and b.targets is None for b in made)


def test_a_run_leaves_no_step_graph_behind(tiny_cifar, tmp_path):
    """Runs of one kernel do not pile up: the gradient functions TensorFlow registers while a
    run traces its train step (each holding that step's graph) are gone when the run ends."""
    from vgg_transfer.run import backend
    from vgg_transfer.run.pipeline import run
    from vgg_transfer.spec.config import make_config

    registry = backend._gradient_registry()
    if registry is None:
        pytest.skip("only TensorFlow keeps a process-wide gradient registry")

    def custom():
        return {name for name in registry if name.startswith("CustomGradient-")}

    before = custom()
    with backend.traces_released():
        _fit_one_step()
        assert custom() - before  # the case the release exists for: a traced step registers
    assert custom() == before
    cfg = make_config({"name": "leak", "regime": "scratch", "weights": "none",
                       "data_dir": str(tiny_cifar), "train_size": 40, "val_size": 20,
                       "epochs": 1, "batch_size": 8, "save_model": False})
    run(cfg, tmp_path / "leak")
    assert custom() == before


def _fit_one_step():
    model = _model()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.zeros((4, 4, 4, 8), "float32")
    model.fit(x, one_hot(np.zeros(4, int)), epochs=1, verbose=0)
