"""``stetho calibrate``: refit a run's decision rule on a few labelled recordings of a new
device or clinic, into a *new* run folder.

The run's fold ensemble scores the labelled recordings; calibration, threshold and abstain band
are refitted on them (:func:`stetho.decision.fitting.refit_rule`, with the run's prior
correction and the config's ``prediction`` choices unless overridden); the result is a copy of
the run folder (weights, config, out-of-fold predictions, report: everything but an exported
scoring pipeline, which would still carry the old rule) with the new ``decision.json`` and a
``recalibration.json`` that says what it was fitted on and what it gave there. The original
run is never modified, and an existing output is never overwritten: the copy is written into
``<out>.partial`` and renamed when complete.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from stetho.data.readers import read_dataset
from stetho.decision import DecisionRule
from stetho.decision.fitting import refit_rule, spec_from_config
from stetho.io import atomic_write_json
from stetho.runs import load_run
from stetho.runs.folder import RunFolder
from stetho.scoring.backends import RunScorer
from stetho.scoring.batch import InputItem, score_items
from stetho.scoring.core import run_rule

logger = logging.getLogger(__name__)


def default_out(run_dir: str | Path) -> Path:
    """``runs/x`` -> ``runs/x-calibrated``."""
    root = RunFolder(run_dir).root
    return root.with_name(root.name + "-calibrated")


def calibrate_run(
    run_dir: str | Path,
    data: str | Path,
    *,
    out: str | Path | None = None,
    layout: str = "auto",
    overrides: dict[str, Any] | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> Path:
    """Refit ``run_dir``'s decision rule on the labelled recordings of ``data`` (read as
    ``layout``) and write it into a new run folder ``out`` (default :func:`default_out`).

    ``overrides``: ``prediction`` fields to fit with instead of the run config's
    (``calibration``, ``operating_point``, ``abstain_coverage``). Returns the new folder.
    """
    src = RunFolder(run_dir)
    dest = RunFolder(default_out(run_dir) if out is None else out)
    if dest.root.resolve() == src.root.resolve():
        raise ValueError(f"--out {dest.root} is the run itself: the original is never modified")
    if dest.root.exists() or dest.working().root.exists():
        raise FileExistsError(f"{dest.root} already exists: choose another --out or delete it")
    run = load_run(src.root)
    rule = run_rule(run)
    manifest = read_dataset(data, layout=layout)
    labelled = manifest[manifest["label"].notna()].reset_index(drop=True)
    unknown = sorted(set(labelled["label"]) - set(run.classes))
    if unknown:
        raise ValueError(
            f"{data}: labels {unknown} are not among the run's classes {run.classes}; relabel "
            "them or leave them out"
        )
    if labelled.empty:
        raise ValueError(f"{data}: no labelled recordings to calibrate on")
    scorer = RunScorer(run)
    items = [InputItem(str(p), os.path.abspath(p)) for p in labelled["path"]]
    plain = DecisionRule.default(run.classes, loss_function=run.loss_function)
    results = score_items(scorer, items, rule=plain, batch_size=batch_size, progress=progress)
    ok = [i for i, r in enumerate(results) if r.error == ""]
    if len(ok) < len(results):
        logger.warning(
            "%d recording(s) could not be scored and are left out", len(results) - len(ok)
        )
    # The default rule's probabilities are the raw ones renormalised: what refit_rule takes.
    raw = np.stack([results[i].probs for i in ok])  # type: ignore[misc]
    labels = labelled["label"].to_numpy(dtype=object)[ok]
    patients = labelled["patient"].to_numpy(dtype=object)[ok] if "patient" in labelled else None
    prediction = run.config.prediction
    if overrides:
        prediction = prediction.model_validate({**prediction.model_dump(), **overrides})
    new_rule, figures = refit_rule(
        rule, raw, labels, spec_from_config(prediction), patients=patients, source=str(data)
    )
    work = dest.working()
    shutil.copytree(src.root, work.root, ignore=shutil.ignore_patterns(src.scoring.root.name))
    atomic_write_json(work.decision, new_rule.to_dict())
    atomic_write_json(
        work.recalibration,
        {
            "original_run": str(src.root.resolve()),
            "data": str(Path(data).resolve()),
            "layout": layout,
            "recordings": len(ok),
            "skipped": len(results) - len(ok),
            "prediction": prediction.model_dump(),
            **figures,
        },
    )
    work.root.rename(dest.root)
    logger.info("recalibrated run written to %s", dest.root)
    return dest.root
