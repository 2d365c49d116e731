"""One copy of the training inputs: block outputs are predicted into one array, chunk by
chunk, and each epoch's batches are gathered batch by batch; both compute exactly what the
whole-array calls compute."""

import keras
import numpy as np

from vgg_transfer.run import features
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
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
