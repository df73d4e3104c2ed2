"""A fold's training state between epochs (``fold-<k>/checkpoint.pt``).

The checkpoint carries the config it was trained with and the classes, so that ``--resume``
can tell that it belongs to this run. It holds only tensors and plain values and loads with
``torch.load(weights_only=True)``: a file that would need code execution to load, a truncated
one, or one of another run is refused with :class:`stetho.io.ArtifactError`.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from stetho.config import Config, trained_result_keys
from stetho.io import ArtifactError, atomic_path

#: What every checkpoint holds besides the training state.
REQUIRED = ("model", "optimizer", "scaler", "epoch", "step", "history", "config", "classes")


def save_checkpoint(
    path: Path, state: dict[str, Any], *, config: Config, classes: list[str], fold: int
) -> None:
    """Write ``state`` (model, optimizer, scaler, epoch, ...) with ``config`` and ``classes``,
    atomically."""
    payload = {**state, "config": config.to_dict(), "classes": list(classes), "fold": fold}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(
    path: Path,
    *,
    config: Config,
    classes: list[str],
    fold: int,
    map_location: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` for this ``config``, ``classes``
    and ``fold``; anything else raises :class:`~stetho.io.ArtifactError` naming the file."""
    remedy = (
        f"delete {path} to retrain fold {fold} from its first epoch with --resume, or delete "
        f"{path.parent.parent} to start the run over"
    )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ArtifactError(
            path,
            "not a loadable training checkpoint (truncated, or not written by stetho and "
            f"needing code execution to load: {type(exc).__name__}: {reason})",
            remedy,
        ) from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        missing = [k for k in REQUIRED if not isinstance(ckpt, dict) or k not in ckpt]
        raise ArtifactError(path, f"not a stetho training checkpoint (no {missing})", remedy)
    if list(ckpt["classes"]) != list(classes):
        raise ArtifactError(
            path, f"trained for classes {ckpt['classes']}, this run has {classes}", remedy
        )
    if int(ckpt.get("fold", fold)) != fold:
        raise ArtifactError(path, f"a checkpoint of fold {ckpt['fold']}, not {fold}", remedy)
    stored, current = trained_result_keys(ckpt["config"]), trained_result_keys(config)
    changed = sorted(k for k in current if stored.get(k) != current[k])
    if changed:
        detail = ", ".join(f"{k}: {stored.get(k)!r} -> {current[k]!r}" for k in changed[:5])
        raise ArtifactError(path, f"trained with another config ({detail})", remedy)
    return ckpt
