"""Waveform-in, logits-out classifier: front end -> backbone -> pooling -> dropout -> head.

The front end is part of the model, so one graph serves training, scoring and ONNX export.
``forward_spec`` and ``forward_features`` expose the intermediate steps for explanations.
"""

from __future__ import annotations

import torch
from torch import nn

from stetho.features import LogMel
from stetho.models.pooling import create_pool


class HeartSoundClassifier(nn.Module):
    def __init__(
        self,
        *,
        frontend: LogMel,
        backbone: nn.Module,
        n_classes: int,
        pool: str = "GeM",
        dropout: float = 0.0,
        n_extra_features: int = 0,
    ) -> None:
        super().__init__()
        self.frontend = frontend
        self.backbone = backbone
        channels = getattr(backbone, "num_features", None)
        if not isinstance(channels, int):
            raise TypeError(f"backbone {type(backbone).__name__} does not expose num_features")
        self.pool = create_pool(pool, channels)
        self.dropout = nn.Dropout(dropout)
        self.n_extra_features = n_extra_features
        self.head = nn.Linear(channels + n_extra_features, n_classes)

    def forward_features(self, spec: torch.Tensor) -> torch.Tensor:
        """``(B, 1, n_mels, frames)`` -> backbone feature map ``(B, C, f, t)``."""
        return self.backbone(spec)

    def forward_head(self, fmap: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        z = self.dropout(self.pool(fmap))
        if self.n_extra_features:
            if extra is None:
                raise ValueError(
                    f"this model needs {self.n_extra_features} extra features per recording"
                )
            z = torch.cat([z, extra.to(z.dtype)], dim=1)
        return self.head(z)

    def forward_spec(self, spec: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(spec), extra)

    def forward(self, wave: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, samples)`` waveform at the front end's sample rate -> ``(B, n_classes)`` logits."""
        return self.forward_spec(self.frontend(wave), extra)
