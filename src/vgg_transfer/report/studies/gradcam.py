"""Grad-CAM: where each regime looks, as the share of heatmap mass in the image's centre."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vgg_transfer import CLASS_NAMES
from vgg_transfer.record import RunRecord
from vgg_transfer.report.figures import CORRECT, WRONG, right_and_wrong
from vgg_transfer.report.selection import reference_runs
from vgg_transfer.report.tables import plain


def centre_share(heatmaps: np.ndarray, margin: int = 8) -> np.ndarray:
    """Share of each heatmap's mass in the central square (16×16 of 32×32 by default).

    A uniform map puts a quarter of its mass there; CIFAR's objects are mostly centred.
    """
    heatmaps = np.asarray(heatmaps, dtype=float)
    total = heatmaps.sum(axis=(1, 2))
    inner = heatmaps[:, margin:-margin, margin:-margin].sum(axis=(1, 2))
    return np.divide(inner, total, out=np.full_like(total, np.nan), where=total > 0)


def centre_shares(cam: dict) -> dict[str, float]:
    """A run's mean centre share for the heatmaps of right, wrong and one-per-class images."""
    share, kinds = centre_share(cam["heatmaps"]), cam["set"]
    return {kind: float(np.nanmean(share[kinds == kind])) for kind in ("right", "wrong", "fixed")}


def study_table(runs: list[RunRecord], experiments: list[str]) -> tuple[pd.DataFrame, dict]:
    """Per experiment, its first reference run's Grad-CAM: the layer, and the centre share of
    the heatmaps of right and wrong predictions. Also returns the heatmaps by experiment,
    each with the run they belong to (`run`)."""
    rows, cams = [], {}
    for name in experiments:
        chosen = reference_runs(runs, name)
        if not chosen or chosen[0].gradcam is None:
            continue
        run, cam = chosen[0], chosen[0].gradcam
        cams[name] = {**cam, "run": run}
        share = centre_shares(cam)
        rows.append({"experiment": name, "run": run.name, "layer": str(cam["layer"]),
                     "map": f"{int(cam['side'])}×{int(cam['side'])}",
                     "centre share, right": share["right"],
                     "centre share, wrong": share["wrong"],
                     "centre share, one per class": share["fixed"]})
    return pd.DataFrame(rows), cams


def finding(runs: list[RunRecord], experiments: list[str]) -> str:
    table, _ = study_table(runs, experiments)
    if table.empty:
        return ""
    parts = ", ".join(f"{r['experiment']} {r['centre share, right']:.0%} (right) / "
                      f"{r['centre share, wrong']:.0%} (wrong)" for _, r in table.iterrows())
    return (f"Grad-CAM puts this share of its heatmap mass in the central quarter of the image "
            f"(a uniform map: 25%): {parts}.")


def formatted(table: pd.DataFrame):
    return plain(table, {c: "{:.0%}" for c in table.columns if c.startswith("centre")})


def plot(images: np.ndarray, rows: dict[str, dict], indices: np.ndarray, true: np.ndarray):
    """Grad-CAM heatmaps over the same test images, one row per model.

    Args:
        rows: name -> {"heatmaps": (K, 32, 32), "indices": (K,), "predicted": (K,)} (a run's
            gradcam.npz); the images in `indices` are looked up in each.
        indices: test images to show, as columns.
    """
    fig, axes = plt.subplots(len(rows) + 1, len(indices),
                             figsize=(1.35 * len(indices), 1.55 * (len(rows) + 1)), squeeze=False)
    for col, i in enumerate(indices):
        axes[0][col].imshow(images[i])
        axes[0][col].set_title(CLASS_NAMES[true[i]], fontsize=8, fontweight="bold")
    for row, (name, cam) in enumerate(rows.items(), 1):
        where = {int(k): j for j, k in enumerate(cam["indices"])}
        for col, i in enumerate(indices):
            ax = axes[row][col]
            j = where.get(int(i))
            if j is None:
                continue
            ax.imshow(images[i])
            ax.imshow(cam["heatmaps"][j].astype(float), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ok = cam["predicted"][j] == true[i]
            ax.set_title(CLASS_NAMES[cam["predicted"][j]], fontsize=7.5,
                         color=CORRECT if ok else WRONG)
        axes[row][0].text(-0.12, 0.5, name, transform=axes[row][0].transAxes, rotation=90,
                          va="center", ha="right", fontsize=9, fontweight="bold")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    fig.subplots_adjust(wspace=0.06, hspace=0.35)
    return fig


def plot_samples(images: np.ndarray, true: np.ndarray, cam: dict, title: str = ""):
    """One model's sample predictions (right on top, wrong below) with their heatmaps."""
    right = np.flatnonzero(cam["set"] == "right")
    wrong = np.flatnonzero(cam["set"] == "wrong")

    def draw(ax, j, colour):
        i = int(cam["indices"][j])
        ax.imshow(images[i])
        ax.imshow(cam["heatmaps"][j].astype(float), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(f"{CLASS_NAMES[true[i]]}\n→ {CLASS_NAMES[cam['predicted'][j]]}",
                     fontsize=7.5, color=colour)

    fig = right_and_wrong((right, wrong), max(len(right), len(wrong), 1), 3.7, 9, draw)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
