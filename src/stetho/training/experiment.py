"""A whole experiment: data -> folds -> train each fold -> out-of-fold metrics -> run folder.

``run_experiment`` is what ``stetho train`` calls. It writes into ``<out>.partial`` and renames
it to ``<out>`` once everything is written; ``resume=True`` continues a killed run from its
last finished epoch (per fold) with the config and folds it started with.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stetho.config import Config, load_config, resolve_config, save_config
from stetho.data.folds import assign_folds
from stetho.data.readers import read_dataset, read_table
from stetho.features.rhythm import rhythm_extras
from stetho.io import append_jsonl, atomic_write_json, atomic_write_text, write_table
from stetho.metrics import classification_metrics, metrics_by_group
from stetho.models.registry import get_backbone_fn
from stetho.models.timm_backbones import PretrainedWeightsUnavailable
from stetho.runs import CONFIG, LABELS, fold_dir, partial_dir, save_model
from stetho.training import distributed
from stetho.training.data import LoadedAudio, load_waveforms, sample_rows, targets_for
from stetho.training.loop import CHECKPOINT, FoldData, select_device, train_fold
from stetho.training.pseudo import (
    add_unlabeled_table,
    pseudo_label_path,
    pseudo_labels_for_fold,
    round_dir,
    soft_targets,
)

logger = logging.getLogger(__name__)

UNLABEL = "unlabel"
VALID_PREDICTIONS = "valid_predictions.parquet"
PACKAGES = (
    "stetho",
    "torch",
    "timm",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "soundfile",
    "soxr",
    "pydantic",
    "onnx",
    "onnxruntime",
    "safetensors",
)


@dataclass
class ExperimentResult:
    run_dir: Path
    summary: dict[str, Any]
    oof: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def build_manifest(config: Config, data: str | Path | None) -> pd.DataFrame:
    """The dataset named by ``--data`` (any layout), else the config's ``train_dataframe``;
    plus the recordings of ``dataset.unlabeled_dataframe``, unlabelled."""
    ds = config.dataset
    if data is not None:
        manifest = read_dataset(data)
    elif ds.train_dataframe and Path(ds.train_dataframe).exists():
        manifest = read_table(
            ds.train_dataframe,
            data_folder=ds.data_folder,
            audio_column=ds.audio_column,
            label_column=ds.label_columns[0] if ds.label_columns else "label",
        )
    else:
        raise FileNotFoundError(
            f"no data: dataset.train_dataframe={ds.train_dataframe!r} does not exist here; "
            "pass --data DIR"
        )
    if ds.unlabeled_dataframe:
        manifest = add_unlabeled_table(manifest, ds)
    return manifest


def environment_info(config: Config, device: torch.device) -> dict[str, Any]:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "seed": config.environment.seed,
        "git_commit": commit,
        "device": str(device),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "command": sys.argv,
    }


def _data_warnings(df: pd.DataFrame) -> list[str]:
    """Classes that exist in one recording source only can be learnt from the device alone."""
    out = []
    labelled = df[df["label"].notna()]
    if labelled["source"].nunique() > 1:
        for label, part in labelled.groupby("label"):
            sources = sorted(part["source"].unique())
            if len(sources) == 1:
                out.append(
                    f"class {label!r} occurs only in source {sources[0]!r}: a model can find it by "
                    "the recording device alone; read its AUC with the per-source metrics"
                )
    return out


def _fold_plan(config: Config, df: pd.DataFrame) -> tuple[pd.DataFrame, list[int], list[str]]:
    """Assign folds and decide which to train. Returns (manifest, folds to train, warnings)."""
    ds = config.dataset
    warns: list[str] = []
    if ds.validation_strategy == "leave_source_out":
        labelled = df[df["label"].notna()]
        per_source = labelled.groupby("source")["label"].apply(set)
        shared = set.intersection(*per_source.tolist()) if len(per_source) else set()
        dropped = sorted(set(labelled["label"]) - shared)
        if dropped:
            warns.append(
                f"leave_source_out: classes {dropped} do not occur in every source and are left "
                f"out; shared classes: {sorted(shared)}"
            )
            df = df[df["label"].isna() | df["label"].isin(shared)].reset_index(drop=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = assign_folds(
            df,
            n_splits=ds.number_of_folds,
            seed=config.environment.seed,
            group_column=ds.group_fold_column or "patient",
            strategy=ds.validation_strategy,
            validation_size=ds.validation_size,
        )
    warns.extend(str(w.message) for w in caught)
    available = sorted(
        int(f) for f in df.loc[df["label"].notna() & (df["fold"] >= 0), "fold"].unique()
    )
    if ds.validation_strategy == "holdout":
        available = [1]
    if ds.folds:
        wanted = [int(f) for f in ds.folds]
        bad = sorted(set(wanted) - set(available))
        if bad:
            raise ValueError(
                f"dataset.folds={ds.folds}: fold(s) {bad} do not exist; folds: {available}"
            )
        return df, wanted, warns
    return df, available, warns


def run_experiment(
    config: Config,
    *,
    out_dir: str | Path,
    data: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    after_run: list[Callable[[Path], None]] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> ExperimentResult:
    """Train and validate every planned fold and write the run folder (see :mod:`stetho.runs`).

    ``on_epoch`` receives each epoch's record as it is appended to ``metrics.jsonl`` (an
    experiment tracker's live feed). Under torchrun every process calls this: all train,
    rank 0 alone writes (see :mod:`stetho.training.distributed`).
    """
    with distributed.process_group(select_device(config)):
        return _run_experiment(
            config,
            out_dir=Path(out_dir),
            data=data,
            resume=resume,
            progress=progress,
            stop_after_epoch=stop_after_epoch,
            after_run=after_run,
            on_epoch=on_epoch,
        )


def _run_experiment(
    config: Config,
    *,
    out_dir: Path,
    data: str | Path | None,
    resume: bool,
    progress: bool,
    stop_after_epoch: int | None,
    after_run: list[Callable[[Path], None]] | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> ExperimentResult:
    t0 = time.time()
    work = partial_dir(out_dir)
    main = distributed.is_main()
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists: choose another --out or delete it")
    if work.exists() and not resume:
        raise FileExistsError(
            f"{work} holds an unfinished run: pass --resume to continue it, or delete it to "
            "start over"
        )
    distributed.barrier()  # every rank has looked at the folder before rank 0 writes into it
    if main:
        config, run_warnings, manifest, folds = _plan_run(
            config, data=data, work=work, resume=resume
        )
    distributed.barrier()
    if not main:  # the other ranks use what rank 0 planned and wrote
        config, run_warnings, manifest, folds = _stored_plan(work)
    progress = progress and main
    for w in run_warnings:
        logger.warning("%s", w)

    cfg = config
    sr = int(cfg.audio.sample_rate)
    device = select_device(cfg)
    if cfg.environment.gpus and device.type == "cpu":
        _add(
            run_warnings,
            f"environment.gpus={cfg.environment.gpus} but no GPU is available: training on CPU",
        )
    if cfg.environment.threads:
        torch.set_num_threads(cfg.environment.threads)
    if cfg.training.automatically_adjust_batch_size:
        _add(
            run_warnings,
            "training.automatically_adjust_batch_size is not implemented: batch_size used as given",
        )
    if cfg.training.train_validation_data:
        _add(
            run_warnings,
            "training.train_validation_data=true: validation recordings are also trained on, "
            "so validation metrics are optimistic",
        )
    for message in _pretrained_warnings(cfg):
        _add(run_warnings, message)

    if cfg.dataset.unlabeled_as_class:
        manifest["label"] = manifest["label"].fillna(UNLABEL)
    labelled = manifest[manifest["label"].notna() & (manifest["fold"] >= 0)].reset_index(drop=True)
    pool = manifest[manifest["label"].isna()].reset_index(drop=True)
    if not cfg.pseudo_labeling.enabled:
        pool = pool.iloc[:0]
    elif pool.empty:
        _add(run_warnings, "pseudo_labeling.enabled=true but there are no unlabelled recordings")
    classes = sorted(labelled["label"].unique().tolist())
    if len(classes) < 2:
        raise ValueError(f"need at least two classes to train, found {classes}")
    audio = load_waveforms(
        labelled["path"].tolist() + pool["path"].tolist(),
        sample_rate=sr,
        min_duration_s=cfg.dataset.min_duration_seconds,
        max_duration_s=cfg.dataset.max_duration_seconds,
        progress=progress,
    )
    if audio.errors:
        skipped = pd.DataFrame({"path": list(audio.errors), "reason": list(audio.errors.values())})
        if main:
            write_table(skipped, work / "skipped.csv")
        _add(
            run_warnings,
            f"{len(audio.errors)} recording(s) could not be used and were skipped: see skipped.csv",
        )
        labelled = labelled[labelled["path"].isin(audio.waves)].reset_index(drop=True)
        pool = pool[pool["path"].isin(audio.waves)].reset_index(drop=True)
    extras = _rhythm_extras(cfg, pd.concat([labelled, pool]), audio)
    n_extra = 0 if extras is None else len(next(iter(extras.values()), []))
    if main:
        atomic_write_json(
            work / LABELS,
            {
                "classes": classes,
                "loss_function": cfg.training.loss_function,
                "sample_rate": sr,
                "n_extra_features": n_extra,
            },
        )
        atomic_write_json(work / "warnings.json", run_warnings)
        info = environment_info(cfg, device)
        info["world_size"] = distributed.world_size()
        atomic_write_json(work / "environment.json", info)

    fold_inputs = _FoldInputs(
        work=work,
        classes=classes,
        labelled=labelled,
        pool=pool,
        waves=audio.waves,
        extras=extras,
    )
    # Round 0 is supervised. With pseudo-labelling (stetho.training.pseudo), rounds 0 .. R-1
    # train into pseudo/round-<r>/ and the last round R into the run folder itself.
    n_rounds = cfg.pseudo_labeling.rounds if cfg.pseudo_labeling.enabled else 0
    histories: list[dict[str, Any]] = []
    round_metrics: list[dict[str, Any]] = []
    for r in range(n_rounds + 1):
        parts, round_history = _train_folds(
            cfg,
            inputs=fold_inputs,
            folds=folds,
            round_=r,
            root=work if r == n_rounds else round_dir(work, r),
            tag_round=n_rounds > 0,
            on_epoch=on_epoch,
            progress=progress,
            stop_after_epoch=stop_after_epoch,
        )
        histories += round_history
        if n_rounds and main:
            round_metrics.append(_round_summary(r, parts, classes, work=work, folds=folds))

    if not main:
        distributed.barrier()  # rank 0 writes and seals the run folder
        return _finished_result(out_dir, t0)
    oof = pd.concat(parts, ignore_index=True)
    write_table(oof, work / "oof_predictions.parquet")
    # The authoritative per-epoch log: rebuilt from the folds' histories, so lines of an
    # epoch interrupted by a crash never appear twice.
    atomic_write_text(
        work / "metrics.jsonl", "".join(json.dumps(h, default=str) + "\n" for h in histories)
    )
    summary = summarize_oof(oof, classes)
    if round_metrics:
        summary["pseudo_labeling"] = round_metrics
    summary["warnings"] = run_warnings
    summary["folds"] = folds
    summary["seconds"] = round(time.time() - t0, 1)
    atomic_write_json(work / "summary.json", summary)
    atomic_write_json(work / "warnings.json", run_warnings)
    for hook in after_run or []:
        hook(work)
    work.rename(out_dir)
    logger.info("run folder %s written", out_dir)
    distributed.barrier()
    return ExperimentResult(
        run_dir=out_dir, summary=summary, oof=oof, warnings=run_warnings, seconds=time.time() - t0
    )


def _plan_run(
    config: Config, *, data: str | Path | None, work: Path, resume: bool
) -> tuple[Config, list[str], pd.DataFrame, list[int]]:
    """Resolve the config, read the data and plan the folds, storing all three in ``work``;
    with ``resume``, read back what a killed run stored instead."""
    if resume and (work / CONFIG).exists():
        logger.info("resuming %s with its stored config and folds", work)
        return _stored_plan(work)
    if resume:
        logger.warning("nothing to resume at %s: starting a new run", work)
    config, run_warnings = resolve_config(config)
    manifest = build_manifest(config, data)
    manifest, folds, fold_warnings = _fold_plan(config, manifest)
    run_warnings += fold_warnings + _data_warnings(manifest)
    work.mkdir(parents=True, exist_ok=True)
    save_config(config, work / CONFIG)
    write_table(manifest, work / "manifest.parquet")
    atomic_write_json(work / "plan.json", {"folds": folds})
    atomic_write_json(work / "warnings.json", run_warnings)
    return config, run_warnings, manifest, folds


def _stored_plan(work: Path) -> tuple[Config, list[str], pd.DataFrame, list[int]]:
    config = load_config(work / CONFIG)
    run_warnings = json.loads((work / "warnings.json").read_text())
    manifest = pd.read_parquet(work / "manifest.parquet")
    folds = [int(f) for f in json.loads((work / "plan.json").read_text())["folds"]]
    return config, run_warnings, manifest, folds


def _finished_result(out_dir: Path, t0: float) -> ExperimentResult:
    """What a rank other than 0 returns: the run folder rank 0 sealed."""
    summary = json.loads((out_dir / "summary.json").read_text())
    return ExperimentResult(
        run_dir=out_dir,
        summary=summary,
        oof=pd.read_parquet(out_dir / "oof_predictions.parquet"),
        warnings=summary["warnings"],
        seconds=time.time() - t0,
    )


@dataclass
class _FoldInputs:
    """What every fold of every round trains from."""

    work: Path
    classes: list[str]
    #: labelled rows with a fold, and the unlabelled candidates for pseudo-labels
    labelled: pd.DataFrame
    pool: pd.DataFrame
    waves: dict[str, np.ndarray]
    #: rhythm features by path (``training.rhythm_features``)
    extras: dict[str, np.ndarray] | None


def _train_folds(
    cfg: Config,
    *,
    inputs: _FoldInputs,
    folds: list[int],
    round_: int,
    root: Path,
    tag_round: bool,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    progress: bool,
    stop_after_epoch: int | None,
) -> tuple[list[pd.DataFrame], list[dict[str, Any]]]:
    """Train (or, when finished before a crash, reload) each fold of one round into
    ``root/fold-<k>``; returns the folds' validation predictions and epoch histories."""
    work, classes, labelled = inputs.work, inputs.classes, inputs.labelled
    main = distributed.is_main()
    parts = []
    histories: list[dict[str, Any]] = []

    def log_epoch(record: dict[str, Any]) -> None:
        if tag_round:
            record["round"] = round_
        append_jsonl(work / "metrics.jsonl", record)
        if on_epoch is not None:
            on_epoch(record)

    for k in folds:
        fdir = fold_dir(root, k)
        done = (fdir / "model.safetensors").exists() and (fdir / VALID_PREDICTIONS).exists()
        if done:
            parts.append(pd.read_parquet(fdir / VALID_PREDICTIONS))
            histories += json.loads((fdir / "history.json").read_text())
            continue
        valid_mask = labelled["fold"] == k
        train_mask = ~valid_mask | cfg.training.train_validation_data
        train_df = sample_rows(
            labelled[train_mask],
            cfg.dataset.data_sample if "Train" in cfg.dataset.data_sample_choice else 1.0,
            seed=cfg.environment.seed,
        )
        valid_df = sample_rows(
            labelled[valid_mask],
            cfg.dataset.data_sample if "Validation" in cfg.dataset.data_sample_choice else 1.0,
            seed=cfg.environment.seed,
        )
        train_paths = train_df["path"].tolist()
        train_targets = targets_for(train_df["label"].tolist(), classes)
        train_weights = None
        if round_ > 0:
            table = pseudo_labels_for_fold(
                cfg,
                run_dir=work,
                fold=k,
                round_=round_,
                classes=classes,
                pool=inputs.pool,
                labelled=labelled,
                waves=inputs.waves,
                extras=inputs.extras,
            )
            pl_paths, pl_targets, pl_weights = soft_targets(table, classes)
            train_weights = np.concatenate([np.ones(len(train_paths), np.float32), pl_weights])
            train_paths += pl_paths
            train_targets = np.concatenate([train_targets, pl_targets])
        fold_data = FoldData(
            train_waves=[inputs.waves[p] for p in train_paths],
            train_targets=train_targets,
            valid_waves=[inputs.waves[p] for p in valid_df["path"]],
            valid_labels=valid_df["label"].tolist(),
            train_weights=train_weights,
            train_extras=_stack(inputs.extras, train_paths),
            valid_extras=_stack(inputs.extras, valid_df["path"].tolist()),
        )
        logger.info(
            "fold %d%s: %d training (%d pseudo-labelled), %d validation recordings",
            k,
            f" round {round_}" if tag_round else "",
            len(train_paths),
            len(train_paths) - len(train_df),
            len(valid_df),
        )
        result = train_fold(
            cfg,
            classes=classes,
            data=fold_data,
            fold=k,
            fold_dir=fdir,
            on_epoch=log_epoch,
            progress=progress,
            stop_after_epoch=stop_after_epoch,
        )
        if tag_round:
            for h in result.history:
                h["round"] = round_
        part = valid_df[["path", "fold", "label", "source", "patient"]].copy()
        for i, c in enumerate(classes):
            part[f"prob_{c}"] = result.valid_probs[:, i]
        if main:
            save_model(
                result.model,
                fdir / "model.safetensors",
                metadata={"fold": str(k), "classes": json.dumps(classes)},
            )
            atomic_write_json(fdir / "history.json", result.history)
            write_table(part, fdir / VALID_PREDICTIONS)
            (fdir / CHECKPOINT).unlink(missing_ok=True)
        distributed.barrier()  # the next fold (and a teacher's student) finds this one written
        parts.append(part)
        histories += result.history
    return parts, histories


