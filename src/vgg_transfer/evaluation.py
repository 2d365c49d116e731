"""Test-set metrics: accuracy with its interval, loss, confusion matrix, per-class accuracy.

Everything here works on arrays of probabilities and labels, so the comparison pages can
recompute any metric from a run's saved predictions without TensorFlow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from vgg_transfer import CLASS_NAMES
from vgg_transfer.data import NUM_CLASSES


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well-behaved near 0 and 1)."""
    if n <= 0:
        raise ValueError("n must be positive")
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def cross_entropy(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> float:
    """Mean categorical cross-entropy, clipped as Keras clips it."""
    picked = np.clip(probs[np.arange(len(labels)), labels], eps, 1 - eps)
    return float(-np.mean(np.log(picked)))


def confusion(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Counts: rows are true classes, columns predicted classes."""
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Recall per true class; NaN for a class with no test images."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / totals, np.nan)


def evaluate_predictions(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy (with 95% Wilson interval and n), loss, per-class accuracy, confusion matrix."""
    predicted = probs.argmax(axis=1)
    n, correct = len(labels), int((predicted == labels).sum())
    low, high = wilson_interval(correct, n)
    matrix = confusion(labels, predicted)
    return {
        "test_accuracy": correct / n,
        "test_accuracy_ci95": [low, high],
        "test_loss": cross_entropy(probs, labels),
        "test_n": n,
        "test_correct": correct,
        "per_class_accuracy": dict(zip(CLASS_NAMES, per_class_accuracy(matrix).tolist())),
        "confusion_matrix": matrix.tolist(),
    }


def predictions_frame(probs: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """One row per test image: index, true and predicted class, confidence, all probabilities."""
    frame = pd.DataFrame(probs, columns=[f"p_{name}" for name in CLASS_NAMES])
    frame.insert(0, "index", np.arange(len(labels)))
    frame.insert(1, "true", labels)
    frame.insert(2, "predicted", probs.argmax(axis=1))
    frame.insert(3, "confidence", probs.max(axis=1))
    return frame


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's exact test for two classifiers scored on the same test images.

    Only the discordant images count: b = A right and B wrong, c = A wrong and B right.
    Under the null hypothesis (equal accuracy) b ~ Binomial(b + c, 1/2).

    Returns:
        dict with b, c and the two-sided p-value (1.0 when there are no discordant images).
    """
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    p = stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return {"a_only": b, "b_only": c, "p_value": float(min(p, 1.0))}
