"""The frontier study on hand-made records: the regime chosen on validation at each budget,
its McNemar test against the runner-up (Holm-adjusted), the upper envelope, and what training
from scratch needs."""

import dataclasses

import numpy as np
import pandas as pd

from test_report import fake_run, mask
from vgg_transfer.report.studies import frontier


def _point(experiment, regime, budget, spent, right, start=1, offset=0, val=None, seed=0):
    """A budget point; its validation accuracy (`val`) is its test accuracy less half a
    point unless given."""
    axes = {"flops_budget": budget, **({"unfreeze_from": start} if regime == "finetune" else {})}
    val = right / 1000 - 0.005 if val is None else val
    run = fake_run(experiment, regime, seed, mask(right, 1000, offset), axes=axes,
                   val=(0.1, val))
    config = run.config.model_copy(update={"flops_budget": budget, "unfreeze_from": start})
    metrics = dataclasses.replace(run.metrics, compute={"flops": {"total": spent}})
    return dataclasses.replace(run, config=config, metrics=metrics)


BUDGETS = (1e12, 1e13, 1e14)
RUNS = [
    # (experiment, regime, budget, FLOPs spent, right of 1000, block fine-tuning starts from)
    *[_point("scratch", "scratch", b, 0.95 * b, n) for b, n in zip(BUDGETS, (150, 300, 450),
                                                                       strict=True)],
    *[_point("frozen", "frozen", b, 0.2 * b, n) for b, n in zip(BUDGETS, (410, 430, 430),
                                                                     strict=True)],
    *[_point("depth", "finetune", b, 0.97 * b, n, 4, offset=40 if b == 1e12 else 0)
      for b, n in zip(BUDGETS, (400, 600, 700), strict=False)],
    *[_point("depth", "finetune", b, 0.96 * b, n, 1) for b, n in zip(BUDGETS, (300, 560, 760),
                                                                          strict=True)],
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
    assert (best["p (Holm)"] >= best["p (McNemar, exact)"]).all()
    # three tests: the smallest p is multiplied by 3, the next by 2 (never below the first)
    order = np.argsort(p)
    assert np.isclose(best["p (Holm)"].iloc[order[0]], min(1, 3 * p[order[0]]))


def _with_test(run, right, offset=0):
    """The same run with other test predictions (its validation untouched)."""
    fake = fake_run(run.experiment, run.metrics.regime, run.seed, mask(right, 1000, offset))
    metrics = dataclasses.replace(run.metrics, **{key: getattr(fake.metrics, key) for key in (
        "test_accuracy", "test_accuracy_ci95", "test_correct")})
    return dataclasses.replace(run, metrics=metrics, predictions=fake.predictions)


def test_rankings_do_not_move_when_only_test_accuracies_do():
    """Nothing is chosen on the test set: give every point another's test predictions
    (reversed within each budget) and each budget keeps its winner and runner-up."""
    shuffled = []
    for budget in BUDGETS:
        at = [r for r in RUNS if r.config.flops_budget == budget]
        rights = [int(r.metrics.test_correct) for r in at][::-1]
        shuffled += [_with_test(r, n) for r, n in zip(at, rights, strict=False)]
    before = frontier.best_per_budget(RUNS, EXPERIMENTS)
    after = frontier.best_per_budget(shuffled, EXPERIMENTS)
    assert not np.allclose(before["best accuracy"], after["best accuracy"])
    for column in ("best", "runner-up", "best val accuracy", "regimes"):
        assert before[column].tolist() == after[column].tolist(), column
    ranked = frontier.by_series(frontier.study_table(shuffled, EXPERIMENTS))
    assert ranked["val_accuracy"].tolist() == \
        frontier.by_series(frontier.study_table(RUNS, EXPERIMENTS))["val_accuracy"].tolist()


def test_a_budget_with_two_regimes_names_no_winner():
    two = [r for r in RUNS if r.experiment in ("scratch", "frozen")]
    best = frontier.best_per_budget(two, ["scratch", "frozen"])
    assert best["best"].isna().all() and best["runner-up"].isna().all()
    assert (best["note"] == "only 2 regimes measured; a winner needs 3 regimes, one from "
                            "random weights").all()
    no_scratch = [r for r in RUNS if r.experiment != "scratch"]
    row = frontier.best_per_budget(no_scratch, ["frozen", "depth"]).iloc[0]
    assert pd.isna(row["best"]) and row["note"].startswith("none from random weights")
    text = frontier.sentence(best, frontier.study_table(two, ["scratch", "frozen"]))
    assert "at 1 TFLOPs, no winner: only 2 regimes measured" in text
    assert "ahead of" not in text and "not separable" not in text
    html = frontier.formatted(best).to_html()
    assert "none: only 2 regimes measured" in html and "nan" not in html


def test_seeds_of_a_point_are_ranked_on_their_mean_validation():
    """A cheap point with three seeds: its line's validation accuracy is their mean, its
    test accuracy the mean with its spread."""
    seeds = [_point("frozen", "frozen", 1e12, 0.2e12, n, val=v, seed=s)
             for s, (n, v) in enumerate(((410, 0.30), (380, 0.52), (440, 0.50)))]
    runs = [r for r in RUNS if r.experiment != "frozen"] + seeds
    lines = frontier.by_series(frontier.study_table(runs, EXPERIMENTS)[
        lambda t: t["budget"] == 1e12])
    frozen = lines.set_index("series").loc["frozen"]
    assert frozen["seeds"] == 3 and np.isclose(frozen["val_accuracy"], 0.44)
    assert np.isclose(frozen["test_accuracy"], 0.41) and np.isclose(frozen["sd"], 0.03)
    best = frontier.best_per_budget(runs, EXPERIMENTS).iloc[0]
    assert best["best"] == "frozen" and best["best seeds"] == 3  # 44% against 39.5%


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
    assert ("at 1 TFLOPs, frozen (validation 40.5%; test 41.0% (95% CI 38.0%–44.0%)), not "
            "separable from fine-tune from block 4") in text
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


def test_a_budget_one_regime_ran_at_names_no_winner():
    top = _point("depth", "finetune", 1e15, 0.99e15, 800, 4)
    best = frontier.best_per_budget([*RUNS, top], EXPERIMENTS)
    row = best[best["budget"] == 1e15].iloc[0]
    assert pd.isna(row["best"]) and row["first"] == "fine-tune from block 4"
    assert row["points"] == 1 and np.isnan(row["p (Holm)"])
    text = frontier.sentence(best, frontier.study_table([*RUNS, top], EXPERIMENTS))
    assert "at 1e+03 TFLOPs, no winner: only 1 regime measured" in text
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

    separate = [r for r in RUNS if r.experiment == "scratch"]
    largest = separate[-1]
    inside = [{"flops_budget": r.config.flops_budget, "ended": "budget",
               "flops": r.training_flops, "images_seen": r.metrics.images_seen,
               "epochs": r.metrics.epochs, "steps": r.metrics.steps, "restored_epoch": None,
               "val_accuracy": frontier.ending_val_accuracy(r),
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
    columns = ["budget", "flops", "val_accuracy", "test_accuracy", "images seen"]
    alone = frontier.study_table(RUNS, EXPERIMENTS)
    assert points[columns].equals(alone[columns])
    pd.testing.assert_frame_equal(frontier.best_per_budget(merged, EXPERIMENTS),
                                  frontier.best_per_budget(RUNS, EXPERIMENTS))
    assert "inside the 100-TFLOPs run" in frontier.formatted_points(points).to_html()


def test_seeds_at_a_budget_are_ranked_shown_and_plotted_by_their_mean():
    # two more seeds of frozen and scratch at the smallest budget: frozen's mean validation
    # falls below fine-tuning from block 4's single run, which is chosen
    seeds = [_point("frozen", "frozen", 1e12, 0.2e12, n, val=v, seed=s, offset=10 * s)
             for s, n, v in ((1, 360, 0.30), (2, 380, 0.31))]
    seeds += [_point("scratch", "scratch", 1e12, 0.95e12, n, seed=s) for s, n in ((1, 170),
                                                                                  (2, 160))]
    runs = [*RUNS, *seeds]
    best = frontier.best_per_budget(runs, EXPERIMENTS)
    first = best[best["budget"] == 1e12].iloc[0]
    assert first["best"] == "fine-tune from block 4" and first["runner-up"] == "frozen"
    assert first["runner-up seeds"] == 3
    assert np.isclose(first["runner-up accuracy"], (410 + 360 + 380) / 3000)
    means = frontier.line_means(frontier.study_table(runs, EXPERIMENTS))
    frozen = means[(means["series"] == "frozen") & (means["budget"] == 1e12)].iloc[0]
    assert frozen["seeds"] == 3 and np.isclose(frozen["sd"], np.std([.41, .36, .38], ddof=1))
    # the tables say mean ± sd over seeds, labelled; one run shows its interval alone
    html = frontier.formatted_lines(frontier.study_table(runs, EXPERIMENTS)).to_html()
    assert "38.3% ± 2.5" in html
    assert "± 2.5" in frontier.formatted(best).to_html()
    text = frontier.sentence(best, frontier.study_table(runs, EXPERIMENTS))
    assert "38.3% ± 2.5, mean ± sd of 3 seeds" in text
    # the figure draws one line per regime through its means, each seed a dot
    fig = frontier.plot(frontier.study_table(runs, EXPERIMENTS))
    assert len(fig.axes[0].collections) >= 4
