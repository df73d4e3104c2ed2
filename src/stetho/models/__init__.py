"""Model zoo: backbones by name, one front door (:func:`create_model`)."""

from __future__ import annotations

from stetho.config import Config
from stetho.features import LogMel
from stetho.models import heartnet as _heartnet  # noqa: F401  (registers)
from stetho.models import timm_backbones as _timm  # noqa: F401  (registers)
from stetho.models.classifier import HeartSoundClassifier
from stetho.models.registry import get_backbone_fn, is_backbone, list_backbones, register_backbone

__all__ = [
    "HeartSoundClassifier",
    "create_model",
    "is_backbone",
    "list_backbones",
    "register_backbone",
]


def create_model(
    config: Config, n_classes: int, *, n_extra_features: int = 0
) -> HeartSoundClassifier:
    """Build the classifier for a *resolved* config."""
    arch = config.architecture
    backbone = get_backbone_fn(arch.backbone)(
        pretrained=arch.pretrained, pretrained_weights=arch.pretrained_weights, width=arch.width
    )
    return HeartSoundClassifier(
        frontend=LogMel.from_config(config.audio),
        backbone=backbone,
        n_classes=n_classes,
        pool=arch.pool,
        dropout=arch.dropout,
        n_extra_features=n_extra_features,
    )
