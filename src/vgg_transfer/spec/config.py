"""One typed configuration per experiment, resolved from the experiments file.

Every parameter reaches training through `ExperimentConfig`, whether it came from the YAML
file, the command line, an environment variable or a papermill parameter. Layers merge as

    defaults < environment (CIFAR10_DIR, WEIGHTS, KERAS_BACKEND) < experiment entry < profile.set
             < profile.experiments[name] < grid run < overrides

An experiment may declare a `grid` (in its entry, in the profile, or for all of a profile's
experiments): every combination of the grid's values is one run, a `GridRun`. The result is
validated before anything trains: unknown keys, wrong types and impossible
values stop with one line that names the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vgg_transfer.spec import precision as compute_precision
from vgg_transfer.spec import regimes
from vgg_transfer.spec.backends import DEFAULT as DEFAULT_BACKEND
from vgg_transfer.spec.backends import ENV as BACKEND_ENV

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_EXPERIMENTS = PROJECT_ROOT / "experiments.yaml"

WEIGHT_NAMES = ("imagenet", "hed-bsds500", "none")
ENV_VARS = {"CIFAR10_DIR": "data_dir", "WEIGHTS": "weights", BACKEND_ENV: "backend"}


class ConfigError(ValueError):
    """A configuration that cannot run, with a one-line reason naming the key."""


class LRSearch(BaseModel):
    """Candidate learning rates for a run, and what each candidate's run changes (`set`:
    config values, typically a smaller flops_budget), chosen on validation accuracy."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    learning_rates: list[float] = Field(min_length=2)
    set: dict[str, Any] = Field(default_factory=dict)

    @field_validator("learning_rates")
    @classmethod
    def _ascending(cls, value: list[float]) -> list[float]:
        if value[0] <= 0 or list(value) != sorted(set(value)):
            raise ValueError(f"ascending, distinct and positive; got {list(value)}")
        return value

    @field_validator("set")
    @classmethod
    def _config_keys(cls, value: dict) -> dict:
        fixed = {"name", "learning_rate", "lr_search", "budget_points"} & set(value)
        if fixed:
            raise ValueError(f"set: {sorted(fixed)[0]} is the search's own (each candidate "
                             "has its rate, its name and no budget points)")
        unknown = set(value) - set(ExperimentConfig.model_fields)
        if unknown:
            raise ValueError(f"set: unknown key {sorted(unknown)[0]!r}")
        return value


