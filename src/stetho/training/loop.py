"""The per-fold training loop: plain, top to bottom, resumable after every epoch.

Per epoch: set the epoch's seed, iterate batches (mix, forward, loss, backward, clip, step),
maybe evaluate on the validation recordings, then write a checkpoint atomically. A killed run
restarts from the last checkpoint and, because every random draw is seeded by
``(seed, fold, epoch)``, ends with the same weights as an uninterrupted one.

Under ``torchrun`` (see :mod:`stetho.training.distributed`) the same loop runs in every
process: the model is wrapped in ``DistributedDataParallel``, a ``DistributedSampler`` gives
each rank its share of the epoch, and ``training.batch_size`` is per process (so the effective
batch is ``world_size * batch_size``; nothing else is scaled). Rank 0 alone evaluates and
writes checkpoints; the others wait for it at a barrier.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler

from stetho.config import Config, ResolvedConfig
from stetho.metrics import classification_metrics, score_for_selection
from stetho.models import HeartSoundClassifier, create_model
from stetho.scoring.chunking import predict_recordings
from stetho.training import distributed
from stetho.training.augment import mix_batch, spec_augment
from stetho.training.callbacks import TrainingCallback
from stetho.training.checkpoint import load_checkpoint, save_checkpoint
from stetho.training.data import ChunkDataset, balance_weights
from stetho.training.optim import (
    backbone_frozen,
    class_weight_vector,
    create_optimizer,
    loss_fn,
    lr_factor,
    set_lr,
)

logger = logging.getLogger(__name__)


@dataclass
class FoldData:
    train_waves: list[np.ndarray]
    train_targets: np.ndarray
    valid_waves: list[np.ndarray]
    valid_labels: list[str]
    train_weights: np.ndarray | None = None
    train_extras: np.ndarray | None = None
    valid_extras: np.ndarray | None = None
    #: rows of ``train_targets`` that are set labels (``dataset.label_groups``)
    train_partial: np.ndarray | None = None
    #: each training row's ``training.balance_by`` key (dataset or source)
    train_balance_keys: np.ndarray | None = None


@dataclass
class FoldResult:
    model: HeartSoundClassifier
    valid_probs: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1


def select_device(config: Config) -> torch.device:
    """The first of ``environment.gpus``; under torchrun, one GPU per local rank."""
    gpus = config.environment.gpus
    if gpus and torch.cuda.is_available():
        if distributed.env_world_size() > 1:
            local = distributed.env_local_rank()
            return torch.device(f"cuda:{int(gpus[local]) if local < len(gpus) else local}")
        return torch.device(f"cuda:{int(gpus[0])}")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _epoch_seed(seed: int, fold: int, epoch: int) -> int:
    # epoch -1 seeds the weight initialisation, before the first epoch.
    return int(np.random.SeedSequence([seed, fold, epoch + 1]).generate_state(1)[0])


@dataclass
class _FoldRun:
    """Everything one fold's epochs share: the model and its optimiser, the data and its
    sampler, the step schedule, and the state a checkpoint carries between epochs."""

    config: ResolvedConfig
    classes: list[str]
    data: FoldData
    fold: int
    device: torch.device
    model: HeartSoundClassifier
    net: Any
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    class_weights: torch.Tensor | None
    dataset: ChunkDataset
    sampler: DistributedSampler[int] | None
    #: per-row draw weights of ``training.balance_by`` (every group equally likely)
    balance_weights: list[float] | None
    batch_size: int
    drop_last: bool
    total_steps: int
    warmup_steps: int
    amp: bool
    step: int = 0
    #: the current epoch holds the backbone still (``training.freeze_backbone_epochs``,
    #: ``training.linear_probe``); set at the start of each epoch, so a resume gets it right.
    backbone_frozen: bool = False
    best_score: float = -np.inf
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)

    def state(self, epoch: int) -> dict[str, Any]:
        """What :func:`save_checkpoint` stores after ``epoch`` (0-based)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "step": self.step,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "history": self.history,
        }

    def restore(self, ckpt: dict[str, Any]) -> int:
        """Continue from a checkpoint's state; returns the first epoch still to train."""
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.best_score, self.best_epoch = float(ckpt["best_score"]), int(ckpt["best_epoch"])
        self.best_state = ckpt.get("best_state")
        self.history = [dict(h) for h in ckpt["history"]]
        return int(ckpt["epoch"]) + 1


