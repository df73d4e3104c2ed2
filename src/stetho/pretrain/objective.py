"""Pretraining objectives: device-invariant self-supervision, masked multi-source supervision.

``ssl``
    NT-Xent / InfoNCE (Chen et al. 2020, SimCLR): the pooled backbone embedding goes through a
    projection head; the two device views of one excerpt are positives, every other excerpt of
    the batch is a negative. What survives is what the recorder does not change: the heart.
``supervised``
    One logit set per *task*, shared by the datasets that define it; a dataset that does not
    define a task (or a recording whose label is unsure) has target :data:`MASKED` there and
    contributes nothing to that task's loss or gradient (:func:`masked_cross_entropy`).
``both``
    ``ssl_weight * ssl + supervised_weight * supervised``.

Beside any of them, ``rhythm_weight > 0`` adds the beat-timing pretext task
(:mod:`stetho.pretrain.rhythm`): a linear head on each view's embedding tells a splice that
kept the beats in step from one that broke their rhythm (masked cross-entropy, unspliced
views masked), ``+ rhythm_weight * rhythm``; ``reconstruct_weight > 0`` adds masked-spectrogram
reconstruction (:mod:`stetho.pretrain.masking`): hidden time spans of each view predicted from
the backbone's feature map, ``+ reconstruct_weight * reconstruct``.

Label maps (:data:`LABEL_MAPS`, reader label -> class of a task; labels not listed are masked):

================  ===========================  =============================================
layout            task ``abnormal``            other tasks
================  ===========================  =============================================
physionet2016     normal, abnormal             -
circor            -                            ``murmur``: absent, present (unknown masked)
pascal            normal; murmur, extrastole,  ``murmur``: normal -> absent, murmur ->
                  extrahls -> abnormal;        present; ``pascal``: its five classes
                  artifact masked
================  ===========================  =============================================

PASCAL (the mission set) is listed so the vocabulary is complete, but
:mod:`stetho.pretrain.data` never passes its labels on: a backbone pretrained on the labels of
the set it is judged on would make every later benchmark on that set meaningless.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stetho.pretrain.masking import ReconstructionHead, masked_mse

#: Target of an entry the dataset does not define.
MASKED = -1

OBJECTIVES = ("ssl", "supervised", "both")

#: Classes of each task, in logit order.
TASKS: dict[str, tuple[str, ...]] = {
    "abnormal": ("normal", "abnormal"),
    "murmur": ("absent", "present"),
    "pascal": ("artifact", "extrahls", "extrastole", "murmur", "normal"),
}

#: layout -> task -> {reader label: task class}; a label missing from a task's map is masked.
LABEL_MAPS: dict[str, dict[str, dict[str, str]]] = {
    "physionet2016": {"abnormal": {"normal": "normal", "abnormal": "abnormal"}},
    "circor": {"murmur": {"absent": "absent", "present": "present"}},
    "pascal": {
        "abnormal": {
            "normal": "normal",
            "murmur": "abnormal",
            "extrastole": "abnormal",
            "extrahls": "abnormal",
        },
        "murmur": {"normal": "absent", "murmur": "present"},
        "pascal": {c: c for c in TASKS["pascal"]},
    },
}


def task_targets(layout: str, label: str | None) -> dict[str, int]:
    """Class index per task for one recording (:data:`MASKED` where undefined)."""
    maps = LABEL_MAPS.get(layout, {})
    out = {}
    for task, classes in TASKS.items():
        mapped = maps.get(task, {}).get(label) if label is not None else None
        out[task] = classes.index(mapped) if mapped is not None else MASKED
    return out


def tasks_of(layouts: list[str]) -> list[str]:
    """Tasks that at least one of ``layouts`` defines, in :data:`TASKS` order."""
    defined = {task for layout in layouts for task in LABEL_MAPS.get(layout, {})}
    return [task for task in TASKS if task in defined]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """NT-Xent loss of ``(B, D)`` projections whose rows ``i`` in ``z1`` and ``z2`` are positives.

    Each of the ``2B`` views is classified against the other ``2B - 1`` by cosine similarity
    over ``temperature``; the loss is the mean cross-entropy of picking its partner.
    """
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
        raise ValueError(
            f"nt_xent: expected two (B, D) tensors with B >= 2, got {tuple(z1.shape)} and "
            f"{tuple(z2.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}: expected > 0")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, partner)


def masked_cross_entropy(
    logits: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """Mean cross-entropy over the defined ``(recording, task)`` entries only.

    ``logits[task]`` is ``(B, n_classes)``, ``targets[task]`` is ``(B,)`` with :data:`MASKED`
    where the recording's dataset does not define the task. Masked entries get exactly zero
    gradient; with one task and nothing masked this is ``F.cross_entropy``. A batch without any
    defined entry gives a zero loss (still attached to the graph).
    """
    total: torch.Tensor | None = None
    count = 0
    for task, task_logits in logits.items():
        target = targets[task].to(task_logits.device)
        defined = target != MASKED
        n = int(defined.sum())
        if n == 0:
            continue
        part = F.cross_entropy(task_logits[defined].float(), target[defined], reduction="sum")
        total = part if total is None else total + part
        count += n
    if total is None:
        return sum((t.sum() for t in logits.values()), torch.zeros(())) * 0.0
    return total / count


class ProjectionHead(nn.Module):
    """SimCLR's MLP: Linear -> BatchNorm -> ReLU -> Linear; discarded after pretraining."""

    def __init__(self, in_features: int, *, hidden: int = 256, out_features: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass(frozen=True)
class ObjectiveConfig:
    """Which objective and its weights; ``tasks`` are the supervised tasks with logits."""

    objective: str = "ssl"
    temperature: float = 0.1
    projection_dim: int = 128
    projection_hidden: int = 256
    ssl_weight: float = 1.0
    supervised_weight: float = 1.0
    tasks: tuple[str, ...] = ()
    #: Weight of the beat-timing pretext task; 0 leaves it out (no head, no splices).
    rhythm_weight: float = 0.0
    #: Weight of masked-spectrogram reconstruction; 0 leaves it out (no head, no masks).
    reconstruct_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective={self.objective!r}: expected one of {OBJECTIVES}")
        for name in ("rhythm_weight", "reconstruct_weight"):
            value = getattr(self, name)
            if value < 0 or not math.isfinite(value):
                raise ValueError(f"{name}={value}: expected a number >= 0")
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature}: expected > 0")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {list(TASKS)}")
        if self.uses_labels and not self.tasks:
            raise ValueError(
                f"objective={self.objective!r} needs labels, but no source defines any task "
                f"(labelled layouts: {', '.join(k for k in LABEL_MAPS if k != 'pascal')}); "
                "add such a source or use --objective ssl"
            )

    @property
    def uses_ssl(self) -> bool:
        return self.objective in ("ssl", "both")

    @property
    def uses_labels(self) -> bool:
        return self.objective in ("supervised", "both")


