"""Writing files atomically (run folders, caches, pages' context) and reading them back.

What a run folder holds, and how it is read back, is the run record's business
(`vgg_transfer.record`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


def write_atomic(path: Path, text: str) -> None:
    """Write a file through a temporary neighbour and a rename, so readers never see half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 is for secrets, not results
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_atomic(path, frame.to_csv(index=False))


def write_npz(path: Path, **arrays) -> None:
    """Arrays in one .npz file, written through a temporary neighbour and a rename."""
    import numpy as np

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def read_json(path: Path):
    return json.loads(Path(path).read_text())




# ---------------------------------------------------------------- names beside a run folder

RUN_KEY = "run_key"            # inside a run folder: the key it was trained under
CHECKPOINT = "checkpoint.npz"  # inside a staging folder: the state an interrupted run resumes
FEATURE_CACHE = ".feature-cache"  # inside an outputs folder: shared by all its profiles


def feature_cache_of(outputs: Path) -> Path:
    """The feature cache of an outputs folder, shared by every profile and by papermill run
    by hand on the same outputs folder."""
    return Path(outputs) / FEATURE_CACHE


@dataclass(frozen=True)
class RunFiles:
    """A run named `name` in the runs folder `folder`, and the files the runner keeps
    beside it."""

    folder: Path
    name: str

    @property
    def final(self) -> Path:
        return self.folder / self.name

    @property
    def staging(self) -> Path:      # where it trains; renamed to `final` when it succeeds
        return self.folder / f".{self.name}.partial"

    @property
    def failed(self) -> Path:       # the error of its last failed try
        return self.folder / f"{self.name}.failed"

    @property
    def failed_run(self) -> Path:   # the staging folder of that try, kept to look at
        return self.folder / f".{self.name}.failed-run"

    @property
    def lock(self) -> Path:
        return self.folder / f".{self.name}.lock"

    @property
    def log(self) -> Path:          # a cluster worker's output for it
        return self.folder / f".{self.name}.log"

    @property
    def killed(self) -> Path:       # the marker of the cluster test that kills a worker
        return self.folder / f".{self.name}.killed"
