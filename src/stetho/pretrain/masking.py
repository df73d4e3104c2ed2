"""Masked-spectrogram reconstruction (``stetho pretrain --reconstruct-weight``): hide stretches
of each view's log-mel spectrogram and predict them from the backbone's feature map.

Contrastive positives teach what two views of one heart share, which is mostly timbre; the
rhythm task's splice taught timing through a proxy that a premature beat does not resemble
(benchmarks/results/backbone.md, sixth measurement). Here the network has to fill in the heart
where it cannot hear it. Spans of 0.25-0.5 s (an S1 or an S2 with its surroundings) covering
about :data:`MASK_FRACTION` of the frames are set to 0, the per-recording mean of a
``Recording``-normalised spectrogram, and a linear head on each time step of the feature map
predicts the frames under that step. To put a hidden beat back the features must know when
the next one is due and what it sounds like. The loss is the mean squared error over masked
frames only: an unmasked frame can be copied through the residual path and teaches nothing.

Masks are a function of ``(seed, step)`` (:func:`time_masks`), so a resumed run masks exactly
as an uninterrupted one.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

#: Fraction of an excerpt's frames hidden (spans are drawn until it is reached).
MASK_FRACTION = 0.3
#: Length of one hidden span (s).
SPAN_SECONDS = (0.25, 0.5)
#: Keeps the mask stream apart from the batches' (which are drawn from ``(seed, step)`` too).
_STREAM = 0x6D61736B


def mask_generator(seed: int, step: int) -> torch.Generator:
    """The generator of step ``step``'s masks: a function of ``(seed, step)`` only."""
    state = np.random.SeedSequence([seed, step, _STREAM]).generate_state(1, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0]) & (2**63 - 1))


def time_masks(
    n: int,
    frames: int,
    *,
    frames_per_second: float,
    generator: torch.Generator,
    fraction: float = MASK_FRACTION,
    span_seconds: tuple[float, float] = SPAN_SECONDS,
) -> torch.Tensor:
    """``(n, frames)`` bool, True where a frame is hidden: spans of ``span_seconds`` at uniform
    positions, drawn until at least ``fraction`` of the frames of each row are hidden (spans
    may overlap; a span is never longer than the excerpt)."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction}: expected 0 < fraction < 1")
    lo, hi = (max(1, round(s * frames_per_second)) for s in span_seconds)
    if lo > hi:
        raise ValueError(f"span_seconds={span_seconds}: expected (shortest, longest)")
    masks = torch.zeros(n, frames, dtype=torch.bool)
    target = math.ceil(fraction * frames)
    for row in masks:
        while int(row.sum()) < target:
            length = min(frames, int(torch.randint(lo, hi + 1, (1,), generator=generator)))
            start = int(torch.randint(0, frames - length + 1, (1,), generator=generator))
            row[start : start + length] = True
    return masks


def apply_masks(spec: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``spec`` ``(B, 1, n_mels, frames)`` with the hidden frames set to 0 (a normalised
    spectrogram's mean, so the hidden stretch carries neither energy nor silence)."""
    if masks.shape != (spec.shape[0], spec.shape[-1]):
        raise ValueError(
            f"masks of shape {tuple(masks.shape)} do not fit spectrograms {tuple(spec.shape)}"
        )
    return spec.masked_fill(masks[:, None, None, :].to(spec.device), 0.0)


class ReconstructionHead(nn.Module):
    """Feature map ``(B, C, F', T')`` -> predicted spectrogram ``(B, n_mels, frames)``.

    Each time step of the map predicts the ``stride`` frames it covers (all its frequency rows
    together: a 1x1 convolution over ``C * F'`` channels); discarded after pretraining.
    """

    def __init__(self, channels: int, n_mels: int, stride: int) -> None:
        super().__init__()
        if stride < 1:
            raise ValueError(f"stride={stride}: expected >= 1")
        self.n_mels, self.stride = n_mels, stride
        self.proj = nn.Conv1d(channels, n_mels * stride, kernel_size=1)

    @classmethod
    def for_backbone(
        cls, backbone: nn.Module, n_mels: int, frames: int = 256
    ) -> ReconstructionHead:
        """A head sized by running ``backbone`` once on a blank ``(1, 1, n_mels, frames)``."""
        was_training = backbone.training
        backbone.eval()
        with torch.no_grad():
            fmap = backbone(torch.zeros(1, 1, n_mels, frames))
        backbone.train(was_training)
        _, c, f, t = fmap.shape
        return cls(c * f, n_mels, stride=math.ceil(frames / t))

    def forward(self, fmap: torch.Tensor, frames: int) -> torch.Tensor:
        b, c, f, t = fmap.shape
        out = self.proj(fmap.reshape(b, c * f, t).float())  # (B, n_mels * stride, T')
        out = out.reshape(b, self.n_mels, self.stride, t).permute(0, 1, 3, 2)
        out = out.reshape(b, self.n_mels, t * self.stride)
        if out.shape[-1] < frames:
            # a backbone that rounds its time steps down leaves the last frames unpredicted:
            # repeat the last prediction rather than fail
            out = torch.cat([out, out[..., -1:].expand(-1, -1, frames - out.shape[-1])], -1)
        return out[..., :frames]


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean squared error of ``prediction`` vs ``target`` (both ``(B, n_mels, frames)``) over the
    hidden frames of ``masks`` ``(B, frames)`` only; 0 (attached) when nothing is hidden."""
    if prediction.shape != target.shape or masks.shape != (target.shape[0], target.shape[-1]):
        raise ValueError(
            f"masked_mse: prediction {tuple(prediction.shape)}, target {tuple(target.shape)} "
            f"and masks {tuple(masks.shape)} do not match"
        )
    hidden = masks[:, None, :].to(prediction.device).expand_as(prediction)
    n = int(hidden.sum())
    if n == 0:
        return prediction.sum() * 0.0
    return ((prediction.float() - target.float()) ** 2)[hidden].sum() / n
