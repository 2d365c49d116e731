"""One command per outputs folder and profile, one process per run folder: operating-system
file locks (`flock`), released by the kernel when their process ends, however it ends.

A command holds `<outputs>/<profile>/.lock` from before it writes anything until it ends; a
second command on the same folder and profile refuses at once, naming the first one's process
id and command line. `sweep.run_one` holds `<runs>/.<run>.lock` while it trains, stages and
moves one run, so two workers, or a runner and a papermill run by hand, never write one run
folder at the same time.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import sys
import time
from pathlib import Path

from vgg_transfer import files


class Busy(RuntimeError):
    """Another live process holds the lock."""


class NotWritable(RuntimeError):
    """The outputs folder cannot be written: nothing was started."""


def _holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 65536).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _command_line() -> str:
    """This process's command as its user typed it (`python -m vgg_transfer run ...`)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("vgg_transfer", "__main__.py")):
        argv[0:1] = ["python", "-m", "vgg_transfer"]
    return shlex.join(argv)


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise NotWritable(f"outputs: {path.parent} is not writable "
                              f"({os.strerror(err.errno)}); give --outputs a folder this "
                              "user can write") from None
        raise


@contextlib.contextmanager
def held(path: Path, what: str):
    """Hold an exclusive lock on `path` for the `with` block; `Busy` at once if another
    process holds it (the message names it as `what`)."""
    path = Path(path)
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = _holder(fd)
        os.close(fd)
        raise Busy(f"{what} is in use by process {other.get('pid', '?')} "
                   f"({other.get('command', 'command unknown')}, since "
                   f"{other.get('started', '?')}); wait for it to end, or give another "
                   "--outputs") from None
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": _command_line(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock; the file stays, harmless


def command_lock(outputs: Path, profile: str):
    """The lock of one command on one outputs folder and profile."""
    folder = Path(outputs) / profile
    return held(folder / ".lock", f"{folder} (profile {profile})")


def run_lock(runs_dir: Path, name: str):
    """The lock of one run folder while a process trains and writes it."""
    return held(files.RunFiles(Path(runs_dir), name).lock, f"run {name} in {runs_dir}")
