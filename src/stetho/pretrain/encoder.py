"""The network being pretrained: front end -> backbone -> global pooling -> embedding."""

from __future__ import annotations

import torch
from torch import nn

import stetho.models  # noqa: F401  (registers the backbones)
from stetho.config import ResolvedAudioConfig
from stetho.features import LogMel
from stetho.models.pooling import create_pool
from stetho.models.registry import get_backbone_fn


def build_backbone(name: str, *, width: int) -> nn.Module:
    """A freshly initialised backbone from the registry (never downloads weights)."""
    return get_backbone_fn(name)(pretrained=False, pretrained_weights=None, width=width)


class Encoder(nn.Module):
    """``(B, samples)`` waveform -> ``(B, num_features)`` embedding.

    Only ``backbone`` is kept after pretraining; the front end is fixed (no weights) and its
    configuration travels with the backbone file instead.
    """

    def __init__(
        self, *, backbone: nn.Module, audio: ResolvedAudioConfig, pool: str = "Average"
    ) -> None:
        super().__init__()
        if audio.spectrogram_normalization == "Global":
            raise ValueError(
                "audio.spectrogram_normalization='Global' needs statistics of one training set; "
                "pretrain with 'Recording' (or 'No') so the backbone suits every dataset"
            )
        self.frontend = LogMel.from_config(audio)
        self.backbone = backbone
        features = backbone.num_features
        if not isinstance(features, int):
            raise TypeError(f"backbone {type(backbone).__name__} must expose num_features: int")
        self.pool = create_pool(pool, features)
        self.num_features = features

    def spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        return self.frontend(wave.float())

    def feature_map(self, spec: torch.Tensor) -> torch.Tensor:
        return self.backbone(spec)

    def embed_spectrogram(self, spec: torch.Tensor) -> torch.Tensor:
        return self.pool(self.feature_map(spec)).float()

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.embed_spectrogram(self.spectrogram(wave))
