"""What the report reads from a run folder, read once; optional artifacts may be absent.

Paths come from :class:`stetho.runs.folder.RunFolder`; this module only decides which
artifacts the report needs and what it shows when an optional one is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from stetho.config import Config, load_config
from stetho.runs import Run, load_run
from stetho.runs.folder import RunFolder


class RunData:
    """The artifacts of a finished run that the report shows.

    Raises ``FileNotFoundError`` naming the folder and the missing artifact when the folder
    is not a run folder or training has not finished.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.folder = RunFolder(run_dir)
        f = self.folder
        if not f.config.is_file():
            raise FileNotFoundError(f"{f.root}: not a stetho run folder, no {f.config.name}")
        for required in (f.summary, f.oof_predictions):
            if not required.is_file():
                raise FileNotFoundError(f"{f.root}: no {required.name}; has training finished?")
        self.config_text = f.config.read_text()
        self.config: Config = load_config(f.config)
        self.summary: dict[str, Any] = f.read_json(f.summary)
        self.classes: list[str] = list(self.summary["classes"])
        self.warnings: list[str] = f.read_warnings()
        self.environment: dict[str, Any] = f.read_json(f.environment) or {}
        oof = pd.read_parquet(f.oof_predictions)
        # Recordings labelled only by a group (dataset.label_groups: PhysioNet's "abnormal")
        # have no class to plot a curve or a confusion cell for; summary.json scores them in
        # normal vs abnormal.
        single = oof["label"].isin(self.classes)
        self.n_set_labelled = int((~single).sum())
        self.oof = oof[single].reset_index(drop=True)
        self.manifest = pd.read_parquet(f.manifest) if f.manifest.is_file() else None
        self.skipped = pd.read_csv(f.skipped) if f.skipped.is_file() else None
        self.history = self._history()
        self.interpretations: dict[str, Any] | None = f.explanations.read_index()
        self._run: Run | None = None

    def _history(self) -> list[dict[str, Any]]:
        """Per-epoch records: ``metrics.jsonl``, else the folds' ``history.json`` files."""
        records = self.folder.read_metrics()
        if records:
            return records
        out: list[dict[str, Any]] = []
        for path in self.folder.fold_histories():
            out += json.loads(path.read_text())
        return out

    def run(self) -> Run:
        """The run's fold models, loaded on first use (only when maps must be computed)."""
        if self._run is None:
            self._run = load_run(self.folder.root)
        return self._run

    @property
    def name(self) -> str:
        """The run's name, without ``.partial``."""
        return self.folder.name
