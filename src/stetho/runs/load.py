"""Loading a finished run for scoring, and saving fold weights.

The folder layout is :mod:`stetho.runs.folder`. Scoring recordings with a loaded run is
:mod:`stetho.scoring` (this layer sits below it and never imports it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from stetho.config import ResolvedConfig, load_resolved_config
from stetho.io import ArtifactError, atomic_path
from stetho.models import HeartSoundClassifier, create_model
from stetho.runs.folder import RunFolder
from stetho.runs.zoo import refuse_model_name

CONFIG = RunFolder(".").config.name
LABELS = RunFolder(".").labels.name
MODEL = RunFolder(".").fold_model(0).name


def fold_dir(run_dir: Path, fold: int) -> Path:
    return RunFolder(run_dir).fold_dir(fold)


def partial_dir(run_dir: Path) -> Path:
    return RunFolder(run_dir).working().root


def save_model(
    model: torch.nn.Module, path: Path, *, metadata: dict[str, str] | None = None
) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


@dataclass
class Run:
    """A finished experiment, ready to score recordings (see :mod:`stetho.scoring`)."""

    path: Path
    config: ResolvedConfig
    classes: list[str]
    folds: list[int]
    models: list[HeartSoundClassifier]
    n_extra_features: int = 0
    #: The stored ``decision.json`` (:meth:`stetho.decision.DecisionRule.to_dict`), if any.
    decision: dict[str, Any] | None = None

    @property
    def sample_rate(self) -> int:
        return self.config.audio.sample_rate

    @property
    def loss_function(self) -> str:
        return str(self.config.training.loss_function)

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.path)


def load_run(run_dir: str | Path, *, folds: list[int] | None = None) -> Run:
    """Load a finished run's config and fold models (safetensors: no code is executed).

    Raises ``FileNotFoundError`` for a folder that is not a finished run, ``ValueError`` for
    folds that were not trained and for a ready model's ``stetho:NAME`` (a pipeline, not a
    run), :class:`~stetho.io.ArtifactError` for unusable files.
    """
    refuse_model_name(run_dir, needs="this command")
    rf = RunFolder(run_dir)
    if not rf.config.is_file():
        hint = (
            " (training still running or crashed: see --resume)"
            if rf.working().root.exists()
            else ""
        )
        raise FileNotFoundError(f"{rf.root}: not a finished stetho run, no {CONFIG}{hint}")
    config = load_resolved_config(rf.config)
    labels = _read_json(rf.labels, remedy="restore the run folder or retrain")
    if not isinstance(labels, dict) or not isinstance(labels.get("classes"), list):
        raise ArtifactError(rf.labels, "no class list", "restore the run folder or retrain")
    classes = [str(c) for c in labels["classes"]]
    n_extra = int(labels.get("n_extra_features", 0))
    decision = None
    if rf.decision.is_file():
        decision = _read_json(rf.decision, remedy="fix or delete it (the default rule is used)")
    available = rf.trained_folds()
    if not available:
        raise FileNotFoundError(f"{rf.root}: no fold-*/{MODEL} found")
    chosen = available if folds is None else folds
    missing = sorted(set(chosen) - set(available))
    if missing:
        raise ValueError(f"{rf.root}: fold(s) {missing} not trained; available folds: {available}")
    models = [
        load_model(config, rf.fold_model(k), n_classes=len(classes), n_extra_features=n_extra)
        for k in chosen
    ]
    return Run(
        path=rf.root,
        config=config,
        classes=classes,
        folds=chosen,
        models=models,
        n_extra_features=n_extra,
        decision=decision,
    )


def load_model(
    config: ResolvedConfig, path: Path, *, n_classes: int, n_extra_features: int = 0
) -> HeartSoundClassifier:
    """One fold's classifier from its safetensors file, in eval mode.

    A file that is not safetensors (empty, truncated, a pickle, random bytes) or holds other
    weights than the config's model raises :class:`~stetho.io.ArtifactError`.
    """
    remedy = "restore this file from a backup or retrain the run (stetho train)"
    model = create_model(_offline(config), n_classes, n_extra_features=n_extra_features)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        size = path.stat().st_size if path.is_file() else 0
        what = "empty file (0 bytes)" if size == 0 else f"not a safetensors file ({exc})"
        raise ArtifactError(path, f"unreadable model weights: {what}", remedy) from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise ArtifactError(
            path,
            f"the weights do not fit this run's model ({config.architecture.backbone}): {detail}",
            remedy,
        ) from None
    return model.eval()


def _read_json(path: Path, *, remedy: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, f"not valid JSON ({exc})", remedy) from None


def _offline(config: ResolvedConfig) -> ResolvedConfig:
    """Weights come from the run folder: never fetch pretrained ones to build the skeleton."""
    cfg = config.model_copy(deep=True)
    cfg.architecture.pretrained = False
    cfg.architecture.pretrained_weights = None
    cfg.architecture.pretrained_layers = None
    return cfg
