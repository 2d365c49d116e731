"""Faults a run meets, each handled: an unreadable feature cache is computed again, an
unreadable checkpoint restarts its run with a note, a full disk leaves the earlier run folder
as it was, a run folder another process writes is left alone, a read-only outputs folder
stops before anything trains."""

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT, command
from vgg_transfer import files
from vgg_transfer.runner import lock, sweep
from vgg_transfer.spec.config import load_experiments
from vgg_transfer.spec.profiles import resolve_grid

SMALL = {"train_size": 40, "val_size": 20, "epochs": 2, "batch_size": 16,
         "checkpoint_seconds": 0}


def _point(tiny_cifar, **overrides):
    (point,) = resolve_grid(load_experiments(), "frozen", "smoke", {**SMALL, **overrides},
                              env={"CIFAR10_DIR": str(tiny_cifar), "WEIGHTS": "hed-bsds500"})
    return point


def _run(point, runs, force=False):
    """One run into `<outputs>/<profile>/runs`, with the outputs folder's feature cache, as
    the runner's plan gives it."""
    from vgg_transfer import files

    cache = files.feature_cache_of(Path(runs).parent.parent)
    return sweep.run_one(point, runs, sweep.run_key(point.cfg, sweep.code_hash()), force,
                         cache)


def _metrics(folder):
    metrics = json.loads((folder / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in ("notes", "cached_features")}


def test_an_unreadable_feature_cache_is_computed_again(tiny_cifar, tmp_path, capsys):
    point, runs = _point(tiny_cifar), tmp_path / "outputs" / "smoke" / "runs"
    assert _run(point, runs).status == "ok"
    first = _metrics(runs / point.name)
    cached = sorted((tmp_path / "outputs" / ".feature-cache").rglob("*.npy"))
    assert cached
    for i, path in enumerate(cached):  # one truncated, the others not arrays at all
        path.write_bytes(path.read_bytes()[:200] if i == 0 else b"garbage" * 10)
    capsys.readouterr()
    assert _run(point, runs, force=True).status == "ok"
    assert "could not be read" in capsys.readouterr().out
    assert _metrics(runs / point.name) == first


def test_an_unreadable_checkpoint_restarts_the_run_with_a_note(tiny_cifar, tmp_path):
    point = _point(tiny_cifar, cache_features=False)
    straight, runs = tmp_path / "straight", tmp_path / "outputs" / "smoke" / "runs"
    assert _run(point, straight).status == "ok"
    staging = runs / f".{point.name}.partial"  # as an interrupted run leaves it
    staging.mkdir(parents=True)
    (staging / "run_key").write_text(sweep.run_key(point.cfg, sweep.code_hash()) + "\n")
    (staging / "checkpoint.npz").write_bytes(b"PK\x03\x04 not a whole zip file")
    assert _run(point, runs).status == "ok"
    notes = json.loads((runs / point.name / "metrics.json").read_text())["notes"]
    assert any("checkpoint could not be read" in note for note in notes), notes
    assert _metrics(runs / point.name) == _metrics(straight / point.name)


def test_a_full_disk_leaves_the_earlier_run_as_it_was(tiny_cifar, tmp_path, monkeypatch):
    point, runs = _point(tiny_cifar), tmp_path / "outputs" / "smoke" / "runs"
    assert _run(point, runs).status == "ok"
    before = {p.relative_to(runs): p.read_bytes() for p in (runs / point.name).rglob("*")
              if p.is_file()}
    real = files.write_atomic

    def full(path, text):
        if ".partial" in str(path) or path.name.endswith(".failed"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, text)
    monkeypatch.setattr(files, "write_atomic", full)
    outcome = _run(point, runs, force=True)
    assert outcome.status == "failed" and "No space left on device" in outcome.error
    after = {p.relative_to(runs): p.read_bytes() for p in (runs / point.name).rglob("*")
             if p.is_file()}
    assert after == before


def test_a_run_folder_another_process_writes_is_left_alone(tiny_cifar, tmp_path):
    point, runs = _point(tiny_cifar), tmp_path / "outputs" / "smoke" / "runs"
    with lock.run_lock(runs, point.name):
        # flock is per open file: a second open in this process is refused like another's
        outcome = _run(point, runs)
    assert outcome.status == "failed" and f"in use by process {os.getpid()}" in outcome.error
    assert not (runs / point.name).exists() and not (runs / f".{point.name}.partial").exists()


@pytest.fixture
def read_only(tmp_path, tiny_cifar):
    """(a folder the command cannot write, the command's prefix, the data it reads). Root
    writes through permission bits, so as root the folder is a read-only mount, or, where
    mounting is not allowed (a container), the command runs as the unprivileged `nobody`."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder, [], tiny_cifar
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs",
                              str(folder)], capture_output=True)
    if mounted.returncode == 0:
        yield folder, [], tiny_cifar
        subprocess.run(["umount", str(folder)], check=True)
        return
    if not shutil.which("setpriv"):
        pytest.skip("root, without a read-only mount or setpriv: " + mounted.stderr.decode())
    shared = Path(tempfile.mkdtemp(prefix="vgg-read-only-"))  # reachable by nobody
    shared.chmod(0o755)
    data = shutil.copytree(tiny_cifar, shared / "cifar-10-batches-py")
    for path in [shared, data, *data.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    outputs = shared / "outputs"
    outputs.mkdir(mode=0o555)
    outputs.chmod(0o555)
    yield outputs, ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], data
    shutil.rmtree(shared, ignore_errors=True)


def test_a_read_only_outputs_folder_stops_before_anything_trains(read_only):
    folder, prefix, data = read_only
    env = {**os.environ, "CIFAR10_DIR": str(data), "WEIGHTS": "hed-bsds500",
           **({"HOME": "/tmp", "MPLCONFIGDIR": "/tmp"} if prefix else {})}
    result = command([*prefix, sys.executable, "-m", "vgg_transfer", "run", "--profile",
                      "smoke", "--outputs", folder], expect=3, env=env, timeout=300,
                     cwd=PROJECT_ROOT)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is not writable" in errors[0], result.stderr[-2000:]
    assert "epoch" not in result.stdout and "===" not in result.stdout


def test_every_profile_of_an_outputs_folder_shares_one_feature_cache(tiny_cifar, tmp_path,
                                                                     capsys):
    point, outputs = _point(tiny_cifar), tmp_path / "outputs"
    assert _run(point, outputs / "quick" / "runs").status == "ok"
    assert "read from the feature cache" not in capsys.readouterr().out
    assert _run(point, outputs / "study" / "runs").status == "ok"  # another profile
    assert "read from the feature cache" in capsys.readouterr().out
    assert not (outputs / "quick" / "runs" / ".feature-cache").exists()
    assert _metrics(outputs / "quick" / "runs" / point.name) == \
        _metrics(outputs / "study" / "runs" / point.name)
