import subprocess
import sys

import pytest

from conftest import command
from vgg_transfer.spec.config import ConfigError, load_experiments, parse_set
from vgg_transfer.spec.profiles import (
    STUDIES,
    profile_compare,
    profile_studies,
    resolve,
    resolve_grid,
    resolve_profile,
)

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
    ({"regime": "thawed"}, "regime: unknown regime 'thawed' \\(allowed: scratch, frozen, finetune"),
    ({"head": "dense"}, "head: Input should be 'flatten' or 'gap'"),
    ({"weights": "imagenet21k"}, "weights: must be one of imagenet, hed-bsds500, none"),
    ({"data_dir": "/no/such/folder"}, "data_dir: folder not found"),
    ({"learning_rate": 0}, "learning_rate: Input should be greater than 0"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        resolve(SPEC, "frozen", "quick", overrides=overrides, env={})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("regime", ["scratch", "scratch_bn", "mlp"])
def test_random_regimes_must_be_random(regime):
    with pytest.raises(ConfigError, match=f"{regime} regime starts from random weights"):
        resolve(SPEC, "scratch", "quick", overrides={"regime": regime, "weights": "hed-bsds500"},
                env={})


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
    for profile, names in (("smoke", ["scratch", "frozen", "finetune"]),
                           ("quick", ["scratch", "frozen", "finetune", "partial"]),
                           ("seed", ["scratch", "frozen", "finetune"])):
        points = resolve_profile(spec, profile, env=env)
        assert [p.cfg.regime for p in points] == names
        assert [p.name for p in points] == names  # no grid
        assert all(p.cfg.save_model for p in points)  # runs outside grids keep their model
    extended = resolve_profile(spec, "extended", env=env)
    assert {p.cfg.regime for p in extended} == {"scratch", "frozen", "finetune", "partial",
                                                "two_phase", "scratch_bn", "mlp"}
    assert next(p for p in extended if p.cfg.regime == "scratch_bn").cfg.augment
    for profile in ("smoke_study", "study", "study_gpu"):
        points = resolve_profile(spec, profile, env=env)
        studies = profile_studies(spec, profile)
        seeds = {}
        for p in points:  # every reference setting the seeds study compares: several seeds
            if p.experiment in studies["seeds"] and p.reference:
                seeds.setdefault(p.name.rsplit("-s", 1)[0], set()).add(p.cfg.seed)
        assert not any(p.cfg.save_model for p in points if p.axes)  # grid points keep no model
        assert min(len(s) for s in seeds.values()) >= 2
        assert profile_compare(spec, profile) == ["scratch", "frozen", "finetune"]
    studies = {p: set(profile_studies(spec, p)) for p in ("smoke_study", "study", "study_gpu")}
    assert studies["smoke_study"] == set(STUDIES)
    # study: the frontier in place of the depth study; depth and data efficiency on a GPU
    assert studies["study"] == set(STUDIES) - {"depth", "data_efficiency"}
    assert studies["study_gpu"] == set(STUDIES) - {"frontier"}
    study = resolve_profile(spec, "study", env=env)
    frontier_names = profile_studies(spec, "study")["frontier"]
    frontier = [p.cfg for p in study if p.experiment in frontier_names]
    # the frontier's runs first, in the order the profile's `only` lists them
    assert [p.experiment for p in study[:len(frontier)]] == sorted(
        (p.experiment for p in study if p.experiment in frontier_names),
        key=["budget_finetune", "budget_frozen", "budget_scratch", "budget_finetune_constant",
             "budget_scratch_constant"].index)
    assert {p.cfg.image_size for p in study if p.experiment == "resolution"} == {32, 64}
    assert all(c.flops_budget for c in frontier)
    # all 49,000 training images, except where caching them would cost more than the budget
    assert all(c.train_size is None for c in frontier if c.flops_budget > 3.2e13
               or c.regime in ("scratch", "scratch_bn", "finetune"))
    lines, seeds = {}, {}
    for c in frontier:  # every budget a line reaches, and the seeds at each
        line = (c.schedule, c.regime, c.unfreeze_from if c.regime == "finetune" else None)
        for budget in [c.flops_budget, *(c.budget_points or [])]:
            lines.setdefault(line, set()).add(budget)
            seeds.setdefault((line, budget), set()).add(c.seed)
        if c.schedule == "wsd":  # every budget-aware line searches >= 3 rates spanning 10x
            rates = c.lr_search.learning_rates
            assert len(rates) >= 3 and rates[-1] / rates[0] >= 10 - 1e-9
            assert c.early_stopping is None and c.cooldown_fraction == 0.2
        else:  # the original recipe: constant 1e-4
            assert c.learning_rate == 1e-4 and c.lr_search is None
    aware = {line[1:]: b for line, b in lines.items() if line[0] == "wsd"}
    assert {r for r, _ in aware} == {"scratch", "frozen", "finetune"}
    assert all(max(b) >= 10 * min(b) for b in lines.values())
    budgets = sorted(set().union(*aware.values()))
    assert budgets == [1.25e12, 4e12, 1.25e13, 4e13, 2.5e14]
    for budget in budgets[:-1]:  # three regimes or more, one from random weights, at each
        regimes_at = {r for (r, _), b in aware.items() if budget in b}
        assert len(regimes_at) >= 3 and regimes_at & {"scratch", "scratch_bn"}, budget
    # the top budget: fine-tuning everything
    assert {line for line, b in aware.items() if 2.5e14 in b} == {("finetune", 1)}
    # the original recipe beside one pretrained line and one from random weights, at the
    # budgets that line reached
    constant = {line[1:]: b for line, b in lines.items() if line[0] == "constant"}
    assert set(constant) == {("finetune", 5), ("scratch", None)}
    assert all(b == aware[line] for line, b in constant.items())
    # every budget-aware point under 5 TFLOPs has three seeds; the costlier ones one
    assert all(len(s) == 3 if budget < 5e12 and line[0] == "wsd" else s == {0}
               for (line, budget), s in seeds.items())
    # below what caching every image costs, fine-tuning runs the frozen blocks on the fly,
    # and the frozen regime caches a subset its budget pays for (0.626 GFLOPs an image)
    assert all(not c.cache_features for c in frontier
               if c.regime == "finetune" and c.flops_budget < 2.8e13)
    small = [c for c in frontier
             if c.regime in ("frozen", "two_phase") and c.flops_budget < 3.2e13]
    assert all(c.cache_features and c.train_size for c in small)
    assert all((c.train_size + c.val_size) * 0.626e9 < 0.95 * c.flops_budget for c in small)


def test_cli_rejects_bad_profile():
    result = command([sys.executable, "-m", "vgg_transfer", "run", "--profile", "nope"],
                     expect=2, timeout=120)
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


GRID = {
    "defaults": {"weights": "none", "epochs": 3, "train_size": 2000},
    "experiments": {
        "frozen": {"regime": "frozen"},
        "sbn": {"regime": "scratch_bn",
                "grid": {"budget": [{"train_size": 500, "epochs": 12},
                                    {"train_size": 2000, "epochs": 3}]}}},
    "profiles": {"study": {"grid": {"seed": [0, 1]},
                           "experiments": {"frozen": {"grid": {"train_size": [500, 2000, None]}}},
                           "studies": {"seeds": None, "data_efficiency": ["frozen", "sbn"]}}},
}


def test_grid_expands_into_named_points_with_seed_last():
    points = resolve_grid(GRID, "frozen", "study", env={})
    assert [p.name for p in points] == ["frozen-n500-s0", "frozen-n500-s1", "frozen-n2000-s0",
                                        "frozen-n2000-s1", "frozen-nall-s0", "frozen-nall-s1"]
    assert [p.cfg.train_size for p in points] == [500, 500, 2000, 2000, None, None]
    assert [p.cfg.seed for p in points] == [0, 1] * 3
    # the reference points sit at the experiment's own setting (train_size 2000)
    assert [p.name for p in points if p.reference] == ["frozen-n2000-s0", "frozen-n2000-s1"]
    assert all(p.experiment == "frozen" and p.cfg.name == p.name for p in points)


def test_grid_axis_of_mappings_varies_keys_together():
    points = resolve_grid(GRID, "sbn", "study", env={})
    assert [(p.cfg.train_size, p.cfg.epochs, p.cfg.seed) for p in points] == [
        (500, 12, 0), (500, 12, 1), (2000, 3, 0), (2000, 3, 1)]
    assert points[0].name == "sbn-n500-e12-s0"
    assert [p.reference for p in points] == [False, False, True, True]


def test_an_override_fixes_a_grid_axis():
    points = resolve_grid(GRID, "frozen", "study", overrides={"seed": 5}, env={})
    assert [p.name for p in points] == ["frozen-n500", "frozen-n2000", "frozen-nall"]
    assert {p.cfg.seed for p in points} == {5}
    one = resolve_grid(GRID, "sbn", "study", overrides={"seed": 0, "train_size": 500}, env={})
    assert [(p.name, p.cfg.epochs) for p in one] == [("sbn-e12", 12), ("sbn-e3", 3)]


@pytest.mark.parametrize("grid, message", [
    ({"seed": 3}, "grid.seed: must be a non-empty list"),
    ({"seed": []}, "grid.seed: must be a non-empty list"),
    ({"epochs": [0, 1]}, "grid run frozen-e0.*epochs: Input should be greater than 0"),
    ({"epoch": [1, 2]}, "epoch: unknown key"),
    ({"learning_rate": [1e-4, 1.0000001e-4]}, "two grid runs the same name"),
])
def test_bad_grids_name_the_axis(grid, message):
    spec = {**GRID, "profiles": {"p": {"experiments": {"frozen": {"grid": grid}}}}}
    with pytest.raises(ConfigError, match=message):
        resolve_grid(spec, "frozen", "p", env={})


def test_studies_and_compare_are_checked():
    assert profile_studies(GRID, "study") == {"seeds": ["frozen", "sbn"],
                                              "data_efficiency": ["frozen", "sbn"]}
    bad = {**GRID, "profiles": {"p": {"studies": ["telepathy"]}}}
    with pytest.raises(ConfigError, match="unknown study 'telepathy'"):
        profile_studies(bad, "p")
    bad = {**GRID, "profiles": {"p": {"only": ["frozen"], "studies": {"seeds": ["sbn"]}}}}
    with pytest.raises(ConfigError, match="experiment 'sbn' is not in the profile"):
        profile_studies(bad, "p")
    bad = {**GRID, "profiles": {"p": {"only": ["frozen"], "compare": ["sbn"]}}}
    with pytest.raises(ConfigError, match="compare: experiment 'sbn' is not in the profile"):
        profile_compare(bad, "p")
    with pytest.raises(ConfigError, match="unknown key 'studys'"):
        resolve_profile({**GRID, "profiles": {"p": {"studys": []}}}, "p", env={})


def test_a_run_computes_only_with_keyed_code():
    """Every module a run imports is under run/ (whose code is the key's fingerprint) or
    enters the key as data: the config's values, the regime's training fields, the record's
    schema version; files only writes. A module added elsewhere that a run imports fails."""
    probe = ("import sys; import vgg_transfer.run.pipeline; "
             "print(sorted(m for m in sys.modules if m.startswith('vgg_transfer')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = set(eval(result.stdout.strip().splitlines()[-1]))
    outside = {m for m in imported if not m.startswith("vgg_transfer.run.")}
    assert outside == {"vgg_transfer", "vgg_transfer.run", "vgg_transfer.spec",
                       "vgg_transfer.spec.config", "vgg_transfer.spec.regimes",
                       "vgg_transfer.spec.precision", "vgg_transfer.spec.backends",
                       "vgg_transfer.core", "vgg_transfer.core.data",
                       "vgg_transfer.core.metrics",
                       "vgg_transfer.record", "vgg_transfer.files"}, outside
    from vgg_transfer.runner import sweep

    # the pages' code is in the site's hash but not in a run's
    assert sweep.code_hash() != sweep.package_hash()


@pytest.mark.parametrize("values, message", [
    ({"budget_points": [1e11]}, "needs a flops_budget"),
    ({"flops_budget": 1e12, "budget_points": [2e12]}, "below flops_budget"),
    ({"flops_budget": 1e12, "budget_points": [5e11, 2e11]}, "ascending, distinct"),
    ({"flops_budget": 1e12, "budget_points": []}, "ascending, distinct"),
    ({"flops_budget": 1e12, "budget_points": [5e11], "regime": "two_phase"}, "trains in phases"),
])
def test_budget_points_that_are_not_a_shorter_run_are_refused(values, message):
    from vgg_transfer.spec.config import make_config

    with pytest.raises(ConfigError, match=message):
        make_config({"name": "x", "regime": "finetune", "weights": "none", **values})


def test_a_relative_data_dir_names_the_folder_from_where_the_command_started(tmp_path,
                                                                             monkeypatch):
    data = tmp_path / "somewhere" / "cifar-10-batches-py"
    data.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "somewhere")
    cfg = resolve(SPEC, "frozen", "quick", env={"CIFAR10_DIR": "cifar-10-batches-py"})
    assert cfg.data_dir == str(data.resolve())
    monkeypatch.chdir(tmp_path)  # the same words from elsewhere name no folder
    with pytest.raises(ConfigError, match="folder not found: cifar-10-batches-py"):
        resolve(SPEC, "frozen", "quick", env={"CIFAR10_DIR": "cifar-10-batches-py"})
