"""Model construction: trainable parameters, frozen weights, independence, weights loading."""

import h5py
import keras
import numpy as np
import pytest

from vgg_transfer.run.epochs import set_seed
from vgg_transfer.run.explain import fixed_examples, gradcam, gradcam_layer
from vgg_transfer.run.models import SmallMapConv, build_model, param_counts, stem, top
from vgg_transfer.run.training import FeatureCache, TrainingPhase, one_phase, predict, train
from vgg_transfer.run.weights import WeightsError, build_base, hed_weights_path

BASE_PARAMS = 14_714_688     # VGG16 convolutional base (13 conv layers)
HEAD_PARAMS = 512 * 256 + 256 + 256 * 10 + 10  # Dense 256 on 512 features + Dense 10


@pytest.mark.parametrize("regime, trainable", [
    ("scratch", BASE_PARAMS + HEAD_PARAMS),
    ("frozen", HEAD_PARAMS),
    ("finetune", BASE_PARAMS + HEAD_PARAMS),
])
def test_trainable_parameters(regime, trainable):
    counts = param_counts(build_model(regime, "none").model)
    assert counts["trainable"] == trainable
    assert counts["total"] == BASE_PARAMS + HEAD_PARAMS


def _tiny_data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3)).astype("uint8"), rng.integers(0, 10, n)


@pytest.mark.parametrize("cache_features", [False, True])
def test_frozen_base_is_bit_identical_after_fit(cache_features):
    set_seed(0)
    built = build_model("frozen", "none")
    before = [w.copy() for w in built.base.get_weights()]
    head_before = [w.copy() for w in built.head.get_weights()]
    x, y = _tiny_data()
    train(built, one_phase(5, 1, 1e-3), x, y, x[:8], y[:8], batch_size=16,
          cache_features=cache_features)
    assert all(np.array_equal(a, b) for a, b in zip(before, built.base.get_weights(), strict=False))
    assert not all(np.array_equal(a, b)
                   for a, b in zip(head_before, built.head.get_weights(), strict=True))


def test_regimes_do_not_share_weights():
    frozen = build_model("frozen", "hed-bsds500")
    finetune = build_model("finetune", "hed-bsds500")
    ids = {id(v) for v in frozen.model.weights}
    assert not ids & {id(v) for v in finetune.model.weights}
    before = [w.copy() for w in frozen.base.get_weights()]
    x, y = _tiny_data(16)
    train(finetune, one_phase(0, 1, 1e-3), x, y, x[:8], y[:8], batch_size=16)
    assert all(np.array_equal(a, b)
               for a, b in zip(before, frozen.base.get_weights(), strict=True))
    assert not np.array_equal(finetune.base.get_weights()[0], before[0])


def test_hed_weights_load_offline_and_differ_from_random():
    hed, provenance = build_base("hed-bsds500", (32, 32, 3))
    random, _ = build_base("none", (32, 32, 3))
    with h5py.File(hed_weights_path(), "r") as f:
        expected = f["block5/layers/conv2d_2/vars/0"][()]
    assert np.array_equal(hed.get_layer("block5_conv3").get_weights()[0], expected)
    assert not np.allclose(hed.get_layer("block1_conv1").get_weights()[0],
                           random.get_layer("block1_conv1").get_weights()[0])
    assert provenance["name"] == "hed-bsds500" and len(provenance["sha256"]) == 64


