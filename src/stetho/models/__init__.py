"""Model zoo: backbones by name, one front door (:func:`create_model`)."""

from __future__ import annotations

from torch import nn

from stetho.config import ArchitectureConfig, ResolvedConfig
from stetho.features import LogMel
from stetho.models import heartnet as _heartnet  # noqa: F401  (registers)
from stetho.models import timm_backbones as _timm  # noqa: F401  (registers)
from stetho.models.classifier import HeartSoundClassifier
from stetho.models.registry import get_backbone_fn, is_backbone, list_backbones, register_backbone

__all__ = [
    "HeartSoundClassifier",
    "create_backbone",
    "create_model",
    "is_backbone",
    "list_backbones",
    "register_backbone",
]


def create_model(
    config: ResolvedConfig, n_classes: int, *, n_extra_features: int = 0
) -> HeartSoundClassifier:
    """Build the classifier for a *resolved* config."""
    arch = config.architecture
    backbone = create_backbone(arch)
    return HeartSoundClassifier(
        frontend=LogMel.from_config(config.audio),
        backbone=backbone,
        n_classes=n_classes,
        pool=arch.pool,
        dropout=arch.dropout,
        n_extra_features=n_extra_features,
    )


def create_backbone(arch: ArchitectureConfig) -> nn.Module:
    """The registered backbone ``arch.backbone`` (``ValueError`` naming the registered ones
    when unknown), with the pretrained weights the config asks for."""
    return get_backbone_fn(arch.backbone)(
        pretrained=arch.pretrained, pretrained_weights=arch.pretrained_weights, width=arch.width
    )
