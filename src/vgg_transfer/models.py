"""VGG16 base + the study's head, in three regimes.

Every regime gets the same input pipeline inside the model (optional upsampling, then
`keras.applications.vgg16.preprocess_input`), the same VGG16 convolutional base and the same
head: Flatten -> Dense 256 ReLU -> Dropout 0.5 -> Dense 10 softmax.

- scratch:  random init, everything trains.
- frozen:   pretrained base, `trainable = False` and called with `training=False`; the head trains.
- finetune: pretrained base, everything trains.
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


def build_head(feature_shape: tuple[int, ...]) -> keras.Sequential:
    """The study's classification head."""
    return keras.Sequential([
        keras.Input(shape=feature_shape),
        layers.Flatten(name="flatten"),
        layers.Dense(256, activation="relu", name="dense_256"),
        layers.Dropout(0.5, name="dropout"),
        # float32 softmax whatever the compute precision, as Keras advises for mixed precision
        layers.Dense(NUM_CLASSES, activation="softmax", name="predictions", dtype="float32"),
    ], name="head")


def build_model(regime: str, weights: str = "none", image_size: int = 32) -> Built:
    """Build a fresh model for one regime (never reuse one across regimes).

    Args:
        regime: scratch | frozen | finetune.
        weights: imagenet | hed-bsds500 | none | a weights file path.
        image_size: side of the square input the base sees; CIFAR's 32 px are upsampled to it.
    """
    if regime not in ("scratch", "frozen", "finetune"):
        raise ValueError(f"regime: unknown regime {regime!r} (allowed: scratch, frozen, finetune)")
    inputs = keras.Input(shape=(32, 32, 3), name="image")
    x = inputs
    if image_size != 32:
        x = layers.Resizing(image_size, image_size, interpolation="bilinear", name="upsample")(x)
    x = VGGPreprocess(name="vgg_preprocess")(x)
    base, provenance = build_base(weights, (image_size, image_size, 3))
    if regime == "frozen":
        base.trainable = False
        features = base(x, training=False)  # inference mode, whatever fit() asks
    else:
        base.trainable = True
        features = base(x)
    head = build_head(tuple(features.shape[1:]))
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
