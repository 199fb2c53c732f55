"""Model zoo: backbone and head registries and ``build_model`` (see docs/design.md).

The names below are imported lazily (PEP 562), so that the Keras-free modules of this package
(:mod:`~retinascreen.models.engines`, :mod:`~retinascreen.models.modelcard`) do not start
TensorFlow: ``retinascreen serve`` resolves its model before forking workers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retinascreen.models.backbones import BACKBONES, create_backbone, register_backbone
    from retinascreen.models.build import (
        FEATURE_MAP_LAYER,
        backbone_layers,
        build_model,
        copy_weights,
        count_flops,
        count_params,
        head_layers,
        set_trainable,
    )
    from retinascreen.models.heads import HEADS, register_head

_HOMES = {
    "BACKBONES": "backbones",
    "create_backbone": "backbones",
    "register_backbone": "backbones",
    "FEATURE_MAP_LAYER": "build",
    "backbone_layers": "build",
    "build_model": "build",
    "copy_weights": "build",
    "count_flops": "build",
    "count_params": "build",
    "head_layers": "build",
    "set_trainable": "build",
    "HEADS": "heads",
    "register_head": "heads",
}

__all__ = [
    "BACKBONES",
    "FEATURE_MAP_LAYER",
    "HEADS",
    "backbone_layers",
    "build_model",
    "copy_weights",
    "count_flops",
    "count_params",
    "create_backbone",
    "head_layers",
    "register_backbone",
    "register_head",
    "set_trainable",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'retinascreen.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"retinascreen.models.{home}"), name)
