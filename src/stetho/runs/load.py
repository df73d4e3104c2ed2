"""The experiment folder: its layout, and loading a finished run for scoring.

```
runs/<name>/
  config.yaml              resolved config (every Auto filled in)
  warnings.json            what the resolver and the data checks warned about
  labels.json              {"classes": [...], "loss_function": ..., "sample_rate": ...}
  manifest.parquet         the data, with the fold column used
  skipped.csv              files that could not be used, with the reason
  fold-<k>/model.safetensors   weights (no pickle), one per trained fold
  fold-<k>/history.json    that fold's epochs
  metrics.jsonl            one line per epoch and fold
  oof_predictions.parquet  path, fold, label, source, patient, prob_<class>...
  summary.json             per-fold, pooled and per-source metrics
  environment.json         versions, seed, git commit, device
```

While training, the folder is ``<name>.partial``; it is renamed to ``<name>`` only when
complete, so a crashed run never looks finished and ``--resume`` knows where to continue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from stetho.config import Config, load_config
from stetho.scoring.chunking import predict_recordings
from stetho.io import atomic_path
from stetho.models import HeartSoundClassifier, create_model

CONFIG = "config.yaml"
LABELS = "labels.json"
MODEL = "model.safetensors"


def fold_dir(run_dir: Path, fold: int) -> Path:
    return Path(run_dir) / f"fold-{fold}"


def partial_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + ".partial")


def save_model(
    model: torch.nn.Module, path: Path, *, metadata: dict[str, str] | None = None
) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


@dataclass
class Run:
    """A finished experiment, ready to score recordings."""

    path: Path
    config: Config
    classes: list[str]
    folds: list[int]
    models: list[HeartSoundClassifier]
    n_extra_features: int = 0

    @property
    def sample_rate(self) -> int:
        return int(self.config.audio.sample_rate)

    def predict_waves(
        self,
        waves: list[np.ndarray],
        *,
        extras: list[np.ndarray] | None = None,
        batch_size: int = 64,
    ) -> np.ndarray:
        """``(n, n_classes)`` mean fold-ensemble probabilities; waves at :attr:`sample_rate`."""
        return predict_recordings(
            self.models,
            waves,
            sample_rate=self.sample_rate,
            prediction=self.config.prediction,
            loss_function=self.config.training.loss_function,
            extras=extras,
            batch_size=batch_size,
        )


def load_run(run_dir: str | Path, *, folds: list[int] | None = None) -> Run:
    """Load a finished run's config and fold models (safetensors: no code is executed)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        hint = (
            " (training still running or crashed: see --resume)"
            if partial_dir(run_dir).exists()
            else ""
        )
        raise FileNotFoundError(f"{run_dir}: not a finished stetho run, no {CONFIG}{hint}")
    config = load_config(run_dir / CONFIG)
    labels = json.loads((run_dir / LABELS).read_text())
    classes = list(labels["classes"])
    n_extra = int(labels.get("n_extra_features", 0))
    available = sorted(int(p.parent.name.split("-", 1)[1]) for p in run_dir.glob(f"fold-*/{MODEL}"))
    if not available:
        raise FileNotFoundError(f"{run_dir}: no fold-*/{MODEL} found")
    chosen = available if folds is None else folds
    missing = sorted(set(chosen) - set(available))
    if missing:
        raise ValueError(f"{run_dir}: fold(s) {missing} not trained; available folds: {available}")
    models = [
        load_model(
            config, fold_dir(run_dir, k) / MODEL, n_classes=len(classes), n_extra_features=n_extra
        )
        for k in chosen
    ]
    return Run(
        path=run_dir,
        config=config,
        classes=classes,
        folds=chosen,
        models=models,
        n_extra_features=n_extra,
    )


def load_model(
    config: Config, path: Path, *, n_classes: int, n_extra_features: int = 0
) -> HeartSoundClassifier:
    """One fold's classifier from its safetensors file, in eval mode."""
    model = create_model(_offline(config), n_classes, n_extra_features=n_extra_features)
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def _offline(config: Config) -> Config:
    """Weights come from the run folder: never fetch pretrained ones to build the skeleton."""
    cfg = config.model_copy(deep=True)
    cfg.architecture.pretrained = False
    cfg.architecture.pretrained_weights = None
    return cfg
