"""Model zoo: backbones by name, one front door (:func:`create_model`)."""

from __future__ import annotations

from torch import nn

from stetho.config import ArchitectureConfig, ResolvedAudioConfig, ResolvedConfig
from stetho.features import LogMel
from stetho.models import heartnet as _heartnet  # noqa: F401  (registers)
from stetho.models import timm_backbones as _timm  # noqa: F401  (registers)
from stetho.models.classifier import HeartSoundClassifier
from stetho.models.pretrained import (
    PretrainedMismatchError,
    default_packaged_backbone,
    is_pretrained_backbone,
    load_pretrained_backbone,
    transfer_layers,
)
from stetho.models.registry import get_backbone_fn, is_backbone, list_backbones, register_backbone

__all__ = [
    "HeartSoundClassifier",
    "create_backbone",
    "create_model",
    "is_backbone",
    "list_backbones",
    "register_backbone",
    "starting_weights",
]


def create_model(
    config: ResolvedConfig, n_classes: int, *, n_extra_features: int = 0
) -> HeartSoundClassifier:
    """Build the classifier for a *resolved* config."""
    arch = config.architecture
    backbone = create_backbone(arch, audio=config.audio)
    return HeartSoundClassifier(
        frontend=LogMel.from_config(config.audio),
        backbone=backbone,
        n_classes=n_classes,
        pool=arch.pool,
        dropout=arch.dropout,
        n_extra_features=n_extra_features,
    )


def create_backbone(
    arch: ArchitectureConfig, *, audio: ResolvedAudioConfig | None = None
) -> nn.Module:
    """The registered backbone ``arch.backbone`` (``ValueError`` naming the registered ones
    when unknown), with the pretrained weights the config asks for.

    ``architecture.pretrained_weights`` may name a stetho pretrained-backbone file
    (``stetho pretrain``): it is loaded for any registered backbone, and its front end must
    equal ``audio`` (the model's resolved audio block), because a backbone only understands
    spectrograms made the way it learnt from. Any other file is handed to the builder (timm
    reads its own formats). ``pretrained: true`` without a file means, for heartnet, stetho's
    packaged heart-sound backbone (:data:`stetho.models.pretrained.DEFAULT_BACKBONE`), loaded
    and checked the same way; for timm backbones, ImageNet weights.
    ``architecture.pretrained_layers`` then keeps the pretrained weights of those layers
    only, the rest re-initialised at random (:func:`~stetho.models.pretrained.transfer_layers`).
    """
    backbone = _pretrained_backbone(arch, audio=audio)
    if arch.pretrained_layers is None:
        return backbone
    fresh = get_backbone_fn(arch.backbone)(
        pretrained=False, pretrained_weights=None, width=arch.width
    )
    return transfer_layers(backbone, fresh, arch.pretrained_layers)


def starting_weights(arch: ArchitectureConfig) -> str | None:
    """What the backbone starts from, as a run folder records it: the named file,
    ``stetho:NAME`` for the packaged backbone that ``pretrained: true`` means (which can change
    between stetho versions), ``"imagenet"`` for a timm backbone's own weights, ``None`` for
    random initialisation."""
    if arch.pretrained_weights:
        return str(arch.pretrained_weights)
    if not arch.pretrained:
        return None
    return default_packaged_backbone(arch.backbone) or "imagenet"


def _pretrained_backbone(
    arch: ArchitectureConfig, *, audio: ResolvedAudioConfig | None
) -> nn.Module:
    weights = arch.pretrained_weights
    default = None
    if arch.pretrained and not weights:
        default = weights = default_packaged_backbone(arch.backbone)
    if weights and is_pretrained_backbone(weights):
        if audio is None:
            raise ValueError(
                f"{weights}: a stetho pretrained backbone is checked against the front end; "
                "build it with create_model(config) or pass audio="
            )
        try:
            return load_pretrained_backbone(
                weights, backbone=arch.backbone, audio_config=audio, width=arch.width
            )
        except PretrainedMismatchError as exc:
            if default is None:
                raise
            # The user named no file: say which switch brought this one in.
            raise type(exc)(
                f"{exc} (architecture.pretrained: true loads {default}); or set "
                f"architecture.pretrained: false to train {arch.backbone} from random "
                "initialisation"
            ) from None
    return get_backbone_fn(arch.backbone)(
        pretrained=arch.pretrained, pretrained_weights=weights, width=arch.width
    )
