"""The frontier study on hand-made records: the best regime per budget, its McNemar test
against the runner-up, the upper envelope, and what training from scratch needs."""

import dataclasses

import numpy as np

from test_report import fake_run, mask
from vgg_transfer.report.studies import frontier


def _point(experiment, regime, budget, spent, right, start=1, offset=0):
    axes = {"flops_budget": budget, **({"unfreeze_from": start} if regime == "finetune" else {})}
    run = fake_run(experiment, regime, 0, mask(right, 1000, offset), axes=axes)
    config = run.config.model_copy(update={"flops_budget": budget, "unfreeze_from": start})
    metrics = dataclasses.replace(run.metrics, compute={"flops": {"total": spent}})
    return dataclasses.replace(run, config=config, metrics=metrics)


BUDGETS = (1e12, 1e13, 1e14)
RUNS = [
    # (experiment, regime, budget, FLOPs spent, right of 1000, block fine-tuning starts from)
    *[_point("scratch", "scratch", b, 0.95 * b, n) for b, n in zip(BUDGETS, (150, 300, 450))],
    *[_point("frozen", "frozen", b, 0.2 * b, n) for b, n in zip(BUDGETS, (410, 430, 430))],
    *[_point("depth", "finetune", b, 0.97 * b, n, 4, offset=40 if b == 1e12 else 0)
      for b, n in zip(BUDGETS, (400, 600, 700))],
    *[_point("depth", "finetune", b, 0.96 * b, n, 1) for b, n in zip(BUDGETS, (300, 560, 760))],
]
EXPERIMENTS = ["scratch", "frozen", "depth"]


def test_each_budget_names_its_best_regime_and_tests_the_runner_up():
    best = frontier.best_per_budget(RUNS, EXPERIMENTS)
    assert best["budget"].tolist() == list(BUDGETS)
    assert best["best"].tolist() == ["frozen", "fine-tune from block 4", "fine-tune all"]
    assert best["runner-up"].tolist() == ["fine-tune from block 4", "fine-tune all",
                                          "fine-tune from block 4"]
    assert np.allclose(best["difference"], [0.010, 0.040, 0.060])
    # 40 against 30 discordant images cannot separate the two; 60 against none can
    p = best["p (McNemar, exact)"].tolist()
    assert p[0] > 0.05 and p[2] < 0.001
    assert (best["points"] == 4).all()


def test_the_envelope_keeps_the_best_so_far():
    points = frontier.study_table(RUNS, EXPERIMENTS)
    top = frontier.envelope(points)
    assert top["flops"].is_monotonic_increasing
    assert top["test_accuracy"].is_monotonic_increasing
    assert top["test_accuracy"].iloc[-1] == 0.76
    assert set(points["series"]) == {"scratch", "frozen", "fine-tune from block 4",
                                     "fine-tune all"}


def test_what_scratch_needs_to_reach_transfer():
    points = frontier.study_table(RUNS, EXPERIMENTS)
    gap = frontier.scratch_gap(points)
    # transfer's best at the smallest budget: frozen, 41.0% with 0.2 TFLOPs; scratch reaches
    # it at 95 TFLOPs
    assert gap["transfer"] == "frozen" and gap["accuracy"] == 0.41 and gap["reached"]
    assert np.isclose(gap["ratio"], 0.95e14 / 0.2e12)
    text = frontier.sentence(frontier.best_per_budget(RUNS, EXPERIMENTS), points)
    assert "at 1 TFLOPs, frozen (41.0%), not separable from fine-tune from block 4" in text
    assert "475.0× the compute" in text
    weaker = [r for r in RUNS if not (r.experiment == "scratch" and r.config.flops_budget == 1e14)]
    text = frontier.sentence(frontier.best_per_budget(weaker, EXPERIMENTS),
                             frontier.study_table(weaker, EXPERIMENTS))
    assert "did not reach the 41.0%" in text and "more than 47.5× the compute" in text


