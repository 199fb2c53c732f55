"""``TrainConfig``: every setting of a training run, read from TOML and written to ``config.toml``.

The file is flat ``key = value`` TOML (the field names below). Command-line flags override the
file; ``RUN_DIR/config.toml`` records what was actually used, so a run can be repeated or
resumed. Keys under ``RESUMABLE_KEYS`` may change between an interrupted run and its
continuation (more epochs, another cache folder); any other difference is a different run.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from retinascreen.errors import ConfigError

OBJECTIVES = ("softmax", "ordinal")
REGRESSION_LOSSES = ("mse", "smooth_l1")
STRATEGIES = ("none", "mirrored")
SCHEDULES = ("auto", "full")
RESUMABLE_KEYS = frozenset(
    {
        "epochs",
        "fine_tune_epochs",
        "patience",
        "out",
        "cache_dir",
        "target_sensitivity",
        "distribute",
        "camera_variants",  # raw-camera versions may be added when a run is continued
        "keep",
    }
)
KEEP = ("best", "last")


@dataclass
class TrainConfig:
    """Settings of one training run (defaults follow SPEC.md: Xception + Wise-SrNet at 299 px)."""

    data: str = ""
    format: str = "aptos"
    out: str = ""
    backbone: str = "xception"
    head: str = "wise-srnet"
    size: int = 299
    weights: str = "imagenet"
    widths: list[int] | None = None
    stem_stride: int | None = None
    dropout: float = 0.5
    objective: str = "softmax"
    regression_loss: str = "mse"
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    schedule: str = "auto"
    fine_tune_epochs: int = 5
    fine_tune_lr: float = 1e-5
    unfreeze_top: int = 40
    head_on_features: bool = False
    class_weights: bool = True
    patience: int = 5
    seed: int = 0
    split_seed: int | None = None
    ben_graham: bool = False
    clahe: bool = False
    equalize: bool = False
    camera_variants: int = 0
    keep: str = "best"
    val: float = 0.15
    test: float = 0.15
    train_limit: int | None = None
    target_sensitivity: float | None = None
    mixed_precision: bool = False
    distribute: str = "none"
    cache_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def validate(self) -> TrainConfig:
        """Raise ConfigError for values no run could use; returns self."""
        problems = []
        if not self.data:
            problems.append("data (the data set folder) is required")
        if not self.out:
            problems.append("out (the run directory) is required")
        if self.objective not in OBJECTIVES:
            problems.append(f"objective must be one of {', '.join(OBJECTIVES)}")
        if self.regression_loss not in REGRESSION_LOSSES:
            problems.append(f"regression_loss must be one of {', '.join(REGRESSION_LOSSES)}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)}")
        if self.keep not in KEEP:
            problems.append(f"keep must be one of {', '.join(KEEP)}")
        if self.distribute not in STRATEGIES:
            problems.append(f"distribute must be one of {', '.join(STRATEGIES)}")
        for name in ("epochs", "batch_size", "size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1")
        for name in ("fine_tune_epochs", "unfreeze_top", "patience", "camera_variants"):
            if int(getattr(self, name)) < 0:
                problems.append(f"{name} must be >= 0")
        for name in ("lr", "fine_tune_lr"):
            if not float(getattr(self, name)) > 0:
                problems.append(f"{name} must be > 0")
        if not (0 <= self.val < 1 and 0 <= self.test < 1 and self.val + self.test < 1):
            problems.append("val and test must be fractions with val + test < 1")
        if self.val <= 0:
            problems.append("val must be > 0: the best epoch is chosen on the validation split")
        if self.target_sensitivity is not None and not 0 < self.target_sensitivity <= 1:
            problems.append("target_sensitivity must be in (0, 1]")
        if self.train_limit is not None and self.train_limit < 1:
            problems.append("train_limit must be >= 1")
        if problems:
            raise ConfigError("invalid training configuration: " + "; ".join(problems))
        return self

    @property
    def data_split_seed(self) -> int:
        """The seed of the train/val/test split: ``split_seed``, else ``seed``.

        Set ``split_seed`` to compare seeds on one fixed split (the seed then only changes the
        weights, the shuffling and the augmentation).
        """
        return self.seed if self.split_seed is None else self.split_seed

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (None values kept)."""
        data = dataclasses.asdict(self)
        data.pop("extra")
        return data

    def identity(self) -> dict[str, Any]:
        """The settings that make a run what it is (everything but ``RESUMABLE_KEYS``)."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUMABLE_KEYS}

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


_FIELDS = {f.name: f for f in fields(TrainConfig) if f.name != "extra"}


def _coerce(name: str, value: Any) -> Any:
    default = getattr(TrainConfig(), name)
    try:
        if name == "widths":
            if isinstance(value, str):
                value = [v for v in value.replace(" ", "").split(",") if v]
            return [int(v) for v in value] if value else None
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("true", "yes", "1", "on"):
                    return True
                if value.lower() in ("false", "no", "0", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int) or name in ("train_limit", "stem_stride", "split_seed"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float) or name == "target_sensitivity":
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key {name!r}: cannot use {value!r} ({exc})") from exc


def from_dict(data: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """A config from ``data`` over ``base``; unknown keys raise ConfigError naming them."""
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ConfigError(
            f"unknown config key(s): {', '.join(unknown)}; known keys: {', '.join(_FIELDS)}"
        )
    values: dict[str, Any] = {k: (None if v is None else _coerce(k, v)) for k, v in data.items()}
    return dataclasses.replace(base or TrainConfig(), **values)


def load_config(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a flat TOML file (a ``[train]`` table is accepted too)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    if isinstance(data.get("train"), dict):
        data = {**{k: v for k, v in data.items() if k != "train"}, **data["train"]}
    return from_dict(data, base)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ConfigError(f"cannot write {value} to TOML")
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def to_toml(config: TrainConfig) -> str:
    """Flat ``key = value`` TOML; None values are left out (TOML has no null)."""
    lines = ["# retinascreen training configuration (retinascreen train --config this-file)"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in config.to_dict().items() if v is not None]
    return "\n".join(lines) + "\n"


def write_config(config: TrainConfig, path: str | Path) -> Path:
    """Write ``config`` as TOML to ``path``."""
    path = Path(path)
    path.write_text(to_toml(config), encoding="utf-8")
    return path
