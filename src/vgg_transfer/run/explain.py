"""Grad-CAM: where in the image the evidence for a class comes from.

Grad-CAM (Selvaraju et al., 2017) weighs the feature maps of one convolution by the average
gradient of a class score over each map, sums them and keeps the positive part. At CIFAR's
32×32 input VGG16's last convolution sees a 2×2 grid, too coarse to show anything, so the
default layer is the last convolution whose output is at least 4×4.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from vgg_transfer.run import backend
from vgg_transfer.run.models import Built, block_of

MIN_SIDE = 4  # the coarsest heatmap worth showing, in feature-map positions


def gradcam_layer(built: Built, min_side: int = MIN_SIDE) -> str | None:
    """The last convolution of the base whose output is at least `min_side` on a side
    (None for a model without a convolutional base)."""
    if built.base is None:
        return None
    convs = [layer for layer in built.base.layers if isinstance(layer, keras.layers.Conv2D)]
    wide = [layer for layer in convs if layer.output.shape[1] >= min_side]
    return (wide or convs)[-1].name


def _cam_models(built: Built, layer: str) -> tuple[keras.Model, keras.Model]:
    """Images -> the layer's feature maps, and those maps -> class logits (the score before
    the softmax), sharing the model's layers: the gradient is taken at the second's input."""
    parts = built.pipeline + [lyr for lyr in built.base.layers if block_of(lyr)]
    names = [part.name for part in parts]
    if layer not in names:
        raise ValueError(f"gradcam: no layer {layer!r} in the base")
    cut = names.index(layer) + 1
    inputs = keras.Input(shape=(32, 32, 3))
    x = inputs
    for part in parts[:cut]:
        x = part(x)
    lower = keras.Model(inputs, x)
    maps = keras.Input(shape=tuple(x.shape[1:]))
    x = maps
    *hidden, last = built.head.layers
    for part in parts[cut:] + hidden:
        x = part(x)
    return lower, keras.Model(maps, ops.matmul(x, last.kernel) + last.bias)


def gradcam(built: Built, images: np.ndarray, classes: np.ndarray | None = None,
            layer: str | None = None) -> dict:
    """Grad-CAM heatmaps, upsampled to the 32×32 input and scaled to 0..1 per image.

    Args:
        images: (N, 32, 32, 3), 0-255.
        classes: the class to explain per image; None = the model's own prediction.
        layer: a convolution of the base; None = `gradcam_layer(built)`.

    Returns:
        dict with heatmaps (N, 32, 32) float32, classes (N,), layer, side (of the feature map).
    """
    layer = layer or gradcam_layer(built)
    lower, upper = _cam_models(built, layer)
    maps = lower(ops.convert_to_tensor(np.asarray(images, dtype="float32")), training=False)
    if classes is None:
        classes = ops.convert_to_numpy(ops.argmax(upper(maps, training=False), axis=1))
    picked = ops.convert_to_tensor(np.asarray(classes).reshape(-1, 1).astype("int32"))

    def score(x):  # each image's score depends on its own maps only, so one sum will do
        return ops.sum(ops.take_along_axis(upper(x, training=False), picked, axis=1))

    weights = ops.mean(backend.gradient(score, maps), axis=(1, 2), keepdims=True)
    cam = ops.relu(ops.sum(weights * maps, axis=-1))[..., None]
    cam = ops.convert_to_numpy(ops.image.resize(cam, (32, 32), interpolation="bilinear",
                                                antialias=False))[..., 0]
    peak = cam.reshape(len(cam), -1).max(axis=1)
    cam = np.divide(cam, peak[:, None, None], out=np.zeros_like(cam),
                    where=peak[:, None, None] > 0)
    return {"heatmaps": cam.astype("float32"), "classes": np.asarray(classes),
            "layer": layer, "side": int(maps.shape[1])}


def fixed_examples(labels: np.ndarray, per_class: int = 1) -> np.ndarray:
    """The first `per_class` test images of each class: the same images for every run."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class]
                                   for c in np.unique(labels)]))
