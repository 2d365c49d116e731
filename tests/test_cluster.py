"""The runs of a profile on a Dask cluster: the smoke_study grid on 2 local workers ends with
the same metrics.json as the sequential runner; a worker killed mid-run is replaced and its
run resumes from its checkpoint; a failing run leaves the others finished and the runner
exits non-zero naming it."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT
from vgg_transfer.runner import cluster
from vgg_transfer.spec.config import ConfigError, load_experiments
from vgg_transfer.spec.profiles import resolve_profile

# ---------------------------------------------------------------- quick: the cluster itself


def test_one_worker_per_gpu():
    specs = cluster.worker_specs(2, ["3", "5"])
    assert list(specs) == ["gpu3", "gpu5"]
    assert [s["options"]["env"] for s in specs.values()] == [{"CUDA_VISIBLE_DEVICES": "3"},
                                                             {"CUDA_VISIBLE_DEVICES": "5"}]
    assert all(s["options"]["nthreads"] == 1 for s in specs.values())
    with pytest.raises(ConfigError, match="3 workers but 2 GPU"):
        cluster.worker_specs(3, ["0", "1"])
    assert list(cluster.worker_specs(2, [])) == ["cpu0", "cpu1"]


@pytest.mark.parametrize("visible, gpus", [("0,2", ["0", "2"]), ("", []), ("-1", [])])
def test_visible_gpus_follow_cuda_visible_devices(monkeypatch, visible, gpus):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert cluster.visible_gpus() == gpus


def test_local_workers_are_pinned_and_keep_the_callers_threads(monkeypatch):
    """Each local worker sees its own GPU; the thread variables Dask would set to 1 are left
    as the caller has them; the caller's environment is as it was afterwards."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = dict(os.environ)
    with cluster.connect(workers=2) as client:
        client.wait_for_workers(2, timeout=120)
        seen = client.run(lambda: (os.environ.get("CUDA_VISIBLE_DEVICES"),
                                   os.environ.get("OMP_NUM_THREADS")))
    assert sorted(seen.values()) == [("3", None), ("5", None)]
    assert dict(os.environ) == before


def test_workers_and_scheduler_are_exclusive(capsys):
    from vgg_transfer import cli

    with pytest.raises(SystemExit):
        cli.main(["run", "--workers", "2", "--scheduler", "tcp://localhost:8786"])
    assert "not allowed with argument" in capsys.readouterr().err


# ---------------------------------------------------------------- slow: real runs

def _comparable(text: str) -> str:
    """metrics.json as text, less the one thing the order of runs decides: whether a frozen
    run's features were computed by it or read from the cache an earlier run filled."""
    return text.replace("(read from the feature cache)", "(computed)")


# Half of the smoke_study grid (14 of 28 runs; `benchmarks/cluster_bench.py` times all 28):
# the cached-feature regimes, whose runs share feature-cache files across
# workers (frozen-n200-s0 and resolution-px32-flatten-s0 read the same ones), at 32 and 64 px, and
# partial, which trains block 5. `benchmarks/cluster_bench.py` compares all 28.
SUBSET = ["frozen", "partial", "resolution"]


@pytest.mark.slow
def test_smoke_study_grid_on_two_workers_equals_the_sequential_run(site, tmp_path):
    """Every run of the subset, one task each on 2 local workers, into a fresh runs folder:
    each ends with the key and the metrics.json of the `site` fixture's sequential run."""
    points = resolve_profile(load_experiments(), site["profile"], site["overrides"], SUBSET)
    runs = tmp_path / "runs"
    cache = site["outputs"] / ".feature-cache"  # the sequential run's, as the runner shares it
    outcomes = cluster.run_on_cluster(points, runs, workers=2, feature_cache=cache)
    assert sorted(outcomes) == sorted(p.name for p in points) and len(points) == 14
    assert {o.status for o in outcomes.values()} == {"ok"}
    sequential = site["outputs"] / site["profile"] / "runs"
    for point in points:
        ours, theirs = runs / point.name, sequential / point.name
        assert (ours / "run_key").read_text() == (theirs / "run_key").read_text(), point.name
        assert (_comparable((ours / "metrics.json").read_text())
                == _comparable((theirs / "metrics.json").read_text())), point.name
    assert cluster.run_on_cluster(points, runs, workers=2, feature_cache=cache) == {}  # current


@pytest.mark.slow
def test_killed_worker_resumes_and_a_failing_run_leaves_the_others(shared_cifar, tmp_path):
    """`run --workers 2`: the worker running `frozen` is killed (SIGKILL) after the run's
    first checkpoint; its run is handed out again and resumes, and ends as `straight` (the
    same run, not killed). `bad` fails (its weights file is not weights): the other runs
    finish, the runner names it and exits non-zero, and the notebooks of the finished
    experiments only draw their pages."""
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(b"not weights")
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(
        # frozen blocks computed in every step: epochs long enough to be killed in
        "defaults: {weights: hed-bsds500, val_size: 100, train_size: 200, epochs: 3,\n"
        "           batch_size: 64, cache_features: false, checkpoint_seconds: 0}\n"
        "experiments:\n  frozen: {regime: frozen}\n  straight: {regime: frozen}\n"
        f"  bad: {{regime: frozen, weights: {broken}}}\n"
        "profiles:\n  tiny: {}\n")
    outputs = tmp_path / "outputs"
    env = {**os.environ, "CIFAR10_DIR": str(shared_cifar), "WEIGHTS": "hed-bsds500",
           "PYTHONUNBUFFERED": "1", cluster.TEST_KILL: "frozen"}
    result = subprocess.run(
        [sys.executable, "-m", "vgg_transfer", "run", "--profile", "tiny", "--experiments",
         str(experiments), "--outputs", str(outputs), "--workers", "2"],
        env=env, capture_output=True, text=True, timeout=900, cwd=PROJECT_ROOT)
    log = result.stdout + result.stderr
    assert result.returncode == 1, log[-3000:]
    assert "1 experiment(s) failed: bad:" in result.stderr, log[-3000:]
    assert "does not fit a VGG16 base" in result.stderr
    assert len(re.findall(r"^\[\d/3\] \S+ (ok|failed)", result.stdout, re.M)) == 3, log[-3000:]

    runs = outputs / "tiny" / "runs"
    assert (runs / ".frozen.killed").is_file(), log[-3000:]  # the worker did die
    for name in ("frozen", "straight"):
        assert (runs / name / "metrics.json").is_file(), name
    assert not (runs / "bad").exists() and (runs / "bad.failed").is_file()
    assert json.loads((runs / "bad.failed").read_text())["name"] == "bad"

    resumed = json.loads((runs / "frozen" / "metrics.json").read_text())
    straight = json.loads((runs / "straight" / "metrics.json").read_text())
    assert any(note.startswith("resumed after") for note in resumed["notes"]), resumed["notes"]
    assert not any(note.startswith("resumed") for note in straight["notes"])
    for key in ("name", "experiment", "axes", "notes"):  # what names the run, and the resume
        resumed.pop(key), straight.pop(key)
    assert resumed == straight  # the same config and seed, uninterrupted
    assert "resuming" in (runs / ".frozen.log").read_text()

    notebooks = outputs / "tiny" / "notebooks"
    assert (notebooks / "frozen.ipynb").is_file() and (notebooks / "straight.ipynb").is_file()
    assert (notebooks / "bad.failed").is_file() and not (notebooks / "bad.ipynb").exists()
    assert "frozen: unchanged since its last run" in result.stdout  # no training there
    assert not re.search(r"^epoch \d", result.stdout, re.M)
