"""The run directory of a training run: its file names, its resumable state, start or resume.

Files: ``config.toml`` (the configuration actually used), ``history.csv`` (one row an epoch),
``best.keras`` (the deployable model of the best validation epoch, with its model card),
``last.keras`` (the model of the last epoch, optimizer state included) and ``state.json``
(:class:`RunState`) to resume from, then ``metrics.json``, ``curves.png``, ``confusion.png``,
``roc.png`` and ``model_card.json`` once training is finished.

A run directory holds one configuration: :func:`prepare_run_dir` resumes a run with the same
configuration, refuses one with another, and clears it for ``overwrite``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from retinascreen.errors import ConfigError
from retinascreen.models.engines import RUN_BEST_KERAS
from retinascreen.models.modelcard import RUN_DIR_CARD
from retinascreen.training.config import TrainConfig, load_config

CONFIG_FILE = "config.toml"
HISTORY_FILE = "history.csv"
BEST_MODEL_FILE = RUN_BEST_KERAS
LAST_MODEL_FILE = "last.keras"
LAST_MODEL_TMP_FILE = "last.tmp.keras"
STATE_FILE = "state.json"
STATE_TMP_FILE = "state.json.tmp"
METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"
CONFUSION_FILE = "confusion.png"
ROC_FILE = "roc.png"
MODEL_CARD_FILE = RUN_DIR_CARD

RUN_FILES: tuple[str, ...] = (
    BEST_MODEL_FILE,
    LAST_MODEL_FILE,
    STATE_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    CURVES_FILE,
    CONFUSION_FILE,
    ROC_FILE,
    MODEL_CARD_FILE,
)


@dataclass
class PhaseRecord:
    """A started phase of the schedule: epochs ``start`` (done before it) to ``end`` (done)."""

    name: str
    start: int
    end: int
    stopped_early: bool = False

    @property
    def epochs_done(self) -> int:
        return self.end - self.start


@dataclass
class RunState:
    """What ``state.json`` records: epochs done, the phases started and the best epoch so far.

    The callbacks update it in place each epoch; :meth:`save` writes it atomically.
    """

    epoch: int = 0
    phases: list[PhaseRecord] = field(default_factory=list)
    best_qwk: float | None = None
    best_epoch: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        return cls(
            epoch=int(data.get("epoch", 0)),
            phases=[PhaseRecord(**phase) for phase in data.get("phases", [])],
            best_qwk=data.get("best_qwk"),
            best_epoch=data.get("best_epoch"),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, run_dir: Path) -> RunState:
        """The state in ``run_dir``, or a fresh one when nothing has been trained there yet."""
        path = run_dir / STATE_FILE
        if not path.is_file():
            return cls()
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def save(self, run_dir: Path) -> None:
        """Write ``state.json`` via a temporary file, so an interruption never leaves half."""
        tmp = run_dir / STATE_TMP_FILE
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(run_dir / STATE_FILE)

    def phase(self, index: int) -> PhaseRecord | None:
        """The record of phase ``index`` of the schedule, if that phase has been started."""
        return self.phases[index] if index < len(self.phases) else None

    def phase_finished(self, index: int, epochs: int) -> bool:
        """Whether phase ``index`` (of ``epochs`` epochs) needs no more training on resume.

        Finished when a later phase has started, it stopped early, or it ran all its epochs.
        """
        record = self.phase(index)
        if record is None:
            return False
        return len(self.phases) > index + 1 or record.stopped_early or record.epochs_done >= epochs

    def start_phase(self, name: str) -> PhaseRecord:
        """Record a new phase starting after the epochs done so far."""
        record = PhaseRecord(name=name, start=self.epoch, end=self.epoch)
        self.phases.append(record)
        return record

    def end_epoch(self, epochs_done: int) -> None:
        """``epochs_done`` epochs are finished, the last one in the current phase."""
        self.epoch = epochs_done
        self.phases[-1].end = epochs_done


def prepare_run_dir(run_dir: Path, config: TrainConfig, overwrite: bool) -> None:
    """Start, resume, or refuse: an existing run with another configuration needs ``overwrite``."""
    previous_file = run_dir / CONFIG_FILE
    if previous_file.is_file() and overwrite:
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    elif previous_file.is_file():
        previous = load_config(previous_file)
        mine, theirs = config.identity(), previous.identity()
        changed = sorted(k for k in mine if mine[k] != theirs.get(k))
        if changed:
            detail = ", ".join(f"{k}: {theirs.get(k)!r} -> {mine[k]!r}" for k in changed)
            raise ConfigError(
                f"{run_dir} holds a run with another configuration ({detail}); "
                "use --overwrite to start it again, or choose another --out"
            )
    run_dir.mkdir(parents=True, exist_ok=True)


__all__ = [
    "BEST_MODEL_FILE",
    "CONFIG_FILE",
    "CONFUSION_FILE",
    "CURVES_FILE",
    "HISTORY_FILE",
    "LAST_MODEL_FILE",
    "LAST_MODEL_TMP_FILE",
    "METRICS_FILE",
    "MODEL_CARD_FILE",
    "ROC_FILE",
    "RUN_FILES",
    "STATE_FILE",
    "STATE_TMP_FILE",
    "PhaseRecord",
    "RunState",
    "prepare_run_dir",
]
