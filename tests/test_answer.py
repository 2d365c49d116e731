"""The answer first: each budget's regime chosen on validation, its test accuracy and the
runner-up, from the frontier or from compared runs trained on equal compute."""

import dataclasses

import numpy as np

from test_frontier import EXPERIMENTS, RUNS
from test_report import fake_run, mask
from vgg_transfer.report import answer

COMPARE = ["scratch", "frozen", "finetune", "partial"]


def _run(experiment, regime, right, val, tflops, seed=0, offset=0):
    run = fake_run(experiment, regime, seed, mask(right, 1000, offset), val=(0.1, val))
    metrics = dataclasses.replace(run.metrics, compute={"flops": {"total": tflops * 1e12}})
    return dataclasses.replace(run, metrics=metrics)


# at 32 TFLOPs each (the frozen regime 4% more): partial best on validation, fine-tune next
EQUAL = [_run("scratch", "scratch", 300, 0.29, 32.0), _run("frozen", "frozen", 400, 0.39, 33.3),
         _run("finetune", "finetune", 500, 0.51, 32.0, offset=20),
         _run("partial", "partial", 560, 0.55, 32.0)]


def test_compared_runs_at_equal_compute_answer_for_their_budget():
    best = answer.table(EQUAL, {}, COMPARE)
    assert len(best) == 1
    row = best.iloc[0]
    assert row["best"] == "partial" and row["runner-up"] == "finetune"
    assert np.isclose(row["budget"], 32.325e12)
    assert 0 < row["p (McNemar, exact)"] < 1 and row["p (Holm)"] == row["p (McNemar, exact)"]
    html = answer.formatted(best).to_html()
    assert "partial" in html and "56.0% (53.0%–59.0%)" in html and "nan" not in html
    text = answer.sentence(best, EQUAL, {}, COMPARE, 1000)
    assert "make report PROFILE=study" in text and "1,000 images" in text
    original = answer.original_question(EQUAL, {}, COMPARE)
    assert original.index("**finetune**") < original.index("**frozen**") < \
        original.index("**scratch**")
    assert "partial" not in original and "32.4 TFLOPs" in original


def test_the_test_set_moves_no_name():
    # the same validation accuracies; the test predictions turned upside down
    swapped = [_run("scratch", "scratch", 600, 0.29, 32.0),
               _run("frozen", "frozen", 100, 0.39, 33.3),
               _run("finetune", "finetune", 200, 0.51, 32.0),
               _run("partial", "partial", 300, 0.55, 32.0)]
    best = answer.table(swapped, {}, COMPARE)
    assert (best["best"].tolist(), best["runner-up"].tolist()) == (["partial"], ["finetune"])
    original = answer.original_question(swapped, {}, COMPARE)
    assert original.index("**finetune**") < original.index("**frozen**") < \
        original.index("**scratch**")


def test_unequal_compute_names_no_regime_for_a_budget():
    unequal = [*EQUAL[:3], _run("partial", "partial", 560, 0.55, 60.0)]
    assert answer.table(unequal, {}, COMPARE).empty
    text = answer.sentence(answer.table(unequal, {}, COMPARE), unequal, {}, COMPARE, 1000)
    assert "did not train on equal compute" in text and "partial 60.0" in text
    assert answer.original_question(unequal, {}, COMPARE) == ""


def test_with_a_frontier_the_answer_is_its_budgets():
    studies = {"frontier": EXPERIMENTS}
    best = answer.table(RUNS, studies, ["scratch", "frozen"])
    assert best["budget"].tolist() == [1e12, 1e13, 1e14]
    assert best["best"].tolist() == ["frozen", "fine-tune from block 4", "fine-tune all"]
    assert "make report PROFILE=study" not in answer.sentence(best, RUNS, studies, [], 1000)
    # the original's question: the largest budget at which scratch, frozen and fine-tune all ran
    original = answer.original_question(RUNS, studies, [])
    assert "at 100 TFLOPs" in original
    assert original.index("**fine-tune all**") < original.index("**scratch**")
    assert "fine-tune from block 4" not in original.split("On the first")[0]
    # a budget without fine-tune all is not that question's
    fewer = [r for r in RUNS if not (r.config.unfreeze_from == 1 and r.config.flops_budget
                                     == 1e14 and r.metrics.regime == "finetune")]
    assert "at 10 TFLOPs" in answer.original_question(fewer, studies, [])
