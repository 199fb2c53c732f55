"""Model zoo: backbone and head registries and ``build_model`` (see docs/design.md)."""

from __future__ import annotations

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
