"""Training compute in FLOPs: counted from the layers, against hand counts; a run's charge
follows its phases; cached and uncached runs of one config count the same trained FLOPs."""

import json

import keras
import numpy as np
import pytest

from vgg_transfer.run import flops
from vgg_transfer.run.models import build_model

# VGG16's convolutions, block by block: (input channels, output channels) of each 3x3 conv
VGG16 = [[(3, 64), (64, 64)], [(64, 128), (128, 128)], [(128, 256), (256, 256), (256, 256)],
         [(256, 512), (512, 512), (512, 512)], [(512, 512), (512, 512), (512, 512)]]


def test_a_small_model_against_a_hand_count():
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3, padding="same")
    x = conv(inputs)
    x = keras.layers.MaxPooling2D()(x)                       # not counted
    flat = keras.layers.Flatten()(x)
    dense = keras.layers.Dense(10)
    keras.Model(inputs, dense(flat))
    # 8 x 8 outputs, each a 3 x 3 x 3 window for 4 filters; 2 FLOPs per multiply-add
    assert flops.layer_flops(conv) == 2 * 8 * 8 * (3 * 3 * 3) * 4 == 13_824
    assert flops.layer_flops(dense) == 2 * (4 * 4 * 4) * 10 == 1_280
    assert flops.layer_flops(keras.layers.Flatten()) == 0


@pytest.mark.parametrize("size", [32, 64])
def test_vgg16_blocks_against_a_hand_count(size):
    per_image = flops.forward_per_image(build_model("frozen", "none", size))
    side = size
    for block, convs in enumerate(VGG16, 1):
        expected = sum(2 * side * side * 9 * c_in * c_out for c_in, c_out in convs)
        assert per_image[f"block{block}"] == expected, block
        side //= 2  # the pooling at the end of each block
    features = side * side * 512
    assert per_image["head"] == 2 * features * 256 + 2 * 256 * 10
    if size == 32:  # about 0.63 GFLOPs per image at 32 px (VGG16: 15.5 GMACs at 224 px)
        assert 0.62e9 < sum(per_image.values()) < 0.64e9


def test_the_head_alone_and_the_batch_norm_layout():
    assert set(flops.forward_per_image(build_model("mlp", "none"))) == {"head"}
    bn, plain = (flops.forward_per_image(build_model(r, "none")) for r in ("scratch_bn",
                                                                          "scratch"))
    assert bn == plain  # batch normalisation adds no counted FLOPs


def test_a_runs_charge_follows_its_phases():
    per_image = {f"block{k}": 10 * k for k in range(1, 6)} | {"head": 1}
    train_n, val_n = 100, 20
    def charge(frozen, cached):
        phase = {"frozen_blocks": frozen, "epochs_run": 2, "epoch_images": [train_n] * 2,
                 "cached_blocks": cached}
        return flops.run_compute(per_image, [phase], train_n, val_n)["flops"]
    whole = charge(0, 0)
    assert whole["trained"] == 3 * 151 * 2 * train_n
    assert whole["validation"] == 151 * 2 * val_n and whole["frozen"] == 0
    cached, fly = charge(4, 4), charge(4, 0)
    assert cached["trained"] == fly["trained"] == 3 * 51 * 2 * train_n
    assert cached["frozen"] == 100 * (train_n + val_n)          # once, however many epochs
    assert fly["frozen"] == 100 * 2 * (train_n + val_n)         # every epoch
    assert cached["total"] == sum(cached[k] for k in ("trained", "validation", "frozen"))


def test_cached_and_uncached_runs_count_the_same_trained_flops(tiny_cifar, tmp_path):
    from vgg_transfer.run.pipeline import run
    from vgg_transfer.spec.config import load_experiments
    from vgg_transfer.spec.profiles import resolve_grid

    env = {"CIFAR10_DIR": str(tiny_cifar), "WEIGHTS": "hed-bsds500"}
    counted = {}
    for cache in (True, False):
        (point,) = resolve_grid(load_experiments(), "partial", "extended",
                                  {"train_size": 40, "val_size": 20, "epochs": 2,
                                   "cache_features": cache}, env=env)
        run(point.cfg, tmp_path / str(cache))
        counted[cache] = json.loads((tmp_path / str(cache) / "metrics.json").read_text())
    on_cache, on_the_fly = (counted[c]["compute"]["flops"] for c in (True, False))
    assert counted[True]["cached_features"] and not counted[False]["cached_features"]
    assert on_cache["trained"] == on_the_fly["trained"] > 0
    assert on_cache["validation"] == on_the_fly["validation"]
    assert on_cache["frozen"] < on_the_fly["frozen"]