def _setup_fold(
    config: ResolvedConfig, *, classes: list[str], data: FoldData, fold: int
) -> _FoldRun:
    """Build the fold's model, optimiser, data and schedule, seeded as the fold's epoch -1."""
    tcfg = config.training
    device = select_device(config)
    world = distributed.world_size()
    seed = config.environment.seed
    sr = config.audio.sample_rate
    n_extra = 0 if data.train_extras is None else data.train_extras.shape[1]
    seed_everything(_epoch_seed(seed, fold, -1))
    model = create_model(config, len(classes), n_extra_features=n_extra).to(device)
    if config.audio.spectrogram_normalization == "Global":
        _fit_global_stats(model, data.train_waves, device)
    optimizer = create_optimizer(model, tcfg)
    class_weights = class_weight_vector(tcfg, data.train_targets)
    dataset = ChunkDataset(
        data.train_waves,
        data.train_targets,
        chunk_samples=round(config.audio.training_chunk_seconds * sr),
        sample_rate=sr,
        augmentation=config.augmentation,
        seed=seed + 1000 * fold,
        weights=data.train_weights,
        extras=data.train_extras,
        partial=data.train_partial,
    )
    # Under DDP each rank draws its share of one seeded permutation per epoch (set_epoch).
    sampler: DistributedSampler[int] | None = (
        DistributedSampler(
            dataset, num_replicas=world, rank=distributed.rank(), shuffle=True, seed=seed + fold
        )
        if world > 1
        else None
    )
    balance_weights = _balance_weights(data.train_balance_keys, tcfg.balance_by, world)
    n_local = len(dataset) if sampler is None else len(sampler)
    batch_size = min(tcfg.batch_size, n_local)
    drop_last = tcfg.drop_last_batch and n_local > batch_size
    steps_per_epoch = max(
        1,
        (n_local // batch_size if drop_last else -(-n_local // batch_size))
        // tcfg.grad_accumulation,
    )
    amp = config.environment.mixed_precision_training and device.type == "cuda"
    return _FoldRun(
        config=config,
        classes=classes,
        data=data,
        fold=fold,
        device=device,
        model=model,
        # DDP averages gradients only for passes through its own forward.
        net=_data_parallel(model, device) if world > 1 else model.forward_spec,
        optimizer=optimizer,
        scaler=torch.amp.GradScaler("cuda", enabled=amp),
        class_weights=class_weights,
        dataset=dataset,
        sampler=sampler,
        balance_weights=balance_weights,
        batch_size=batch_size,
        drop_last=drop_last,
        total_steps=steps_per_epoch * max(1, tcfg.epochs),
        warmup_steps=round(tcfg.warmup_epochs * steps_per_epoch),
        amp=amp,
    )


def _balance_weights(
    keys: np.ndarray | None, balance_by: str | None, world: int
) -> list[float] | None:
    """Draw weights making every value of ``keys`` equally likely (``None``: uniform)."""
    if balance_by is None:
        return None
    if keys is None:
        raise ValueError(f"training.balance_by={balance_by}: the fold has no {balance_by} column")
    if world > 1:
        raise ValueError(
            f"training.balance_by={balance_by} is not supported under torchrun (each rank would "
            "draw its own recordings); train on one process or drop training.balance_by"
        )
    return balance_weights(keys)


def _train_epoch(run: _FoldRun, epoch: int, *, progress: bool) -> dict[str, Any]:
    """One pass over the fold's training chunks; returns the epoch's record (loss, lr)."""
    config, tcfg, device, model = run.config, run.config.training, run.device, run.model
    gen = seed_everything(_epoch_seed(config.environment.seed, run.fold, epoch))
    run.dataset.epoch = epoch
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
    elif run.balance_weights is not None:
        # drawn from the epoch's generator (a resumed epoch draws the same recordings), in
        # random order already
        run.dataset.draws = np.fromiter(
            WeightedRandomSampler(
                run.balance_weights, len(run.balance_weights), replacement=True, generator=gen
            ),
            dtype=np.int64,
        )
    loader = DataLoader(
        run.dataset,
        batch_size=run.batch_size,
        shuffle=run.sampler is None and run.dataset.draws is None,
        sampler=run.sampler,
        drop_last=run.drop_last,
        num_workers=config.environment.number_of_workers,
        generator=gen,
        persistent_workers=False,
    )
    model.train()
    run.backbone_frozen = backbone_frozen(tcfg, epoch)
    if run.backbone_frozen:
        model.backbone.eval()  # its BatchNorm keeps the running statistics it came with
    losses: list[float] = []
    n_seen = 0
    bar = _bar(loader, progress, f"fold {run.fold} epoch {epoch + 1}/{tcfg.epochs}")
    run.optimizer.zero_grad(set_to_none=True)
    frames_per_second = config.audio.sample_rate / model.frontend.hop
    for i, batch in enumerate(bar):
        wave = batch["wave"].to(device)
        target = batch["target"].to(device)
        if config.augmentation.mix_audio:
            wave, target = mix_batch(wave, target, config.augmentation, gen)
        extra = batch["extra"].to(device) if "extra" in batch else None
        with torch.no_grad():
            spec = model.frontend(wave)
            spec = spec_augment(spec, config.augmentation, gen, frames_per_second=frames_per_second)
        with torch.autocast(device_type=device.type, enabled=run.amp):
            logits = run.net(spec, extra)
        loss = loss_fn(
            logits.float(),
            target,
            loss_function=tcfg.loss_function,
            label_smoothing=tcfg.label_smoothing,
            class_weights=run.class_weights,
            sample_weights=batch["weight"].to(device),
            partial=batch["partial"],
        )
        run.scaler.scale(loss / tcfg.grad_accumulation).backward()
        if (i + 1) % tcfg.grad_accumulation == 0:
            _optimizer_step(run)
        losses.append(float(loss.detach()))
        n_seen += len(wave)
        if progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{np.mean(losses):.4f}")
    record: dict[str, Any] = {
        "fold": run.fold,
        "epoch": epoch + 1,
        "train_loss": float(np.mean(losses)) if losses else float("nan"),
        "lr": run.optimizer.param_groups[0]["lr"],
    }
    if run.backbone_frozen:
        record["backbone_frozen"] = True
    if distributed.world_size() > 1:
        record["train_loss"] = distributed.mean_across_ranks(record["train_loss"], device)
        record["rank_samples"] = distributed.gather_ints(n_seen, device)
    return record


def _optimizer_step(run: _FoldRun) -> None:
    """One optimiser step at the schedule's learning rate (after gradient accumulation)."""
    tcfg = run.config.training
    factor = lr_factor(
        run.step,
        total_steps=run.total_steps,
        warmup_steps=run.warmup_steps,
        schedule=tcfg.schedule,
    )
    set_lr(run.optimizer, factor, frozen=run.backbone_frozen)
    if tcfg.gradient_clip:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), tcfg.gradient_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1