def test_imagenet_failure_names_the_other_choices(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")
    monkeypatch.setattr(keras.applications, "VGG16", offline)
    with pytest.raises(WeightsError, match="could not be downloaded.*hed-bsds500"):
        build_base("imagenet", (32, 32, 3))


def test_weights_file_path(tmp_path):
    hed, _ = build_base("hed-bsds500", (32, 32, 3))
    path = tmp_path / "base.weights.h5"
    hed.save_weights(path)
    loaded, provenance = build_base(str(path), (32, 32, 3))
    assert np.array_equal(loaded.get_weights()[-2], hed.get_weights()[-2])
    assert provenance["source"] == "user file"
    (tmp_path / "bad.weights.h5").write_bytes(b"not a weights file")
    with pytest.raises(WeightsError, match="does not fit a VGG16 base"):
        build_base(str(tmp_path / "bad.weights.h5"), (32, 32, 3))


BN_CHANNELS = 2 * 64 + 2 * 128 + 3 * 256 + 6 * 512  # one BatchNormalization per conv


BLOCK5 = 3 * (3 * 3 * 512 * 512 + 512)
MLP_PARAMS = 32 * 32 * 3 * 256 + 256 + 256 * 10 + 10  # the head straight on the pixels


@pytest.mark.parametrize("regime, trainable, non_trainable", [
    ("partial", BLOCK5 + HEAD_PARAMS, BASE_PARAMS - BLOCK5),
    ("two_phase", HEAD_PARAMS, BASE_PARAMS),  # before its second phase unfreezes the base
    ("mlp", MLP_PARAMS, 0),
    # conv biases dropped before batch norm; gamma and beta train, the moving statistics do not
    ("scratch_bn", BASE_PARAMS - BN_CHANNELS + 2 * BN_CHANNELS + HEAD_PARAMS, 2 * BN_CHANNELS),
])
def test_new_regimes_trainable_parameters(regime, trainable, non_trainable):
    counts = param_counts(build_model(regime, "none").model)
    assert (counts["trainable"], counts["non_trainable"]) == (trainable, non_trainable)


def test_gap_head_and_augmentation():
    built = build_model("frozen", "none", head="gap", augment=True)
    assert built.head.get_layer("gap") is not None
    assert param_counts(built.model)["trainable"] == HEAD_PARAMS  # 1x1x512 -> 512 either way
    x, _ = _tiny_data(4)
    x = x.astype("float32")
    # augmentation acts in training only: inference is deterministic
    assert np.array_equal(built.model(x, training=False), built.model(x, training=False))
    augmented = built.model.get_layer("augment")(x, training=True)
    assert not np.array_equal(np.asarray(augmented), x)


def test_two_phase_freezes_then_unfreezes_from_a_block():
    set_seed(0)
    built = build_model("two_phase", "none")
    assert param_counts(built.model)["trainable"] == HEAD_PARAMS  # phase 1: head only
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in built.base.layers}
    x, y = _tiny_data()
    phases = [TrainingPhase(5, 2, 1e-3, patience=2), TrainingPhase(4, 1, 1e-5)]
    result = train(built, phases, x, y, x[:8], y[:8], batch_size=16, seed=0)
    assert result.history["phase"] == [1, 1, 2]
    assert param_counts(built.model)["trainable"] == BLOCK5 + HEAD_PARAMS
    assert "on cached outputs of blocks 1-4" in result.notes[0]
    for layer in built.base.layers:
        same = all(np.array_equal(a, b)
                   for a, b in zip(before[layer.name], layer.get_weights(), strict=True))
        if layer.get_weights():
            assert same == (not layer.name.startswith("block5")), layer.name


def test_nan_loss_stops_training_with_a_clear_message():
    set_seed(0)
    built = build_model("frozen", "none")
    x, y = _tiny_data()
    # a diverged weight (NaN input pixels do not do it: ReLU and max-pooling drop them)
    kernel = built.head.get_layer("predictions").kernel
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    with pytest.raises(FloatingPointError, match=r"training diverged: \w+ became nan in epoch 1"):
        train(built, one_phase(5, 3, 1e-3), x, y, x[:8], y[:8], batch_size=16,
              cache_features=False)


@pytest.mark.parametrize("regime, blocks", [("frozen", 5), ("partial", 4)])
def test_stem_and_top_compute_the_model(regime, blocks):
    """The cached path is the same computation: top(stem(x)) == model(x)."""
    built = build_model(regime, "hed-bsds500")
    assert built.frozen_blocks == blocks
    x, _ = _tiny_data(8)
    x = x.astype("float32")
    whole = built.model.predict(x, verbose=0)
    split = top(built, blocks).predict(stem(built, blocks).predict(x, verbose=0), verbose=0)
    assert np.allclose(whole, split, atol=1e-6)
    assert np.allclose(predict(built, x, 4, FeatureCache()), whole, atol=1e-6)
    assert stem(built, blocks).output.shape[1:] == ((1, 1, 512) if blocks == 5 else (2, 2, 512))


def _conv_pair(rows, cols, activation="relu", c_in=6, c_out=5):
    """Two one-layer models on a (rows, cols) map: a Conv2D, and SmallMapConv of that Conv2D."""
    inputs = keras.Input((rows, cols, c_in))
    conv = keras.layers.Conv2D(c_out, 3, padding="same", activation=activation)
    plain = keras.Model(inputs, keras.layers.Flatten()(conv(inputs)))
    as_matmul = keras.Model(inputs, keras.layers.Flatten()(SmallMapConv(conv)(inputs)))
    return conv, plain, as_matmul


