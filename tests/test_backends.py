"""Any Keras 3 backend: the config names one, the runner starts its processes with it, and
the runs, their records and the pages are the same on TensorFlow, JAX and PyTorch.

A test of a backend that is not installed is skipped, unless VGG_REQUIRE_BACKENDS (a
comma-separated list; CI sets it) names that backend: then it fails.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import nbformat
import numpy as np
import pytest

from conftest import PROJECT_ROOT, make_folder
from vgg_transfer import runner
from vgg_transfer.record import RunRecord
from vgg_transfer.report import tables
from vgg_transfer.run import backend
from vgg_transfer.runner import sweep
from vgg_transfer.spec.config import ConfigError, load_experiments, make_config
from vgg_transfer.spec.profiles import GridRun, resolve_grid

REQUIRED = {name.strip() for name in os.environ.get("VGG_REQUIRE_BACKENDS", "").split(",")}


def need(name: str) -> None:
    """Skip unless the backend is installed; fail instead when VGG_REQUIRE_BACKENDS names it."""
    if name in backend.installed():
        return
    if name in REQUIRED:
        pytest.fail(f"{name} is not installed, and VGG_REQUIRE_BACKENDS requires it")
    pytest.skip(f"{name} is not installed (pip install -e '.[{name}]')")


def on_backend(name: str, script: str, *args: str, timeout: int = 600) -> dict:
    """Run a Python script in a process started with KERAS_BACKEND=name; its last line of
    output is JSON."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args],
                            env={**os.environ, backend.ENV: name}, capture_output=True,
                            text=True, timeout=timeout, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _point(cfg_values: dict, experiment: str = "frozen") -> GridRun:
    return GridRun(make_config({"name": experiment, "regime": "frozen", "weights": "none",
                              **cfg_values}), experiment)


# ---------------------------------------------------------------- the config and the key

def test_the_backend_comes_from_keras_backend_else_tensorflow(tiny_cifar):
    spec = load_experiments()
    env = {"CIFAR10_DIR": str(tiny_cifar), "WEIGHTS": "hed-bsds500"}
    (plain,) = resolve_grid(spec, "frozen", "smoke", env=env)
    (jax,) = resolve_grid(spec, "frozen", "smoke", env={**env, "KERAS_BACKEND": "jax"})
    (torch,) = resolve_grid(spec, "frozen", "smoke", overrides={"backend": "torch"},
                              env={**env, "KERAS_BACKEND": "jax"})
    assert (plain.cfg.backend, jax.cfg.backend, torch.cfg.backend) == ("tensorflow", "jax",
                                                                        "torch")
    with pytest.raises(ConfigError, match="backend: Input should be 'tensorflow', 'jax' or "
                                          "'torch'"):
        resolve_grid(spec, "frozen", "smoke", overrides={"backend": "mxnet"}, env=env)


def test_two_backends_give_two_run_keys(tiny_cifar):
    spec = load_experiments()
    env = {"CIFAR10_DIR": str(tiny_cifar), "WEIGHTS": "hed-bsds500"}
    keys = {sweep.run_key(resolve_grid(spec, "frozen", "smoke", overrides={"backend": name},
                                         env=env)[0].cfg, "code")
            for name in backend.NAMES}
    assert len(keys) == len(backend.NAMES)


# ---------------------------------------------------------------- processes and their backend

def test_a_run_for_another_backend_fails_in_one_line(tiny_cifar, tmp_path):
    other = next(name for name in backend.NAMES if name != backend.active())
    point = _point({"data_dir": str(tiny_cifar), "backend": other})
    outcome = sweep.run_one(point, tmp_path, "key")
    assert outcome.status == "failed"
    assert outcome.error == (f"backend: this run asks for {other}, but Keras was loaded with "
                             f"{backend.active()} in this process; start it with "
                             f"KERAS_BACKEND={other}")
    assert not (tmp_path / "frozen").exists()