def _validate(run: _FoldRun, record: dict[str, Any], epoch: int) -> np.ndarray:
    """Score the validation recordings, add their metrics to ``record`` and keep the best
    weights when ``training.save_best_checkpoint``; returns the probabilities."""
    config = run.config
    valid_probs = _evaluate(run.model, run.data, config, run.device)
    m = classification_metrics(
        run.data.valid_labels, valid_probs, run.classes, groups=config.dataset.label_groups
    )
    score = score_for_selection(m, config.prediction.metric)
    record.update(
        valid_macro_auc=m["macro_auc"],
        valid_balanced_accuracy=m["balanced_accuracy"],
        valid_log_loss=m["log_loss"],
        valid_auc={c: v["auc"] for c, v in m["per_class"].items()},
    )
    if config.training.save_best_checkpoint and score > run.best_score:
        run.best_score, run.best_epoch = score, epoch + 1
        run.best_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    return valid_probs


def train_fold(
    config: ResolvedConfig,
    *,
    classes: list[str],
    data: FoldData,
    fold: int,
    checkpoint: Path,
    callbacks: Sequence[TrainingCallback] = (),
    progress: bool = True,
) -> FoldResult:
    """Train one fold, keeping its state between epochs in ``checkpoint`` (continued from
    there when it exists: ``--resume``).

    Under torchrun every rank calls this; only rank 0's result holds validation predictions
    and only rank 0 calls the ``callbacks``.
    """
    tcfg = config.training
    main = distributed.is_main()
    run = _setup_fold(config, classes=classes, data=data, fold=fold)
    eval_every = max(1, round(tcfg.evaluation_epochs))
    start_epoch = 0
    if checkpoint.exists():
        ckpt = load_checkpoint(
            checkpoint, config=config, classes=classes, fold=fold, map_location=run.device
        )
        start_epoch = run.restore(ckpt)
        logger.info("fold %d: resuming after epoch %d", fold, start_epoch - 1)

    valid_probs = np.zeros((len(data.valid_waves), len(classes)))
    for epoch in range(start_epoch, tcfg.epochs):
        t0 = time.time()
        record = _train_epoch(run, epoch, progress=progress)
        last = epoch + 1 == tcfg.epochs
        if main and ((epoch + 1) % eval_every == 0 or last):
            valid_probs = _validate(run, record, epoch)
        record["seconds"] = round(time.time() - t0, 2)
        run.history.append(record)
        logger.info(
            "fold %d epoch %d: loss %.4f%s",
            fold,
            epoch + 1,
            record["train_loss"],
            f", valid macro AUC {record['valid_macro_auc']:.4f}"
            if "valid_macro_auc" in record
            else "",
        )
        if main and not last:
            save_checkpoint(checkpoint, run.state(epoch), config=config, classes=classes, fold=fold)
        distributed.barrier()  # the other ranks resume from rank 0's checkpoint
        if main:
            for callback in callbacks:
                callback.on_epoch_end(dict(record))

    model = run.model
    if main and tcfg.epochs == 0:
        valid_probs = _evaluate(model, data, config, run.device)
    if tcfg.save_best_checkpoint and run.best_state is not None:
        model.load_state_dict(run.best_state)
        valid_probs = _evaluate(model, data, config, run.device)
    model.cpu().eval()
    return FoldResult(
        model=model, valid_probs=valid_probs, history=run.history, best_epoch=run.best_epoch
    )


