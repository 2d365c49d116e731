"""CIFAR-10: read the canonical python-version batches, check them, split them.

The reader takes whatever number of images each batch holds (the offline copy has 1,000 test
images, the download 10,000) and reports the counts; nothing here assumes a size.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vgg_transfer import CLASS_NAMES

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
NUM_CLASSES = len(CLASS_NAMES)


class DataError(ValueError):
    """A data folder or batch file that cannot be used, with a one-line reason."""


# What a CIFAR-10 batch may name when it is unpickled: NumPy's own array reconstruction
# (old and new module names), and `_codecs.encode`, which protocol 2 uses for bytes written
# by Python 3 (it turns a string into bytes). Containers, strings and numbers need no name.
# Anything else a file names (os.system, builtins.eval, any class) is refused before it is
# looked up, so a crafted batch cannot run code.
SAFE_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
})


class Refused(pickle.UnpicklingError):
    """A pickle named something a CIFAR-10 batch does not hold."""


class BatchUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only `SAFE_GLOBALS`."""

    def find_class(self, module: str, name: str):
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise Refused(f"{module}.{name}")


def load_pickle(f) -> object:
    """Unpickle a CIFAR-10 batch from an open binary file, resolving only NumPy's array
    reconstruction (see `SAFE_GLOBALS`); Python 2 strings are read as bytes."""
    return BatchUnpickler(f, encoding="bytes").load()


@dataclass
class CIFAR10:
    """Images as uint8 arrays (N, 32, 32, 3) and integer labels (N,), plus where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: dict = field(default_factory=dict)

    def counts(self) -> dict:
        """Number of images per split and per class, as plain ints."""
        return {
            "train": int(len(self.y_train)),
            "test": int(len(self.y_test)),
            "train_per_class": np.bincount(self.y_train, minlength=NUM_CLASSES).tolist(),
            "test_per_class": np.bincount(self.y_test, minlength=NUM_CLASSES).tolist(),
        }


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one pickled batch into images (N, 32, 32, 3) uint8 and labels (N,) int64.

    Raises:
        DataError: the file is missing, truncated, not a batch, or has bad shapes or labels.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: batch file not found")
    try:
        with open(path, "rb") as f:
            batch = load_pickle(f)
    except Refused as err:
        raise DataError(f"{path.name}: refused to load: the file names {err}, which a CIFAR-10 "
                        "batch does not hold (only dicts, lists, bytes, numbers and NumPy "
                        "arrays); nothing in it was run") from None
    except Exception as err:  # truncated or corrupt pickles raise many different types
        raise DataError(f"{path.name}: cannot be read as a CIFAR-10 batch "
                        f"({type(err).__name__}: {err})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path.name}: not a CIFAR-10 batch (needs keys b'data' and b'labels')")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path.name}: data must be uint8 of shape (N, 3072), "
                        f"got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path.name}: {labels.shape[0] if labels.ndim else 0} labels "
                        f"for {data.shape[0]} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{path.name}: labels must lie in 0..{NUM_CLASSES - 1}, "
                        f"got {labels.min()}..{labels.max()}")
    # Channel-major planes (R, G, B) of 32x32 -> channels-last images.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def read_manifest(data_dir: Path) -> dict[str, str]:
    """SHA-256 per file from `<folder>.sha256` beside the folder or `SHA256SUMS` inside it."""
    for candidate in (data_dir.parent / f"{data_dir.name}.sha256", data_dir / "SHA256SUMS"):
        if candidate.is_file():
            pairs = (line.split() for line in candidate.read_text().splitlines() if line.strip())
            return {name.lstrip("*"): digest for digest, name in pairs}
    return {}


def load_folder(data_dir: Path) -> CIFAR10:
    """Read `data_batch_1..5` and `test_batch` from a canonical `cifar-10-batches-py` folder.

    Each file's SHA-256 is recorded, and checked against a manifest when one is present.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    if not data_dir.is_dir():
        raise DataError(f"data_dir: folder not found: {data_dir}")
    manifest = read_manifest(data_dir)
    hashes = {}
    for name in (*TRAIN_FILES, TEST_FILE):
        if not (data_dir / name).is_file():
            raise DataError(f"{data_dir}: missing batch file {name}")
        hashes[name] = sha256_file(data_dir / name)
        if name in manifest and manifest[name] != hashes[name]:
            raise DataError(f"{name}: SHA-256 does not match the manifest "
                            f"({hashes[name][:12]}… != {manifest[name][:12]}…)")
    train = [read_batch(data_dir / name) for name in TRAIN_FILES]
    x_test, y_test = read_batch(data_dir / TEST_FILE)
    data = CIFAR10(
        x_train=np.concatenate([x for x, _ in train]),
        y_train=np.concatenate([y for _, y in train]),
        x_test=x_test,
        y_test=y_test,
    )
    data.source = {
        "kind": "folder",
        "path": str(data_dir),
        "sha256": hashes,
        "manifest_checked": bool(manifest),
        **data.counts(),
    }
    return data


