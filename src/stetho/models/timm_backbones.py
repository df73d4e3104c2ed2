"""Hydrogen Torch's image backbones (ResNets, EfficientNets) through timm.

``pretrained: true`` asks timm for the published ImageNet weights; where they cannot be fetched
(no network, as on our CI machines) the run goes on from random initialisation and the caller
records a loud warning. ``pretrained_weights`` names a local file instead (timm loads it with
``weights_only`` semantics: safetensors or a plain state dict). timm adapts the first
convolution to one input channel by summing the RGB filters.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import timm
import torch
from torch import nn

from stetho.models.pretrained import DEFAULT_BACKBONE, PACKAGED_PREFIX
from stetho.models.registry import register_backbone

logger = logging.getLogger(__name__)

TIMM_NAMES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "mobilenetv3_large_100",
)


#: Backbones whose download failed in this process: retrying costs a minute of network
#: time-outs per fold for the same answer.
_UNAVAILABLE: dict[str, str] = {}


class PretrainedWeightsUnavailable(UserWarning):
    """``pretrained: true`` could not be honoured; the model starts from random weights."""


@contextlib.contextmanager
def _hub_logs_once() -> Iterator[None]:
    """huggingface_hub logs each download retry through its own handler *and* propagates it
    to the root logger, so every retry line appeared twice: keep its own handler only."""
    hub = logging.getLogger("huggingface_hub")
    if not hub.handlers:
        yield
        return
    before = hub.propagate
    hub.propagate = False
    try:
        yield
    finally:
        hub.propagate = before


class TimmBackbone(nn.Module):
    #: timm's model; typed loosely because timm's models share no typed base with
    #: ``forward_features``.
    body: Any
    num_features: int

    def __init__(self, name: str, *, pretrained: bool, pretrained_weights: str | None) -> None:
        super().__init__()
        kwargs: dict[str, Any] = {"num_classes": 0, "global_pool": "", "in_chans": 1}
        if pretrained_weights:
            self.body = timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay={"file": pretrained_weights}, **kwargs
            )
        elif pretrained:
            if name not in _UNAVAILABLE:
                try:
                    with _hub_logs_once():
                        self.body = timm.create_model(name, pretrained=True, **kwargs)
                except Exception as exc:  # noqa: BLE001 - any hub/network failure means the same
                    _UNAVAILABLE[name] = (
                        f"PRETRAINED WEIGHTS UNAVAILABLE for {name}: timm could not fetch its "
                        f"ImageNet weights ({type(exc).__name__}: {str(exc)[:200]}). This model "
                        "starts from RANDOM initialisation; to use pretrained weights offline, "
                        "name a local weights file in architecture.pretrained_weights. stetho "
                        "also ships a heart-sound backbone that needs no network: "
                        "architecture.backbone: heartnet with pretrained: true "
                        f"({PACKAGED_PREFIX}{DEFAULT_BACKBONE})."
                    )
            if name in _UNAVAILABLE:
                warnings.warn(_UNAVAILABLE[name], PretrainedWeightsUnavailable, stacklevel=2)
                self.body = timm.create_model(name, pretrained=False, **kwargs)
        else:
            self.body = timm.create_model(name, pretrained=False, **kwargs)
        self.num_features = self.body.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.forward_features(x)


def _make(name: str) -> Callable[..., TimmBackbone]:
    def build(
        *, pretrained: bool = False, pretrained_weights: str | None = None, width: int = 32
    ) -> TimmBackbone:
        return TimmBackbone(name, pretrained=pretrained, pretrained_weights=pretrained_weights)

    build.__name__ = name
    return build


for _name in TIMM_NAMES:
    register_backbone(_name)(_make(_name))
