"""One copy of the training inputs: block outputs are predicted into one array, chunk by
chunk, and each epoch's batches are gathered batch by batch; both compute exactly what the
whole-array calls compute; and the peak memory a run records is its own."""

import sys

import keras
import numpy as np
import pytest

from vgg_transfer.run import epochs, features, provenance
from vgg_transfer.run.epochs import one_hot


def _model(seed=0, dropout=False):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 4, 8))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    if dropout:
        x = keras.layers.Dropout(0.5)(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))


def test_predict_into_equals_one_predict_call():
    """Batch by batch, a short last batch included, the outputs are predict's to the bit."""
    model, x = _model(), np.random.default_rng(0).normal(size=(70, 4, 4, 8)).astype("float32")
    whole = model.predict(x, batch_size=8, verbose=0)
    batched = features.predict_into(model, x, batch_size=8)
    assert batched.dtype == whole.dtype and np.array_equal(batched, whole)
    with pytest.raises(ValueError, match="no images"):
        features.predict_into(model, x[:0], batch_size=8)


def test_training_batch_by_batch_equals_fit_on_the_shuffled_arrays():
    """The loop's steps are `fit`'s: the same weights to the bit (dropout's draws included,
    and a short last batch), and the epoch's logs are fit's means over its images."""
    x = np.random.default_rng(2).normal(size=(60, 4, 4, 8)).astype("float32")
    y = one_hot(np.random.default_rng(3).integers(0, 10, 60))
    order = np.random.default_rng(4).permutation(60)
    weights, logs = [], []
    for data in ("arrays", "batches"):
        model = _model(dropout=True)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                      metrics=["accuracy"])
        if data == "arrays":
            history = model.fit(x[order], y[order], batch_size=16, epochs=1, shuffle=False,
                                verbose=0)
            logs.append({name: values[-1] for name, values in history.history.items()})
        else:
            logs.append(epochs.train_batches(model, x, y, order, 16))
        weights.append([w.numpy() for w in model.weights])
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))
    assert logs[0].keys() == logs[1].keys()
    assert all(logs[1][name] == pytest.approx(value, rel=1e-6) for name, value in logs[0].items())


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


def test_no_epoch_keeps_the_training_inputs():
    """Each batch is gathered when it is due and nothing holds the training arrays after the
    epochs: a finished run leaves no copy, nor reference, of its inputs in the kernel."""
    x = np.random.default_rng(5).normal(size=(40, 4, 4, 8)).astype("float32")
    y = one_hot(np.random.default_rng(6).integers(0, 10, 40))
    model = _model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    held = sys.getrefcount(x), sys.getrefcount(y)
    hist = epochs.fit_epochs(model, (x, y), (x[:8], y[:8]),
                             epochs.Loop(range(2), 16, 0, epochs.EpochLog(2), {}))
    assert len(hist["loss"]) == 2 and len(hist["accuracy"]) == 2
    assert (sys.getrefcount(x), sys.getrefcount(y)) == held


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
