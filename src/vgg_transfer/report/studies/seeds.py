"""Seeds: training noise (the spread over seeds) against test-set noise."""

from __future__ import annotations

import numpy as np

from vgg_transfer.record import RunRecord
from vgg_transfer.report.selection import of_experiments, runs_frame


def seed_noise(runs: list[RunRecord], experiments: list[str]) -> dict | None:
    """Run-to-run spread against test-set noise: the median sd of accuracy over seeds, and the
    binomial sd of one accuracy on this test set."""
    frame = runs_frame(of_experiments(runs, experiments, reference=True))
    if frame.empty:
        return None
    sds = frame.groupby("experiment")["test_accuracy"].std(ddof=1).dropna()
    if sds.empty:
        return None
    p, n = frame["test_accuracy"].mean(), int(frame["test_n"].iloc[0])
    return {"seed_sd": float(sds.median()), "seed_sd_max": float(sds.max()),
            "worst": str(sds.idxmax()), "test_sd": float(np.sqrt(p * (1 - p) / n)), "test_n": n}


def finding(runs: list[RunRecord], experiments: list[str]) -> str:
    noise = seed_noise(runs, experiments)
    if noise is None:
        return ""
    ratio = noise["seed_sd"] / noise["test_sd"]
    order = ("smaller than" if ratio < 0.5 else "larger than" if ratio > 2
             else "of the same order as")
    chance = np.sqrt(2 * (noise["seed_sd"] ** 2 + noise["test_sd"] ** 2))
    return (f"Training noise is {order} test-set noise: the median sd of test accuracy over "
            f"seeds is {noise['seed_sd'] * 100:.1f} points (largest "
            f"{noise['seed_sd_max'] * 100:.1f}, for {noise['worst']}), against "
            f"{noise['test_sd'] * 100:.1f} points of binomial sd for one accuracy on "
            f"{noise['test_n']:,} test images. Together they give two single runs of equally "
            f"good regimes a difference with an sd of about {chance * 100:.1f} points: the "
            "original's one run per regime could not separate regimes closer than that.")
