import subprocess
import sys

import pytest

from vgg_transfer.config import ConfigError, load_experiments, parse_set, resolve, resolve_profile

SPEC = {
    "defaults": {"weights": "imagenet", "epochs": 10, "val_size": 5000},
    "experiments": {"scratch": {"regime": "scratch", "weights": "none"},
                    "frozen": {"regime": "frozen"}},
    "profiles": {"quick": {"set": {"epochs": 2}}, "full": {}},
}


def test_layers_merge_in_order():
    cfg = resolve(SPEC, "frozen", "quick", overrides={"seed": 7},
                  env={"WEIGHTS": "hed-bsds500"})
    assert (cfg.epochs, cfg.seed, cfg.weights) == (2, 7, "hed-bsds500")
    # the experiment entry beats the environment: scratch stays random
    assert resolve(SPEC, "scratch", "quick", env={"WEIGHTS": "hed-bsds500"}).weights == "none"


@pytest.mark.parametrize("overrides, message", [
    ({"epoch": 3}, "epoch: unknown key"),
    ({"epochs": -1}, "epochs: Input should be greater than 0"),
    ({"epochs": 0}, "epochs: Input should be greater than 0"),
    ({"epochs": "ten"}, "epochs: Input should be a valid integer"),
    ({"regime": "thawed"}, "regime: Input should be 'scratch', 'frozen', 'finetune', 'partial'"),
    ({"head": "dense"}, "head: Input should be 'flatten' or 'gap'"),
    ({"weights": "imagenet21k"}, "weights: must be one of imagenet, hed-bsds500, none"),
    ({"data_dir": "/no/such/folder"}, "data_dir: folder not found"),
    ({"learning_rate": 0}, "learning_rate: Input should be greater than 0"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        resolve(SPEC, "frozen", "quick", overrides=overrides, env={})
    assert "\n" not in str(err.value)


def test_scratch_must_be_random():
    with pytest.raises(ConfigError, match="scratch regime starts from random weights"):
        resolve(SPEC, "scratch", "quick", overrides={"weights": "hed-bsds500"}, env={})


def test_unknown_profile_and_experiment():
    with pytest.raises(ConfigError, match="unknown profile 'nope' \\(allowed: quick, full\\)"):
        resolve_profile(SPEC, "nope", env={})
    with pytest.raises(ConfigError, match="not in profile quick"):
        resolve_profile(SPEC, "quick", only=["finetune"], env={})


def test_every_experiment_is_validated_before_any_runs():
    with pytest.raises(ConfigError, match="experiment 'scratch'"):
        resolve_profile(SPEC, "quick", overrides={"weights": "hed-bsds500"}, env={})


def test_parse_set_reads_scalars():
    assert parse_set(["epochs=3", "learning_rate=1e-5", "cache_features=false",
                      "train_size=null"]) == {"epochs": 3, "learning_rate": 1e-5,
                                              "cache_features": False, "train_size": None}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_set(["epochs"])


def test_project_file_resolves_every_profile(tiny_cifar):
    spec = load_experiments()
    env = {"CIFAR10_DIR": str(tiny_cifar), "WEIGHTS": "hed-bsds500"}
    for profile in ("smoke", "quick", "seed"):
        configs = resolve_profile(spec, profile, env=env)
        assert [c.regime for c in configs] == ["scratch", "frozen", "finetune"]
    extended = resolve_profile(spec, "extended", env=env)
    assert {c.regime for c in extended} == {"scratch", "frozen", "finetune", "partial",
                                            "two_phase", "scratch_bn"}
    assert next(c for c in extended if c.regime == "scratch_bn").augment


def test_cli_rejects_bad_profile():
    result = subprocess.run([sys.executable, "-m", "vgg_transfer", "run", "--profile", "nope"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "unknown profile 'nope'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_profile_can_override_one_experiment():
    spec = {**SPEC, "profiles": {"quick": {"set": {"epochs": 2},
                                           "experiments": {"frozen": {"epochs": 30}}}}}
    assert resolve(spec, "frozen", "quick", env={}).epochs == 30
    assert resolve(spec, "scratch", "quick", env={}).epochs == 2
    bad = {**SPEC, "profiles": {"quick": {"experiments": {"thawed": {}}}}}
    with pytest.raises(ConfigError, match="unknown experiment 'thawed'"):
        resolve(bad, "frozen", "quick", env={})
