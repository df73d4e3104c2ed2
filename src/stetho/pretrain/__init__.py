"""Pretraining a heart-sound backbone on public multi-device data (issue #12).

``views``       simulated recorders: random device transforms, positive pairs
``objective``   NT-Xent over device views; masked multi-source supervised loss; label maps
``data``        sources, mission-set guard, source-balanced batches of excerpts
``encoder``     front end -> backbone -> pooling, the network being pretrained
``loop``        budgeted, seeded, resumable loop writing the run folder
``resume``      the tensors-only resume checkpoint
``stetho.runs.folder.PretrainFolder``  the run folder's artifact paths
``stetho.models.pretrained``  the backbone file format (safetensors + front-end metadata)

See ``docs/pretraining.md``.
"""

from __future__ import annotations

from stetho.models.pretrained import (
    FrontEndMismatchError,
    PretrainedMismatchError,
    load_pretrained_backbone,
    save_pretrained_backbone,
)
from stetho.pretrain.data import Source
from stetho.pretrain.loop import PretrainConfig, PretrainResult, pretrain
from stetho.pretrain.views import DeviceViewConfig, device_view, view_pair

__all__ = [
    "DeviceViewConfig",
    "FrontEndMismatchError",
    "PretrainConfig",
    "PretrainResult",
    "PretrainedMismatchError",
    "Source",
    "device_view",
    "load_pretrained_backbone",
    "pretrain",
    "save_pretrained_backbone",
    "view_pair",
]
