"""Untrusted data folders: a CIFAR-10 batch is unpickled with only NumPy's array
reconstruction allowed, so a crafted batch stops with one line and runs nothing."""

import hashlib
import os
import pickle
import sys

import numpy as np
import pytest

from conftest import PROJECT_ROOT, command, make_folder
from vgg_transfer.core.data import DataError, load_cifar10, read_batch


class Payload:
    """A class of the test's own: unpickling it would call `touch MARKER`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Evaluated:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class Own:
    pass


def _batch_with(obj, tmp_path, name="test_batch"):
    folder = make_folder(tmp_path / "data")
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"extra": obj}
    (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


@pytest.mark.parametrize("make, refused", [(Payload, "posix.system"),
                                           (Evaluated, "(__builtin__|builtins).eval")])
def test_a_crafted_batch_runs_nothing(tmp_path, make, refused):
    marker = tmp_path / "ran"
    folder = _batch_with(make(marker), tmp_path)
    with pytest.raises(DataError, match=f"test_batch: refused to load: the file names {refused}"):
        read_batch(folder / "test_batch")
    with pytest.raises(DataError, match="nothing in it was run"):
        load_cifar10(folder)
    assert not marker.exists()


def test_a_class_of_its_own_is_refused(tmp_path):
    folder = _batch_with(Own(), tmp_path, name="data_batch_1")
    with pytest.raises(DataError, match=r"data_batch_1: refused .* names test_untrusted\.Own"):
        read_batch(folder / "data_batch_1")


def test_evaluate_stops_in_one_line_on_a_crafted_test_batch(tmp_path):
    marker = tmp_path / "ran"
    folder = _batch_with(Payload(marker), tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    result = command([sys.executable, "-m", "vgg_transfer", "evaluate", run, "--data", folder],
                     expect=1, timeout=300, cwd=PROJECT_ROOT)
    assert not marker.exists(), result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "refused to load: the file names posix.system" in lines[0]


def test_the_real_batches_still_load_pixel_exact(shared_cifar):
    images, labels = read_batch(shared_cifar / "data_batch_1")
    assert images.shape == (10000, 32, 32, 3) and labels.shape == (10000,)
    with open(shared_cifar / "data_batch_1", "rb") as f:
        reference = pickle.load(f, encoding="bytes")
    expected = reference[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    assert np.array_equal(images, expected)
    assert np.array_equal(labels, reference[b"labels"])
    assert hashlib.sha256(images.tobytes()).hexdigest() == \
        hashlib.sha256(np.ascontiguousarray(expected).tobytes()).hexdigest()
