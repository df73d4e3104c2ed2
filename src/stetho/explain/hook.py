"""After training: explain the worst-classified validation recordings into the run folder."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd

from stetho.config import load_config
from stetho.explain.attribution import DEFAULT_METHODS, default_settings
from stetho.explain.budget import budget_from_config
from stetho.explain.files import explain_files
from stetho.explain.methods import method_label
from stetho.explain.select import select_worst
from stetho.runs import load_run
from stetho.runs.folder import RunFolder

logger = logging.getLogger(__name__)


def interpretations_hook(
    run_dir: Path,
    *,
    budget_s: float | None | Literal["config"] = "config",
    methods: Sequence[str] = DEFAULT_METHODS,
) -> None:
    """Explain the worst-classified validation recordings into the run's interpretations folder.

    Runs when the run's config says ``training.run_interpretations: true``, on
    ``logging.number_of_audios`` recordings chosen by :func:`stetho.explain.select_worst`; each
    is explained by the model of the fold it was validated in. Progress and an ETA are logged
    after every recording; no new recording is started once ``budget_s`` seconds would be
    exceeded (default: the config's ``training.interpretation_budget_s``; ``None``: no
    limit). Large backbones
    get cheaper method settings (:func:`stetho.explain.default_settings`).
    """
    folder = RunFolder(run_dir)
    config = load_config(folder.config)
    n = config.logging.number_of_audios
    if not config.training.run_interpretations or n == 0:
        logger.info("interpretations skipped (training.run_interpretations=false or no audios)")
        return
    seconds = budget_from_config(config) if budget_s == "config" else budget_s
    run = load_run(folder.root)
    oof = pd.read_parquet(folder.oof_predictions)
    worst = select_worst(oof, run.classes, n)
    worst = worst[worst["fold"].isin(run.folds)]
    settings = default_settings(run.models)
    described = ", ".join(
        method_label(m)
        + (
            f" ({settings.occlusion_window[0]} bands x {settings.occlusion_window[1]:g} s)"
            if m == "occlusion"
            else f" ({settings.ig_steps} steps)"
            if m == "integrated_gradients"
            else ""
        )
        for m in methods
    )
    logger.info(
        "explaining the %d worst-classified validation recordings with %s; budget %s",
        len(worst),
        described,
        "none" if seconds is None else f"{seconds:.0f} s",
    )
    info = [
        {
            "label": r["label"],
            "source": r.get("source"),
            "patient": r.get("patient"),
            "oof_p_true": float(r["p_true"]),
            "oof_predicted": r["predicted"],
        }
        for r in worst.to_dict("records")
    ]
    explain_files(
        run,
        worst["path"].tolist(),
        folder.explanations.root,
        methods=methods,
        folds=[int(f) for f in worst["fold"]],
        info=info,
        budget_s=seconds,
        log_dir=folder.sealed().explanations.root,
        progress_bar=sys.stderr.isatty(),
    )
    index = folder.explanations.read_index() or {}
    if index.get("budget_warning"):
        folder.add_warning(str(index["budget_warning"]))
