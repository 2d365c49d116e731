"""One typed configuration per experiment, resolved from the experiments file.

Every parameter reaches training through `ExperimentConfig`, whether it came from the YAML
file, the command line, an environment variable or a papermill parameter. Layers merge as

    defaults < environment (CIFAR10_DIR, WEIGHTS) < experiment entry < profile.set
             < profile.experiments[name] < overrides

and the result is validated before anything trains: unknown keys, wrong types and impossible
values stop with one line that names the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_EXPERIMENTS = PROJECT_ROOT / "experiments.yaml"

REGIMES = ("scratch", "frozen", "finetune", "partial", "scratch_bn", "two_phase")
WEIGHT_NAMES = ("imagenet", "hed-bsds500", "none")
ENV_VARS = {"CIFAR10_DIR": "data_dir", "WEIGHTS": "weights"}


class ConfigError(ValueError):
    """A configuration that cannot run, with a one-line reason naming the key."""


class ExperimentConfig(BaseModel):
    """Everything that determines one training run."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")  # experiment name; also its run folder
    regime: Literal["scratch", "frozen", "finetune", "partial", "scratch_bn",
                    "two_phase"]      # which layers train, see models.py
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
    # stopping after `patience` epochs without a better validation accuracy; phase 2
    # unfreezes blocks unfreeze_from..5 and trains `epochs` at finetune_learning_rate.
    head_epochs: int = Field(10, gt=0)
    patience: int = Field(2, gt=0)
    unfreeze_from: int = Field(1, ge=1, le=5)
    finetune_learning_rate: float = Field(1e-5, gt=0)
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = "float32"
    # mixed_bfloat16 speeds up CPUs with bf16 support; mixed_float16 is for GPUs only

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
        if value is not None and not Path(value).expanduser().is_dir():
            raise ValueError(f"folder not found: {value}")
        return value

    @model_validator(mode="after")
    def _scratch_is_random(self) -> "ExperimentConfig":
        if self.regime in ("scratch", "scratch_bn") and self.weights != "none":
            raise ValueError(f"weights: the {self.regime} regime starts from random weights; "
                             f"set weights: none (got {self.weights!r})")
        return self

    def describe_weights(self) -> str:
        """A short label for figures and tables, so no result loses its weights' name."""
        return {"none": "random init", "imagenet": "ImageNet",
                "hed-bsds500": "HED-BSDS500 (offline VGG16)"}.get(self.weights, self.weights)


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


def validate(values: dict[str, Any], where: str = "config") -> ExperimentConfig:
    """Build an `ExperimentConfig`, turning validation errors into one-line `ConfigError`s."""
    try:
        return ExperimentConfig(**values)
    except ValidationError as err:
        raise ConfigError(_format_error(err, where)) from None


def load_experiments(path: str | Path | None = None) -> dict:
    """Read and shape-check the experiments file (defaults, experiments, profiles)."""
    path = Path(path or DEFAULT_EXPERIMENTS)
    if not path.is_file():
        raise ConfigError(f"experiments file not found: {path}")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - {"defaults", "experiments", "profiles"}
    if unknown:
        raise ConfigError(f"{path.name}: unknown top-level key {sorted(unknown)[0]!r} "
                          "(allowed: defaults, experiments, profiles)")
    for section in ("defaults", "experiments", "profiles"):
        if not isinstance(spec.get(section) or {}, dict):
            raise ConfigError(f"{path.name}: {section} must be a mapping")
    return spec


def profile_names(spec: dict) -> list[str]:
    return list(spec.get("profiles") or {})


def _profile(spec: dict, profile: str) -> dict:
    profiles = spec.get("profiles") or {}
    if profile not in profiles:
        raise ConfigError(f"profile: unknown profile {profile!r} "
                          f"(allowed: {', '.join(profiles)})")
    entry = profiles[profile] or {}
    unknown = set(entry) - {"description", "set", "only", "experiments"}
    if unknown:
        raise ConfigError(f"profiles.{profile}: unknown key {sorted(unknown)[0]!r} "
                          "(allowed: description, set, only, experiments)")
    known = set(spec.get("experiments") or {})
    for name in entry.get("experiments") or {}:
        if name not in known:
            raise ConfigError(f"profiles.{profile}.experiments: unknown experiment {name!r} "
                              f"(allowed: {', '.join(known)})")
    return entry


def experiment_names(spec: dict, profile: str) -> list[str]:
    """The experiments a profile runs, in file order."""
    names = list(spec.get("experiments") or {})
    only = _profile(spec, profile).get("only")
    if only is None:
        return names
    missing = [name for name in only if name not in names]
    if missing:
        raise ConfigError(f"profiles.{profile}.only: unknown experiment {missing[0]!r} "
                          f"(allowed: {', '.join(names)})")
    return [name for name in names if name in only]


def resolve(spec: dict, name: str, profile: str, overrides: dict | None = None,
            env: dict | None = None) -> ExperimentConfig:
    """Merge the layers for one experiment and validate the result.

    Args:
        spec: the experiments file, as returned by `load_experiments`.
        name: an experiment in `spec["experiments"]`.
        profile: a profile in `spec["profiles"]`.
        overrides: values that win over everything (CLI `--set`, papermill parameters).
        env: environment variables to read (defaults to `os.environ`).
    """
    experiments = spec.get("experiments") or {}
    if name not in experiments:
        raise ConfigError(f"experiment: unknown experiment {name!r} "
                          f"(allowed: {', '.join(experiments)})")
    env = os.environ if env is None else env
    from_env = {key: env[var] for var, key in ENV_VARS.items() if env.get(var)}
    chosen = _profile(spec, profile)
    values = {
        **(spec.get("defaults") or {}),
        **from_env,
        **(experiments[name] or {}),
        **(chosen.get("set") or {}),
        **((chosen.get("experiments") or {}).get(name) or {}),
        **(overrides or {}),
        "name": name,
    }
    return validate(values, where=f"experiment {name!r} (profile {profile})")


def resolve_profile(spec: dict, profile: str, overrides: dict | None = None,
                    only: list[str] | None = None, env: dict | None = None
                    ) -> list[ExperimentConfig]:
    """Resolve and validate every experiment of a profile before any of them runs."""
    names = experiment_names(spec, profile)
    if only:
        unknown = [name for name in only if name not in names]
        if unknown:
            raise ConfigError(f"only: experiment {unknown[0]!r} is not in profile {profile} "
                              f"(allowed: {', '.join(names)})")
        names = [name for name in names if name in only]
    return [resolve(spec, name, profile, overrides, env) for name in names]


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
