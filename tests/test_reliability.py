"""Reliability for real: a run killed with SIGKILL resumes and ends as if never interrupted,
the same seed gives the same metrics twice, and a failing experiment loses nothing."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

from conftest import PROJECT_ROOT
from vgg_transfer import runner

pytestmark = pytest.mark.slow

ARGS = ["run", "--profile", "smoke", "--only", "frozen", "--set", "cache_features=false",
        "--set", "epochs=4", "--set", "checkpoint_seconds=0"]  # a checkpoint after every epoch


def _command(outputs, *extra):
    return [sys.executable, "-m", "vgg_transfer", *ARGS, "--outputs", str(outputs), *extra]


def _env(shared_cifar):
    return {**os.environ, "CIFAR10_DIR": str(shared_cifar), "WEIGHTS": "hed-bsds500",
            "PYTHONUNBUFFERED": "1"}


def _run(outputs, env, *extra):
    result = subprocess.run(_command(outputs, *extra), env=env, capture_output=True, text=True,
                            timeout=900, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def _files(outputs):
    run = outputs / "smoke" / "runs" / "frozen"
    metrics = json.loads((run / "metrics.json").read_text())
    return metrics, (run / "history.csv").read_text(), (run / "predictions.csv").read_text()


def _kill_after_first_epoch(outputs, env):
    process = subprocess.Popen(_command(outputs), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, cwd=PROJECT_ROOT,
                               start_new_session=True)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "epoch 2/4" in line:  # the checkpoint of epoch 1 is on disk by now
            break
    family = [process.pid] + [p.pid for p in psutil.Process(process.pid).children(recursive=True)]
    for pid in family:  # the runner and its kernel, at once
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=60)
    assert any("epoch 2/4" in line for line in seen), "".join(seen)[-2000:]
    time.sleep(1)


def test_killed_run_resumes_and_matches_an_uninterrupted_one(shared_cifar, tmp_path):
    env = _env(shared_cifar)
    straight = tmp_path / "straight"
    _run(straight, env)
    reference = _files(straight)

    # Determinism: the same seed gives byte-identical metrics on a second, forced run.
    first = (straight / "smoke/runs/frozen/metrics.json").read_text()
    _run(straight, env, "--force")
    assert (straight / "smoke/runs/frozen/metrics.json").read_text() == first

    killed = tmp_path / "killed"
    _kill_after_first_epoch(killed, env)
    staging = killed / "smoke" / "runs" / ".frozen.partial"
    assert (staging / "checkpoint.npz").is_file()
    assert not (killed / "smoke" / "runs" / "frozen").exists()

    log = _run(killed, env)
    assert "resuming" in log
    metrics, history, predictions = _files(killed)
    assert any(note.startswith("resumed after epoch") for note in metrics.pop("notes"))
    reference[0].pop("notes")
    assert metrics == reference[0]
    assert history == reference[1] and predictions == reference[2]
    assert not staging.exists()


def test_failed_experiment_is_isolated_and_keeps_the_earlier_result(shared_cifar, tmp_path):
    env = _env(shared_cifar)
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(b"not weights")
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(
        "defaults: {weights: hed-bsds500, val_size: 100, train_size: 200, epochs: 1}\n"
        "experiments:\n  good: {regime: frozen}\n"
        f"  bad: {{regime: frozen, weights: {broken}}}\n"
        "profiles:\n  tiny: {}\n")
    outputs = tmp_path / "outputs"
    base = [sys.executable, "-m", "vgg_transfer", "run", "--profile", "tiny",
            "--experiments", str(experiments), "--outputs", str(outputs)]
    first = subprocess.run(base + ["--only", "good"], env=env, capture_output=True, text=True,
                           timeout=600, cwd=PROJECT_ROOT)
    assert first.returncode == 0, first.stderr[-2000:]
    good = outputs / "tiny" / "runs" / "good" / "metrics.json"
    kept = good.read_text()

    # Now every experiment fails (the good one too, forced onto the broken weights file).
    second = subprocess.run(base + ["--force", "--set", f"weights={broken}"], env=env,
                            capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert second.returncode != 0
    assert "2 experiment(s) failed" in second.stderr and "bad:" in second.stderr
    assert "does not fit a VGG16 base" in second.stderr
    assert good.read_text() == kept  # the earlier result survives the failed re-run
    record = json.loads((outputs / "tiny" / "runs" / "bad.failed").read_text())
    assert "does not fit a VGG16 base" in record["error"]

    # The book still builds, with the failed experiments' pages saying so.
    book = tmp_path / "book"
    shutil.copytree(PROJECT_ROOT / "book", book,
                    ignore=shutil.ignore_patterns("_build", "results", "_toc.yml"))
    first_run = outputs / "tiny" / "runs" / "good"
    (outputs / "tiny" / "runs" / "good.failed").unlink()  # good's earlier run is shown again
    (outputs / "tiny" / "notebooks" / "good.failed").unlink()
    runner.book.build_pages(runner.plan.make_plan("tiny", experiments_file=experiments,
                                                  outputs=outputs, book=book))
    runner.book.build_site(strict=True, book=book)
    failed_page = (book / "_build/html/results/experiments/bad.html").read_text()
    assert "(failed)" in failed_page and "does not fit a VGG16 base" in failed_page
    assert (book / "_build/html/results/experiments/good.html").is_file()
    assert first_run.is_dir()
