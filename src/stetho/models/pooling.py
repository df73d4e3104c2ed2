"""Global pooling of a ``(batch, channels, f, t)`` feature map to ``(batch, channels)``."""

from __future__ import annotations

import torch
from torch import nn


class GeM(nn.Module):
    """Generalised mean pooling (Radenovic et al., 2018): p=1 is average, p->inf is max."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class AttentionPool(nn.Module):
    """Average over frequency, then attention-weighted average over time.

    A heart sound recording is a train of short events; letting the model weight the frames
    that hold them (an extra beat, a murmur) beats a plain mean over mostly-silent diastole.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.score = nn.Conv1d(channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(dim=2)  # (B, C, T)
        w = torch.softmax(self.score(x), dim=-1)
        return (x * w).sum(dim=-1)


def create_pool(name: str, channels: int) -> nn.Module:
    if name == "Average":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    if name == "Max":
        return nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(1))
    if name == "GeM":
        return GeM()
    if name == "Attention":
        return AttentionPool(channels)
    raise ValueError(f"pool={name!r}: expected one of Average, Max, GeM, Attention")


__all__ = ["GeM", "AttentionPool", "create_pool"]
