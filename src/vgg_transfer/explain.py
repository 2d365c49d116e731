"""Grad-CAM: where in the image the evidence for a class comes from.

Grad-CAM (Selvaraju et al., 2017) weighs the feature maps of one convolution by the average
gradient of a class score over each map, sums them and keeps the positive part. At CIFAR's
32×32 input VGG16's last convolution sees a 2×2 grid, too coarse to show anything, so the
default layer is the last convolution whose output is at least 4×4.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from vgg_transfer.models import Built, block_of

MIN_SIDE = 4  # the coarsest heatmap worth showing, in feature-map positions


def gradcam_layer(built: Built, min_side: int = MIN_SIDE) -> str | None:
    """The last convolution of the base whose output is at least `min_side` on a side
    (None for a model without a convolutional base)."""
    if built.base is None:
        return None
    convs = [layer for layer in built.base.layers if isinstance(layer, keras.layers.Conv2D)]
    wide = [layer for layer in convs if layer.output.shape[1] >= min_side]
    return (wide or convs)[-1].name


def _cam_model(built: Built, layer: str) -> keras.Model:
    """Images -> (the layer's feature maps, class logits), sharing the model's layers."""
    inputs = keras.Input(shape=(32, 32, 3))
    x, maps = inputs, None
    for part in built.pipeline + [lyr for lyr in built.base.layers if block_of(lyr)]:
        x = part(x)
        if part.name == layer:
            maps = x
    if maps is None:
        raise ValueError(f"gradcam: no layer {layer!r} in the base")
    *hidden, last = built.head.layers
    for part in hidden:
        x = part(x)
    logits = keras.ops.matmul(x, last.kernel) + last.bias  # the score before the softmax
    return keras.Model(inputs, [maps, logits])


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
    model = _cam_model(built, layer)
    x = tf.convert_to_tensor(np.asarray(images, dtype="float32"))
    with tf.GradientTape() as tape:
        maps, logits = model(x, training=False)
        if classes is None:
            classes = np.asarray(tf.argmax(logits, axis=1))
        score = tf.gather(logits, tf.convert_to_tensor(classes), batch_dims=1)
    grads = tape.gradient(score, maps)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[..., None]
    cam = tf.image.resize(cam, (32, 32), method="bilinear")[..., 0].numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1)
    cam = np.divide(cam, peak[:, None, None], out=np.zeros_like(cam),
                    where=peak[:, None, None] > 0)
    return {"heatmaps": cam.astype("float32"), "classes": np.asarray(classes),
            "layer": layer, "side": int(maps.shape[1])}


def fixed_examples(labels: np.ndarray, per_class: int = 1) -> np.ndarray:
    """The first `per_class` test images of each class: the same images for every run."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class]
                                   for c in np.unique(labels)]))