class ExperimentConfig(BaseModel):
    """Everything that determines one training run."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")  # run name (experiment + grid labels) = folder
    regime: str                        # which layers train and when: see regimes.py
    weights: str = "imagenet"          # imagenet | hed-bsds500 | none | path to a .weights.h5
    data_dir: Optional[str] = None     # cifar-10-batches-py folder; None = Keras download
    image_size: int = Field(32, ge=32, le=224)  # input side in pixels; >32 upsamples in-model
    train_size: Optional[int] = Field(None, gt=0)  # stratified training subset; None = all
    val_size: int = Field(5000, gt=0)  # validation images carved from the training set
    epochs: int = Field(10, gt=0)      # passes over the training subset
    batch_size: int = Field(128, gt=0)
    learning_rate: float = Field(1e-4, gt=0)  # Adam
    seed: int = Field(0, ge=0)         # data split, initialisation and dropout
    cache_features: bool = True        # frozen regime: train the head on cached base outputs
    head: Literal["flatten", "gap"] = "flatten"  # the original head, or global average pooling
    augment: bool = False              # random flips and shifts inside the model (no cache then)
    # two_phase only: phase 1 trains the head (at learning_rate) for at most head_epochs,
    # stopping after `patience` epochs without a lower validation loss (the loss, not the
    # accuracy: an untrained head's accuracy is noise while its loss still falls); phase 2
    # unfreezes blocks unfreeze_from..5 and trains `epochs` at finetune_learning_rate.
    head_epochs: int = Field(10, gt=0)
    patience: int = Field(3, gt=0)
    unfreeze_from: int = Field(1, ge=1, le=5)
    finetune_learning_rate: float = Field(1e-5, gt=0)
    checkpoint_seconds: float = Field(60.0, ge=0)  # training time between checkpoints; 0 = every
    # epoch. A run killed mid-training resumes from its last checkpoint.
    # auto: mixed_bfloat16 where the CPU has bf16 units and the backend uses them, else
    # float32 (spec.precision); resolved with the config, so a run holds the policy it ran.
    # float32 gives the same numbers on every machine; mixed_float16 is for GPUs only.
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = "float32"  # not auto:
    # `_resolve_precision` has replaced auto (or a missing value) before this is read
    save_model: Optional[bool] = None  # write model.keras; None: yes, except for grid runs
    # Early stopping for every phase without a rule of its own: stop once `monitor` on the
    # validation split has not improved for this many epochs, then restore the best epoch's
    # weights. None: every phase runs its whole budget.
    early_stopping: Optional[int] = Field(None, gt=0)
    # Training FLOPs the run may spend, counted from the model's layers (vgg_transfer.run.flops:
    # the layers that train 3x forward per image seen, validation, the frozen blocks). The
    # images seen follow: each epoch trains on what the budget still affords, the last one
    # short; epochs (and early stopping) still bound it. None: the epoch budgets alone.
    flops_budget: Optional[float] = Field(None, gt=0)
    # Smaller budgets at which the run also scores the test set as it trains: each score is
    # the one the run with that budget ends with (the same seed and data order; see
    # vgg_transfer.run.points.BudgetPoints), so one run draws a line of the frontier. The scores
    # only report: nothing is chosen on them. A single-phase regime with a flops_budget only.
    budget_points: Optional[list[float]] = None
    monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    # The learning rate over the steps of a single-phase run: constant (the original study's
    # recipe), or wsd: a linear warmup over `warmup_steps`, the constant rate, then a linear
    # cooldown to zero over the last `cooldown_fraction` of the steps the run's budget affords
    # (its flops_budget, or its epochs when they end it first). With wsd, each budget point
    # is a cooldown branch off the run (vgg_transfer.run.branches): exactly the shorter run.
    schedule: Literal["constant", "wsd"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    cooldown_fraction: float = Field(0.2, gt=0, le=1)
    # The learning rate chosen on validation among candidates, before the run trains: each
    # candidate is a run of its own (this config with the candidate's learning_rate, seed 0,
    # no budget points, and the search's `set`), the one with the best validation accuracy
    # gives the rate (vgg_transfer.runner.search). None: learning_rate as given.
    lr_search: Optional["LRSearch"] = None
    # The Keras backend that runs it; the environment's KERAS_BACKEND when set. A process runs
    # one backend, so the runner starts each experiment's kernel with KERAS_BACKEND set to it.
    backend: Literal["tensorflow", "jax", "torch"] = DEFAULT_BACKEND

    @model_validator(mode="before")
    @classmethod
    def _resolve_precision(cls, values: Any) -> Any:
        """`auto` (the default; also None) becomes the policy this machine runs."""
        if isinstance(values, dict) and values.get("precision") in (compute_precision.AUTO,
                                                                    None):
            chosen = compute_precision.resolve(None, values.get("backend", DEFAULT_BACKEND))
            values = {**values, "precision": chosen}
        return values

    @field_validator("regime")
    @classmethod
    def _known_regime(cls, value: str) -> str:
        if value not in regimes.REGISTRY:
            raise ValueError(f"unknown regime {value!r} (allowed: {', '.join(regimes.REGISTRY)})")
        return value

    @field_validator("weights")
    @classmethod
    def _known_weights(cls, value: str) -> str:
        if value in WEIGHT_NAMES or Path(value).expanduser().is_file():
            return value
        raise ValueError(f"must be one of {', '.join(WEIGHT_NAMES)} or an existing weights "
                         f"file, got {value!r}")

    @field_validator("data_dir")
    @classmethod
    def _existing_folder(cls, value: Optional[str]) -> Optional[str]:
        """An existing folder, made absolute: a relative path names the folder from where the
        command started, wherever the run's notebook later executes."""
        if value is None:
            return None
        folder = Path(value).expanduser()
        if not folder.is_dir():
            raise ValueError(f"folder not found: {value} (from {Path.cwd()})")
        return str(folder.resolve())

    @model_validator(mode="after")
    def _scratch_is_random(self) -> "ExperimentConfig":
        if not regimes.get(self.regime).pretrained and self.weights != "none":
            raise ValueError(f"weights: the {self.regime} regime starts from random weights; "
                             f"set weights: none (got {self.weights!r})")
        return self

    @model_validator(mode="after")
    def _points_below_the_budget(self) -> "ExperimentConfig":
        points = self.budget_points
        if points is None:
            return self
        if not self.flops_budget:
            raise ValueError("budget_points: needs a flops_budget, larger than every point")
        if (not points or points[0] <= 0 or list(points) != sorted(set(points))
                or points[-1] >= self.flops_budget):
            raise ValueError(f"budget_points: ascending, distinct, positive and below "
                             f"flops_budget ({self.flops_budget:.3g}); got {list(points)}")
        if regimes.get(self.regime).phased:
            raise ValueError(f"budget_points: the {self.regime} regime trains in phases; a "
                             "point is exactly a shorter run for single-phase regimes only")
        return self

    @model_validator(mode="after")
    def _schedule_ends_the_run(self) -> "ExperimentConfig":
        if self.schedule == "constant":
            return self
        if regimes.get(self.regime).phased:
            raise ValueError(f"schedule: {self.schedule} needs a single-phase regime; "
                             f"{self.regime} trains in phases")
        if self.early_stopping:
            raise ValueError(f"schedule: {self.schedule} ends the learning rate where the run "
                             "ends; early_stopping would stop it before its cooldown (set "
                             "early_stopping: null)")
        return self

    def describe_weights(self) -> str:
        """A short label for figures and tables, so no result loses its weights' name."""
        return {"none": "random init", "imagenet": "ImageNet",
                "hed-bsds500": "HED-BSDS500 (offline VGG16)"}.get(self.weights, self.weights)


