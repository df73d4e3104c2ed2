"""Resume state of a pretraining run: a flat dict of tensors, written atomically.

Only tensors go in (model and optimiser state, step, elapsed time, gradient-scaler scale), so
the checkpoint loads with ``torch.load(weights_only=True)`` and runs no code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from stetho.io import ArtifactError, atomic_path

#: Config fields a resume may change; any other difference is refused.
RESUMABLE_CHANGES = ("steps", "minutes", "threads", "workers", "progress")


def resume_state(
    modules: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    *,
    step: int,
    elapsed: float,
) -> dict[str, torch.Tensor]:
    """The resume state as a flat dict of tensors (nothing else, so weights_only loads it)."""
    out = {f"model.{k}": v.detach().cpu() for k, v in modules.state_dict().items()}
    for index, slots in optimizer.state_dict()["state"].items():
        for name, value in slots.items():
            out[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu()
    if scaler is not None and scaler.is_enabled():
        out["scaler.scale"] = torch.tensor(scaler.get_scale())
    out["meta.step"] = torch.tensor(step, dtype=torch.int64)
    out["meta.elapsed_s"] = torch.tensor(elapsed, dtype=torch.float64)
    return out


def restore_state(
    state: dict[str, torch.Tensor],
    modules: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
) -> tuple[int, float]:
    modules.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(
        {"state": slots, "param_groups": optimizer.state_dict()["param_groups"]}
    )
    if scaler is not None and "scaler.scale" in state:
        scaler.update(float(state["scaler.scale"]))
    return int(state["meta.step"]), float(state["meta.elapsed_s"])


def save_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise ArtifactError(
            path, f"unreadable checkpoint ({exc})", "start again without --resume in a new --out"
        ) from None


def check_resume(
    stored: dict[str, Any],
    current: dict[str, Any],
    path: Path,
    *,
    defaults: dict[str, Any] | None = None,
) -> None:
    """Refuse a resume whose config differs from the stored one (but for
    :data:`RESUMABLE_CHANGES`). A key the stored config lacks was added to stetho after that
    run started, which then ran with the key's value in ``defaults``."""
    current = json.loads(json.dumps(current, default=str))
    defaults = json.loads(json.dumps(defaults or {}, default=str))
    diffs = [
        f"{k}: was {stored.get(k, defaults.get(k))!r}, now {current[k]!r}"
        for k in current
        if k not in RESUMABLE_CHANGES and stored.get(k, defaults.get(k)) != current[k]
    ]
    if diffs:
        raise ValueError(
            f"{path}: --resume with another config ({'; '.join(diffs)}); resume with the "
            "original options or start a new run in another --out"
        )


def trim_losses(path: Path, step: int) -> None:
    """Drop loss lines written after the checkpoint (they are recomputed on resume)."""
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line)["step"] < step
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
