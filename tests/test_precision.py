"""`precision: auto`: mixed bfloat16 where the CPU has bf16 units and the backend uses them,
float32 elsewhere; the policy that ran is in the run's config, key and provenance."""

import numpy as np
import pytest

from conftest import make_folder
from vgg_transfer.record import RunRecord
from vgg_transfer.report import sentences, tables
from vgg_transfer.runner import sweep
from vgg_transfer.spec import precision
from vgg_transfer.spec.config import ConfigError, load_experiments, make_config
from vgg_transfer.spec.profiles import resolve_grid

BF16_CPU = {"avx2", "avx512f", "avx512_bf16"}
AVX2_CPU = {"avx2", "fma"}


def test_auto_picks_bfloat16_only_where_the_cpu_has_bf16_units():
    assert precision.resolve("auto", "tensorflow", BF16_CPU) == "mixed_bfloat16"
    assert precision.resolve(None, "torch", {"amx_bf16"}) == "mixed_bfloat16"
    assert precision.resolve("auto", "tensorflow", AVX2_CPU) == "float32"
    assert precision.resolve("auto", "jax", BF16_CPU) == "float32"  # no bf16 kernels on XLA's CPU
    assert precision.resolve("float32", "tensorflow", BF16_CPU) == "float32"
    assert precision.resolve("mixed_bfloat16", "tensorflow", AVX2_CPU) == "mixed_bfloat16"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n"
                       "\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert precision.cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert precision.cpu_flags(tmp_path / "missing") == set()
    assert precision.bf16_units({"fpu", "avx2", "avx512_bf16"}) == "avx512_bf16"
    assert precision.bf16_units(AVX2_CPU) is None


@pytest.mark.parametrize("flags, expected", [(BF16_CPU, "mixed_bfloat16"),
                                             (AVX2_CPU, "float32")])
def test_the_config_holds_the_policy_auto_chose(monkeypatch, tiny_cifar, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda *args: set(flags))
    env = {"CIFAR10_DIR": str(tiny_cifar), "WEIGHTS": "hed-bsds500"}
    spec = load_experiments()
    assert spec["defaults"]["precision"] == "auto"
    (point,) = resolve_grid(spec, "frozen", "smoke", env=env)
    assert point.cfg.precision == expected
    (fixed,) = resolve_grid(spec, "frozen", "smoke", overrides={"precision": "float32"},
                              env=env)
    assert fixed.cfg.precision == "float32"
    keys = {sweep.run_key(point.cfg, "code"), sweep.run_key(fixed.cfg, "code")}
    assert len(keys) == (2 if expected != "float32" else 1)  # the policy is in the key
    cfg = make_config({"name": "x", "regime": "frozen", "weights": "none"})
    assert cfg.precision == expected
    with pytest.raises(ConfigError, match="precision: Input should be 'float32'"):
        make_config({"name": "x", "regime": "frozen", "weights": "none", "precision": "fp8"})


needs_bf16 = pytest.mark.skipif(
    not precision.bf16_units(),
    reason="this CPU has no bf16 units (on such CPUs bfloat16 runs several times slower)")


@needs_bf16
def test_a_bfloat16_run_records_its_policy_and_repeats_exactly(tmp_path):
    """A run in mixed bfloat16 (frozen blocks cached, the rest trained) names its policy in
    its config, provenance and pages, caches float32 outputs, keeps them apart from float32's,
    and gives the same metrics when run again from the same seed."""
    from vgg_transfer.run.pipeline import run

    data = make_folder(tmp_path / "data", per_batch=12, test=10)
    base = {"regime": "partial", "weights": "hed-bsds500", "data_dir": str(data),
            "train_size": 24, "val_size": 12, "epochs": 2, "batch_size": 8}
    records = {}
    for name, policy in (("bf16", "auto"), ("again", "auto"), ("fp32", "float32")):
        run(make_config({"name": name, **base, "precision": policy}), tmp_path / "out" / name,
            feature_cache=tmp_path / "out" / ".feature-cache")
        records[name] = RunRecord.load(tmp_path / "out" / name)
    bf16 = records["bf16"]
    assert bf16.config.precision == "mixed_bfloat16"
    assert bf16.provenance.backend["precision"] == {"policy": "mixed_bfloat16",
                                                    "cpu_bf16_units": precision.bf16_units()}
    assert "avx512_bf16" in bf16.provenance.hardware["cpu_flags"] or \
        "amx_bf16" in bf16.provenance.hardware["cpu_flags"]
    again = records["again"]
    assert bf16.predictions.equals(again.predictions) and bf16.history.equals(again.history)
    assert bf16.metrics.test_loss == again.metrics.test_loss
    assert not np.array_equal(bf16.correct, records["fp32"].correct) or \
        bf16.metrics.test_loss != records["fp32"].metrics.test_loss
    cached = sorted((tmp_path / "out" / ".feature-cache").glob("*.npy"))
    assert cached and all(np.load(f).dtype == np.float32 for f in cached)
    assert len(cached) == 2 * len({f.name.split("-")[0] for f in cached})  # one set per policy
    assert tables.run_summary(bf16).set_index("metric").loc["precision", "value"] == \
        "mixed_bfloat16"
    assert sentences.precisions(list(records.values())) == \
        "mixed_bfloat16 (2 runs) and float32 (1 run)"
