"""The pretraining loop: budgeted, seeded, resumable; writes the run folder and the backbone.

Batch ``k`` is a function of ``(seed, k)`` (:class:`~stetho.pretrain.data.PretrainBatches`) and
the weights are initialised from ``seed``, so a run resumed from its checkpoint ends with the
same weights as an uninterrupted one (on the same device and thread count). The checkpoint is a
flat dict of tensors written atomically every ``checkpoint_every`` steps, at the end of the
budget and on Ctrl-C; it loads with ``torch.load(weights_only=True)``.

On CUDA the backbone runs under autocast (bfloat16 where supported, else float16 with a gradient
scaler); the front end and the losses stay in float32. On CPU ``threads`` pins torch's threads.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from stetho.config import Config, ResolvedAudioConfig, resolve_config
from stetho.io import append_jsonl, atomic_write_json
from stetho.models.pretrained import save_pretrained_backbone
from stetho.pretrain.data import PretrainBatches, Source, load_sources, source_summary
from stetho.pretrain.encoder import Encoder, build_backbone
from stetho.pretrain.masking import ReconstructionHead, apply_masks, mask_generator, time_masks
from stetho.pretrain.objective import ObjectiveConfig, PretrainObjective, tasks_of
from stetho.pretrain.resume import (
    check_resume,
    load_checkpoint,
    restore_state,
    resume_state,
    save_checkpoint,
    trim_losses,
)
from stetho.pretrain.views import DeviceViewConfig
from stetho.runs.environment import package_versions
from stetho.runs.folder import PretrainFolder

logger = logging.getLogger(__name__)

PACKAGES = ("stetho", "torch", "numpy", "scipy", "soxr", "soundfile", "safetensors", "pandas")


def default_audio() -> ResolvedAudioConfig:
    """stetho's resolved default front end (the ``audio`` block of a default config)."""
    return resolve_config(Config())[0].audio


@dataclass
class PretrainConfig:
    """Everything a pretraining run depends on; written as ``config.json``."""

    sources: list[Source]
    objective: str = "ssl"
    backbone: str = "heartnet"
    width: int = 32
    pool: str = "Average"
    audio: ResolvedAudioConfig = field(default_factory=default_audio)
    excerpt_seconds: float = 4.0
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    temperature: float = 0.1
    projection_dim: int = 128
    ssl_weight: float = 1.0
    supervised_weight: float = 1.0
    rhythm_weight: float = 0.0
    reconstruct_weight: float = 0.0
    balance_by: str = "dataset"
    crops: str = "independent"
    mission_audio: str = "none"
    views: DeviceViewConfig = field(default_factory=DeviceViewConfig)
    #: Budget: stop at whichever comes first; at least one must be set.
    steps: int | None = None
    minutes: float | None = None
    seed: int = 0
    threads: int = 1
    workers: int = 0
    device: str = "auto"
    mixed_precision: bool = True
    checkpoint_every: int = 200
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            raise ValueError("pretraining needs a budget: --steps N and/or --minutes N")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps={self.steps}: expected >= 1")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"minutes={self.minutes}: expected > 0")
        if self.threads < 1 or self.workers < 0 or self.checkpoint_every < 1:
            raise ValueError(
                f"threads={self.threads} (>= 1), workers={self.workers} (>= 0), "
                f"checkpoint_every={self.checkpoint_every} (>= 1)"
            )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sources"] = [s.to_dict() for s in self.sources]
        out["audio"] = self.audio.model_dump(mode="json")
        out["views"] = self.views.to_dict()
        return out


def scalar_defaults() -> dict[str, Any]:
    """:class:`PretrainConfig`'s plain default values (options added over time: a run folder
    made before one existed ran with its default)."""
    return {
        f.name: f.default
        for f in fields(PretrainConfig)
        if f.default is not MISSING and isinstance(f.default, (str, int, float, bool))
    }


@dataclass(frozen=True)
class PretrainResult:
    folder: Path
    backbone_path: Path
    summary: dict[str, Any]


