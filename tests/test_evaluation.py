import numpy as np
import pytest

from vgg_transfer.core.metrics import (
    confusion,
    cross_entropy,
    evaluate_predictions,
    expected_calibration_error,
    mcnemar_exact,
    per_class_accuracy,
    pick_examples,
    reliability_bins,
    seed_summary,
    wilson_interval,
)


def test_wilson_interval_hand_computed():
    # 8 of 10, z = 1.959964: centre (0.8 + 0.19208) / 1.38415 = 0.71674,
    # half 1.959964 * sqrt(0.016 + 0.0096040) / 1.38415 = 0.22658
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.49016, abs=1e-4)
    assert high == pytest.approx(0.94332, abs=1e-4)
    low, high = wilson_interval(0, 50)
    assert low == pytest.approx(0.0, abs=1e-12) and 0.06 < high < 0.08


def test_mcnemar_exact_hand_computed():
    # A alone right on 1 image, B alone right on 7: p = 2 * P(X <= 1 | n=8, 1/2) = 2 * 9/256
    a = np.array([1, 0, 0, 0, 0, 0, 0, 0, 1, 1], bool)
    b = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 1], bool)
    result = mcnemar_exact(a, b)
    assert (result["a_only"], result["b_only"]) == (1, 7)
    assert result["p_value"] == pytest.approx(18 / 256)
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def test_confusion_and_per_class():
    true = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    matrix = confusion(true, pred)
    assert matrix[0, 0] == 1 and matrix[0, 1] == 1 and matrix[2, 0] == 1 and matrix.sum() == 5
    acc = per_class_accuracy(matrix)
    assert acc[:3].tolist() == [0.5, 1.0, 0.0] and np.isnan(acc[3])


def test_metrics_and_loss():
    probs = np.full((4, 10), 0.05)
    probs[np.arange(4), [0, 1, 2, 0]] = 0.55
    labels = np.array([0, 1, 2, 3])
    m = evaluate_predictions(probs, labels)
    assert m["test_accuracy"] == 0.75 and m["test_n"] == 4 and m["test_correct"] == 3
    # confidences 0.55 (bin (0.5, 0.6]): 3 of 4 right -> |0.75 - 0.55| = 0.2
    assert m["test_ece"] == pytest.approx(0.2)
    assert m["test_loss"] == pytest.approx(-(3 * np.log(0.55) + np.log(0.05)) / 4)
    assert cross_entropy(np.eye(10)[[1]], np.array([0])) == pytest.approx(-np.log(1e-7))


def test_reliability_bins_and_ece_hand_computed():
    # bin (0.9, 1]: two right at 0.95 -> gap 0.05; bin (0.5, 0.6]: one of two right at 0.55
    # -> gap 0.05; bin (0.1, 0.2]: one wrong at 0.15 -> gap 0.15.
    # ECE = (2 * 0.05 + 2 * 0.05 + 1 * 0.15) / 5 = 0.07
    confidence = np.array([0.95, 0.95, 0.55, 0.55, 0.15])
    correct = np.array([1, 1, 1, 0, 0], bool)
    bins = reliability_bins(confidence, correct)
    assert bins["count"].tolist() == [0, 1, 0, 0, 0, 2, 0, 0, 0, 2]
    assert bins.loc[5, "accuracy"] == 0.5 and bins.loc[5, "confidence"] == pytest.approx(0.55)
    assert np.isnan(bins.loc[0, "accuracy"])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.07)
    # bin edges: a confidence of exactly 0.1 belongs to (0, 0.1], exactly 1.0 to (0.9, 1]
    edges = reliability_bins(np.array([0.1, 1.0, 0.0]), np.array([1, 1, 0], bool))
    assert edges["count"].tolist() == [2, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    # a perfectly calibrated set: 80% confidence, 8 of 10 right
    assert expected_calibration_error(np.full(10, 0.8), np.arange(10) < 8) == pytest.approx(0)


def test_seed_summary_hand_computed():
    # mean 0.6, sd 0.1, t(0.975, df=2) = 4.302653: half-width 4.302653 * 0.1 / sqrt(3)
    s = seed_summary([0.5, 0.6, 0.7])
    assert (s["mean"], s["n"]) == (pytest.approx(0.6), 3)
    assert s["sd"] == pytest.approx(0.1)
    assert s["ci_low"] == pytest.approx(0.6 - 0.248414, abs=1e-6)
    assert s["ci_high"] == pytest.approx(0.6 + 0.248414, abs=1e-6)
    one = seed_summary([0.42])
    assert one["mean"] == 0.42 and np.isnan(one["sd"]) and np.isnan(one["ci_low"])
    with pytest.raises(ValueError):
        seed_summary([])


def test_pick_examples_is_seeded_and_disjoint():
    true = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 3)
    pred = np.where(np.arange(30) % 3 == 0, (true + 1) % 10, true)
    right, wrong = pick_examples(true, pred, 4, seed=1)
    assert len(right) == len(wrong) == 4
    assert (true[right] == pred[right]).all() and (true[wrong] != pred[wrong]).all()
    again = pick_examples(true, pred, 4, seed=1)
    assert np.array_equal(right, again[0]) and np.array_equal(wrong, again[1])