def test_the_comparison_says_which_differences_are_at_equal_compute():
    import pandas as pd

    from vgg_transfer.report.sentences import equal_compute

    table = pd.DataFrame({"experiment": ["scratch", "finetune", "frozen", "partial"],
                          "training TFLOPs": [17.0, 17.9, 3.2, 95.0]})
    text = equal_compute(table)
    assert "frozen 3.2, scratch 17.0, finetune 17.9, partial 95.0" in text
    assert "(30× from the least to the most)" in text
    assert "At equal compute (within 10%): scratch and finetune;" in text
    apart = equal_compute(table.assign(**{"training TFLOPs": [17.0, 25.0, 3.2, 95.0]}))
    assert "No two of these experiments trained on equal compute" in apart
    assert equal_compute(table.assign(**{"training TFLOPs": float("nan")})) == ""


def _budget_run(tiny_cifar, tmp_path, experiment, budget, **overrides):
    from vgg_transfer.run.pipeline import run
    from vgg_transfer.spec.config import load_experiments
    from vgg_transfer.spec.profiles import resolve_grid

    env = {"CIFAR10_DIR": str(tiny_cifar), "WEIGHTS": "hed-bsds500"}
    values = {"train_size": 60, "val_size": 20, "epochs": 50, "batch_size": 8,
              "head_epochs": 3, "flops_budget": budget, **overrides}
    (point,) = resolve_grid(load_experiments(), experiment, "extended", values, env=env)
    folder = tmp_path / f"{experiment}-{budget:.0e}"
    run(point.cfg, folder)
    return (json.loads((folder / "metrics.json").read_text()),
            (folder / "history.csv").read_text())


def test_equal_budgets_give_equal_flops(tiny_cifar, tmp_path):
    budget, spent = 3e11, {}
    for experiment in ("scratch", "partial", "two_phase", "frozen"):
        metrics, _ = _budget_run(tiny_cifar, tmp_path, experiment, budget)
        spent[experiment] = metrics["compute"]["flops"]["total"]
        assert any("trained to a budget" in note for note in metrics["notes"])
    # within 10% of the budget and never above it: the regimes that can spend it
    assert all(0.9 * budget <= spent[e] <= budget for e in ("scratch", "partial",
                                                             "two_phase")), spent
    # the head alone on cached outputs reaches its epoch cap (50) long before
    assert spent["frozen"] < 0.5 * budget


def test_a_smaller_budget_is_the_start_of_a_larger_one(tiny_cifar, tmp_path):
    small, small_history = _budget_run(tiny_cifar, tmp_path, "scratch", 3e11)
    large, large_history = _budget_run(tiny_cifar, tmp_path, "scratch", 9e11)
    assert small["images_seen"] < large["images_seen"]
    rows = small_history.strip().splitlines()
    # every epoch the small run trained whole is the large run's, number for number
    whole = [row for row, n in zip(rows[1:], small["phases"][0]["epoch_images"], strict=False)
             if n == 60]
    assert whole and large_history.startswith("\n".join([rows[0], *whole]))


def test_a_phase_the_budget_leaves_no_batch_for_is_left_out(tiny_cifar, tmp_path):
    """The head phase ends at its epoch cap (3) with too little left for one batch of the
    next phase and its validation: the run ends there, with one phase in its record."""
    # caching blocks 1-5 of 80 images: 50.1 GFLOPs; 3 head epochs: 0.16; one batch of
    # block 5 and its validation: about 2.5
    metrics, _ = _budget_run(tiny_cifar, tmp_path, "two_phase", 5.15e10, early_stopping=None)
    assert metrics["status"] == "ok" and len(metrics["phases"]) == 1
    assert metrics["phases"][0]["epochs_run"] == 3 and metrics["epochs"] == 3
    assert metrics["compute"]["flops"]["total"] <= 5.15e10
    assert any("the budget ended training" in note for note in metrics["notes"])