class _SpecForward(nn.Module):
    """``forward_spec`` as a module's ``forward``, so that DDP can wrap it (the log-mel front
    end, which has no weights, runs outside under ``no_grad``)."""

    def __init__(self, model: HeartSoundClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, spec: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.forward_spec(spec, extra)


def _data_parallel(model: HeartSoundClassifier, device: torch.device) -> nn.Module:
    return DistributedDataParallel(
        _SpecForward(model), device_ids=[device] if device.type == "cuda" else None
    )


def _evaluate(
    model: HeartSoundClassifier, data: FoldData, config: ResolvedConfig, device: torch.device
) -> np.ndarray:
    if not data.valid_waves:
        return np.zeros((0, model.head.out_features))
    return predict_recordings(
        [model],
        data.valid_waves,
        sample_rate=config.audio.sample_rate,
        prediction=config.prediction,
        loss_function=config.training.loss_function,
        extras=None if data.valid_extras is None else list(data.valid_extras),
        device=device,
        autocast=config.environment.mixed_precision_inference and device.type == "cuda",
    )


def _fit_global_stats(
    model: HeartSoundClassifier, waves: list[np.ndarray], device: torch.device
) -> None:
    """Mean and std of the un-normalised log-mel over the training recordings."""
    fe = model.frontend
    fe.normalization = "No"
    vals = []
    with torch.no_grad():
        for w in waves:
            vals.append(fe(torch.from_numpy(w)[None].to(device)).flatten())
    allv = torch.cat(vals)
    # Buffers of the front end (torch types a module's attributes as Tensor | Module).
    mean, std = fe.get_buffer("mean"), fe.get_buffer("std")
    mean.fill_(float(allv.mean()))
    std.fill_(float(allv.std()))
    fe.normalization = "Global"


def _bar(loader: DataLoader, progress: bool, desc: str) -> Iterable[dict[str, torch.Tensor]]:
    if not progress:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=desc, leave=False, unit="batch")