def environment_info(config: PretrainConfig, device: torch.device) -> dict[str, Any]:
    versions = package_versions(PACKAGES)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "seed": config.seed,
        "device": str(device),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "command": sys.argv,
    }


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def learning_rate(step: int, config: PretrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10 % over ``steps`` (constant without a step budget)."""
    base = config.learning_rate
    if step < config.warmup_steps:
        return base * (step + 1) / config.warmup_steps
    if config.steps is None or config.steps <= config.warmup_steps:
        return base
    progress = (step - config.warmup_steps) / (config.steps - config.warmup_steps)
    return base * (0.1 + 0.45 * (1 + math.cos(math.pi * min(progress, 1.0))))


def _autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    if device.type != "cuda" or not enabled:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def pretrain(
    config: PretrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> PretrainResult:
    """Pretrain a backbone on ``config.sources``; the run folder is ``out_dir`` when done.

    ``on_step(step, losses)`` is called after each optimiser step and its checkpoint.
    """
    folder = PretrainFolder(Path(out_dir))
    if folder.root.exists():
        raise FileExistsError(
            f"{folder.root} exists: pretraining never overwrites a finished run; choose another "
            "--out"
        )
    if resume and not folder.checkpoint().is_file():
        raise FileNotFoundError(
            f"--resume: no checkpoint at {folder.checkpoint()}; start without --resume"
        )
    if not resume and folder.partial.exists():
        raise FileExistsError(
            f"{folder.partial} holds an interrupted run: add --resume to continue it, or "
            "choose another --out"
        )
    torch.set_num_threads(config.threads)
    device = select_device(config.device)
    sample_rate = config.audio.sample_rate

    frame = load_sources(
        config.sources,
        use_labels=config.objective != "ssl",
        mission_audio=config.mission_audio,
    )
    layouts = sorted(frame.loc[~frame["mission"], "layout"].unique())
    tasks = tuple(tasks_of(layouts)) if config.objective != "ssl" else ()
    objective_config = ObjectiveConfig(
        objective=config.objective,
        temperature=config.temperature,
        projection_dim=config.projection_dim,
        ssl_weight=config.ssl_weight,
        supervised_weight=config.supervised_weight,
        tasks=tasks,
        rhythm_weight=config.rhythm_weight,
        reconstruct_weight=config.reconstruct_weight,
    )
    if config.objective == "supervised":
        # Only labelled recordings teach the supervised objective anything.
        labelled = np.zeros(len(frame), dtype=bool)
        for task in tasks:
            labelled |= frame[f"target_{task}"].to_numpy() >= 0
        frame = frame[labelled].reset_index(drop=True)

    # Before anything is written: a bad --crops or --balance-by must not leave a folder behind
    # that blocks the corrected command.
    batches = PretrainBatches(
        frame,
        sample_rate=sample_rate,
        excerpt_seconds=config.excerpt_seconds,
        batch_size=config.batch_size,
        seed=config.seed,
        tasks=tasks,
        views=config.views,
        balance_by=config.balance_by,
        crops=config.crops,
        rhythm=config.rhythm_weight > 0,
    )

    torch.manual_seed(config.seed)
    encoder = Encoder(
        backbone=build_backbone(config.backbone, width=config.width),
        audio=config.audio,
        pool=config.pool,
    )
    reconstruction = (
        ReconstructionHead.for_backbone(encoder.backbone, config.audio.mel_frequency_bins)
        if config.reconstruct_weight > 0
        else None
    )
    objective = PretrainObjective(
        encoder.num_features, objective_config, reconstruction=reconstruction
    )
    frames_per_second = config.audio.sample_rate / config.audio.hop_size
    modules = torch.nn.ModuleDict({"encoder": encoder, "objective": objective}).to(device)
    optimizer = torch.optim.AdamW(
        modules.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    amp_dtype = _autocast_dtype(device, config.mixed_precision)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    step, elapsed_before = 0, 0.0
    if resume:
        check_resume(
            json.loads(folder.config().read_text()),
            config.to_dict(),
            folder.config(),
            defaults=scalar_defaults(),
        )
        step, elapsed_before = restore_state(
            load_checkpoint(folder.checkpoint()), modules, optimizer, scaler
        )
        trim_losses(folder.losses(), step)
        logger.info("resuming %s at step %d", folder.partial, step)
    else:
        folder.partial.mkdir(parents=True)
    atomic_write_json(folder.config(), config.to_dict())
    atomic_write_json(folder.environment(), environment_info(config, device))
    atomic_write_json(
        folder.sources(),
        {
            "objective": asdict(objective_config),
            "balance_by": config.balance_by,
            "sources": source_summary(frame, config.sources),
        },
    )

    stop = config.steps if config.steps is not None else 2**31 - 1
    loader = DataLoader(
        batches,
        batch_size=None,
        sampler=range(step, stop),
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    deadline = time.monotonic() + 60 * config.minutes if config.minutes is not None else math.inf
    started = time.monotonic()
    first_losses: dict[str, float] | None = None
    last: dict[str, float] = {}
    bar = tqdm(
        total=config.steps, initial=step, desc="pretraining", unit="step",
        disable=not config.progress, dynamic_ncols=True,
    )  # fmt: skip
    steps_run = 0
    try:
        for batch in loader:
            lr = learning_rate(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            modules.train()
            views = torch.cat([batch["view1"], batch["view2"]]).to(device, non_blocking=True)
            spec = encoder.spectrogram(views)
            masked = None
            with torch.autocast(
                device_type=device.type,
                dtype=amp_dtype or torch.float32,
                enabled=amp_dtype is not None,
            ):
                if reconstruction is None:
                    embeddings = encoder.embed_spectrogram(spec)
                else:
                    masks = time_masks(
                        spec.shape[0],
                        spec.shape[-1],
                        frames_per_second=frames_per_second,
                        generator=mask_generator(config.seed, step),
                    ).to(device)  # once: the masking and the loss both use them there
                    fmap = encoder.feature_map(apply_masks(spec, masks))
                    embeddings = encoder.pool(fmap)
                    masked = (fmap, spec, masks)
            e1, e2 = embeddings.float().chunk(2)
            targets = {t: batch[f"target_{t}"].to(device) for t in tasks}
            if "rhythm1" in batch:
                targets["rhythm"] = torch.cat([batch["rhythm1"], batch["rhythm2"]]).to(device)
            losses = objective(e1, e2, targets, masked)
            if not torch.isfinite(losses["loss"]):
                raise FloatingPointError(
                    f"pretraining loss is {float(losses['loss'])} at step {step}; lower "
                    "--learning-rate or raise the temperature, then --resume"
                )
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(losses["loss"]).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                losses["loss"].backward()
                optimizer.step()
            step += 1
            steps_run += 1
            last = {k: round(float(v.detach()), 6) for k, v in losses.items()}
            first_losses = first_losses or last
            now = time.monotonic()
            append_jsonl(
                folder.losses(),
                {"step": step - 1, **last, "lr": lr, "seconds": round(now - started, 3)},
            )
            if step % config.checkpoint_every == 0:
                save_checkpoint(
                    folder.checkpoint(),
                    resume_state(
                        modules,
                        optimizer,
                        scaler,
                        step=step,
                        elapsed=elapsed_before + now - started,
                    ),
                )
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}")
            if config.steps is None and steps_run >= 5:
                # Without a step budget the time budget sets the bar's length (and ETA).
                rate = steps_run / (now - started)
                bar.total = step + int(rate * max(0.0, deadline - now))
            if on_step is not None:
                on_step(step, last)
            if now >= deadline:
                break
    except KeyboardInterrupt:
        save_checkpoint(
            folder.checkpoint(),
            resume_state(
                modules, optimizer, scaler, step=step,
                elapsed=elapsed_before + time.monotonic() - started,
            ),
        )  # fmt: skip
        logger.warning("interrupted: checkpoint at step %d; continue with --resume", step)
        raise
    finally:
        bar.close()

    seconds = time.monotonic() - started
    save_checkpoint(
        folder.checkpoint(),
        resume_state(modules, optimizer, scaler, step=step, elapsed=elapsed_before + seconds),
    )
    summary = {
        "steps": step,
        "steps_this_session": steps_run,
        "seconds_this_session": round(seconds, 2),
        "seconds_total": round(elapsed_before + seconds, 2),
        "steps_per_second": round(steps_run / seconds, 4) if seconds > 0 else None,
        "recordings_per_second": round(steps_run * config.batch_size / seconds, 2)
        if seconds > 0
        else None,
        "first_losses": first_losses,
        "last_losses": last,
        "device": str(device),
        "stopped_by": "steps" if config.steps is not None and step >= config.steps else "minutes",
    }
    save_pretrained_backbone(
        encoder.backbone,
        folder.backbone(),
        name=config.backbone,
        width=config.width,
        audio=config.audio,
        extra={
            "objective": config.objective,
            "crops": config.crops,
            "mission_audio": config.mission_audio,
            "rhythm_weight": config.rhythm_weight,
            "reconstruct_weight": config.reconstruct_weight,
            "steps": step,
            "seed": config.seed,
            "sources": [s.name for s in (x.resolved() for x in config.sources)],
        },
    )
    atomic_write_json(folder.summary(), summary)
    os.replace(folder.partial, folder.root)
    return PretrainResult(
        folder=folder.root, backbone_path=folder.backbone(finished=True), summary=summary
    )
