"""``stetho evaluate``: score a labelled dataset a run never saw and measure it as training does.

:func:`evaluate` reads each dataset with its reader (:func:`stetho.data.readers.read_dataset`),
maps its labels onto the run (:mod:`stetho.evaluation.labels`), scores every recording through
the one scoring core (:func:`stetho.scoring.batch.predict_files`: the run's decoding, chunking,
fold ensemble and :class:`~stetho.decision.DecisionRule`), computes
:func:`~stetho.evaluation.metrics.evaluation_metrics` and writes an
:class:`~stetho.runs.folder.EvaluationFolder`: ``predictions.csv``, ``evaluation.html`` and,
last, ``evaluation.json``. Existing output is never overwritten: a folder that is not empty is
refused, unless ``force`` is given and the folder is an evaluation this command wrote.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stetho.data.manifest import apply_patient_column, patient_warning
from stetho.data.readers import read_dataset
from stetho.evaluation.labels import LabelMapping, resolve_label_map
from stetho.evaluation.metrics import N_BOOT, evaluation_metrics
from stetho.io import atomic_write_json, atomic_write_text, check_replaceable_dir, write_table
from stetho.runs import Run
from stetho.runs.folder import EvaluationFolder, RunFolder
from stetho.runs.zoo import check_outside_zoo, is_model_name, resolve_model
from stetho.scoring.backends import RunScorer, Scorer, load_scorer
from stetho.scoring.batch import DEFAULT_BATCH_SIZE, InputItem, predict_files

logger = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """A finished evaluation: where it was written, its numbers and the per-recording table."""

    folder: EvaluationFolder
    result: dict[str, Any]
    predictions: pd.DataFrame


def read_datasets(
    data: Sequence[str | Path],
    *,
    layout: str = "auto",
    patient_regex: str | None = None,
    patient_column: str | None = None,
) -> pd.DataFrame:
    """The manifests of ``data`` (one or more datasets), with a ``dataset`` column (the folder
    or table name, made unique) and the patients asked for."""
    frames = []
    seen: dict[str, int] = {}
    for root in data:
        manifest = read_dataset(root, layout=layout, patient_regex=patient_regex)
        if patient_column is not None:
            manifest = apply_patient_column(manifest, patient_column, name=str(root))
        name = Path(root).expanduser().resolve().name or str(root)
        seen[name] = seen.get(name, 0) + 1
        manifest["dataset"] = name if seen[name] == 1 else f"{name}-{seen[name]}"
        frames.append(manifest)
    if not frames:
        raise ValueError("no dataset given: pass one or more labelled dataset folders or tables")
    df = pd.concat(frames, ignore_index=True)
    repeated = df.loc[df["path"].duplicated(), "path"]
    if len(repeated):
        raise ValueError(f"recordings given twice (in two datasets): {', '.join(repeated[:5])}")
    return df


def default_out(run_dir: str | Path, datasets: pd.DataFrame) -> Path:
    """``<run>/evaluations/<dataset>[+<dataset>...]``; ``ValueError`` for a scoring pipeline
    or a ready model (``stetho:NAME``), whose folder is never written into: give ``out``."""
    if is_model_name(run_dir) or not RunFolder(run_dir).config.is_file():
        raise ValueError(
            f"{run_dir} is a scoring pipeline, not a run folder: its folder is left as it is, "
            "so name the evaluation's folder with --out DIR"
        )
    name = "+".join(dict.fromkeys(datasets["dataset"].astype(str)))
    return RunFolder(run_dir).evaluation(name).root


def check_out(out: Path, *, inputs: Sequence[str | Path], force: bool) -> EvaluationFolder:
    """Refuse an output that exists (and is not empty) unless ``force`` and it is an
    evaluation this command wrote; refuse one that is, holds or lies in an input."""
    folder = EvaluationFolder(out)
    if not force and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"{out} already exists: choose another --out, or pass --force to replace an "
            "evaluation that stetho evaluate wrote there"
        )
    check_replaceable_dir(
        out,
        inputs=inputs,
        owned_marker=folder.metrics.name,
        owned_files=folder.owned_files,
    )
    return folder


def label_table(manifest: pd.DataFrame, mapping: LabelMapping) -> list[dict[str, Any]]:
    """What each dataset label became, with its recordings: for the page and the json."""
    labelled = manifest[manifest["label"].notna()]
    counts = labelled["label"].astype(str).str.lower().value_counts()
    return [
        {"label": label, "target": mapping.targets[label], "recordings": int(counts[label])}
        for label in sorted(counts.index)
    ]


def evaluate(
    run_dir: str | Path,
    data: Sequence[str | Path],
    *,
    layout: str = "auto",
    label_map: Mapping[str, str] | None = None,
    patient_regex: str | None = None,
    patient_column: str | None = None,
    out: str | Path | None = None,
    force: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    n_boot: int = N_BOOT,
    seed: int = 0,
    run: Run | None = None,
) -> Evaluation:
    """Score ``data`` with the run in ``run_dir`` and write the evaluation (module doc).

    ``run_dir`` may also be an exported scoring pipeline folder or a ready model
    (``stetho:NAME``): it is scored the same way, and ``out`` must then be given (the
    default lies inside a run folder). ``label_map`` (from
    :func:`~stetho.evaluation.labels.parse_label_map`) maps the datasets' labels onto the run;
    ``out`` defaults to :func:`default_out`. ``run`` is the loaded run when the caller has it.
    Errors before any scoring: unknown labels, an output that exists, a dataset that cannot be
    read.
    """
    manifest = read_datasets(
        data, layout=layout, patient_regex=patient_regex, patient_column=patient_column
    )
    scorer: Scorer = RunScorer(run) if run is not None else load_scorer(run_dir, threads=None)
    rule = scorer.rule
    labels = manifest["label"].dropna().astype(str)
    if labels.empty:
        raise ValueError(
            f"the dataset(s) {', '.join(map(str, data))} hold no labelled recording: an "
            "evaluation needs the truth (score unlabelled recordings with stetho predict)"
        )
    mapping = resolve_label_map(labels, rule.classes, rule.normal_class, label_map)
    target = Path(out) if out is not None else default_out(run_dir, manifest)
    check_outside_zoo(target)
    folder = check_out(target, inputs=[resolve_model(run_dir), *data], force=force)

    targets = [mapping.target(v) for v in manifest["label"]]
    manifest = manifest.assign(target=pd.Series(targets, index=manifest.index, dtype=object))
    chosen = manifest[manifest["target"].notna()].reset_index(drop=True)
    items = [InputItem(path=p, abs_path=p) for p in chosen["path"]]
    scored = predict_files(scorer, items, batch_size=batch_size, progress=progress)
    predictions = join_predictions(chosen, scored)

    warnings = collect_warnings(manifest, chosen, predictions)
    usable = predictions[predictions["error"] == ""]
    metrics = evaluation_metrics(usable, rule, mapping.mode, n_boot=n_boot, seed=seed)
    result = {
        "run": str(RunFolder(run_dir).final),
        "datasets": [str(Path(d)) for d in data],
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "classes": list(rule.classes),
        "rule": rule.to_dict(),
        "label_map": mapping.to_dict(),
        "labels": label_table(manifest, mapping),
        "recordings": {
            "in_datasets": int(len(manifest)),
            "unlabelled": int(manifest["label"].isna().sum()),
            "left_out": int((manifest["label"].notna() & manifest["target"].isna()).sum()),
            "scored": int(len(usable)),
            "not_scored": int(len(predictions) - len(usable)),
        },
        "warnings": warnings,
        "metrics": metrics,
    }
    folder.root.mkdir(parents=True, exist_ok=True)
    write_table(predictions, folder.predictions)
    from stetho.evaluation.page import render_page  # matplotlib only when writing

    atomic_write_text(folder.page, render_page(result, predictions))
    atomic_write_json(folder.metrics, _json_ready(result))
    logger.info("evaluation: %s", folder.root)
    return Evaluation(folder=folder, result=result, predictions=predictions)


def join_predictions(chosen: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
    """The per-recording table: the manifest's identity and truth, then the scores."""
    keep = ["path", "dataset", "source", "patient", "label", "target"]
    left = chosen[keep].reset_index(drop=True)
    right = scored.drop(columns=["path"]).rename(columns={"label": "predicted"})
    out = pd.concat([left, right.reset_index(drop=True)], axis=1)
    out["error"] = out["error"].fillna("").astype(str)
    return out


def collect_warnings(
    manifest: pd.DataFrame, chosen: pd.DataFrame, predictions: pd.DataFrame
) -> list[str]:
    """What the reader of the numbers must know: patients, unscorable files, left-out data."""
    out = []
    no_patients = patient_warning(chosen)
    if no_patients is not None:
        out.append(no_patients)
    bad = predictions[predictions["error"] != ""]
    if len(bad):
        shown = "; ".join(
            f"{p}: {e}" for p, e in zip(bad["path"][:5], bad["error"][:5], strict=True)
        )
        out.append(
            f"{len(bad)} of {len(predictions)} recording(s) could not be scored and are not in "
            f"the metrics (see predictions.csv): {shown}"
        )
    unlabelled = int(manifest["label"].isna().sum())
    if unlabelled:
        out.append(f"{unlabelled} unlabelled recording(s) in the data are not evaluated")
    return out


def _json_ready(obj: Any) -> Any:
    """NaN -> None (JSON has no NaN), numpy scalars -> Python numbers, recursively."""
    if isinstance(obj, Mapping):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