class PretrainObjective(nn.Module):
    """Heads and losses on top of pooled backbone embeddings ``(B, C)``."""

    def __init__(
        self,
        in_features: int,
        config: ObjectiveConfig,
        *,
        reconstruction: ReconstructionHead | None = None,
    ) -> None:
        super().__init__()
        if (reconstruction is None) != (config.reconstruct_weight == 0):
            raise ValueError(
                "a ReconstructionHead is passed exactly when reconstruct_weight > 0 "
                f"(reconstruct_weight={config.reconstruct_weight})"
            )
        self.config = config
        self.projection = (
            ProjectionHead(
                in_features, hidden=config.projection_hidden, out_features=config.projection_dim
            )
            if config.uses_ssl
            else None
        )
        self.heads = nn.ModuleDict(
            {task: nn.Linear(in_features, len(TASKS[task])) for task in config.tasks}
            if config.uses_labels
            else {}
        )
        self.rhythm = nn.Linear(in_features, 2) if config.rhythm_weight > 0 else None
        self.reconstruction = reconstruction

    def forward(
        self,
        e1: torch.Tensor,
        e2: torch.Tensor,
        targets: Mapping[str, torch.Tensor] | None = None,
        masked: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Losses for embeddings of view 1 and view 2: ``ssl``, ``supervised``, ``rhythm``
        (``targets["rhythm"]``: ``(2B,)``, view 1's splices then view 2's), ``reconstruct``
        (``masked``: the feature map of the masked views, their unmasked spectrograms
        ``(2B, 1, n_mels, frames)`` and the masks ``(2B, frames)``), ``loss``."""
        cfg = self.config
        out: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=e1.device)
        if self.projection is not None:
            out["ssl"] = nt_xent(
                self.projection(e1), self.projection(e2), temperature=cfg.temperature
            )
            total = total + cfg.ssl_weight * out["ssl"]
        if len(self.heads):
            if targets is None:
                raise ValueError("the supervised objective needs targets")
            # Both views carry the same label: each is a labelled example of another device.
            logits = {t: torch.cat([h(e1), h(e2)]) for t, h in self.heads.items()}
            doubled = {t: torch.cat([targets[t], targets[t]]) for t in self.heads}
            out["supervised"] = masked_cross_entropy(logits, doubled)
            total = total + cfg.supervised_weight * out["supervised"]
        if self.rhythm is not None:
            if targets is None or "rhythm" not in targets:
                raise ValueError("the rhythm task needs targets['rhythm'] (the views' splices)")
            logits = self.rhythm(torch.cat([e1, e2]))
            out["rhythm"] = masked_cross_entropy({"rhythm": logits}, {"rhythm": targets["rhythm"]})
            total = total + cfg.rhythm_weight * out["rhythm"]
        if self.reconstruction is not None:
            if masked is None:
                raise ValueError("reconstruction needs the masked views' feature map and masks")
            fmap, spec, masks = masked
            prediction = self.reconstruction(fmap, spec.shape[-1])
            out["reconstruct"] = masked_mse(prediction, spec[:, 0], masks)
            total = total + cfg.reconstruct_weight * out["reconstruct"]
        out["loss"] = total
        return out