def test_the_kernel_runs_the_backend_it_is_given(tmp_path):
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    notebook.cells = [nbformat.v4.new_code_cell(
        f"import os\nopen({str(tmp_path / 'seen')!r}, 'w').write(os.environ['KERAS_BACKEND'])")]
    nbformat.write(notebook, tmp_path / "probe.ipynb")
    runner.papermill.execute(tmp_path / "probe.ipynb", tmp_path / "out.ipynb", {}, None,
                   {backend.ENV: "jax"})
    assert (tmp_path / "seen").read_text() == "jax"


def test_the_runner_checks_backends_before_anything_runs(tmp_path, tiny_cifar, monkeypatch):
    mixed = {"frozen": [_point({"backend": "jax"}), _point({"backend": "tensorflow"})]}
    with pytest.raises(ConfigError, match="experiment 'frozen': its runs use several backends "
                                          r"\(jax, tensorflow\)"):
        runner.profile.check_backends(mixed, tmp_path, "code", force=False)
    monkeypatch.setattr(backend, "installed", lambda: ["tensorflow"])
    with pytest.raises(ConfigError, match="backend: torch is not installed here"):
        runner.profile.check_backends({"frozen": [_point({"data_dir": str(tiny_cifar),
                                                  "backend": "torch"})]},
                              tmp_path, "code", force=False)


def test_a_runs_provenance_names_its_backend(tmp_path):
    from vgg_transfer.run.pipeline import run

    data = make_folder(tmp_path / "data", per_batch=12, test=10)
    cfg = make_config({"name": "frozen", "regime": "frozen", "weights": "none",
                       "data_dir": str(data), "train_size": 20, "val_size": 10, "epochs": 1,
                       "batch_size": 16, "backend": backend.active()})
    run(cfg, tmp_path / "frozen")
    record = RunRecord.load(tmp_path / "frozen")
    engine = record.provenance.backend
    main_package = backend.PACKAGES[engine["name"]][0]
    assert engine["name"] == record.config.backend == backend.active()
    assert engine["version"] == backend.versions(engine["name"])[main_package]
    assert engine["deterministic"] is True  # on a CPU, every backend is made deterministic
    assert record.provenance.packages[main_package] == engine["version"]
    for name in backend.installed():  # every installed backend's packages are listed
        assert all(package in record.provenance.packages for package in backend.PACKAGES[name])
    assert list(tables.backends_table([record]).iloc[0]) == [
        engine["name"], engine["version"], "yes", record.config.precision, 1]


# ---------------------------------------------------------------- the same results on each

FROZEN_BASE = """
import json
import numpy as np
from vgg_transfer.run import backend
from vgg_transfer.run.models import build_model
from vgg_transfer.run.training import one_phase, train
from vgg_transfer.run.epochs import set_seed

rng = np.random.default_rng(0)
x, y = rng.integers(0, 256, (32, 32, 32, 3)).astype("uint8"), rng.integers(0, 10, 32)
same, heads = {}, []
for cache_features in (False, True, True):  # the last: the second again, from the same seed
    set_seed(0)
    built = build_model("frozen", "none")
    before = [w.copy() for w in built.base.get_weights()]
    head_before = [w.copy() for w in built.head.get_weights()]
    train(built, one_phase(5, 1, 1e-3), x, y, x[:8], y[:8], batch_size=16,
          cache_features=cache_features)
    heads.append(built.head.get_weights())
    same[str(cache_features)] = {
        "base": all(np.array_equal(a, b) for a, b in zip(before, built.base.get_weights())),
        "head": all(np.array_equal(a, b) for a, b in zip(head_before, built.head.get_weights()))}
print(json.dumps({"backend": backend.active(), "deterministic": backend.deterministic(),
                  "same": same,
                  "repeated": all(np.array_equal(a, b) for a, b in zip(heads[1], heads[2]))}))
"""


@pytest.mark.parametrize("name", backend.NAMES)
def test_the_frozen_base_stays_bit_identical_on_every_backend(name):
    """On the fly and on cached features, the base is unchanged and the head trained; the
    same seed trains the same head again (the backend is deterministic on a CPU)."""
    need(name)
    result = on_backend(name, FROZEN_BASE)
    assert result["backend"] == name and result["deterministic"]
    for cache_features, same in result["same"].items():
        assert same == {"base": True, "head": False}, cache_features
    assert result["repeated"]