def load_download() -> CIFAR10:
    """Download CIFAR-10 the way Keras does (needs the internet the first time)."""
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as err:
        raise DataError(
            "CIFAR-10 download failed "
            f"({type(err).__name__}); offline, set data_dir (or CIFAR10_DIR) to a "
            "cifar-10-batches-py folder") from None
    data = CIFAR10(x_train, y_train.ravel().astype(np.int64),
                   x_test, y_test.ravel().astype(np.int64))
    data.source = {"kind": "keras-download", "path": "keras.datasets.cifar10", **data.counts()}
    return data


def load_cifar10(data_dir: str | Path | None = None) -> CIFAR10:
    """CIFAR-10 from a local folder when one is given, else from the Keras download.

    A folder is read (and hashed) once per process while its files are unchanged: a sweep
    runs many models on the same data. Treat the arrays as read-only.
    """
    if not data_dir:
        return load_download()
    folder = Path(data_dir).expanduser().resolve()
    files = [folder / name for name in (*TRAIN_FILES, TEST_FILE)]
    files += [folder.parent / f"{folder.name}.sha256", folder / "SHA256SUMS"]  # manifests
    stamp = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.is_file())
    return _load_folder_once(folder, stamp)


@functools.lru_cache(maxsize=2)
def _load_folder_once(folder: Path, stamp: tuple) -> CIFAR10:
    data = load_folder(folder)
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        array.flags.writeable = False
    return data


def stratified_take(y: np.ndarray, indices: np.ndarray, n: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split `indices` into `n` taken and the rest, keeping class proportions.

    Per-class quotas use the largest-remainder rule, so they sum to exactly `n`.

    Returns:
        (taken, rest): sorted index arrays.
    """
    if not 0 <= n <= len(indices):
        raise DataError(f"cannot take {n} of {len(indices)} images")
    classes, counts = np.unique(y[indices], return_counts=True)
    exact = counts * n / len(indices)
    quota = np.floor(exact).astype(int)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: n - quota.sum()]] += 1
    taken = []
    for cls, k in zip(classes, quota, strict=False):
        members = indices[y[indices] == cls]
        taken.append(rng.permutation(members)[:k])
    taken = np.sort(np.concatenate(taken)) if taken else np.array([], dtype=int)
    rest = np.setdiff1d(indices, taken)
    return taken, rest


def split_indices(y_train: np.ndarray, val_size: int, train_size: int | None,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Carve a stratified validation split from the training set, then an optional subset.

    The validation split depends only on (labels, val_size, seed), so every regime and every
    training-set size of one seed validates on the same images.

    Returns:
        (train_idx, val_idx) into the training arrays.
    """
    rng = np.random.default_rng(seed)
    val_idx, rest = stratified_take(y_train, np.arange(len(y_train)), val_size, rng)
    if train_size is not None:
        if train_size > len(rest):
            raise DataError(f"train_size: {train_size} is more than the {len(rest)} training "
                            f"images left after a validation split of {val_size}")
        train_idx, _ = stratified_take(y_train, rest, train_size, np.random.default_rng(seed + 1))
    else:
        train_idx = rest
    return train_idx, val_idx