def test_only_budgeted_runs_are_points():
    plain = fake_run("scratch", "scratch", 0, mask(100, 1000))
    assert frontier.study_table([plain], ["scratch"]).empty
    assert frontier.best_per_budget([plain], ["scratch"]).empty
    assert frontier.sentence(frontier.best_per_budget([plain], ["scratch"]),
                             frontier.study_table([plain], ["scratch"])) == ""


def test_a_budget_one_regime_ran_at_has_no_runner_up():
    top = _point("depth", "finetune", 1e15, 0.99e15, 800, 4)
    best = frontier.best_per_budget([*RUNS, top], EXPERIMENTS)
    row = best[best["budget"] == 1e15].iloc[0]
    assert row["best"] == "fine-tune from block 4" and row["points"] == 1
    text = frontier.sentence(best, frontier.study_table([*RUNS, top], EXPERIMENTS))
    assert "at 1e+03 TFLOPs, fine-tune from block 4 (80.0%), the only regime run at that " \
           "budget" in text
    assert "nan" not in text
    html = frontier.formatted(best).to_html()
    assert "nan" not in html and "—" in html


def test_each_point_says_how_its_frozen_blocks_ran():
    def with_phase(run, frozen, cached):
        phase = {**run.metrics.phases[0], "frozen_blocks": frozen, "cached_blocks": cached}
        return dataclasses.replace(run, metrics=dataclasses.replace(run.metrics,
                                                                    phases=[phase]))
    run = RUNS[0]
    assert frontier.frozen_blocks(with_phase(run, 0, 0)) == "none"
    assert frontier.frozen_blocks(with_phase(run, 4, 0)) == "on the fly"
    assert frontier.frozen_blocks(with_phase(run, 4, 4)) == "cached"


def test_points_scored_inside_a_run_are_points_of_their_own():
    """Scratch's line as one run to 100 TFLOPs, scored inside at 1 and 10: the same table,
    winners and McNemar tests as three runs of their own."""
    import pandas as pd

    separate = [r for r in RUNS if r.experiment == "scratch"]
    largest = separate[-1]
    inside = [{"flops_budget": r.config.flops_budget, "ended": "budget",
               "flops": r.training_flops, "images_seen": r.metrics.images_seen,
               "epochs": r.metrics.epochs, "steps": r.metrics.steps, "restored_epoch": None,
               "test_accuracy": r.metrics.test_accuracy,
               "test_accuracy_ci95": r.metrics.test_accuracy_ci95, "test_loss": 1.0,
               "test_n": 1000, "test_correct": r.metrics.test_correct} for r in separate[:2]]
    one = dataclasses.replace(
        largest, metrics=dataclasses.replace(largest.metrics, budget_points=inside),
        timings=dataclasses.replace(largest.timings, point_seconds=[1.0, 4.0]),
        budget_predictions=pd.DataFrame({f"predicted_{i}": r.predictions["predicted"]
                                         for i, r in enumerate(separate[:2])}))
    merged = [one, *(r for r in RUNS if r.experiment != "scratch")]
    points = frontier.study_table(merged, EXPERIMENTS)
    scratch = points[points["series"] == "scratch"]
    assert scratch["budget"].tolist() == list(BUDGETS)
    assert scratch["taken"].tolist() == ["inside the 100-TFLOPs run"] * 2 + ["its own run"]
    assert scratch["seconds"].tolist() == [1.0, 4.0, largest.training_seconds]
    columns = ["budget", "flops", "test_accuracy", "images seen"]
    alone = frontier.study_table(RUNS, EXPERIMENTS)
    assert points[columns].equals(alone[columns])
    pd.testing.assert_frame_equal(frontier.best_per_budget(merged, EXPERIMENTS),
                                  frontier.best_per_budget(RUNS, EXPERIMENTS))
    assert "inside the 100-TFLOPs run" in frontier.formatted_points(points).to_html()