GRADCAM = """
import json, sys
import numpy as np
from vgg_transfer.run.explain import gradcam
from vgg_transfer.run.models import build_model
from vgg_transfer.run.epochs import set_seed

weights, out = sys.argv[1], sys.argv[2]
set_seed(0)
built = build_model("frozen", "none")
if weights == "-":
    np.savez(out + ".weights.npz", *built.model.get_weights())
else:
    with np.load(weights) as saved:
        built.model.set_weights([saved[key] for key in saved.files])
x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("float32")
cams = gradcam(built, x)
np.savez(out, heatmaps=cams["heatmaps"], classes=cams["classes"])
print(json.dumps({"layer": cams["layer"], "side": cams["side"]}))
"""


def test_gradcam_on_jax_equals_gradcam_on_tensorflow(tmp_path):
    need("jax")
    tf_out, jax_out = str(tmp_path / "tf.npz"), str(tmp_path / "jax.npz")
    tf_meta = on_backend("tensorflow", GRADCAM, "-", tf_out)
    jax_meta = on_backend("jax", GRADCAM, tf_out + ".weights.npz", jax_out)
    assert tf_meta == jax_meta == {"layer": "block4_conv3", "side": 4}
    with np.load(tf_out) as tf_cams, np.load(jax_out) as jax_cams:
        assert np.array_equal(tf_cams["classes"], jax_cams["classes"])
        np.testing.assert_allclose(jax_cams["heatmaps"], tf_cams["heatmaps"], atol=1e-4)


# ---------------------------------------------------------------- the whole path on each

@pytest.mark.slow
@pytest.mark.parametrize("name", ["jax", "torch"])
def test_the_smoke_profile_runs_end_to_end_on_another_backend(tmp_path, name):
    """`run --set backend=NAME` from a process that never set KERAS_BACKEND: the runner
    starts the experiments' kernels on that backend; then the pages and the site build from
    the runs, and the same command again gives the same metrics (the backend is
    deterministic)."""
    need(name)
    data = make_folder(tmp_path / "data", per_batch=20, test=10)
    env = {k: v for k, v in os.environ.items() if k != backend.ENV}
    env.update(CIFAR10_DIR=str(data), WEIGHTS="hed-bsds500", PYTHONUNBUFFERED="1")
    metrics = []
    for outputs in (tmp_path / "outputs", tmp_path / "again"):
        result = subprocess.run(
            [sys.executable, "-m", "vgg_transfer", "run", "--profile", "smoke", "--set",
             f"backend={name}", "--set", "train_size=40", "--set", "val_size=20",
             "--outputs", str(outputs)],
            env=env, capture_output=True, text=True, timeout=1800, cwd=PROJECT_ROOT)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        folder = outputs / "smoke" / "runs"
        metrics.append({run: (folder / run / "metrics.json").read_text()
                        for run in ("scratch", "frozen", "finetune")})
    assert metrics[0] == metrics[1]
    outputs = tmp_path / "outputs"
    for run in ("scratch", "frozen", "finetune"):
        record = RunRecord.load(outputs / "smoke" / "runs" / run)
        assert record.config.backend == name and record.provenance.backend["name"] == name
        assert record.provenance.backend["deterministic"] is True
        package = backend.PACKAGES[name][0]
        assert record.provenance.packages[package] == backend.versions(name)[package]
    book = tmp_path / "book"
    shutil.copytree(PROJECT_ROOT / "book", book,
                    ignore=shutil.ignore_patterns("_build", "results", "_toc.yml"))
    index = runner.book.build_report(runner.plan.make_plan("smoke", outputs=outputs, book=book))
    assert index.is_file()
    page = (book / "_build" / "html" / "results" / "reproducibility.html").read_text()
    assert name in page


# ---------------------------------------------------------------- the benchmark's table

