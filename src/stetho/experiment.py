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
from stetho.datasets import read_dataset, read_table
from stetho.folds import assign_folds
from stetho.io import append_jsonl, atomic_write_json, atomic_write_text, write_table
from stetho.metrics import classification_metrics, metrics_by_group
from stetho.run import CONFIG, LABELS, fold_dir, partial_dir, save_model
from stetho.training.data import LoadedAudio, load_waveforms, sample_rows, targets_for
from stetho.training.loop import CHECKPOINT, FoldData, select_device, train_fold

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
    """The dataset named by ``--data`` (any layout), else the config's ``train_dataframe``."""
    ds = config.dataset
    if data is not None:
        return read_dataset(data)
    if ds.train_dataframe and Path(ds.train_dataframe).exists():
        return read_table(
            ds.train_dataframe,
            data_folder=ds.data_folder,
            audio_column=ds.audio_column,
            label_column=ds.label_columns[0] if ds.label_columns else "label",
        )
    raise FileNotFoundError(
        f"no data: dataset.train_dataframe={ds.train_dataframe!r} does not exist here; pass --data DIR"
    )


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
                f"leave_source_out: classes {dropped} do not occur in every source and are left out; "
                f"shared classes: {sorted(shared)}"
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
) -> ExperimentResult:
    """Train and validate every planned fold and write the run folder (see :mod:`stetho.run`)."""
    t0 = time.time()
    out_dir = Path(out_dir)
    work = partial_dir(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists: choose another --out or delete it")
    if work.exists() and not resume:
        raise FileExistsError(
            f"{work} holds an unfinished run: pass --resume to continue it, or delete it to start over"
        )
    if resume and (work / CONFIG).exists():
        config = load_config(work / CONFIG)
        run_warnings = json.loads((work / "warnings.json").read_text())
        manifest = pd.read_parquet(work / "manifest.parquet")
        folds = [int(f) for f in json.loads((work / "plan.json").read_text())["folds"]]
        logger.info("resuming %s with its stored config and folds", work)
    else:
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
            "training.train_validation_data=true: validation recordings are also trained on, so validation metrics are optimistic",
        )

    if cfg.dataset.unlabeled_as_class:
        manifest["label"] = manifest["label"].fillna(UNLABEL)
    labelled = manifest[manifest["label"].notna() & (manifest["fold"] >= 0)].reset_index(drop=True)
    classes = sorted(labelled["label"].unique().tolist())
    if len(classes) < 2:
        raise ValueError(f"need at least two classes to train, found {classes}")
    audio = load_waveforms(
        labelled["path"].tolist(),
        sample_rate=sr,
        min_duration_s=cfg.dataset.min_duration_seconds,
        max_duration_s=cfg.dataset.max_duration_seconds,
        progress=progress,
    )
    if audio.errors:
        skipped = pd.DataFrame({"path": list(audio.errors), "reason": list(audio.errors.values())})
        write_table(skipped, work / "skipped.csv")
        _add(
            run_warnings,
            f"{len(audio.errors)} recording(s) could not be used and were skipped: see skipped.csv",
        )
        labelled = labelled[labelled["path"].isin(audio.waves)].reset_index(drop=True)
    extras = _rhythm_extras(cfg, labelled, audio)
    n_extra = 0 if extras is None else extras.shape[1]
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
    atomic_write_json(work / "environment.json", environment_info(cfg, device))

    parts = []
    histories: list[dict[str, Any]] = []
    for k in folds:
        fdir = fold_dir(work, k)
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
        fold_data = FoldData(
            train_waves=[audio.waves[p] for p in train_df["path"]],
            train_targets=targets_for(train_df["label"].tolist(), classes),
            valid_waves=[audio.waves[p] for p in valid_df["path"]],
            valid_labels=valid_df["label"].tolist(),
            train_extras=None if extras is None else extras[train_df.index.to_numpy()],
            valid_extras=None if extras is None else extras[valid_df.index.to_numpy()],
        )
        logger.info(
            "fold %d: %d training, %d validation recordings", k, len(train_df), len(valid_df)
        )
        result = train_fold(
            cfg,
            classes=classes,
            data=fold_data,
            fold=k,
            fold_dir=fdir,
            on_epoch=lambda rec: append_jsonl(work / "metrics.jsonl", rec),
            progress=progress,
            stop_after_epoch=stop_after_epoch,
        )
        save_model(
            result.model,
            fdir / "model.safetensors",
            metadata={"fold": str(k), "classes": json.dumps(classes)},
        )
        atomic_write_json(fdir / "history.json", result.history)
        part = valid_df[["path", "fold", "label", "source", "patient"]].copy()
        for i, c in enumerate(classes):
            part[f"prob_{c}"] = result.valid_probs[:, i]
        write_table(part, fdir / VALID_PREDICTIONS)
        (fdir / CHECKPOINT).unlink(missing_ok=True)
        parts.append(part)
        histories += result.history

    oof = pd.concat(parts, ignore_index=True)
    write_table(oof, work / "oof_predictions.parquet")
    # The authoritative per-epoch log: rebuilt from the folds' histories, so lines of an
    # epoch interrupted by a crash never appear twice.
    atomic_write_text(
        work / "metrics.jsonl", "".join(json.dumps(h, default=str) + "\n" for h in histories)
    )
    summary = summarize_oof(oof, classes)
    summary["warnings"] = run_warnings
    summary["folds"] = folds
    summary["seconds"] = round(time.time() - t0, 1)
    atomic_write_json(work / "summary.json", summary)
    atomic_write_json(work / "warnings.json", run_warnings)
    for hook in after_run or []:
        hook(work)
    work.rename(out_dir)
    return ExperimentResult(
        run_dir=out_dir, summary=summary, oof=oof, warnings=run_warnings, seconds=time.time() - t0
    )


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


def _rhythm_extras(cfg: Config, labelled: pd.DataFrame, audio: LoadedAudio) -> np.ndarray | None:
    """Heart-rhythm statistics per recording (``training.rhythm_features``), log-compressed."""
    if not cfg.training.rhythm_features:
        return None
    from stetho.pcg import rhythm_features

    sr = int(cfg.audio.sample_rate)
    rows = [rhythm_features(audio.waves[p], sr) for p in labelled["path"]]
    x = np.asarray(rows, dtype=np.float32)
    return np.sign(x) * np.log1p(np.abs(x))


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
