"""Optimisers, learning-rate schedules and losses, chosen by name from the config."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stetho.config import TrainingConfig


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the base learning rate at ``step``: linear warm-up, then the schedule."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "Constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    if schedule == "Cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "Linear":
        return 1.0 - t
    raise ValueError(f"schedule={schedule!r}: expected Cosine, Linear or Constant")


#: Parameter-name prefix of the backbone in :class:`stetho.models.HeartSoundClassifier`.
BACKBONE_PREFIX = "backbone."


def param_groups(model: nn.Module, cfg: TrainingConfig) -> list[dict]:
    """Parameters whose name starts with one of ``differential_learning_rate_layers`` (e.g.
    ``backbone``) train at ``differential_learning_rate``; the rest at ``learning_rate``.
    Norm weights and biases get no weight decay. With a freeze configured (``linear_probe``,
    ``freeze_backbone_epochs``) the backbone's parameters get groups of their own, marked
    ``backbone: True``, so that :func:`set_lr` can hold them still through their groups
    without changing ``requires_grad`` (which DDP does not allow after it has wrapped the
    model). Without one the groups are as before (so a checkpoint of an older run still fits
    its optimiser on ``--resume``)."""
    prefixes = tuple(cfg.differential_learning_rate_layers)
    freezes = cfg.linear_probe or cfg.freeze_backbone_epochs > 0
    groups: dict[tuple[float, float, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = (
            cfg.differential_learning_rate
            if prefixes and name.startswith(prefixes)
            else cfg.learning_rate
        )
        wd = 0.0 if p.ndim <= 1 else cfg.weight_decay
        backbone = freezes and name.startswith(BACKBONE_PREFIX)
        groups.setdefault((lr, wd, backbone), []).append(p)
    return [
        {
            "params": ps,
            "lr": lr,
            "initial_lr": lr,
            "weight_decay": wd,
            "initial_weight_decay": wd,
            "backbone": backbone,
        }
        for (lr, wd, backbone), ps in groups.items()
    ]


def backbone_frozen(cfg: TrainingConfig, epoch: int) -> bool:
    """Whether the backbone is held still in ``epoch`` (0-based): ``linear_probe``, or one of
    the first ``freeze_backbone_epochs``."""
    return cfg.linear_probe or epoch < cfg.freeze_backbone_epochs


def set_lr(optimizer: torch.optim.Optimizer, factor: float, *, frozen: bool = False) -> None:
    """Every group at ``factor`` times its initial learning rate; with ``frozen`` the
    backbone's groups at 0, without weight decay and without gradients, so that the step
    leaves the backbone's weights exactly as they are and builds no optimiser state for them
    (they start fresh when the freeze ends)."""
    for g in optimizer.param_groups:
        if frozen and g.get("backbone", False):
            g["lr"], g["weight_decay"] = 0.0, 0.0
            for p in g["params"]:
                p.grad = None  # the optimiser skips a parameter without a gradient
        else:
            g["lr"] = g["initial_lr"] * factor
            g["weight_decay"] = g.get("initial_weight_decay", g["weight_decay"])


def create_optimizer(model: nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if cfg.optimizer == "AdamW":
        return torch.optim.AdamW(groups, lr=cfg.learning_rate)
    if cfg.optimizer == "Adam":
        return torch.optim.Adam(groups, lr=cfg.learning_rate)
    if cfg.optimizer == "SGD":
        return torch.optim.SGD(groups, lr=cfg.learning_rate, momentum=0.9, nesterov=True)
    raise ValueError(f"optimizer={cfg.optimizer!r}: expected AdamW, Adam or SGD")


def class_weight_vector(cfg: TrainingConfig, targets: np.ndarray) -> torch.Tensor | None:
    """``Auto``: inverse class frequency in the training fold, normalised to mean 1."""
    if cfg.class_weights is None:
        return None
    n_classes = targets.shape[1]
    if cfg.class_weights == "Auto":
        counts = targets.sum(axis=0) + 1.0
        w = counts.sum() / (n_classes * counts)
        return torch.tensor(w / w.mean(), dtype=torch.float32)
    if len(cfg.class_weights) != n_classes:
        raise ValueError(
            f"training.class_weights has {len(cfg.class_weights)} values; expected one per class "
            f"({n_classes})"
        )
    return torch.tensor(cfg.class_weights, dtype=torch.float32)


def _set_weight(members: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per row, the mean class weight over the row's set."""
    return (members * weights).sum(dim=1) / members.sum(dim=1).clamp(min=1)


def loss_fn(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    loss_function: str,
    label_smoothing: float = 0.0,
    class_weights: torch.Tensor | None = None,
    sample_weights: torch.Tensor | None = None,
    partial: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted mean loss over the batch; targets may be soft (mixing, pseudo-labels).

    ``partial`` marks rows whose target is a set label (``dataset.label_groups``: the class is
    one of the target's non-zero entries, which of them is unknown). Such a row asks only for
    the set: under CrossEntropy ``-log sum_{c in S} p_c`` (label smoothing as for one-hot
    rows, class weight the mean over S); under BCE every class outside S is a negative and
    "at least one of S" is the positive, ``-log(1 - prod_{c in S} (1 - sigmoid(x_c)))``.
    """
    n_classes = logits.shape[1]
    mask = None if partial is None or not bool(partial.any()) else partial.to(logits.device)
    members = target > 0
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / n_classes
    if loss_function == "BCE":
        cw = class_weights.to(logits.device) if class_weights is not None else None
        per_class = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        per = (per_class if cw is None else per_class * cw).mean(dim=1)
        if mask is not None:
            negative = F.binary_cross_entropy_with_logits(
                logits, torch.full_like(logits, label_smoothing / n_classes), reduction="none"
            )
            outside = (negative if cw is None else negative * cw) * ~members
            none_of_set = (F.logsigmoid(-logits) * members).sum(dim=1)  # log prod (1 - p_c)
            any_of_set = -torch.log(-torch.expm1(none_of_set.clamp(max=-1e-6)))
            if cw is not None:
                any_of_set = any_of_set * _set_weight(members, cw)
            per = torch.where(mask, (outside.sum(dim=1) + any_of_set) / n_classes, per)
    elif loss_function == "CrossEntropy":
        logp = F.log_softmax(logits, dim=1)
        w = class_weights.to(logits.device) if class_weights is not None else None
        per = -(target * logp * (1.0 if w is None else w)).sum(dim=1)
        if mask is not None:
            log_set = torch.logsumexp(logp.masked_fill(~members, float("-inf")), dim=1)
            uniform = -logp.mean(dim=1)
            set_loss = (1 - label_smoothing) * -log_set + label_smoothing * uniform
            if w is not None:
                set_loss = set_loss * _set_weight(members, w)
            per = torch.where(mask, set_loss, per)
    else:
        raise ValueError(f"loss_function={loss_function!r}: expected BCE or CrossEntropy")
    if sample_weights is None:
        return per.mean()
    return (per * sample_weights).sum() / sample_weights.sum().clamp(min=1e-8)
