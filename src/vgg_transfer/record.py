"""The run record: the one interface between a training run and everything that reads it.

Training writes a `RunRecord` with `write(folder)`; the pages, the tests and the benchmarks
read it back with `RunRecord.load(folder)`, without a backend. A run folder holds

    config.json       the resolved, validated configuration
    metrics.json      test metrics, validation summary, parameter counts, training FLOPs
                      (deterministic: the same seed on the same machine gives the same
                      file); written last, so its presence marks a finished run
    timings.json      wall time of each part, images per second
    history.csv       per-epoch training and validation loss and accuracy
    predictions.csv   per test image: true, predicted, confidence, probabilities
    budget_points.csv per test image, the class predicted at each budget point (a run with
                      `budget_points`: scores taken inside it; metrics.json has their FLOPs)
    gradcam.npz       Grad-CAM heatmaps of the predicted class for a few test images
    provenance.json   data (folder, counts, hashes), weights (source, hash), backend,
                      packages, hardware, git commit, wall time, peak memory
    model.keras       the trained model, when the run saved it (`save_model`)

`SCHEMA_VERSION` changes whenever a field is added, renamed or removed; a folder written
with another version is refused with a message saying so, rather than misread.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vgg_transfer import files
from vgg_transfer.spec.config import ExperimentConfig

SCHEMA_VERSION = 6
MODEL_FILE = "model.keras"


class RecordError(ValueError):
    """A run folder that is missing, incomplete or written with another schema."""


@dataclass(frozen=True)
class Params:
    trainable: int
    non_trainable: int
    total: int


@dataclass(frozen=True)
class Metrics:
    """metrics.json: what the run measured, and where it sits in its experiment's grid."""

    schema_version: int
    status: str                       # "ok"
    name: str                         # run name (experiment + grid labels) = folder name
    experiment: str                   # the entry of the experiments file
    axes: dict                        # the grid values that made this run
    reference: bool                   # every axis but seed at the experiment's own value
    regime: str
    weights: str
    weights_label: str
    test_accuracy: float
    test_accuracy_ci95: list          # 95% Wilson interval [low, high]
    test_loss: float
    test_ece: float                   # expected calibration error, 10 bins
    test_n: int
    test_correct: int
    per_class_accuracy: dict          # class name -> accuracy (NaN with no test images)
    confusion_matrix: list            # rows: true class, columns: predicted
    train_n: int
    val_n: int
    epochs: int                       # epochs trained, all phases together
    final_train_accuracy: float       # last epoch, measured with dropout on
    final_val_accuracy: float
    best_val_accuracy: float
    best_val_epoch: int
    params: Params
    cached_features: bool             # trained on cached outputs of frozen blocks
    notes: list
    steps: int                        # optimizer steps, all phases together
    images_seen: int                  # training images fed to the optimizer (steps' images)
    phases: list                      # per phase: frozen blocks, epoch budget and epochs run,
    # whether it stopped on a plateau of the validation split, the epoch it restored
    compute: dict = field(default_factory=dict)  # training FLOPs (trained, validation, frozen,
    # total) and the per-image forward FLOPs of each part they were counted from (run.flops)
    budget_points: list = field(default_factory=list)  # per smaller budget scored inside
    # the run: its budget, FLOPs spent, epochs, images seen, test accuracy (pipeline)
    weights_sha256: str = ""          # the trained weights at the end, byte for byte
    lr_search: dict | None = None     # the learning rate's search: candidates, their runs'
    # validation accuracy, FLOPs and seconds, and the rate chosen (runner.search)


@dataclass(frozen=True)
class Timings:
    """timings.json: seconds of each part of the run (not deterministic, so kept apart)."""

    data_seconds: float
    build_seconds: float
    train_seconds: float              # fit() of every phase
    feature_seconds: float            # computing (or reading) frozen blocks' outputs
    feature_images: int               # images whose features were computed, not read
    epoch_seconds: list
    test_seconds: float
    gradcam_seconds: float
    wall_seconds: float
    train_images_per_second: float | None  # None when trained on cached features
    feature_images_per_second: float | None  # when the features were first computed
    test_images_per_second: float
    point_seconds: list = field(default_factory=list)  # fit() seconds at each budget point


@dataclass(frozen=True)
class Provenance:
    """provenance.json: what ran, on what, with what."""

    data: dict                        # folder, kind, counts, hashes
    split: dict                       # train_n, val_n, seed, train_per_class
    weights: dict                     # name, source, path, sha256
    backend: dict                     # Keras backend: name, version, packages, deterministic
    packages: dict
    hardware: dict
    git: dict
    wall_seconds: float
    peak_rss_mb: float
    finished: str


def _build(cls, values: dict, where: str):
    """A dataclass from a dict, refusing unknown and missing fields by name."""
    names = {f.name for f in fields(cls)}
    unknown, missing = set(values) - names, names - set(values)
    if unknown or missing:
        raise RecordError(f"{where}: " + "; ".join(
            part for part in (f"unknown field(s) {sorted(unknown)}" if unknown else "",
                              f"missing field(s) {sorted(missing)}" if missing else "")
            if part))
    return cls(**values)


