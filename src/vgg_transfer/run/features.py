"""Outputs of frozen leading blocks, computed once and kept on disk at any block boundary.

Frozen convolutions compute the same outputs in every epoch, so a phase that keeps blocks
1..k frozen trains the rest on their outputs, computed once. The files live in one folder
per outputs folder (`<outputs>/.feature-cache/`, beside the profiles; the runner's plan
passes it down, `Plan.feature_cache`), each named by a hash of everything that determines
it: the weights, input size, preprocessing, data files, Keras version, the run code, the
boundary k and the exact images. So a stale file is never read, and every profile reads
what another computed (the study what quick did, and the other way round).

A deeper boundary's outputs are built from a shallower one's when that is on disk: block-5
outputs from cached block-4 outputs cost about a tenth of recomputing blocks 1-5 (at 32 px
block 5 runs on 2x2 maps). Beside each file a small JSON file keeps how long computing it
took and from which boundary, so its cost stays known when later runs only read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vgg_transfer import files
from vgg_transfer.run.models import Built, segment, stem


@dataclass
class FeatureCache:
    """Where the outputs of a model's frozen leading blocks are kept between runs.

    `folder=None` computes without storing.
    """

    folder: Path | None = None
    key: dict = field(default_factory=dict)
    indices: dict = field(default_factory=dict)  # split -> image indices into its source array

    def path(self, split: str, blocks: int) -> Path | None:
        """The file of one split's outputs of blocks 1..`blocks` (None: not stored)."""
        if self.folder is None or split not in self.indices:
            return None
        source = "test" if split == "test" else "train"  # train and val index the train set
        indices = np.asarray(self.indices[split], dtype=np.int64)
        payload = json.dumps({**self.key, "source": source, "blocks": blocks,
                              "indices": hashlib.sha256(indices.tobytes()).hexdigest()},
                             sort_keys=True)
        digest = hashlib.sha256(payload.encode()).hexdigest()[:24]
        return self.folder / f"{split}-b{blocks}-{digest}.npy"


@dataclass
class Features:
    """One split's outputs of blocks 1..`blocks`, and what they cost."""

    values: np.ndarray
    blocks: int
    hit: bool                 # read from disk, not computed now
    seconds: float            # computing them from `from_blocks` (now, or when first done)
    from_blocks: int = 0      # the boundary they were built from (0: the images)
    total_seconds: float = 0.0  # computing them from the images, earlier boundaries included

    @property
    def rate(self) -> float:
        """Images per second of blocks 1..`blocks`, from the images."""
        total = self.total_seconds or self.seconds
        return len(self.values) / total if total else float("nan")


def _read(path: Path | None, n: int, blocks: int) -> Features | None:
    if path is None or not path.is_file():
        return None
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:  # truncated, corrupt, or not an array
        print(f"the cached file {path.name} could not be read ({type(err).__name__}); "
              "computing it again", flush=True)
        return None
    if values.ndim < 2 or len(values) != n:
        return None
    timing = path.with_suffix(".json")
    spent = json.loads(timing.read_text()) if timing.is_file() else {}
    return Features(values, blocks, True, spent.get("seconds", 0.0), spent.get("from_blocks", 0),
                    spent.get("total_seconds", spent.get("seconds", 0.0)))


def _store(path: Path, features: Features) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, features.values)
    os.replace(tmp, path)
    files.write_json(path.with_suffix(".json"), {
        "images": len(features.values), "seconds": features.seconds,
        "from_blocks": features.from_blocks, "total_seconds": features.total_seconds})


def predict_into(model, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """What `model.predict(inputs, batch_size=batch_size)` returns, one `predict_on_batch`
    call per batch, each written into one array allocated up front. Keras's predict holds
    every batch's output and then their concatenation, twice the outputs' memory (a gigabyte
    for block-3 outputs of 45,000 images), and feeds the batches through a tf.data pipeline
    that made VGG16's inference up to 1.8x slower here (README, "Three stalls"). Outputs are
    kept as float32 (bfloat16 ones exactly so), which NumPy saves and loads without
    pickling."""
    if not len(inputs):
        raise ValueError("no images to predict")
    out = None
    for start in range(0, len(inputs), batch_size):
        batch = np.asarray(model.predict_on_batch(inputs[start:start + batch_size]))
        if out is None:
            out = np.empty((len(inputs), *batch.shape[1:]), dtype=np.float32)
        out[start:start + len(batch)] = batch
    return out


KEPT_ON_THE_WAY = 4  # computing block-5 outputs from images keeps block 4's too: they cost
# nothing extra, take 8 KB an image at 32 px, and fine-tuning from block 5 starts from them


def block_outputs(built: Built, images: np.ndarray, batch_size: int,
                  cache: FeatureCache | None, split: str, blocks: int) -> Features:
    """Outputs of blocks 1..`blocks` for one split: read from the cache when there, else
    built from the deepest shallower boundary on disk, else computed from the images; stored
    when the cache has a folder.
    """
    cache = cache or FeatureCache()
    found = _read(cache.path(split, blocks), len(images), blocks)
    if found is not None:
        return found
    earlier = next((f for j in range(blocks - 1, 0, -1)
                    if (f := _read(cache.path(split, j), len(images), j)) is not None), None)
    if earlier is None and blocks > KEPT_ON_THE_WAY and cache.path(split, blocks) is not None:
        earlier = block_outputs(built, images, batch_size, cache, split, KEPT_ON_THE_WAY)
    start = time.perf_counter()
    if earlier is not None:
        values = predict_into(segment(built, earlier.blocks, blocks), earlier.values,
                              batch_size)
    else:
        values = predict_into(stem(built, blocks), images, batch_size)
    seconds = time.perf_counter() - start
    before = (earlier.total_seconds or earlier.seconds) if earlier is not None else 0.0
    features = Features(values, blocks, False, seconds, earlier.blocks if earlier else 0,
                        before + seconds)
    if cache.path(split, blocks) is not None:
        _store(cache.path(split, blocks), features)
    return features
