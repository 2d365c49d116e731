import numpy as np
import pytest

from vgg_transfer.evaluation import (confusion, cross_entropy, mcnemar_exact,
                                     per_class_accuracy, evaluate_predictions, wilson_interval)


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
    assert m["test_loss"] == pytest.approx(-(3 * np.log(0.55) + np.log(0.05)) / 4)
    assert cross_entropy(np.eye(10)[[1]], np.array([0])) == pytest.approx(-np.log(1e-7))
