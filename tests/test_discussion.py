"""The discussion pages (limitations, improvements, conclusion) from how runs ended and what
their training cost: hand-built run records, every expected number worked out here."""

import dataclasses

import pytest

from test_report import fake_run, mask
from vgg_transfer.report import discussion, selection
from vgg_transfer.report.studies import data_efficiency


def _ended(run, plateau: bool, frozen_blocks: int = 0):
    phases = [{**phase, "stopped_on_plateau": plateau, "frozen_blocks": frozen_blocks}
              for phase in run.metrics.phases]
    return dataclasses.replace(run, metrics=dataclasses.replace(run.metrics, phases=phases))


def _timed(run, **timings):
    return dataclasses.replace(run, timings=dataclasses.replace(run.timings, **timings))


def test_the_budget_bullet_names_runs_still_improving_and_those_on_a_plateau():
    rising = fake_run("finetune", "finetune", 0, mask(80), val=(0.3, 0.4))
    level = _ended(fake_run("frozen", "frozen", 0, mask(90), val=(0.4, 0.45, 0.44)), True, 5)
    spent = _ended(fake_run("partial", "partial", 0, mask(85), val=(0.5, 0.4)), False, 4)
    text = discussion.limitations([rising, level, spent], {})
    # fake runs: 16 steps and train_n images per epoch; finetune ran 2 epochs of 2,000
    assert ("Still improving when their budget ran out (best validation accuracy in the last "
            "epoch): **finetune-s0** (32 steps, 4,000 images seen).") in text
    assert "Stopped on a validation plateau: **frozen-s0**." in text
    assert "partial" not in text.split("**Unequal")[0].split("A small")[0]
    assert "saw 4,000 images, 1% of the 450,000 the original protocol" in text


def test_a_cache_hit_is_charged_what_computing_the_outputs_cost():
    run = fake_run("partial", "partial", 0, mask(100), train_n=2000)  # val_n 500
    hit = _timed(run, feature_seconds=1.5, feature_images=0, feature_images_per_second=100.0)
    computed = _timed(run, feature_seconds=30.0, feature_images=2500,
                      feature_images_per_second=2500 / 30.0)
    assert hit.feature_cost == pytest.approx(2500 / 100.0)
    assert hit.training_seconds == pytest.approx(10.0 + 25.0)  # fit() took 10 s
    assert computed.feature_cost == 30.0
    assert run.feature_cost == 0.0  # no frozen blocks at all
    curve = selection.compute_curve(_timed(hit, epoch_seconds=[4.0, 6.0]))
    assert curve["seconds"].tolist() == pytest.approx([29.0, 35.0])
    assert selection.runs_frame([hit])["training_seconds"].iloc[0] == pytest.approx(35.0)


def test_the_conclusion_says_what_each_regimes_time_bought():
    whole = _timed(fake_run("finetune", "finetune", 0, mask(60), train_n=1000),
                   train_seconds=20.0)
    best = _timed(fake_run("partial", "partial", 0, mask(120), train_n=4000,
                           val=(0.3, 0.3, 0.3, 0.5)),
                  train_seconds=30.0, feature_seconds=10.0, feature_images=4500)
    text = discussion.cost_answer([whole, best], ["finetune", "partial"])
    assert text.startswith("What the training time bought (float32): **partial-s0** 60.0% for "
                           "40 s of "
                           "training, 10 s of it the frozen blocks' outputs (computed), "
                           "64 steps, 16,000 images seen; **finetune-s0** 30.0% for 20 s")
    # 16,000 / 2,000 images seen; 40 / 20 s
    assert text.endswith("**partial-s0** saw 8× the images of finetune-s0 in 2.0× its time: "
                         "frozen blocks computed once make each further epoch cheap.")
    verdict = discussion.conclusion([whole, best], {}, ["finetune", "partial"])
    assert text in verdict


def test_seeds_spent_only_where_cheap_are_named():
    runs = [fake_run("frozen", "frozen", s, mask(100)) for s in (0, 1, 2)]
    runs.append(fake_run("finetune", "finetune", 0, mask(120)))
    text = discussion.limitations(runs, {"seeds": ["frozen"]})
    assert ("**One seed for the costly runs.** finetune ran once: their intervals capture "
            "the test set's sampling noise") in text
    assert "Seeds where they cost little: frozen (3)" in text
    assert "**Many comparisons.**" not in text  # one experiment in the seeds study: no pairs


def test_improvements_propose_longer_training_only_where_it_still_paid():
    rising = fake_run("scratch", "scratch", 0, mask(50), val=(0.20, 0.25))
    level = _ended(fake_run("frozen", "frozen", 0, mask(90), val=(0.4, 0.3)), True)
    text = discussion.improvements([rising, level], {})
    assert ("**Longer training where it still paid.** **scratch-s0** (32 steps, 4,000 images "
            "seen) gained 5.0 points of validation accuracy in its last epoch, to 25.0%.") in text
    assert "frozen-s0" not in text.split("**Longer")[1].split("\n")[0]


def test_data_efficiency_says_how_each_point_ended():
    def point(experiment, regime, seed, size, val, plateau):
        run = fake_run(experiment, regime, seed, mask(100), train_n=size, val=val,
                       axes={"train_size": size}, reference=False)
        return _ended(run, plateau)
    runs = [point("frozen", "frozen", s, n, (0.3, 0.5, 0.4), True)
            for s in (0, 1) for n in (500, 2000)]
    runs += [point("scratch_bn", "scratch_bn", 0, 500, (0.2, 0.3, 0.25), False),
             point("scratch_bn", "scratch_bn", 0, 2000, (0.2, 0.3), False)]
    lines = data_efficiency.endings_by_size(runs, ["scratch_bn", "frozen"])
    assert lines == ["**scratch_bn**: 500 images: 48 steps (budget, past its best); "
                     "2,000 images: 32 steps (budget, still improving)",
                     "**frozen**: 500 images: 48 steps (all plateau); "
                     "2,000 images: 48 steps (all plateau)"]
    assert data_efficiency.budget_caveat(runs, ["scratch_bn", "frozen"]).startswith(
        "Still improving when the budget ran out: scratch_bn at 2,000 images.")
    assert data_efficiency.budget_caveat(runs, ["frozen"]).startswith("Every point stopped on a "
                                                                "validation plateau")


def test_whole_network_means_what_the_run_trained_not_its_regimes_default():
    """A `depth` run is the finetune regime with blocks 1-4 frozen: it trains on cached
    outputs, far faster per image, and must not set the rate the GPU bullet scales up."""
    whole = _timed(_ended(fake_run("finetune", "finetune", 0, mask(60), train_n=1000), False, 0),
                   train_seconds=20.0)  # 2 epochs of 1,000 images: 100 images/s
    depth = _timed(_ended(fake_run("depth", "finetune", 0, mask(60), train_n=1000), False, 4),
                   train_seconds=2.0)
    mlp = fake_run("mlp", "mlp", 0, mask(30))
    assert [selection.trains_whole_network(r) for r in (whole, depth, mlp)] == [True, False, False]
    assert selection.runs_frame([whole, depth, mlp])["whole_network"].tolist() == \
        [True, False, False]
    assert "the whole network ran at 100 images/s here" in discussion.improvements(
        [whole, depth, mlp], {})
