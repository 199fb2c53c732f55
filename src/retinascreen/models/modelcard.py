"""Model cards stored inside the model file, so a model carries its own provenance.

- ``.keras`` (a zip): entry ``retinascreen/model_card.json``; Keras ignores it when loading.
- ``.onnx``: ``metadata_props["retinascreen_model_card"]``.
- ``.json`` file, or a run directory (``RUN_DIR/model_card.json``): plain JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retinascreen.errors import ConfigError, ModelError
from retinascreen.grading import LABELS
from retinascreen.models.engines import RUN_BEST_KERAS
from retinascreen.version import __version__

if TYPE_CHECKING:
    from retinascreen.data.fundus import Preprocessing

KERAS_ENTRY = "retinascreen/model_card.json"
ONNX_KEY = "retinascreen_model_card"
RUN_DIR_CARD = "model_card.json"
OBJECTIVES = ("softmax", "ordinal")
TASKS = ("grading", "segmentation")
SYNTHETIC_INTENDED_USE = "Trained on synthetic images only. Not for clinical use."
DEFAULT_INTENDED_USE = (
    "Research and screening support for diabetic retinopathy (ICDR grades) on colour fundus "
    "photographs; not a medical device, every result needs review by a qualified grader."
)


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass
class ModelCard:
    """What a model is, how it sees images, what it was trained on and how well it did."""

    name: str = "retinascreen-model"
    version: str = "1"
    task: str = "grading"  # or "segmentation" (per-pixel maps; see models/segmentation.py)
    backbone: str = "xception"
    head: str = "wise-srnet"
    input_size: int = 299
    classes: list[str] = field(default_factory=lambda: list(LABELS))
    preprocessing: dict[str, Any] = field(default_factory=dict)
    objective: str = "softmax"
    thresholds: list[float] | None = None
    training_data: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    synthetic: bool = False
    intended_use: str = ""
    created: str = field(default_factory=_now)
    retinascreen_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if hasattr(self.preprocessing, "to_dict"):  # a retinascreen.data.fundus.Preprocessing
            self.preprocessing = self.preprocessing.to_dict()
        self.preprocessing = dict(self.preprocessing or {})
        self.preprocessing.setdefault("size", int(self.input_size))
        self.preprocessing.setdefault("ben_graham", False)
        self.preprocessing.setdefault("clahe", False)
        if self.objective not in OBJECTIVES:
            raise ConfigError(
                f"unknown objective {self.objective!r}; choose one of: {', '.join(OBJECTIVES)}"
            )
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; choose one of: {', '.join(TASKS)}")
        if self.thresholds is not None:
            self.thresholds = [float(t) for t in self.thresholds]
        self.classes = list(self.classes)
        if not self.intended_use:
            self.intended_use = SYNTHETIC_INTENDED_USE if self.synthetic else DEFAULT_INTENDED_USE

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``extra`` keys are merged at the top level)."""
        data = dataclasses.asdict(self)
        extra = data.pop("extra")
        return {**extra, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Inverse of :meth:`to_dict`; unknown keys are kept in ``extra``."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**kwargs, extra=extra)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _kind(path: Path) -> str:
    if path.is_dir():
        return "dir"
    suffix = path.suffix.lower()
    if suffix in (".keras", ".onnx", ".json"):
        return suffix[1:]
    raise ModelError(f"{path}: model cards live in .keras, .onnx, .json files or run directories")


def _parse(text: str | bytes, where: str) -> ModelCard:
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{where}: the model card is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{where}: the model card is not a JSON object")
    try:
        return ModelCard.from_dict(data)
    except (ValueError, TypeError, ConfigError) as exc:
        raise ModelError(f"{where}: the model card is invalid ({exc})") from exc


def write_card(path: str | Path, card: ModelCard) -> Path:
    """Store ``card`` inside the model file at ``path`` (replacing an older card); returns path."""
    path = Path(path)
    kind = "json" if path.suffix.lower() == ".json" and not path.exists() else None
    kind = kind or _kind(path)
    text = card.to_json()
    if kind == "keras":
        _write_keras(path, text)
    elif kind == "onnx":
        _write_onnx(path, text)
    elif kind == "dir":
        (path / RUN_DIR_CARD).write_text(text + "\n", encoding="utf-8")
    else:
        path.write_text(text + "\n", encoding="utf-8")
    return path


def _write_keras(path: Path, text: str) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            has_card = KERAS_ENTRY in zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{path} is not a readable .keras file ({exc})") from exc
    if not has_card:
        with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(KERAS_ENTRY, text)
        return
    # zip cannot replace an entry in place: copy the others into a new file, then swap.
    fd, tmp = tempfile.mkstemp(suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
            for info in src.infolist():
                if info.filename != KERAS_ENTRY:
                    dst.writestr(info, src.read(info.filename))
            dst.writestr(KERAS_ENTRY, text, compress_type=zipfile.ZIP_DEFLATED)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_onnx(path: Path, text: str) -> None:
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for bad files
        raise ModelError(f"{path} is not a readable ONNX model ({exc})") from exc
    props = [p for p in model.metadata_props if p.key != ONNX_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    model.metadata_props.add(key=ONNX_KEY, value=text)
    onnx.save(model, str(path))


def read_card(path: str | Path) -> ModelCard:
    """The card stored in a ``.keras`` / ``.onnx`` / ``.json`` file or a run directory.

    Raises :class:`ModelError` when there is none, or when it cannot be read.
    """
    card = find_card(path)
    if card is None:
        raise ModelError(f"{path} has no model card")
    return card


def find_card(path: str | Path) -> ModelCard | None:
    """Like :func:`read_card`, but None when the file holds no card (a damaged one still raises)."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    kind = _kind(path)
    if kind == "keras":
        try:
            with zipfile.ZipFile(path) as zf:
                if KERAS_ENTRY not in zf.namelist():
                    return None
                text = zf.read(KERAS_ENTRY)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ModelError(f"{path} is not a readable .keras file ({exc})") from exc
        return _parse(text, str(path))
    if kind == "onnx":
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path} is not a readable ONNX model ({exc})") from exc
        for prop in model.metadata_props:
            if prop.key == ONNX_KEY:
                return _parse(prop.value, str(path))
        return None
    if kind == "dir":
        card_file = path / RUN_DIR_CARD
        if card_file.is_file():
            return _parse(card_file.read_text(encoding="utf-8"), str(card_file))
        if (path / RUN_BEST_KERAS).is_file():
            return find_card(path / RUN_BEST_KERAS)
        return None
    return _parse(path.read_text(encoding="utf-8"), str(path))


def preprocessing_for(card: ModelCard | None, size: int) -> Preprocessing:
    """The pre-processing a model sees: the card's, at ``size`` px (defaults without a card).

    Raises :class:`ModelError` when the card's ``preprocessing`` is not valid.
    """
    from retinascreen.data.fundus import Preprocessing

    if card is None or not card.preprocessing:
        return Preprocessing(size=size)
    try:
        return Preprocessing.from_dict({**card.preprocessing, "size": int(size)})
    except (ConfigError, TypeError, ValueError) as exc:
        raise ModelError(f"model card {card.name!r}: invalid preprocessing ({exc})") from exc


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (the model identity shown in every result)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
