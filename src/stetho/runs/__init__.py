"""Run folders: where a run's artifacts live, and loading a finished run for scoring."""

from stetho.runs.load import (
    CONFIG,
    LABELS,
    MODEL,
    Run,
    fold_dir,
    load_model,
    load_run,
    partial_dir,
    save_model,
)

__all__ = [
    "CONFIG",
    "LABELS",
    "MODEL",
    "Run",
    "fold_dir",
    "load_model",
    "load_run",
    "partial_dir",
    "save_model",
]
