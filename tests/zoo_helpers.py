"""A tiny ready-model zoo for the ``stetho:NAME`` tests (tests/runs/test_zoo.py and
tests/cli/test_cli_models.py): one exported pipeline with its card, in a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

from stetho.export import export_pipeline
from stetho.runs.zoo import MODEL_CARD

CARD = (
    "# Tiny test screener: two synthetic classes, not for patients\n\n"
    "Trained on 12 synthetic recordings (normal: 60 Hz bursts, murmur: 400 Hz).\n"
)


def make_zoo(root: Path, run_dir: Path, *, name: str = "tiny") -> Path:
    """``root`` holding ``<name>/``: ``stetho export run_dir`` plus a model card; returns root."""
    folder = export_pipeline(run_dir, root / name)
    (folder / MODEL_CARD).write_text(CARD, encoding="utf-8")
    return root


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``folder`` (folders included) with its size and mtime in ns: equal
    snapshots mean nothing was added, removed or rewritten."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for entry in [*dirnames, *filenames]:
            path = Path(dirpath) / entry
            st = path.lstat()
            out[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    st = folder.stat()
    out["."] = (len(os.listdir(folder)), st.st_mtime_ns)
    return out