@pytest.mark.parametrize("rows, cols", [(2, 2), (1, 1), (1, 2), (2, 1)])
@pytest.mark.parametrize("activation", ["relu", None])
def test_small_map_conv_is_the_convolution(rows, cols, activation):
    """Same outputs as the Conv2D it wraps, and the same variables (no weights of its own)."""
    set_seed(0)
    conv, plain, as_matmul = _conv_pair(rows, cols, activation)
    conv.bias.assign(np.linspace(-1, 1, 5).astype("float32"))  # a bias that shows its layout
    x = np.random.default_rng(1).normal(size=(7, rows, cols, 6)).astype("float32")
    assert np.allclose(plain.predict(x, verbose=0), as_matmul.predict(x, verbose=0), atol=1e-5)
    assert [id(v) for v in as_matmul.trainable_variables] == [id(conv.kernel), id(conv.bias)]
    conv.trainable = False
    assert as_matmul.trainable_variables == []


def test_small_map_conv_trains_like_the_convolution():
    """Gradients match: a few Adam steps through either form leave the same kernel."""
    kernels = []
    for form in (1, 2):
        set_seed(0)
        conv, *models = _conv_pair(2, 2)
        model = models[form - 1]
        model.compile(keras.optimizers.Adam(1e-2), "mse")
        rng = np.random.default_rng(2)
        model.fit(rng.normal(size=(32, 2, 2, 6)).astype("float32"),
                  rng.normal(size=(32, 20)).astype("float32"), batch_size=8, epochs=2,
                  shuffle=False, verbose=0)
        kernels.append(conv.kernel.numpy())
    assert not np.allclose(kernels[0], 0) and np.allclose(kernels[0], kernels[1], atol=1e-5)


def test_small_map_conv_refuses_what_it_would_get_wrong():
    conv = keras.layers.Conv2D(4, 3, padding="same")
    with pytest.raises(ValueError, match="at most 2x2"):
        SmallMapConv(conv)(keras.Input((4, 4, 3)))
    with pytest.raises(ValueError, match="3x3 'same'"):
        SmallMapConv(keras.layers.Conv2D(4, 3, padding="valid"))
    with pytest.raises(ValueError, match="3x3 'same'"):
        SmallMapConv(keras.layers.Conv2D(4, 1, padding="same"))


def test_top_runs_block5_as_matmul_only_on_small_maps():
    """At 32 px block 5 sees 2x2 maps (as one product); at 64 px 4x4 ones (plain Conv2D)."""
    def forms(image_size):
        return [type(layer).__name__ for layer in
                top(build_model("partial", "none", image_size=image_size), 4).layers
                if "conv" in layer.name]
    assert forms(32) == ["SmallMapConv"] * 3
    assert forms(64) == ["Conv2D"] * 3


def test_partial_trains_block5_on_cached_features_like_on_the_fly(tmp_path):
    """Block 5 and the head trained on cached block-4 outputs end where on-the-fly training
    ends, and the cache is written once and read back."""
    x, y = _tiny_data(32)
    finals = []
    for cache_features in (False, True):
        set_seed(0)
        built = build_model("partial", "hed-bsds500")
        before = [w.copy() for w in built.base.get_layer("block4_conv3").get_weights()]
        cache = FeatureCache(tmp_path, {"test": 1}, {"train": np.arange(32), "val": np.arange(8)})
        result = train(built, one_phase(4, 2, 1e-4), x, y, x[:8], y[:8], batch_size=16,
                       cache_features=cache_features, cache=cache, seed=0)
        assert result.cached == cache_features
        assert all(np.array_equal(a, b) for a, b in
                   zip(before, built.base.get_layer("block4_conv3").get_weights(), strict=False))
        finals.append(built.base.get_layer("block5_conv3").get_weights()[0])
    assert np.allclose(finals[0], finals[1], atol=1e-4)
    assert sorted(p.name.split("-")[0] for p in tmp_path.glob("*.npy")) == ["train", "val"]
    assert len(list(tmp_path.glob("*.json"))) == 2  # how long computing them took


def test_gradcam_heatmaps():
    built = build_model("frozen", "hed-bsds500")
    assert gradcam_layer(built) == "block4_conv3"  # block 5 is 2x2 at 32 px
    assert gradcam_layer(build_model("frozen", "none", image_size=64)) == "block5_conv3"
    assert gradcam_layer(build_model("mlp", "none")) is None
    x, _ = _tiny_data(4)
    cams = gradcam(built, x)
    assert cams["heatmaps"].shape == (4, 32, 32) and cams["side"] == 4
    assert cams["heatmaps"].min() >= 0 and cams["heatmaps"].max() <= 1
    predicted = built.model.predict(x.astype("float32"), verbose=0).argmax(axis=1)
    assert np.array_equal(cams["classes"], predicted)  # the predicted class by default
    other = gradcam(built, x, classes=(predicted + 1) % 10)
    assert not np.allclose(other["heatmaps"], cams["heatmaps"])
    labels = np.array([3, 1, 3, 0, 1, 2])
    assert fixed_examples(labels).tolist() == [0, 1, 3, 5]  # the first image of each class