def _round_summary(
    round_: int, parts: list[pd.DataFrame], classes: list[str], *, work: Path, folds: list[int]
) -> dict[str, Any]:
    """Pooled out-of-fold scores of one pseudo-labelling round and its pseudo-label counts."""
    oof = pd.concat(parts, ignore_index=True)
    pooled = classification_metrics(
        oof["label"].to_numpy(), oof[[f"prob_{c}" for c in classes]].to_numpy(), classes
    )
    used = {}
    for k in folds:
        path = pseudo_label_path(work, fold=k, round_=round_)
        if path.exists():
            used[str(k)] = int(pd.read_parquet(path)["used"].sum())
    return {
        "round": round_,
        "macro_auc": pooled["macro_auc"],
        "balanced_accuracy": pooled["balanced_accuracy"],
        "pseudo_labels_used": used,
    }


def _stack(by_path: dict[str, np.ndarray] | None, paths: list[str]) -> np.ndarray | None:
    if by_path is None:
        return None
    return np.stack([by_path[p] for p in paths]) if paths else np.zeros((0, 0), np.float32)


def summarize_oof(oof: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    """Pooled out-of-fold, per-fold and per-source metrics."""
    prob_cols = [f"prob_{c}" for c in classes]
    pooled = classification_metrics(oof["label"].to_numpy(), oof[prob_cols].to_numpy(), classes)
    return {
        "classes": classes,
        "pooled": pooled,
        "per_fold": metrics_by_group(oof, classes, group="fold"),
        "per_source": metrics_by_group(oof, classes, group="source"),
    }


def _rhythm_extras(
    cfg: Config, rows: pd.DataFrame, audio: LoadedAudio
) -> dict[str, np.ndarray] | None:
    """Heart-rhythm statistics by path (``training.rhythm_features``), log-compressed."""
    if not cfg.training.rhythm_features:
        return None
    paths = list(rows["path"])
    values = rhythm_extras([audio.waves[p] for p in paths], int(cfg.audio.sample_rate))
    return dict(zip(paths, values, strict=True))


def _pretrained_warnings(config: Config) -> list[str]:
    """Build the backbone once up front with ``pretrained: true``, so that a fall-back to random
    weights (no network, no local file) is written into ``warnings.json``, not only the log."""
    arch = config.architecture
    if not arch.pretrained or arch.pretrained_weights:
        return []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PretrainedWeightsUnavailable)
        get_backbone_fn(arch.backbone)(pretrained=True, pretrained_weights=None, width=arch.width)
    return [str(w.message) for w in caught if issubclass(w.category, PretrainedWeightsUnavailable)]


def _add(warns: list[str], message: str) -> None:
    if message not in warns:
        warns.append(message)
        logger.warning("%s", message)


def final_table(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows for the CLI's closing table."""
    pooled = summary["pooled"]
    rows = [(f"AUC {c}", _fmt(v["auc"])) for c, v in pooled["per_class"].items()]
    rows += [
        ("macro AUC", _fmt(pooled["macro_auc"])),
        ("balanced accuracy", _fmt(pooled["balanced_accuracy"])),
    ]
    if "physionet2016" in pooled:
        rows.append(("MAcc normal/abnormal", _fmt(pooled["physionet2016"]["macc"])))
    rows.append(("wall time", f"{summary['seconds']:.0f} s"))
    return rows


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"
