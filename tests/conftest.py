"""Shared fixtures: a tiny canonical CIFAR-10 folder, and the offline copy when present."""

import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# a relative CIFAR10_DIR (as the README's offline lines set it) names the folder from where
# the tests started, whichever folder a test later runs a command in
SHARED_CIFAR = Path(os.environ.get("CIFAR10_DIR")
                    or PROJECT_ROOT.parent / "shared" / "data" / "cifar-10-batches-py").resolve()
if os.environ.get("CIFAR10_DIR"):
    os.environ["CIFAR10_DIR"] = str(SHARED_CIFAR)


def command(args: list, expect: int | None = 0, **kwargs) -> subprocess.CompletedProcess:
    """Run a command, its output captured as text; when its exit status is not `expect`,
    fail with the last lines of its stdout and stderr, so a failure shows its cause."""
    kwargs.setdefault("timeout", 900)
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    if expect is not None:
        assert result.returncode == expect, (
            f"{' '.join(str(a) for a in args[:6])} ... exited {result.returncode}, not "
            f"{expect}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}")
    return result


def write_batch(path: Path, images: np.ndarray, labels) -> None:
    """Write images (N, 32, 32, 3) uint8 as a canonical python-version batch."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    with open(path, "wb") as f:
        pickle.dump({b"data": data, b"labels": list(labels)}, f)


def make_folder(root: Path, per_batch: int = 20, test: int = 10, seed: int = 0) -> Path:
    """A tiny cifar-10-batches-py folder: 5 training batches and a test batch, classes cycling."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        images = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        write_batch(folder / f"data_batch_{i}", images, [k % 10 for k in range(per_batch)])
    images = rng.integers(0, 256, (test, 32, 32, 3), dtype=np.uint8)
    write_batch(folder / "test_batch", images, [k % 10 for k in range(test)])
    return folder


@pytest.fixture
def tiny_cifar(tmp_path) -> Path:
    return make_folder(tmp_path)


@pytest.fixture
def shared_cifar() -> Path:
    if not (SHARED_CIFAR / "data_batch_1").is_file():
        pytest.skip("the offline CIFAR-10 copy is not on this machine")
    return SHARED_CIFAR


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """Run the `smoke_study` profile (every regime, two seeds, every study) into a temporary
    outputs folder and build a book from it.

    Shared by the pipeline, studies and browser tests, so the suite trains and builds once.
    """
    from vgg_transfer import runner

    root = tmp_path_factory.mktemp("report")
    mp = pytest.MonkeyPatch()
    if (SHARED_CIFAR / "data_batch_1").is_file():
        mp.setenv("CIFAR10_DIR", str(SHARED_CIFAR))
        overrides = {}
    else:  # no offline copy: a tiny canonical folder
        mp.setenv("CIFAR10_DIR", str(make_folder(root / "data")))
        overrides = {"train_size": 40, "val_size": 20}
    mp.setenv("WEIGHTS", "hed-bsds500")
    book = root / "book"
    plan = runner.plan.make_plan(PROFILE, overrides, outputs=root / "outputs", book=book)
    outcomes = runner.profile.run_experiments(plan)
    shutil.copytree(PROJECT_ROOT / "book", book,
                    ignore=shutil.ignore_patterns("_build", "results", "_toc.yml"))
    runner.book.build_pages(plan)
    index = runner.book.build_site(strict=True, book=book)
    runs = runner.book.finished_runs(plan)
    folder = root / "outputs" / PROFILE / "runs"
    from vgg_transfer.record import RunRecord

    reference = next(name for name in runs["frozen"]
                     if RunRecord.load(folder / name).metrics.reference)
    yield {"outcomes": outcomes, "runs": runs, "profile": PROFILE, "run": folder / reference,
           "html": book / "_build" / "html", "index": index, "outputs": root / "outputs",
           "overrides": overrides}
    mp.undo()


PROFILE = "smoke_study"
