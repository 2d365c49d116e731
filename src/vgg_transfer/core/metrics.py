"""Test-set metrics and the statistics the pages use.

Accuracy with its Wilson interval, loss, confusion matrix, per-class accuracy, calibration
(reliability bins and expected calibration error), McNemar's exact test between two models
on the same images, and mean, sd and t interval over repeated seeds. Everything works on
arrays of probabilities and labels, so pages recompute any metric from a run's saved
predictions without TensorFlow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from vgg_transfer import CLASS_NAMES
from vgg_transfer.core.data import NUM_CLASSES


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
    confidence = probs.max(axis=1)
    return {
        "test_accuracy": correct / n,
        "test_accuracy_ci95": [low, high],
        "test_loss": cross_entropy(probs, labels),
        "test_ece": expected_calibration_error(confidence, predicted == labels),
        "test_n": n,
        "test_correct": correct,
        "per_class_accuracy": dict(zip(CLASS_NAMES, per_class_accuracy(matrix).tolist(),
                                       strict=True)),
        "confusion_matrix": matrix.tolist(),
    }


SAMPLES = 8  # correctly and incorrectly classified test images shown per run


def pick_examples(true: np.ndarray, predicted: np.ndarray, n: int = SAMPLES,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to `n` correctly and `n` incorrectly classified indices, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    right = np.flatnonzero(true == predicted)
    wrong = np.flatnonzero(true != predicted)
    return (np.sort(rng.permutation(right)[:n]), np.sort(rng.permutation(wrong)[:n]))


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


CALIBRATION_BINS = 10


def reliability_bins(confidence: np.ndarray, correct: np.ndarray,
                     bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Predictions grouped by confidence into equal-width bins over (0, 1].

    Returns:
        One row per bin: low, high, count, accuracy and mean confidence (NaN when empty).
    """
    confidence = np.asarray(confidence, float)
    correct = np.asarray(correct, bool)
    edges = np.linspace(0, 1, bins + 1)
    # bin i holds (edges[i], edges[i + 1]]; a confidence of exactly 0 joins the first bin
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    for i in range(bins):
        members = which == i
        n = int(members.sum())
        rows.append({"low": edges[i], "high": edges[i + 1], "count": n,
                     "accuracy": correct[members].mean() if n else np.nan,
                     "confidence": confidence[members].mean() if n else np.nan})
    return pd.DataFrame(rows)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               bins: int = CALIBRATION_BINS) -> float:
    """ECE: the bins' |accuracy - mean confidence|, weighted by their share of predictions."""
    table = reliability_bins(confidence, correct, bins)
    used = table[table["count"] > 0]
    gap = (used["accuracy"] - used["confidence"]).abs()
    return float((gap * used["count"]).sum() / used["count"].sum())


def seed_summary(values, confidence: float = 0.95) -> dict:
    """Mean, sample sd and the t interval of the mean over repeated runs (seeds).

    With one value the sd and the interval are NaN: one run says nothing about the spread.
    """
    values = np.asarray(values, float)
    n = len(values)
    if n == 0:
        raise ValueError("seed_summary needs at least one value")
    mean = float(values.mean())
    if n == 1:
        return {"mean": mean, "sd": np.nan, "n": 1, "ci_low": np.nan, "ci_high": np.nan}
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n))
    return {"mean": mean, "sd": sd, "n": n, "ci_low": mean - half, "ci_high": mean + half}
