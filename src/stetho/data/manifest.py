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
import re
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


# --- patients ---------------------------------------------------------------------------------


def compile_patient_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled; it must have one group or a group named ``patient``.

    ``ValueError`` saying what is wrong otherwise (bad syntax, no group, several unnamed).
    """
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"--patient-regex {pattern!r}: not a regular expression: {exc}") from None
    if "patient" not in compiled.groupindex and compiled.groups != 1:
        raise ValueError(
            f"--patient-regex {pattern!r} has {compiled.groups} groups; give one group, or a "
            r"named group (?P<patient>...), that captures the patient id, e.g. '^(\d+)_'"
        )
    return compiled


def apply_patient_regex(df: pd.DataFrame, pattern: str, *, name: str) -> pd.DataFrame:
    """A copy of manifest ``df`` whose ``patient`` is taken from each file name by ``pattern``.

    The pattern is searched (:func:`re.search`) in the file name (``murmur__112_1306_A.wav``);
    its ``patient`` group, else its one group, is the id, prefixed with the source
    (``set_b/112``) so that two sources' ids cannot collide. A file the pattern does not
    match, or matches with an empty id, is an error naming the dataset ``name`` and the files:
    a silent fall-back to one patient per file would undo the grouping asked for.
    """
    compiled = compile_patient_regex(pattern)
    group: str | int = "patient" if "patient" in compiled.groupindex else 1
    ids: list[str | None] = []
    for path in df["path"]:
        match = compiled.search(Path(path).name)
        value = match.group(group) if match is not None else None
        ids.append(value if value else None)
    unmatched = [p for p, i in zip(df["path"], ids, strict=True) if i is None]
    if unmatched:
        raise ValueError(
            f"{name}: --patient-regex {pattern!r} finds no patient id in the file name of "
            f"{len(unmatched)} of {len(df)} recording(s): {_examples(unmatched)}; the pattern is "
            "searched in the file name (not the folder)"
        )
    out = df.copy()
    out["patient"] = [f"{src}/{pid}" for src, pid in zip(out["source"], ids, strict=True)]
    return out


def apply_patient_column(df: pd.DataFrame, column: str, *, name: str) -> pd.DataFrame:
    """A copy of manifest ``df`` whose ``patient`` is the (extra) column ``column``, prefixed
    with the source; a missing value is an error naming the files."""
    if column not in df.columns:
        raise ValueError(
            f"{name}: no column {column!r} to take patient ids from; its columns are "
            f"{list(df.columns)}"
        )
    values = df[column]
    blank = values.isna() | (values.astype(str).str.strip() == "")
    if blank.any():
        raise ValueError(
            f"{name}: column {column!r} has no patient id for {_examples(df.loc[blank, 'path'])}"
        )
    out = df.copy()
    out["patient"] = [
        f"{src}/{str(v).strip()}" for src, v in zip(out["source"], values, strict=True)
    ]
    return out


def one_patient_per_recording(df: pd.DataFrame) -> list[str]:
    """Sources of ``df`` (with more than one labelled recording) in which every labelled
    recording is its own patient group: no patient ids were found there."""
    labelled = df[df["label"].notna()]
    out = []
    for source, part in labelled.groupby("source", sort=True):
        if len(part) > 1 and part["patient"].nunique() == len(part):
            out.append(str(source))
    return out


def patient_warning(df: pd.DataFrame) -> str | None:
    """The warning for :func:`one_patient_per_recording`, or ``None`` when every source has
    patients with several recordings."""
    sources = one_patient_per_recording(df)
    if not sources:
        return None
    return (
        f"every recording is its own patient in source(s) {', '.join(sources)}: the data names "
        "no patients there, so recordings of one patient can fall on both sides of a fold (or "
        "count as independent in confidence intervals) and scores may be optimistic; give the "
        "patient ids with --patient-regex (a pattern on the file name, e.g. '^(\\d+)_') or a "
        "patient column in a table"
    )
