"""Pseudo-labelling: soft labels for unlabelled recordings from a teacher that cannot leak.

Hydrogen Torch's ``unlabeled_dataframe``, done fold by fold. Round 0 trains every fold on the
labelled recordings alone. In round ``r >= 1`` the student of fold ``k`` trains on fold ``k``'s
labelled training rows plus pseudo-labelled recordings, whose labels come from the teacher of
fold ``k``: the round ``r - 1`` model of fold ``k``.

Leakage guard
    Fold ``k``'s validation score is honest only if nothing fold ``k`` validates on, nor
    anything of its patients, reached the student. So:

    * the teacher of fold ``k`` is a fold-``k`` model, trained without fold ``k``'s patients
      (round 0 on the other folds' labelled rows; later rounds also on pseudo-labels that
      their own fold-``k`` teacher gave, by induction never from fold ``k``'s patients);
    * an unlabelled recording is a candidate for fold ``k`` only if its ``fold`` is not ``k``
      (:mod:`stetho.data.folds` gives unlabelled rows their patient's fold) **and** its patient has
      no labelled recording in fold ``k`` (checked again by patient id, whatever the folds).

Soft labels
    The teacher's class probabilities (chunk-averaged, as validation scores a recording) are
    the student's targets, kept when their maximum reaches
    ``pseudo_labeling.confidence_threshold``; each kept recording weighs
    ``pseudo_labeling.weight`` in the loss, a labelled one 1.

Every fold's candidates, with the teacher's probabilities and whether they were kept, are
written to ``pseudo_labels_fold<k>_round<r>.parquet`` in the run folder for audit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from stetho.config import DatasetConfig, ResolvedConfig
from stetho.data.manifest import MANIFEST_COLUMNS, audio_headers, check_manifest
from stetho.io import write_table
from stetho.models import HeartSoundClassifier
from stetho.runs import load_model
from stetho.runs.folder import RunFolder
from stetho.scoring.chunking import predict_recordings
from stetho.training import distributed
from stetho.training.loop import select_device

logger = logging.getLogger(__name__)

#: Columns of the audit table besides the ``prob_<class>`` ones.
AUDIT_COLUMNS = [
    "path",
    "patient",
    "source",
    "fold",
    "teacher_fold",
    "round",
    "confidence",
    "used",
    "weight",
]


def round_dir(run_dir: Path, round_: int) -> Path:
    """Where the fold models of an intermediate round live (the last round is the run's own)."""
    return RunFolder(run_dir).pseudo_round(round_).root


def pseudo_label_path(run_dir: Path, *, fold: int, round_: int) -> Path:
    """The audit table of the pseudo-labels that fold ``fold``'s round-``round_`` student uses."""
    return RunFolder(run_dir).pseudo_labels(fold, round_)


def candidates_for_fold(pool: pd.DataFrame, labelled: pd.DataFrame, *, fold: int) -> pd.DataFrame:
    """Unlabelled rows of ``pool`` that may train fold ``fold``'s student.

    Excluded: rows whose ``fold`` is ``fold`` and rows of a patient with a labelled recording
    that fold ``fold`` validates on (``labelled`` rows with ``fold == fold``).
    """
    valid_patients = set(labelled.loc[labelled["fold"] == fold, "patient"].astype(str))
    keep = (pool["fold"] != fold) & ~pool["patient"].astype(str).isin(valid_patients)
    return pool[keep]


def select_pseudo_labels(
    candidates: pd.DataFrame,
    probs: np.ndarray,
    classes: list[str],
    *,
    fold: int,
    round_: int,
    confidence_threshold: float,
    weight: float,
) -> pd.DataFrame:
    """The audit table: one row per candidate, ``used`` where ``max(probs) >= threshold``.

    Args:
        candidates: manifest rows (``path, patient, source, fold``), ``(n,)``.
        probs: ``(n, len(classes))`` teacher probabilities, the soft targets.
    """
    if probs.shape != (len(candidates), len(classes)):
        raise ValueError(
            f"probs has shape {probs.shape}; expected ({len(candidates)}, {len(classes)})"
        )
    table = candidates[["path", "patient", "source", "fold"]].reset_index(drop=True).copy()
    table["teacher_fold"] = fold
    table["round"] = round_
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    table["confidence"] = confidence
    table["used"] = confidence >= confidence_threshold
    table["weight"] = weight
    for i, c in enumerate(classes):
        table[f"prob_{c}"] = probs[:, i]
    return table


def soft_targets(
    table: pd.DataFrame, classes: list[str]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(paths, targets (n, n_classes), weights (n,))`` of the used rows of an audit table."""
    used = table[table["used"].astype(bool)]
    targets = used[[f"prob_{c}" for c in classes]].to_numpy(np.float32)
    return used["path"].tolist(), targets, used["weight"].to_numpy(np.float32)


def pseudo_labels_for_fold(
    config: ResolvedConfig,
    *,
    run_dir: Path,
    fold: int,
    round_: int,
    classes: list[str],
    pool: pd.DataFrame,
    labelled: pd.DataFrame,
    waves: dict[str, np.ndarray],
    extras: dict[str, np.ndarray] | None,
) -> pd.DataFrame:
    """The audit table for fold ``fold``'s round-``round_`` student (``round_ >= 1``).

    Rank 0 predicts the candidates with the teacher (round ``round_ - 1``'s fold-``fold``
    model, read from the run folder) and writes the table; a table already written (a resumed
    run) is reused. Every rank then reads it, so all ranks train on the same rows.
    """
    if round_ < 1:
        raise ValueError(f"round_={round_}: pseudo-labels are made for rounds >= 1")
    path = pseudo_label_path(run_dir, fold=fold, round_=round_)
    if distributed.is_main() and not path.exists():
        candidates = candidates_for_fold(pool, labelled, fold=fold)
        teacher_path = RunFolder(run_dir).pseudo_round(round_ - 1).fold_model(fold)
        teacher = _load_teacher(config, teacher_path, n_classes=len(classes), extras=extras)
        device = select_device(config)
        probs = predict_recordings(
            [teacher.to(device)],
            [waves[p] for p in candidates["path"]],
            sample_rate=config.audio.sample_rate,
            prediction=config.prediction,
            loss_function=config.training.loss_function,
            extras=None if extras is None else [extras[p] for p in candidates["path"]],
            device=device,
            autocast=config.environment.mixed_precision_inference and device.type == "cuda",
        ).reshape(len(candidates), len(classes))
        pl = config.pseudo_labeling
        table = select_pseudo_labels(
            candidates,
            probs,
            classes,
            fold=fold,
            round_=round_,
            confidence_threshold=pl.confidence_threshold,
            weight=pl.weight,
        )
        write_table(table, path)
        logger.info(
            "fold %d round %d: %d of %d candidates pseudo-labelled (confidence >= %g); "
            "%d of %d unlabelled recordings excluded as fold %d's",
            fold,
            round_,
            int(table["used"].sum()),
            len(table),
            pl.confidence_threshold,
            len(pool) - len(candidates),
            len(pool),
            fold,
        )
    distributed.barrier()
    return pd.read_parquet(path)


def read_unlabeled_table(ds: DatasetConfig) -> pd.DataFrame:
    """Manifest rows (all unlabelled) of Hydrogen Torch's ``dataset.unlabeled_dataframe``.

    A csv/tsv/parquet table with ``dataset.audio_column`` (paths relative to
    ``dataset.data_folder``, else to the table's folder); an optional ``patient`` column lets
    its recordings join their patients' folds; label columns, if any, are ignored.
    """
    if ds.unlabeled_dataframe is None:
        raise ValueError("dataset.unlabeled_dataframe is not set")
    path = Path(ds.unlabeled_dataframe)
    if not path.is_file():
        raise FileNotFoundError(f"dataset.unlabeled_dataframe={str(path)!r}: file not found")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        df = pd.read_parquet(path)
    elif suffix in (".csv", ".tsv"):
        df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    else:
        raise ValueError(
            f"dataset.unlabeled_dataframe={str(path)!r}: unsupported table format {suffix!r}; "
            "use .csv, .tsv, .parquet or .pq"
        )
    if ds.audio_column not in df.columns:
        raise ValueError(
            f"dataset.unlabeled_dataframe={str(path)!r} has no audio column "
            f"{ds.audio_column!r} (dataset.audio_column); its columns are {list(df.columns)}"
        )
    base = Path(ds.data_folder) if ds.data_folder else path.parent
    audio = [Path(str(v)) for v in df[ds.audio_column]]
    source = df["source"].astype(str) if "source" in df.columns else path.stem
    rows = pd.DataFrame(
        {
            "path": [str((p if p.is_absolute() else base / p).resolve()) for p in audio],
            "label": None,
            "source": source,
        }
    )
    rows["patient"] = (
        df["patient"].astype(str)
        if "patient" in df.columns
        else [f"{s}/{p.with_suffix('')}" for s, p in zip(rows["source"], audio, strict=True)]
    )
    headers = audio_headers(rows["path"], name=f"unlabeled_dataframe {path}")
    manifest = rows.merge(headers, on="path", how="inner")
    manifest["fold"] = -1
    return check_manifest(manifest[MANIFEST_COLUMNS], name=f"unlabeled_dataframe {path}")


def add_unlabeled_table(manifest: pd.DataFrame, ds: DatasetConfig) -> pd.DataFrame:
    """``manifest`` plus the rows of ``dataset.unlabeled_dataframe`` it does not hold yet."""
    extra = read_unlabeled_table(ds)
    extra = extra[~extra["path"].isin(manifest["path"])]
    logger.info("dataset.unlabeled_dataframe: %d unlabelled recordings added", len(extra))
    if extra.empty:
        return manifest
    return pd.concat([manifest, extra], ignore_index=True)


def _load_teacher(
    config: ResolvedConfig, path: Path, *, n_classes: int, extras: dict[str, np.ndarray] | None
) -> HeartSoundClassifier:
    """A fold model from its safetensors file (no pretrained weights are fetched)."""
    n_extra = 0 if not extras else len(next(iter(extras.values())))
    return load_model(config, path, n_classes=n_classes, n_extra_features=n_extra)
