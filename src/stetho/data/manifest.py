"""The Manifest: one table per dataset that every reader produces and everything downstream uses.

Columns (:data:`MANIFEST_COLUMNS`), one row per recording:

``path``
    Absolute path of the audio file (str), unique.
``label``
    Class name (str), or missing (``None``/NA) for an unlabelled recording.
``patient``
    Group id (str) for patient-grouped folds. Ids are prefixed with their source where they
    could otherwise collide across sources (``set_b/112``); a recording without a known
    patient is its own group (its file stem).
``source``
    Where the recording comes from (str): a device, a challenge subset, a table.
``duration_s``
    Length in seconds (float, > 0), from the file header.
``sample_rate``
    Stored sample rate in Hz (int).
``fold``
    Fold id (int); ``-1`` means not assigned.

Readers may add columns after these (``sublabel``, ``location``, ...). Nothing downstream
knows a dataset's folder layout.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stetho.data.audio import AudioError, audio_info

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["path", "label", "patient", "source", "duration_s", "sample_rate", "fold"]

#: How an unlabelled recording is counted in summaries.
UNLABELLED = "(unlabelled)"

_TEXT_COLUMNS = ("path", "patient", "source")


def _examples(values: Iterable[Any], limit: int = 5) -> str:
    values = [str(v) for v in values]
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _pairs(paths: pd.Series, values: pd.Series) -> str:
    """``file (value)`` examples for an error message."""
    return _examples(f"{p} ({v!r})" for p, v in zip(paths, values, strict=True))


def _as_text(series: pd.Series) -> pd.Series:
    """Re-infer a text column so it gets pandas' default string dtype, missing as NA."""
    values = series.astype(object).where(series.notna(), None).tolist()
    return pd.Series(values, index=series.index)


def check_manifest(df: pd.DataFrame, *, name: str) -> pd.DataFrame:
    """Validate a Manifest and return a normalised copy (our ``check_array``).

    Enforces the columns of :data:`MANIFEST_COLUMNS` (in that order, extra columns after
    them), text values in ``path``/``patient``/``source`` and text-or-missing in ``label``,
    absolute and unique paths, finite positive durations (seconds), positive integer sample
    rates (Hz) and integer folds >= -1. Raises ``ValueError`` naming the dataset ``name``,
    the offending files and what was expected.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name}: expected a pandas DataFrame manifest, got {type(df).__name__}")
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{name}: manifest lacks column(s) {missing}; expected {MANIFEST_COLUMNS} "
            f"(got {list(df.columns)})"
        )
    extra = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    out = df[MANIFEST_COLUMNS + extra].reset_index(drop=True).copy()

    for column in (*_TEXT_COLUMNS, "label"):
        values = out[column]
        if column != "label" and values.isna().any():
            rows = out.loc[values.isna(), "path"]
            raise ValueError(f"{name}: column {column!r} is missing for {_examples(rows)}")
        not_text = values.notna() & ~values.map(lambda v: isinstance(v, str))
        if not_text.any():
            bad = _pairs(out.loc[not_text, "path"], values[not_text])
            raise ValueError(f"{name}: column {column!r} must hold text, got {bad}")
        out[column] = _as_text(values)
    # An empty label is a missing label, never a class called "".
    out.loc[out["label"] == "", "label"] = None

    relative = [p for p in out["path"] if not os.path.isabs(p)]
    if relative:
        raise ValueError(
            f"{name}: paths must be absolute, got {_examples(relative)}; resolve them against "
            "the data folder"
        )
    duplicated = out.loc[out["path"].duplicated(), "path"].unique()
    if len(duplicated):
        raise ValueError(f"{name}: each file must appear once, repeated: {_examples(duplicated)}")

    duration = pd.to_numeric(out["duration_s"], errors="coerce").astype(float)
    bad_duration = ~np.isfinite(duration) | (duration <= 0)
    if bad_duration.any():
        raise ValueError(
            f"{name}: duration_s must be a positive number of seconds, got "
            f"{_pairs(out.loc[bad_duration, 'path'], out.loc[bad_duration, 'duration_s'])}"
        )
    out["duration_s"] = duration

    for column, minimum, meaning in (
        ("sample_rate", 1, "a positive integer rate in Hz"),
        ("fold", -1, "an integer >= -1 (-1 = not assigned)"),
    ):
        values = pd.to_numeric(out[column], errors="coerce")
        invalid = values.isna() | (values < minimum) | (values != values.round())
        if invalid.any():
            bad = _pairs(out.loc[invalid, "path"], out.loc[invalid, column])
            raise ValueError(f"{name}: {column} must be {meaning}, got {bad}")
        out[column] = values.astype("int64")
    return out


def audio_headers(paths: Iterable[str | os.PathLike[str]], *, name: str) -> pd.DataFrame:
    """Header facts for building a manifest: ``path`` (absolute), ``duration_s``, ``sample_rate``.

    Reads headers only (fast). Files whose header cannot be read, or that hold no samples,
    are left out with one warning naming the dataset ``name``, each file and the reason; run
    ``stetho data check`` for a full decode of every file.
    """
    rows, skipped = [], []
    for path in dict.fromkeys(paths):  # each file once, in order
        try:
            info = audio_info(path)
        except AudioError as exc:
            skipped.append(str(exc))
            continue
        if info["frames"] <= 0:
            skipped.append(f"{path}: no audio samples")
            continue
        rows.append(
            {
                "path": str(Path(path).resolve()),
                "duration_s": info["duration_s"],
                "sample_rate": info["sample_rate"],
            }
        )
    if skipped:
        logger.warning(
            "%s: %d unreadable file(s) left out: %s", name, len(skipped), _examples(skipped, 20)
        )
    return pd.DataFrame(rows, columns=["path", "duration_s", "sample_rate"])


def _number(x: float) -> float:
    return round(float(x), 3)


def summarize_manifest(df: pd.DataFrame) -> dict[str, Any]:
    """Counts and duration statistics of a manifest, as plain JSON-ready values.

    Returns ``totals`` (recordings, labelled, unlabelled, patients, sources, hours),
    ``counts`` (``{label: {source: n}}``, unlabelled rows under ``"(unlabelled)"``),
    ``patients`` (``{source: n}``), ``sample_rates`` (``{source: [Hz, ...]}``) and
    ``duration_s`` (``{source: {min, median, max, total}}`` in seconds).
    """
    labelled = df["label"].notna()
    labels = df["label"].astype(object).where(labelled, UNLABELLED)
    table = pd.crosstab(labels, df["source"])
    counts = {
        str(label): {str(src): int(n) for src, n in row.items() if n}
        for label, row in table.iterrows()
    }
    durations = df.groupby("source")["duration_s"]
    duration = {
        str(src): {
            "min": _number(g.min()),
            "median": _number(g.median()),
            "max": _number(g.max()),
            "total": _number(g.sum()),
        }
        for src, g in durations
    }
    return {
        "totals": {
            "recordings": len(df),
            "labelled": int(labelled.sum()),
            "unlabelled": int((~labelled).sum()),
            "patients": int(df["patient"].nunique()),
            "sources": int(df["source"].nunique()),
            "hours": _number(df["duration_s"].sum() / 3600),
        },
        "counts": counts,
        "patients": {str(s): int(n) for s, n in df.groupby("source")["patient"].nunique().items()},
        "sample_rates": {
            str(s): sorted(int(r) for r in rates.unique())
            for s, rates in df.groupby("source")["sample_rate"]
        },
        "duration_s": duration,
    }
