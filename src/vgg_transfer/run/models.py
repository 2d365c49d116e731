"""VGG16 base + the study's head, built fresh for each run.

Every regime gets the same input pipeline inside the model (optional upsampling, then
`keras.applications.vgg16.preprocess_input`), the same convolutional base and the same
head: Flatten -> Dense 256 ReLU -> Dropout 0.5 -> Dense 10 softmax. Which base a regime uses
("vgg16" with the configured weights, "vgg16_bn" with batch norm, or "none": the head on
the pixels), and which leading blocks start frozen, is the regime's registry entry
(`vgg_transfer.spec.regimes`); training freezes and unfreezes blocks phase by phase.

Frozen leading blocks compute the same outputs in every epoch, so the training loop can cache
them: `stem(built, k)` maps images to the output of block k, `top(built, k)` maps that output
to class probabilities through the trainable rest (sharing its layers with `built.model`).
On those cached outputs, a convolution whose input map is at most 2x2 (block 5 at 32 px)
runs as one matrix product (`SmallMapConv`): the same numbers as the Conv2D, with the same
variables, at about twice the training speed measured on 2 CPU cores.

Options for every regime: `head` ("flatten", the original, or "gap", global average pooling)
and `augment` (random horizontal flips and translations, as layers inside the model, active
only in training).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np
from keras import layers

from vgg_transfer.core.data import NUM_CLASSES
from vgg_transfer.run.weights import build_base
from vgg_transfer.spec import regimes


@keras.saving.register_keras_serializable(package="vgg_transfer")
class VGGPreprocess(layers.Layer):
    """`keras.applications.vgg16.preprocess_input` as a layer: RGB -> BGR, ImageNet mean off.

    Inside the model, so every regime sees exactly the same preprocessing of 0-255 pixels.
    """

    def call(self, images):
        return keras.applications.vgg16.preprocess_input(images)


class SmallMapConv(layers.Layer):
    """A 3x3 'same' Conv2D on a map of at most 2x2 positions, as one matrix product.

    On such a map every input position lies inside every output position's 3x3 window, so
    the convolution is a dense layer from all positions' channels to all positions'
    channels whose (positions x positions) blocks are the kernel's taps: output (i, j) reads
    input (k, l) through tap (k - i + 1, l - j + 1). One (4 * 512) x (4 * 512) product
    replaces the 9 taps' scattered small ones (and the 20 of 36 taps that would only read
    the zero padding). The layer owns no weights: it computes with `conv`'s kernel and bias,
    so training it trains `conv`, and freezing `conv` freezes it.
    """

    def __init__(self, conv: layers.Conv2D, **kwargs):
        super().__init__(name=kwargs.pop("name", f"{conv.name}_as_matmul"), **kwargs)
        if not _is_3x3_same(conv):
            raise ValueError(f"SmallMapConv: {conv.name} is not a 3x3 'same' stride-1 Conv2D")
        self.conv = conv

    def build(self, input_shape):
        if not applies_to(self.conv, input_shape):
            raise ValueError(f"SmallMapConv: an input map of {tuple(input_shape[1:3])} "
                             "positions; at most 2x2 is exact as one product")
        rows, cols = input_shape[1], input_shape[2]
        positions = [(i, j) for i in range(rows) for j in range(cols)]
        # taps[q, p]: the kernel tap that carries input position q to output position p
        self.taps = np.array([[(k - i + 1) * 3 + (m - j + 1) for (i, j) in positions]
                              for (k, m) in positions], dtype="int32")

    def call(self, x):
        kernel = self.conv.kernel                       # (3, 3, in, out)
        n, c_in, c_out = len(self.taps), kernel.shape[2], kernel.shape[3]
        blocks = keras.ops.take(keras.ops.reshape(kernel, (9, c_in, c_out)),
                                self.taps.reshape(-1), axis=0)      # (n * n, in, out)
        dense = keras.ops.reshape(keras.ops.transpose(
            keras.ops.reshape(blocks, (n, n, c_in, c_out)), (0, 2, 1, 3)), (n * c_in, n * c_out))
        y = keras.ops.matmul(keras.ops.reshape(x, (-1, n * c_in)), dense)
        if self.conv.use_bias:
            y = y + keras.ops.tile(self.conv.bias, (n,))
        return self.conv.activation(keras.ops.reshape(y, (-1, x.shape[1], x.shape[2], c_out)))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], self.conv.filters)


def applies_to(layer, input_shape) -> bool:
    """Whether `SmallMapConv` computes `layer` exactly on inputs of `input_shape`."""
    return (_is_3x3_same(layer) and None not in input_shape[1:3]
            and input_shape[1] <= 2 and input_shape[2] <= 2)


def _is_3x3_same(layer) -> bool:
    return (isinstance(layer, layers.Conv2D) and tuple(layer.kernel_size) == (3, 3)
            and tuple(layer.strides) == (1, 1) and tuple(layer.dilation_rate) == (1, 1)
            and layer.padding == "same" and layer.data_format == "channels_last"
            and layer.groups == 1)


@dataclass
class Built:
    """A freshly built model and the parts the training loop needs."""

    model: keras.Model       # image (0-255) -> class probabilities
    base: keras.Model | None  # the VGG16 convolutional base (None for mlp)
    head: keras.Model        # Flatten -> Dense 256 -> Dropout -> Dense 10
    weights: dict            # provenance of the base's weights
    pipeline: list = field(default_factory=list)  # upsampling and preprocessing layers
    augment: bool = False    # random flips and shifts in training (no feature cache then)

    @property
    def frozen_blocks(self) -> int:
        """Leading base blocks frozen right now (5: the whole base), read off the layers."""
        return frozen_prefix(self.base) if self.base is not None else 0


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


BN_MOMENTUM = 0.9  # Keras's 0.99 leaves the moving statistics far off after a few dozen
# steps, and evaluation (which uses them) then sits at chance; 0.9 is PyTorch's default


def build_vgg16_bn(input_shape: tuple[int, int, int]) -> keras.Model:
    """The VGG16 convolutional layout with BatchNormalization after every convolution."""
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for block, (convs, filters) in enumerate(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), 1):
        for i in range(1, convs + 1):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                              name=f"block{block}_conv{i}")(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn{i}")(x)
            x = layers.Activation("relu", name=f"block{block}_relu{i}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="vgg16_bn")


def augmentation() -> keras.Sequential:
    """Random horizontal flips and shifts of up to 4 pixels; identity at inference."""
    return keras.Sequential([layers.RandomFlip("horizontal"),
                             layers.RandomTranslation(0.125, 0.125, fill_mode="reflect")],
                            name="augment")


def _pipeline(image_size: int) -> list:
    """Upsampling (when the base sees more than CIFAR's 32 px) and VGG16's preprocessing."""
    upsample = [layers.Resizing(image_size, image_size, interpolation="bilinear",
                                name="upsample")] if image_size != 32 else []
    return [*upsample, VGGPreprocess(name="vgg_preprocess")]


def _base(kind: str, weights: str, image_size: int) -> tuple[keras.Model, dict]:
    """The convolutional base a regime names in the registry, and its weights' provenance."""
    shape = (image_size, image_size, 3)
    if kind == "vgg16_bn":
        return build_vgg16_bn(shape), {"name": "none", "path": None, "sha256": None,
                                       "source": "random init (VGG16 layout with batch norm)"}
    return build_base(weights, shape)


def build_model(regime: str, weights: str = "none", image_size: int = 32,
                head: str = "flatten", augment: bool = False) -> Built:
    """Build a fresh model for one regime (never reuse one across regimes).

    Args:
        regime: a name in the registry (`regimes.NAMES`); its entry says which base is
            built and which leading blocks start frozen.
        weights: imagenet | hed-bsds500 | none | a weights file path (ignored by scratch_bn,
            which has its own layout).
        image_size: side of the square input the base sees; CIFAR's 32 px are upsampled to it.
        head: "flatten" (the original head) or "gap" (global average pooling first).
        augment: random flips and translations inside the model, in training only.
    """
    entry = regimes.get(regime)
    inputs = keras.Input(shape=(32, 32, 3), name="image")
    x = augmentation()(inputs) if augment else inputs
    pipeline = _pipeline(image_size)
    for layer in pipeline:
        x = layer(x)
    if entry.base == "none":
        head_model = build_head(tuple(x.shape[1:]), pooling=head)
        provenance = {"name": "none", "source": "random init (no convolutional base)",
                      "path": None, "sha256": None}
        return Built(keras.Model(inputs, head_model(x), name=regime), None, head_model,
                     provenance, pipeline, augment)
    base, provenance = _base(entry.base, weights, image_size)
    if entry.frozen_at_build:
        freeze_blocks(base, entry.frozen_at_build)
        features = base(x, training=False)  # inference mode, whatever fit() asks
    else:
        base.trainable = True
        features = base(x)
    head_model = build_head(tuple(features.shape[1:]), pooling=head)
    model = keras.Model(inputs, head_model(features), name=f"vgg16_{regime}")
    return Built(model, base, head_model, provenance, pipeline, augment)


def block_of(layer) -> int:
    """The VGG16 block (1-5) a base layer belongs to, 0 for the input layer."""
    return int(layer.name[5]) if layer.name.startswith("block") else 0


def freeze_blocks(base: keras.Model, blocks: int) -> None:
    """Freeze blocks 1..`blocks` of a VGG16 base and let the later ones train.

    Recompile afterwards: the optimiser only sees what was trainable when it was compiled.
    """
    base.trainable = blocks < 5
    for layer in base.layers:
        layer.trainable = block_of(layer) > blocks


def frozen_prefix(base: keras.Model) -> int:
    """How many leading blocks of a base are frozen (5 when the whole base is)."""
    if not base.trainable:
        return 5
    blocks = 0
    for block in range(1, 6):
        members = [layer for layer in base.layers if block_of(layer) == block]
        if members and all(not layer.trainable for layer in members):
            blocks = block
        else:
            break
    return blocks


def _split(built: Built, blocks: int) -> tuple[list, list]:
    """The base's layers up to and including block `blocks`, and the rest."""
    body = [layer for layer in built.base.layers if block_of(layer)]
    return ([layer for layer in body if block_of(layer) <= blocks],
            [layer for layer in body if block_of(layer) > blocks])


def stem(built: Built, blocks: int) -> keras.Model:
    """Images (0-255) -> the output of block `blocks`: the frozen part the loop can cache.

    Shares its layers with `built.model`; the augmentation layers are left out, since a
    cache is only valid without them.
    """
    inputs = keras.Input(shape=(32, 32, 3), name="image")
    x = inputs
    for layer in built.pipeline + _split(built, blocks)[0]:
        x = layer(x)
    return keras.Model(inputs, x, name=f"stem_{blocks}")


def segment(built: Built, start: int, end: int) -> keras.Model:
    """The output of block `start` -> the output of block `end` (start < end): how a deeper
    boundary's cached outputs are built from a shallower one's."""
    if not 0 < start < end <= 5:
        raise ValueError(f"segment: need 0 < start < end <= 5, got {start}, {end}")
    shape = stem(built, start).output.shape[1:]
    inputs = keras.Input(shape=tuple(shape), name=f"block{start}_output")
    x = inputs
    for layer in _split(built, start)[1]:
        if block_of(layer) <= end:
            x = layer(x)
    return keras.Model(inputs, x, name=f"blocks_{start + 1}_to_{end}")


def top(built: Built, blocks: int, small_maps: bool = True) -> keras.Model:
    """The output of block `blocks` -> class probabilities, through the later blocks and
    the head (the layers of `built.model`, so training it trains the model); convolutions
    on maps of at most 2x2 run as `SmallMapConv` unless `small_maps` is False."""
    shape = stem(built, blocks).output.shape[1:]
    inputs = keras.Input(shape=tuple(shape), name=f"block{blocks}_output")
    x = inputs
    for layer in _split(built, blocks)[1]:
        x = (SmallMapConv(layer) if small_maps and applies_to(layer, x.shape) else layer)(x)
    return keras.Model(inputs, built.head(x), name=f"top_{blocks}")


def compile_model(model: keras.Model, learning_rate: float) -> None:
    """Adam + categorical cross-entropy, as in the original study. Call after any `trainable`
    change."""
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
