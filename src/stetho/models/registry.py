"""Backbones are found by name: a config says ``resnet18`` or ``heartnet`` and nothing else.

A backbone builder takes ``(pretrained, pretrained_weights, width)`` and returns an
``nn.Module`` mapping ``(batch, 1, n_mels, frames)`` to a feature map
``(batch, channels, f, t)`` and exposing ``num_features``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from torch import nn

BackboneFn = Callable[..., nn.Module]
_BACKBONES: dict[str, BackboneFn] = {}


def register_backbone(name: str) -> Callable[[BackboneFn], BackboneFn]:
    def deco(fn: BackboneFn) -> BackboneFn:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        _BACKBONES[name] = fn
        return fn

    return deco


def list_backbones(pattern: str = "*") -> list[str]:
    return sorted(n for n in _BACKBONES if fnmatch.fnmatch(n, pattern))


def is_backbone(name: str) -> bool:
    return name in _BACKBONES


def get_backbone_fn(name: str) -> BackboneFn:
    try:
        return _BACKBONES[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; registered backbones: {', '.join(list_backbones())}"
        ) from None
