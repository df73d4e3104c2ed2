"""HeartNet: a compact CNN for short, band-limited phonocardiograms, built for CPU speed.

Design, from the signal rather than from ImageNet:
- Heart sounds and murmurs live below ~600 Hz and the front end already band-limits to
  1 kHz, so the input is small (64 mel bands x 62 frames/s); no ImageNet-sized stem.
- Events are short (S1/S2: 50-150 ms, 3-9 frames) but their *spacing* carries the diagnosis
  (extra sounds, premature beats), so early stages pool frequency faster than time and the
  last stage uses dilated time convolutions to see ~2 cardiac cycles.
- Stages are residual blocks with one full 3x3 convolution and a depthwise 3x3, which keeps
  the multiply-adds per 6 s chunk near 40 M: hundreds of chunks per second on two CPU cores.
"""

from __future__ import annotations

import torch
from torch import nn

from stetho.models.pretrained import DEFAULT_BACKBONE, PACKAGED_PREFIX
from stetho.models.registry import register_backbone


def _conv_bn(c_in: int, c_out: int, *, kernel=(3, 3), stride=(1, 1), dilation=(1, 1), groups=1):
    pad = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    )


class Block(nn.Module):
    """Residual block: full conv (may stride) -> ReLU -> depthwise conv (may dilate in time)."""

    def __init__(self, c_in: int, c_out: int, *, stride=(2, 2), time_dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv_bn(c_in, c_out, stride=stride)
        self.conv2 = _conv_bn(c_out, c_out, dilation=(1, time_dilation), groups=c_out)
        self.pw = _conv_bn(c_out, c_out, kernel=(1, 1))
        self.short = (
            nn.Identity()
            if c_in == c_out and stride == (1, 1)
            else _conv_bn(c_in, c_out, kernel=(1, 1), stride=stride)
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv1(x))
        y = self.pw(self.act(self.conv2(y)))
        return self.act(y + self.short(x))


class HeartNet(nn.Module):
    """``(B, 1, n_mels, frames)`` -> ``(B, 8 * width, n_mels / 16, frames / 8)``."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(_conv_bn(1, w // 2, stride=(2, 1)), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(
            Block(w // 2, w, stride=(2, 2)),
            Block(w, 2 * w, stride=(2, 2)),
            Block(2 * w, 4 * w, stride=(2, 2), time_dilation=2),
            Block(4 * w, 8 * w, stride=(1, 1), time_dilation=4),
        )
        self.num_features = 8 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


@register_backbone("heartnet")
def heartnet(*, pretrained: bool = False, pretrained_weights: str | None = None, width: int = 32):
    if pretrained_weights:
        # stetho's own backbone files are loaded (and front-end checked) by create_backbone;
        # anything that reaches the builder is not one of them.
        raise ValueError(
            f"{pretrained_weights}: not a stetho pretrained backbone; heartnet loads files "
            "written by `stetho pretrain` (docs/pretraining.md)"
        )
    if pretrained:
        # Its pretrained weights are a packaged stetho backbone, which needs the front-end
        # check that only create_backbone can make.
        raise ValueError(
            f"heartnet's pretrained weights ({PACKAGED_PREFIX}{DEFAULT_BACKBONE}) are loaded by "
            "stetho.models.create_backbone, which checks them against the front end; build "
            "the model through create_model(config)"
        )
    return HeartNet(width=width)
