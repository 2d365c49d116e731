"""The budget-aware recipe: a warmup-stable-decay schedule that ends at the run's budget, each
smaller budget a cooldown branch off one run, and the constant rate unchanged."""

import json
from pathlib import Path

import pytest

from vgg_transfer.spec.config import ConfigError, make_config

HERE = Path(__file__).parent


def test_wsd_warms_up_holds_and_cools_down_to_zero_at_the_budget():
    from vgg_transfer.run.schedule import WarmupStableDecay, cooldown_steps

    rate = WarmupStableDecay(1e-3, warmup=4, total=20, cooldown=cooldown_steps(20, 0.2))
    values = [float(rate(step)) for step in range(22)]
    assert values[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert values[4:16] == pytest.approx([1e-3] * 12)           # the stable part
    assert rate.cooldown_start == 16
    assert values[16:20] == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])
    assert values[20:] == [0.0, 0.0]                            # zero from the budget's end
    # a shorter run's rate is the longer run's until the shorter one's cooldown starts
    shorter = WarmupStableDecay(1e-3, warmup=4, total=10, cooldown=cooldown_steps(10, 0.2))
    assert [float(shorter(s)) for s in range(8)] == [float(rate(s)) for s in range(8)]


def test_planned_steps_follow_the_ledger():
    from vgg_transfer.run.flops import Budget
    from vgg_transfer.run.schedule import planned_steps

    # 100 FLOPs an image and 50 a validation: 2,000 FLOPs buy one epoch of 10 images
    # (1,050) and 8 of the next (whole batches of 4: 800 + 50)
    assert planned_steps(Budget(2_000.0, per_image=100.0, per_epoch=50.0), 10, 4, 9) == 3 + 2
    assert planned_steps(None, 10, 4, 3) == 9                   # no budget: the epochs
    assert planned_steps(Budget(1e9, per_image=1.0, per_epoch=1.0), 10, 4, 3) == 9


def _run(tiny_cifar, folder, budget, **more):
    from vgg_transfer.record import RunRecord
    from vgg_transfer.run.pipeline import run

    cfg = make_config({"name": folder.name, "regime": "scratch", "weights": "none",
                       "data_dir": str(tiny_cifar), "train_size": 60, "val_size": 20,
                       "epochs": 50, "batch_size": 8, "precision": "float32",
                       "learning_rate": 1e-3, "schedule": "wsd", "warmup_steps": 3,
                       "flops_budget": budget, "save_model": False, **more})
    run(cfg, folder)
    return RunRecord.load(folder)


def test_a_cooldown_branch_is_exactly_the_run_with_that_budget(tiny_cifar, tmp_path):
    from vgg_transfer.run.schedule import cooldown_steps

    points = [4e10, 1.3e11, 3e11, 6e11]  # the first: one step, so its cooldown starts at 0
    alone = [_run(tiny_cifar, tmp_path / f"alone{i}", b) for i, b in enumerate(points)]
    longer = _run(tiny_cifar, tmp_path / "longer", 9e11)
    branched = _run(tiny_cifar, tmp_path / "branched", 9e11, budget_points=points)
    # the run that branches trains exactly as the run that does not
    assert branched.metrics.weights_sha256 == longer.metrics.weights_sha256
    assert branched.predictions.equals(longer.predictions)
    assert branched.metrics.compute["flops"] == longer.metrics.compute["flops"]
    cooldowns = [p["cooldown_flops"] for p in branched.metrics.budget_points]
    assert all(c > 0 for c in cooldowns)
    assert branched.metrics.compute["spent"] == pytest.approx(
        branched.metrics.compute["flops"]["total"] + sum(cooldowns))
    for index, (point, run_alone) in enumerate(zip(branched.metrics.budget_points, alone,
                                                   strict=True)):
        m = run_alone.metrics
        assert point["weights_sha256"] == m.weights_sha256       # the weights, to the bit
        assert point["flops"] == m.compute["flops"]["total"]     # charged its own budget
        assert (point["images_seen"], point["epochs"], point["steps"]) == (
            m.images_seen, m.epochs, m.steps)
        assert point["val_accuracy"] == m.final_val_accuracy
        assert (point["test_accuracy"], point["test_loss"]) == (m.test_accuracy, m.test_loss)
        assert (branched.point_correct(index) == run_alone.correct).all()
    # the branches start before the first step, inside an epoch, and cross into the next
    # one: the cases `cuts` makes
    per_epoch = -(-60 // 8)
    starts = [run_alone.metrics.steps - cooldown_steps(run_alone.metrics.steps, 0.2)
              for run_alone in alone]
    assert starts[0] == 0
    assert any(start % per_epoch for start in starts)
    assert any(start // per_epoch < (run_alone.metrics.steps - 1) // per_epoch
               for start, run_alone in zip(starts, alone, strict=True))


def test_a_constant_schedule_reproduces_the_records_before_schedules(shared_cifar, tmp_path):
    """The numbers of a run with budget points and early stopping, written by the code before
    schedules existed (commit 0f3ef93, tests/data/constant_recipe_0f3ef93.json)."""
    from vgg_transfer.run.pipeline import run

    reference = json.loads((HERE / "data" / "constant_recipe_0f3ef93.json").read_text())
    cfg = make_config({**reference["config"], "name": "constant",
                       "data_dir": str(shared_cifar)})
    assert cfg.schedule == "constant"
    m = run(cfg, tmp_path / "constant")
    for key, value in reference["metrics"].items():
        if key == "budget_points":
            got = [{k: p[k] for k in point} for p, point in zip(m.budget_points, value,
                                                                strict=True)]
        elif key == "flops":
            got = m.compute["flops"]
        else:
            got = getattr(m, key)
        assert got == value, key


@pytest.mark.parametrize("values, message", [
    ({"schedule": "wsd", "regime": "two_phase"}, "single-phase regime"),
    ({"schedule": "wsd", "early_stopping": 2}, "early_stopping: null"),
    ({"cooldown_fraction": 0.0}, "greater than 0"),
    ({"lr_search": {"learning_rates": [1e-4]}}, "at least 2"),
    ({"lr_search": {"learning_rates": [3e-4, 1e-4]}}, "ascending"),
    ({"lr_search": {"learning_rates": [1e-4, 3e-4], "set": {"seed": 1, "lr": 2}}},
     "unknown key 'lr'"),
    ({"lr_search": {"learning_rates": [1e-4, 3e-4], "set": {"learning_rate": 1e-3}}},
     "the search's own"),
])
def test_schedules_and_searches_that_cannot_run_are_refused(values, message):
    with pytest.raises(ConfigError, match=message):
        make_config({"name": "x", "regime": "finetune", "weights": "none", **values})
