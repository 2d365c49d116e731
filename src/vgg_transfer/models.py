"""VGG16 base + the study's head, in three regimes.

Every regime gets the same input pipeline inside the model (optional upsampling, then
`keras.applications.vgg16.preprocess_input`), the same VGG16 convolutional base and the same
head: Flatten -> Dense 256 ReLU -> Dropout 0.5 -> Dense 10 softmax.

- scratch:    random init, everything trains.
- frozen:     pretrained base, `trainable = False` and called with `training=False`; the head trains.
- finetune:   pretrained base, everything trains.
- partial:    pretrained base with blocks 1-4 frozen; block 5 and the head train (what the
              original notebook's "frozen" model actually was).
- scratch_bn: the VGG16 layout with batch normalisation after every convolution, random init;
              the fair from-scratch baseline (best with `augment`).
- two_phase:  built like frozen; `training.train_two_phase` trains the head, then unfreezes the
              base (recompiling) and fine-tunes at a low learning rate.

Options for every regime: `head` ("flatten", the original, or "gap", global average pooling)
and `augment` (random horizontal flips and translations, as layers inside the model, active
only in training).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from vgg_transfer.data import NUM_CLASSES
from vgg_transfer.weights import build_base


@keras.saving.register_keras_serializable(package="vgg_transfer")
class VGGPreprocess(layers.Layer):
    """`keras.applications.vgg16.preprocess_input` as a layer: RGB -> BGR, ImageNet mean off.

    Inside the model, so every regime sees exactly the same preprocessing of 0-255 pixels.
    """

    def call(self, images):
        return keras.applications.vgg16.preprocess_input(images)


@dataclass
class Built:
    """A freshly built model and the parts the training loop needs."""

    model: keras.Model       # image (0-255) -> class probabilities
    base: keras.Model        # the VGG16 convolutional base
    head: keras.Model        # Flatten -> Dense 256 -> Dropout -> Dense 10
    features: keras.Model    # image -> base output: the freeze boundary of the frozen regime
    weights: dict            # provenance of the base's weights


def build_head(feature_shape: tuple[int, ...], pooling: str = "flatten") -> keras.Sequential:
    """The study's classification head; `pooling="gap"` averages positions instead of
    flattening them."""
    if pooling not in ("flatten", "gap"):
        raise ValueError(f"head: unknown head {pooling!r} (allowed: flatten, gap)")
    return keras.Sequential([
        keras.Input(shape=feature_shape),
        layers.Flatten(name="flatten") if pooling == "flatten"
        else layers.GlobalAveragePooling2D(name="gap"),
        layers.Dense(256, activation="relu", name="dense_256"),
        layers.Dropout(0.5, name="dropout"),
        # float32 softmax whatever the compute precision, as Keras advises for mixed precision
        layers.Dense(NUM_CLASSES, activation="softmax", name="predictions", dtype="float32"),
    ], name="head")


REGIMES = ("scratch", "frozen", "finetune", "partial", "scratch_bn", "two_phase")


def build_vgg16_bn(input_shape: tuple[int, int, int]) -> keras.Model:
    """The VGG16 convolutional layout with BatchNormalization after every convolution."""
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for block, (convs, filters) in enumerate(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), 1):
        for i in range(1, convs + 1):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                              name=f"block{block}_conv{i}")(x)
            x = layers.BatchNormalization(name=f"block{block}_bn{i}")(x)
            x = layers.Activation("relu", name=f"block{block}_relu{i}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="vgg16_bn")


def augmentation() -> keras.Sequential:
    """Random horizontal flips and shifts of up to 4 pixels; identity at inference."""
    return keras.Sequential([layers.RandomFlip("horizontal"),
                             layers.RandomTranslation(0.125, 0.125, fill_mode="reflect")],
                            name="augment")


def build_model(regime: str, weights: str = "none", image_size: int = 32,
                head: str = "flatten", augment: bool = False) -> Built:
    """Build a fresh model for one regime (never reuse one across regimes).

    Args:
        regime: one of `REGIMES`.
        weights: imagenet | hed-bsds500 | none | a weights file path (ignored by scratch_bn,
            which has its own layout).
        image_size: side of the square input the base sees; CIFAR's 32 px are upsampled to it.
        head: "flatten" (the original head) or "gap" (global average pooling first).
        augment: random flips and translations inside the model, in training only.
    """
    if regime not in REGIMES:
        raise ValueError(f"regime: unknown regime {regime!r} (allowed: {', '.join(REGIMES)})")
    inputs = keras.Input(shape=(32, 32, 3), name="image")
    x = augmentation()(inputs) if augment else inputs
    if image_size != 32:
        x = layers.Resizing(image_size, image_size, interpolation="bilinear", name="upsample")(x)
    x = VGGPreprocess(name="vgg_preprocess")(x)
    if regime == "scratch_bn":
        base = build_vgg16_bn((image_size, image_size, 3))
        provenance = {"name": "none", "source": "random init (VGG16 layout with batch norm)",
                      "path": None, "sha256": None}
    else:
        base, provenance = build_base(weights, (image_size, image_size, 3))
    if regime in ("frozen", "partial", "two_phase"):  # two_phase starts frozen
        base.trainable = regime == "partial"
        for layer in base.layers:  # partial: only block 5 trains
            layer.trainable = regime == "partial" and layer.name.startswith("block5")
        features = base(x, training=False)  # inference mode, whatever fit() asks
    else:
        base.trainable = True
        features = base(x)
    head = build_head(tuple(features.shape[1:]), pooling=head)
    model = keras.Model(inputs, head(features), name=f"vgg16_{regime}")
    return Built(model, base, head, keras.Model(inputs, features, name="features"), provenance)


def compile_model(model: keras.Model, learning_rate: float) -> None:
    """Adam + categorical cross-entropy, as in the original study. Call after any `trainable` change."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])


def count_params(weights: list) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def param_counts(model: keras.Model) -> dict:
    """Trainable and non-trainable parameter counts."""
    return {"trainable": count_params(model.trainable_weights),
            "non_trainable": count_params(model.non_trainable_weights),
            "total": count_params(model.weights)}


def layer_table(model: keras.Model) -> list[dict]:
    """One row per layer of the base and head: name, type, output shape, parameters."""
    rows = []
    for layer in model.layers:
        inner = layer.layers if isinstance(layer, keras.Model) else [layer]
        for sub in inner:
            if isinstance(sub, keras.layers.InputLayer):
                continue
            rows.append({
                "part": layer.name if isinstance(layer, keras.Model) else "input pipeline",
                "layer": sub.name,
                "type": type(sub).__name__,
                "output shape": str(tuple(sub.output.shape[1:])),
                "parameters": count_params(sub.weights),
                "trainable": bool(sub.trainable and layer.trainable),
            })
    return rows
