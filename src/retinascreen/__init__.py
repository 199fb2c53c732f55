"""retinascreen: diabetic retinopathy screening of colour fundus photographs.

``from retinascreen import build_model, Predictor, Segmenter`` is the public Python API (SPEC.md).
They are imported lazily so that ``import retinascreen`` stays fast and does not start TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retinascreen.backend import ensure_backend
from retinascreen.version import __version__

__all__ = ["Predictor", "Segmenter", "build_model", "__version__"]

ensure_backend()

if TYPE_CHECKING:
    from retinascreen.models.build import build_model
    from retinascreen.serving.predictor import Predictor
    from retinascreen.serving.segmenter import Segmenter


def __getattr__(name: str) -> Any:
    if name == "build_model":
        from retinascreen.models.build import build_model

        return build_model
    if name == "Predictor":
        from retinascreen.serving.predictor import Predictor

        return Predictor
    if name == "Segmenter":
        from retinascreen.serving.segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'retinascreen' has no attribute {name!r}")
