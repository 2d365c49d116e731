import numpy as np
import pytest

from conftest import write_batch
from vgg_transfer.core.data import DataError, load_cifar10, read_batch, split_indices


def test_reads_tiny_folder(tiny_cifar):
    data = load_cifar10(tiny_cifar)
    assert data.x_train.shape == (100, 32, 32, 3) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (10, 32, 32, 3)
    assert data.counts()["train_per_class"] == [10] * 10
    assert data.source["test"] == 10 and len(data.source["sha256"]) == 6


def test_channel_order_is_rgb_planes(tmp_path):
    images = np.zeros((1, 32, 32, 3), np.uint8)
    images[0, 3, 5] = (10, 20, 30)
    write_batch(tmp_path / "b", images, [0])
    x, _ = read_batch(tmp_path / "b")
    assert tuple(x[0, 3, 5]) == (10, 20, 30)


def test_offline_copy_counts(shared_cifar):
    data = load_cifar10(shared_cifar)
    assert len(data.y_train) == 50_000 and len(data.y_test) == 1_000
    assert data.counts()["train_per_class"] == [5_000] * 10
    assert data.source["manifest_checked"]


def test_truncated_batch_is_one_line_error(tiny_cifar):
    path = tiny_cifar / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3: cannot be read") as err:
        load_cifar10(tiny_cifar)
    assert "\n" not in str(err.value)


def test_bad_labels_are_caught(tmp_path):
    write_batch(tmp_path / "b", np.zeros((2, 32, 32, 3), np.uint8), [0, 10])
    with pytest.raises(DataError, match="labels must lie in 0..9"):
        read_batch(tmp_path / "b")


def test_manifest_mismatch_names_file(tiny_cifar):
    (tiny_cifar.parent / "cifar-10-batches-py.sha256").write_text("0" * 64 + "  test_batch\n")
    with pytest.raises(DataError, match="test_batch: SHA-256 does not match"):
        load_cifar10(tiny_cifar)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        load_cifar10(tmp_path / "nowhere")


def test_split_is_stratified_disjoint_and_seeded():
    y = np.repeat(np.arange(10), 100)
    train, val = split_indices(y, val_size=200, train_size=300, seed=3)
    assert len(val) == 200 and len(train) == 300
    assert not set(train) & set(val)
    assert np.bincount(y[val], minlength=10).tolist() == [20] * 10
    assert np.bincount(y[train], minlength=10).tolist() == [30] * 10
    again, _ = split_indices(y, val_size=200, train_size=300, seed=3)
    assert np.array_equal(train, again)
    other, _ = split_indices(y, val_size=200, train_size=300, seed=4)
    assert not np.array_equal(train, other)


def test_split_without_subset_keeps_the_rest():
    y = np.repeat(np.arange(10), 50)
    train, val = split_indices(y, val_size=100, train_size=None, seed=0)
    assert len(train) == 400 and len(np.union1d(train, val)) == 500


def test_subset_larger_than_data_is_an_error():
    y = np.repeat(np.arange(10), 10)
    with pytest.raises(DataError, match="train_size: 95 is more than the 90"):
        split_indices(y, val_size=10, train_size=95, seed=0)
