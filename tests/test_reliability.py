"""Reliability for real: a run killed with SIGKILL, or stopped with Ctrl-C, resumes and ends
as if never interrupted; a second command on the same outputs folder refuses at once and
leaves the first unharmed; the same seed gives the same metrics twice; a failing experiment
loses nothing."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

from conftest import PROJECT_ROOT, SHARED_CIFAR, command
from vgg_transfer import runner

pytestmark = pytest.mark.slow

ARGS = ["run", "--profile", "smoke", "--only", "frozen", "--set", "cache_features=false",
        "--set", "epochs=12", "--set", "checkpoint_seconds=0"]  # a checkpoint after every epoch;
# epochs of about a second here: the signal sent at the second must land before the twelfth


def _command(outputs, *extra):
    return [sys.executable, "-m", "vgg_transfer", *ARGS, "--outputs", str(outputs), *extra]


def _env(shared_cifar):
    return {**os.environ, "CIFAR10_DIR": str(shared_cifar), "WEIGHTS": "hed-bsds500",
            "PYTHONUNBUFFERED": "1"}


def _run(outputs, env, *extra):
    return command(_command(outputs, *extra), env=env, timeout=900, cwd=PROJECT_ROOT).stdout


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run every interrupted one must end as."""
    if not (SHARED_CIFAR / "data_batch_1").is_file():
        pytest.skip("the offline CIFAR-10 copy is not on this machine")
    outputs = tmp_path_factory.mktemp("straight")
    _run(outputs, _env(SHARED_CIFAR))
    return outputs, _files(outputs)


def _started(outputs, env):
    """The runner in a session of its own (as a terminal's foreground job), and the lines
    it printed up to its second epoch: the checkpoint of the first is on disk by then."""
    process = subprocess.Popen(_command(outputs), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, cwd=PROJECT_ROOT,
                               start_new_session=True)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "epoch 2/12" in line:
            return process, seen
    process.wait(timeout=60)
    raise AssertionError("the run ended before its second epoch:\n" + "".join(seen)[-3000:])


def _files(outputs):
    run = outputs / "smoke" / "runs" / "frozen"
    metrics = json.loads((run / "metrics.json").read_text())
    return metrics, (run / "history.csv").read_text(), (run / "predictions.csv").read_text()


def _kill_after_first_epoch(outputs, env):
    process, seen = _started(outputs, env)
    family = [process.pid] + [p.pid for p in psutil.Process(process.pid).children(recursive=True)]
    for pid in family:  # the runner and its kernel, at once
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=60)
    assert any("epoch 2/12" in line for line in seen), "".join(seen)[-2000:]
    time.sleep(1)


def test_the_same_seed_gives_the_same_run(straight, shared_cifar, tmp_path):
    again = tmp_path / "again"
    _run(again, _env(shared_cifar))
    assert (again / "smoke/runs/frozen/metrics.json").read_text() == \
        (straight[0] / "smoke/runs/frozen/metrics.json").read_text()


def _resumes_as_uninterrupted(outputs, env, reference):
    staging = outputs / "smoke" / "runs" / ".frozen.partial"
    assert (staging / "checkpoint.npz").is_file()
    assert not (outputs / "smoke" / "runs" / "frozen").exists()
    log = _run(outputs, env)
    assert "resuming" in log
    metrics, history, predictions = _files(outputs)
    assert any(note.startswith("resumed after epoch") for note in metrics.pop("notes"))
    expected = dict(reference[0])
    expected.pop("notes")
    assert metrics == expected
    assert history == reference[1] and predictions == reference[2]
    assert not staging.exists()


def test_ctrl_c_stops_cleanly_and_the_next_run_resumes(straight, shared_cifar, tmp_path):
    env, outputs = _env(shared_cifar), tmp_path / "stopped"
    process, seen = _started(outputs, env)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends the terminal's foreground job
    rest, _ = process.communicate(timeout=180)
    log = "".join(seen) + rest
    assert process.returncode == 130, log[-3000:]
    assert "interrupted: finished runs are kept" in log
    assert not any(p.status() != psutil.STATUS_ZOMBIE for p in _session(process.pid))
    _resumes_as_uninterrupted(outputs, env, straight[1])


def _session(sid: int) -> list:
    """The processes still alive in a session (the runner's kernel, say)."""
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getsid(p.pid) == sid:
                found.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return found


def test_a_second_command_on_one_outputs_folder_refuses_at_once(straight, shared_cifar,
                                                                tmp_path):
    env, outputs = _env(shared_cifar), tmp_path / "shared"
    first, seen = _started(outputs, env)
    start = time.perf_counter()
    second = command(_command(outputs), expect=3, env=env, timeout=120, cwd=PROJECT_ROOT)
    assert time.perf_counter() - start < 30  # at once: it waits for nothing
    (line,) = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert f"in use by process {first.pid}" in line and "vgg_transfer run" in line, line
    assert "epoch" not in second.stdout
    rest, _ = first.communicate(timeout=600)
    assert first.returncode == 0, ("".join(seen) + rest)[-3000:]
    metrics, history, predictions = _files(outputs)
    assert (metrics, history, predictions) == straight[1]  # as if it had run alone


def test_killed_run_resumes_and_matches_an_uninterrupted_one(straight, shared_cifar, tmp_path):
    env, killed = _env(shared_cifar), tmp_path / "killed"
    _kill_after_first_epoch(killed, env)
    _resumes_as_uninterrupted(killed, env, straight[1])


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
