"""What every model task shares: one model file, its card, its engine and its identity.

:class:`ModelTask` resolves the file, reads the model card, checks that the card's task is this
task's, loads the engine (Keras or ONNX Runtime), hashes the file and reports a
:class:`~retinascreen.result.ModelInfo`. :class:`~retinascreen.serving.predictor.Predictor`
(``grading``) and :class:`~retinascreen.serving.segmenter.Segmenter` (``segmentation``) are the
two tasks over it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from retinascreen.errors import ConfigError, ModelError
from retinascreen.result import ModelInfo

if TYPE_CHECKING:
    from retinascreen.data.fundus import Preprocessing
    from retinascreen.models.engines import Engine
    from retinascreen.models.modelcard import ModelCard

__all__ = ["ModelTask", "load_card"]

log = logging.getLogger(__name__)

# What to tell a user who gives one task's model to another.
_USE_INSTEAD = {
    "grading": "use `retinascreen predict` or retinascreen.Predictor to grade photographs",
    "segmentation": "use `retinascreen segment` or retinascreen.Segmenter for it",
}


def load_card(path: Path) -> ModelCard | None:
    """The model card stored in a model file; None (said in a log line) when it has none.

    A card that is present but unreadable or invalid is a :class:`ModelError` naming the file.
    """
    from retinascreen.models.modelcard import find_card

    card = find_card(path)
    if card is None:
        log.info(
            "%s has no model card: using defaults (name %r, version 'unversioned', "
            "plain fundus crop, not marked synthetic)",
            path,
            path.stem,
        )
    return card


class ModelTask:
    """One model file opened for one task (``task``: the card's ``task`` it must have).

    ``card_required``: a file without a card is refused (a segmentation model's card names its
    classes); otherwise it runs on defaults.
    """

    task: ClassVar[str] = ""
    card_required: ClassVar[bool] = False

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        from retinascreen.models.engines import load_engine
        from retinascreen.models.modelcard import file_sha256

        self.model_path: Path = path
        self.threads = threads
        self._engine: Engine = load_engine(path, threads)  # first: a broken file says so
        self.engine: str = self._engine.kind
        self.card: ModelCard | None = load_card(path)
        card = self.card
        if card is None and self.card_required:
            raise ModelError(
                f"{path.name} has no model card: a {self.task} model needs one "
                "(its classes and thresholds)"
            )
        if card is not None and card.task != self.task:
            advice = _USE_INSTEAD.get(card.task, "")
            raise ModelError(
                f"{path.name} is a {card.task} model, not a {self.task} model"
                + (f" ({advice})" if advice else "")
            )
        self.model_info: ModelInfo = ModelInfo.from_card(card, path.stem, file_sha256(path))

    def preprocessing_at(self, size: int) -> Preprocessing:
        """The card's pre-processing at ``size`` px (a ModelError naming the file if invalid)."""
        from retinascreen.models.modelcard import preprocessing_for

        try:
            return preprocessing_for(self.card, size)
        except (ModelError, ConfigError) as exc:
            raise ModelError(f"{self.model_path}: {exc}") from exc

    @property
    def synthetic(self) -> bool:
        """Whether the model card says the model learned from synthetic images only."""
        return self.model_info.synthetic

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.model_path)!r}, engine={self.engine!r})"