def test_the_benchmark_table_shows_every_backend():
    bench = {"images": 768, "batch_size": 128, "peak_rss_mb": 1000.0,
             "hardware": {"cpu": "test", "cpu_count": 2, "gpus": []},
             "regimes": {regime: {"train_images_per_s": 10.0, "inference_images_per_s": 50.0,
                                  "epoch_seconds_on_the_fly": 2.0, "epoch_seconds_cached": 0.1,
                                  "cached_speedup_per_epoch": 20.0, "feature_seconds": 1.0,
                                  "loop_vs_raw_ratio": 0.99}
                         for regime in ("scratch", "frozen", "partial", "finetune")},
             "backend": {"name": "tensorflow", "version": "2.21.0"},
             "backends": {"tensorflow": {"name": "tensorflow", "version": "2.21.0",
                                         "deterministic": True, "train_images_per_s": 75.0,
                                         "inference_images_per_s": 370.0},
                          "jax": {"name": "jax", "version": "0.10.2", "deterministic": True,
                                  "train_images_per_s": 15.0, "inference_images_per_s": 90.0},
                          "torch": {"name": "torch", "error": "ModuleNotFoundError: torch"}}}
    rows = dict(tables.bench_frame(bench).itertuples(index=False))
    assert not any("as Conv2D" in measure for measure in rows)  # a file from before it existed
    bench["regimes"]["partial"].update(epoch_seconds_cached_conv2d=0.25, small_map_speedup=2.5)
    rows = dict(tables.bench_frame(bench).itertuples(index=False))
    assert rows["partial on cached outputs, block 5 as Conv2D: s/epoch"] == "0.250"
    assert rows["partial on cached outputs: block 5 as matrix products, speed-up"] == "2.5×"
    assert rows["training loop / raw train_on_batch"] == "0.990"  # a file from before
    bench["keras"] = {"mixed_bfloat16": {"fit_vs_loop_ratio": 1.3, "predict_vs_loop_ratio": 1.7}}
    rows = dict(tables.bench_frame(bench).itertuples(index=False))
    key = "Keras fit / the training loop (train_on_batch), median s, mixed_bfloat16"
    assert rows[key] == "1.30×"
    assert rows["Keras predict / batch by batch (predict_on_batch), median s, mixed_bfloat16"] \
        == "1.70×"
    assert rows["backend and precision of the rows above"] == "tensorflow 2.21.0, float32"
    # a file from before the precisions: one float32 row per backend
    old = {(r["backend"], r["precision"]): r for r in tables.backend_rows(bench["backends"])}
    assert old["tensorflow", "float32"]["training images/s"] == 75.0
    assert old["jax", "float32"]["inference images/s"] == 90.0
    assert old["torch", "float32"]["note"] == "failed: ModuleNotFoundError: torch"
    assert tables.precision_frame(bench) is None and tables.parity_frame(bench) is None
    # each backend in both precisions, every regime's step, and the parity run
    bench["backends"] = {"torch": {
        "float32": {"name": "torch", "version": "2.13.0", "deterministic": True,
                    "precision": "float32", "train_images_per_s": 40.0,
                    "inference_images_per_s": 200.0},
        "mixed_bfloat16": {"name": "torch", "precision": "mixed_bfloat16",
                           "error": "not finished after 600 s"}}}
    new = {(r["backend"], r["precision"]): r for r in tables.backend_rows(bench["backends"])}
    assert new["torch", "float32"]["training images/s"] == 40.0
    assert new["torch", "mixed_bfloat16"]["note"] == "failed: not finished after 600 s"
    bench["precision"] = {"finetune": {"float32": 90.0, "mixed_bfloat16": 147.0,
                                       "ratio": 147.0 / 90.0}}
    html = tables.precision_frame(bench).to_html()
    assert "147.0" in html and "1.63×" in html
    bench["parity"] = {policy: {"train_n": 45000, "test_accuracy": acc,
                                "test_accuracy_ci95": [acc - 0.03, acc + 0.03],
                                "best_val_accuracy": 0.5, "training_seconds": 300.0,
                                "training_flops": 5e13}
                       for policy, acc in (("float32", 0.60), ("mixed_bfloat16", 0.59))}
    assert "59.0% (56.0%–62.0%)" in tables.parity_frame(bench).to_html()
