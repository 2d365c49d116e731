"""A run's key: what determines its result, and nothing else.

A change to a page module, a log message, a comment, a profile's page list, a regime's
colour or description, or a new regime entry leaves a finished run reused; a change to the
code under run/ or to a regime's training fields re-runs it; the same data spelled as a
relative or an absolute path is the same data.
"""

import dataclasses
import os
import shutil
import stat

import pytest

from vgg_transfer import files
from vgg_transfer.record import SCHEMA_VERSION
from vgg_transfer.run import fingerprint
from vgg_transfer.runner import sweep
from vgg_transfer.spec import regimes
from vgg_transfer.spec.config import load_experiments
from vgg_transfer.spec.profiles import resolve_grid

TRAINING_LINE = "    value = seed * 100_003 + epoch\n"


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A copy of the installed package; a run's key reads the copy's run/ folder."""
    copy = tmp_path / "vgg_transfer"
    shutil.copytree(sweep.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(fingerprint, "FOLDER", copy / "run")
    return copy


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _finished(points, runs_dir):
    """Mark each point as a finished run under the current key."""
    code = sweep.code_hash()
    for point in points:
        folder = runs_dir / point.name
        folder.mkdir(parents=True)
        files.write_json(folder / "metrics.json", {"schema_version": SCHEMA_VERSION})
        (folder / "run_key").write_text(sweep.run_key(point.cfg, code) + "\n")


@pytest.fixture
def finished(tmp_path, tiny_cifar, package):
    spec = load_experiments()
    points = resolve_grid(spec, "frozen", "smoke", env={"CIFAR10_DIR": str(tiny_cifar),
                                                          "WEIGHTS": "hed-bsds500"})
    runs = tmp_path / "runs"
    _finished(points, runs)
    assert sweep.pending(points, runs) == []
    return spec, points, runs


def test_page_modules_and_log_messages_leave_runs_reused(finished, package):
    spec, points, runs = finished
    for page_module in ("runner/profile.py", "cli.py", "report/stats.py", "spec/config.py"):
        (package / page_module).write_text((package / page_module).read_text() + "\nX = 1\n")
    _edit(package / "run/epochs.py", 'print(f"{plateau.monitor} has not improved',
          'print(f"{plateau.monitor} did not improve')
    _edit(package / "run/training.py", '"""The training loop', '"""The loop that trains')
    _edit(package / "run/models.py", "BN_MOMENTUM = 0.9  #", "BN_MOMENTUM = 0.9  # (reworded) ")
    (package / "report" / "new_page_module.py").write_text("def page():\n    return 1\n")
    assert sweep.pending(points, runs) == []


@pytest.mark.parametrize("module", ["run/epochs.py", "run/new_module.py"])
def test_code_under_run_reruns_finished_runs(finished, package, module):
    _, points, runs = finished
    if module == "run/epochs.py":
        _edit(package / module, TRAINING_LINE, "    value = seed * 100_019 + epoch\n")
    else:
        (package / module).write_text("SCALE = 2\n")
    assert sweep.pending(points, runs) == points


def test_a_regimes_words_and_a_new_entry_leave_runs_reused(finished, monkeypatch):
    spec, points, runs = finished
    frozen = regimes.REGISTRY["frozen"]
    registry = {**regimes.REGISTRY,
                "frozen": dataclasses.replace(frozen, color="#000000",
                                              description="reworded", replaces=None),
                "wider": dataclasses.replace(frozen, name="wider", base="vgg16_bn")}
    monkeypatch.setattr(regimes, "REGISTRY", registry)
    assert sweep.pending(points, runs) == []


def test_a_regimes_training_fields_rerun_its_runs(finished, monkeypatch):
    _, points, runs = finished
    frozen = regimes.REGISTRY["frozen"]
    for changed in (dataclasses.replace(frozen, phases=(regimes.Phase(frozen=4),)),
                    dataclasses.replace(frozen, init="random")):
        monkeypatch.setitem(regimes.REGISTRY, "frozen", changed)
        assert sweep.pending(points, runs) == points


def test_a_profiles_page_list_is_not_part_of_a_run(finished, tiny_cifar):
    spec, points, runs = finished
    env = {"CIFAR10_DIR": str(tiny_cifar), "WEIGHTS": "hed-bsds500"}
    spec["profiles"]["smoke"]["studies"] = ["seeds"]
    spec["profiles"]["smoke"]["compare"] = ["frozen"]
    again = resolve_grid(spec, "frozen", "smoke", env=env)
    assert sweep.pending(again, runs) == []


def test_same_data_relative_or_absolute_gives_the_same_key(tiny_cifar, monkeypatch):
    spec = load_experiments()
    monkeypatch.chdir(tiny_cifar.parent.parent)
    relative = os.path.relpath(tiny_cifar)
    keys = []
    for folder in (relative, str(tiny_cifar), str(tiny_cifar) + "/"):
        (point,) = resolve_grid(spec, "frozen", "smoke", env={"CIFAR10_DIR": folder,
                                                                 "WEIGHTS": "hed-bsds500"})
        keys.append(sweep.run_key(point.cfg, "code"))
    assert len(set(keys)) == 1
    (other,) = resolve_grid(spec, "frozen", "smoke", overrides={"epochs": 2},
                              env={"CIFAR10_DIR": relative, "WEIGHTS": "hed-bsds500"})
    assert sweep.run_key(other.cfg, "code") != keys[0]


def test_checkpoint_frequency_is_not_part_of_a_run(tiny_cifar):
    spec = load_experiments()
    env = {"CIFAR10_DIR": str(tiny_cifar), "WEIGHTS": "hed-bsds500"}
    (a,) = resolve_grid(spec, "frozen", "smoke", env=env)
    (b,) = resolve_grid(spec, "frozen", "smoke", overrides={"checkpoint_seconds": 0}, env=env)
    assert sweep.run_key(a.cfg, "code") == sweep.run_key(b.cfg, "code")


def test_fingerprint_ignores_layout_comments_docstrings_and_messages():
    base = 'def f(x):\n    """Doc."""\n    print(f"x is {x}")\n    return x + 1\n'
    same = ('def f(x):  # a comment\n    """Other doc."""\n\n    print("another message", x)\n'
            '    return (x\n            + 1)\n')
    assert fingerprint.code_fingerprint(base) == fingerprint.code_fingerprint(same)
    changed = base.replace("+ 1", "+ 2")
    assert fingerprint.code_fingerprint(base) != fingerprint.code_fingerprint(changed)


def test_run_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        files.write_json(tmp_path / "metrics.json", {"a": 1})
        files.write_atomic(tmp_path / "run_key", "k\n")
    finally:
        os.umask(old)
    for name in ("metrics.json", "run_key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