def test_a_budget_spent_between_phases_ends_the_run_not_in_an_error():
    import numpy as np

    from vgg_transfer.run.flops import Budget

    budget = Budget(flops=1_000.0, per_image=10.0, per_epoch=5.0)
    with pytest.raises(ValueError, match="do not pay for one batch"):  # nothing trained yet
        Budget(flops=10.0, per_image=10.0, per_epoch=5.0).epoch_order(np.arange(8), 4)
    assert len(budget.epoch_order(np.arange(80), 8)) == 80
    budget.charge_epochs([80, 18])                   # 805 + 185: the first phase's epochs
    budget.per_image, budget.per_epoch = 100.0, 50.0  # the next phase costs more per image
    assert len(budget.epoch_order(np.arange(80), 8)) == 0 and budget.exhausted


@pytest.mark.parametrize("experiment, overrides, restores", [
    ("scratch", {}, False),
    # early stopping restores an earlier epoch's weights; augmentation draws in every batch
    ("scratch_bn", {"augment": True, "early_stopping": 2, "learning_rate": 3e-3}, True),
])
def test_a_budget_point_scores_what_the_shorter_run_ends_with(tiny_cifar, tmp_path,
                                                               experiment, overrides, restores):
    from vgg_transfer.record import RunRecord

    def run(budget, **more):
        _budget_run(tiny_cifar, tmp_path / str(len(more)), experiment, budget,
                    **overrides, **more)
        return RunRecord.load(tmp_path / str(len(more)) / f"{experiment}-{budget:.0e}")

    shorter = [run(budget) for budget in (1.3e11, 3e11)]
    longer = run(9e11)
    scored = run(9e11, budget_points=[1.3e11, 3e11])
    # the run that scores its points trains exactly as the run that does not
    assert scored.predictions.equals(longer.predictions)  # every probability, bit for bit
    assert scored.metrics.compute == longer.metrics.compute
    assert np.allclose(scored.history.drop(columns="epoch"), longer.history.drop(columns="epoch"),
                       rtol=1e-5)
    assert scored.budget_predictions.shape == (len(scored.predictions), 2)
    pairs = zip(scored.metrics.budget_points, shorter, strict=True)
    for index, (point, run_alone) in enumerate(pairs):
        m = run_alone.metrics
        assert point["flops_budget"] == run_alone.config.flops_budget
        assert point["flops"] == m.compute["flops"]["total"]
        assert (point["images_seen"], point["epochs"], point["steps"]) == (
            m.images_seen, m.epochs, m.steps)
        assert (point["test_accuracy"], point["test_loss"]) == (m.test_accuracy, m.test_loss)
        assert (scored.point_correct(index) == run_alone.correct).all()
        assert point["ended"] == "budget"
    assert len(scored.timings.point_seconds) == 2
    # one point ends with a whole epoch, the other inside one (the cases `BudgetPoints.cuts` splits)
    assert [p["images_seen"] % 60 == 0 for p in scored.metrics.budget_points] == [True, False]
    assert any(p["restored_epoch"] for p in scored.metrics.budget_points) == restores


def test_a_resumed_run_keeps_the_points_it_scored_before(tiny_cifar, tmp_path, monkeypatch):
    """Stopped after its fourth epoch's checkpoint, the run resumes with both points (scored
    in epochs 2 and 3) as they were, and ends as the uninterrupted run does."""
    from vgg_transfer.record import RunRecord
    from vgg_transfer.run.epochs import EpochLog

    def run(where):
        _budget_run(tiny_cifar, tmp_path / where, "scratch", 9e11, checkpoint_seconds=0,
                    budget_points=[1.3e11, 3e11])
        return RunRecord.load(tmp_path / where / "scratch-9e+11")

    straight = run("straight")
    logged = EpochLog.epoch

    def stop_in_epoch_5(self, epoch, logs, seconds):
        if epoch == 4:
            raise KeyboardInterrupt
        logged(self, epoch, logs, seconds)

    with monkeypatch.context() as patch:
        patch.setattr(EpochLog, "epoch", stop_in_epoch_5)
        with pytest.raises(KeyboardInterrupt):
            run("resumed")
    assert (tmp_path / "resumed" / "scratch-9e+11" / "checkpoint.npz").is_file()
    resumed = run("resumed")
    assert any("resumed after epoch 4" in note for note in resumed.metrics.notes)
    assert resumed.metrics.budget_points == straight.metrics.budget_points
    assert resumed.budget_predictions.equals(straight.budget_predictions)
    assert resumed.predictions.equals(straight.predictions)
