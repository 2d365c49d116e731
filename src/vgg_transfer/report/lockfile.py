"""The lock file against what is installed.

`requirements/lock.txt` pins every package the project installs (its dependencies and the
`test` extra, for CPython 3.11 on Linux x86_64; `make lock` writes it), and
`requirements/lock-jax.txt` and `lock-torch.txt` the same plus the `jax` or `torch` extra
(`make venv EXTRAS=jax,torch` installs both). `lock_differences` lists the locked packages
whose installed version is another, or that are not installed, so a page can say whether it
was built by the environment the locks describe; it reads the locks of the extras that are
installed (`current_locks`).
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[3]  # src/vgg_transfer/report/lockfile.py
LOCK = PROJECT_ROOT / "requirements" / "lock.txt"
EXTRA_LOCKS = {"jax": PROJECT_ROOT / "requirements" / "lock-jax.txt",  # extra -> its lock
               "torch": PROJECT_ROOT / "requirements" / "lock-torch.txt"}
COLUMNS = ["package", "locked", "installed"]

# `name==version` at the start of a line; the `--hash` continuation lines and the `# via`
# comments of a hashed lock do not match. Extras and environment markers are allowed.
_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*===?\s*([^\s;\\#]+)")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them: runs of `-_.` are one `-`, lower case."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | Path) -> dict[str, str]:
    """The pins of a requirements-style lock file: normalized name -> version."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        match = _PIN.match(line)
        if match:
            pins[normalize(match[1])] = match[2]
    return pins


def installed_version(name: str) -> str | None:
    """The version of an installed distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _same(locked: str, installed: str) -> bool:
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # packaging is locked, but the check must not depend on it
        return locked == installed
    try:
        return Version(locked) == Version(installed)
    except InvalidVersion:
        return locked == installed


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def current_locks() -> list[Path]:
    """The locks that describe this environment: the installed extras' (each pins the main
    lock's versions too), else the main one."""
    found = [path for extra, path in EXTRA_LOCKS.items()
             if installed_version(extra) is not None and path.is_file()]
    return found or [LOCK]


def lock_differences(lock_path: str | Path | list | None = None) -> pd.DataFrame:
    """Every locked package whose installed version differs from the lock, or is missing.

    Columns `package` (PEP 503 name), `locked` and `installed` (None: not installed), sorted
    by package. `attrs["note"]` says what was checked, and names the installed packages of
    an extra no lock pins; without a lock file (an install from a wheel has none) the frame
    is empty and the note says so.

    Args:
        lock_path: the lock (or locks) to compare with; None = `current_locks()`.
    """
    if lock_path is None:
        paths = current_locks()
    else:
        paths = [Path(p) for p in (lock_path if isinstance(lock_path, list) else [lock_path])]
    shown = " and ".join(_shown(path) for path in paths)
    frame = pd.DataFrame(columns=COLUMNS, dtype=object)
    frame.attrs.update(lock=shown, checked=0)
    missing = [path for path in paths if not path.is_file()]
    if missing:
        frame.attrs["note"] = (f"There is no lock file at {_shown(missing[0])} (an install from "
                               "a wheel does not include one), so no version was checked.")
        return frame
    pins = {name: version for path in paths for name, version in read_lock(path).items()}
    rows = []
    for name, locked in sorted(pins.items()):
        installed = installed_version(name)
        if installed is None or not _same(locked, installed):
            rows.append({"package": name, "locked": locked, "installed": installed})
    frame = pd.DataFrame(rows, columns=COLUMNS, dtype=object)  # None stays None
    frame.attrs.update(lock=shown, checked=len(pins))
    frame.attrs["note"] = (
        f"Every one of the {len(pins)} packages locked in {shown} is installed at its "
        "locked version." if not rows else
        f"{len(rows)} of the {len(pins)} packages locked in {shown} are installed at "
        "another version, or not at all.")
    return frame