def _load_metrics(path: Path) -> Metrics:
    values = files.read_json(path)
    version = values.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RecordError(f"{path}: written with run-record schema {version}, this code reads "
                          f"schema {SCHEMA_VERSION}; re-run it (the runner does so by itself)")
    values["params"] = _build(Params, values["params"], f"{path} params")
    return _build(Metrics, values, str(path))


def _as_json(obj) -> Any:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


@dataclass
class RunRecord:
    """Everything one run produced. `folder` is where it was loaded from (None before
    `write`)."""

    config: ExperimentConfig
    metrics: Metrics
    timings: Timings
    provenance: Provenance
    history: pd.DataFrame             # one row per epoch (a `phase` column for phased runs)
    predictions: pd.DataFrame         # one row per test image
    gradcam: dict | None = None       # arrays, see experiment.explain_run
    budget_predictions: pd.DataFrame | None = None  # per test image, a column per budget point
    folder: Path | None = None
    model_file: Path | None = field(default=None)

    # ------------------------------------------------------------ writing

    def write(self, folder: str | Path) -> Path:
        """Write every file of the run folder; metrics.json goes last."""
        folder = Path(folder)
        files.write_json(folder / "config.json", self.config.model_dump())
        files.write_csv(folder / "history.csv", self.history)
        files.write_csv(folder / "predictions.csv", self.predictions)
        if self.budget_predictions is not None:
            files.write_csv(folder / "budget_points.csv", self.budget_predictions)
        if self.gradcam is not None:
            files.write_npz(folder / "gradcam.npz", **self.gradcam)
        files.write_json(folder / "provenance.json", _as_json(self.provenance))
        files.write_json(folder / "timings.json", _as_json(self.timings))
        files.write_json(folder / "metrics.json", _as_json(self.metrics))
        self.folder = folder
        return folder

    # ------------------------------------------------------------ reading

    @classmethod
    def load(cls, folder: str | Path) -> "RunRecord":
        """Read a finished run folder (no backend needed)."""
        folder = Path(folder)
        if not (folder / "metrics.json").is_file():
            raise RecordError(f"{folder}: not a finished run (no metrics.json)")
        gradcam = None
        if (folder / "gradcam.npz").is_file():
            with np.load(folder / "gradcam.npz") as saved:
                gradcam = {key: saved[key] for key in saved.files}
        model = folder / MODEL_FILE
        points = folder / "budget_points.csv"
        return cls(
            # validated when the run started; read back as written, on any machine
            config=ExperimentConfig.model_construct(**files.read_json(folder / "config.json")),
            metrics=_load_metrics(folder / "metrics.json"),
            timings=_build(Timings, files.read_json(folder / "timings.json"),
                           str(folder / "timings.json")),
            provenance=_build(Provenance, files.read_json(folder / "provenance.json"),
                              str(folder / "provenance.json")),
            history=pd.read_csv(folder / "history.csv"),
            predictions=pd.read_csv(folder / "predictions.csv"),
            gradcam=gradcam, budget_predictions=pd.read_csv(points) if points.is_file() else None,
            folder=folder, model_file=model if model.is_file() else None)

    # ------------------------------------------------------------ conveniences for pages

    @property
    def name(self) -> str:
        return self.metrics.name

    @property
    def experiment(self) -> str:
        return self.metrics.experiment

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def correct(self) -> np.ndarray:
        """Per test image: did the model get it right?"""
        return (self.predictions["true"] == self.predictions["predicted"]).to_numpy()

    def point_correct(self, index: int) -> np.ndarray:
        """Per test image: did the run's `index`-th budget point get it right?"""
        return (self.predictions["true"].to_numpy()
                == self.budget_predictions[f"predicted_{index}"].to_numpy())

    @property
    def feature_cost(self) -> float:
        """Seconds of computing the frozen blocks' outputs, charged to the run even when it
        read them from a cache another run filled: its images at the rate measured when they
        were first computed (kept beside the cached file)."""
        t, m = self.timings, self.metrics
        if t.feature_images or not t.feature_images_per_second:
            return t.feature_seconds
        return (m.train_n + m.val_n) / t.feature_images_per_second

    @property
    def training_flops(self) -> float:
        """FLOPs the run spent training (`run.flops`: the layers that train, forward and
        backward, per image seen; validation; the frozen blocks, a cache hit charged what
        filling it cost); NaN for a record without them."""
        return float(self.metrics.compute.get("flops", {}).get("total", float("nan")))

    @property
    def training_seconds(self) -> float:
        """Training as a practitioner starting from nothing pays it: fit() plus the frozen
        blocks' outputs (`feature_cost`)."""
        return self.timings.train_seconds + self.feature_cost


def is_finished(folder: str | Path) -> bool:
    return (Path(folder) / "metrics.json").is_file()