ExperimentConfig.model_rebuild()


def _format_error(err: ValidationError, where: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "config"
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(ExperimentConfig.model_fields)
        return f"{where}: {key}: unknown key (allowed: {allowed})"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] not in ("value_error", "missing"):
        message += f" (got {first.get('input')!r})"
    return f"{where}: {key}: {message}"


def make_config(values: dict[str, Any], where: str = "config") -> ExperimentConfig:
    """Build an `ExperimentConfig`, turning validation errors into one-line `ConfigError`s."""
    try:
        return ExperimentConfig(**values)
    except ValidationError as err:
        raise ConfigError(_format_error(err, where)) from None


SECTIONS = ("defaults", "experiments", "profiles", "book")


def load_experiments(path: str | Path | None = None) -> dict:
    """Read and shape-check the experiments file (defaults, experiments, profiles, book)."""
    path = Path(path or DEFAULT_EXPERIMENTS)
    if not path.is_file():
        raise ConfigError(f"experiments file not found: {path}")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{path.name}: unknown top-level key {sorted(unknown)[0]!r} "
                          f"(allowed: {', '.join(SECTIONS)})")
    for section in SECTIONS:
        if not isinstance(spec.get(section) or {}, dict):
            raise ConfigError(f"{path.name}: {section} must be a mapping")
    return spec


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse `key=value` strings; values are read as YAML scalars (3, 1e-4, true, null)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set: expected key=value, got {item!r}")
        value = yaml.safe_load(raw)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        out[key.strip()] = value
    return out
