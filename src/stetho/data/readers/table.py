"""Generic layouts: a table of audio paths and labels, and a plain folder of audio files.

``table`` reads H2O Hydrogen Torch's audio-classification tables unchanged: a csv or
parquet file (``train.pq``) with an ``audio`` column of file names relative to
``data_folder`` and a ``class`` label column (or several one-hot label columns).

``folder`` reads a folder of audio files; when the files sit in class subfolders
(``root/<label>/<file>``) the subfolder names are the labels, otherwise they are unlabelled.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from stetho.data.audio import AUDIO_EXTENSIONS, iter_audio_files, os_error_reason
from stetho.data.manifest import MANIFEST_COLUMNS, audio_headers
from stetho.data.readers import TABLE_SUFFIXES, register_reader

logger = logging.getLogger(__name__)

#: Label values that mean "no label" (Hydrogen Torch's heartbeat table says ``unlabel``).
UNLABELLED_VALUES = ("", "unlabel", "unlabelled", "unlabeled")


#: Columns a table may name its audio files by, in this order of preference: ``path`` (what
#: ``stetho predict`` writes) or ``audio`` (Hydrogen Torch's name).
AUDIO_COLUMNS = ("path", "audio")


def load_table(path: str | Path, *, as_text: bool = False) -> pd.DataFrame:
    """Read a csv/tsv/parquet table; every failure is a ``ValueError`` naming the file.

    With ``as_text`` csv/tsv cells are read as written (strings, blanks as ``""``), as a
    list of paths must be. An empty file, a csv without a header row and a table without
    rows are refused, each saying so.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(
            f"table: {path}: unsupported table format {suffix!r}; use {TABLE_SUFFIXES}"
        )
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"table: {path} not found") from None
    except OSError as exc:
        raise ValueError(f"table: {path}: {os_error_reason(exc)}") from None
    if size == 0:
        raise ValueError(f"table: {path}: empty file (0 bytes); expected a header row and rows")
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        elif as_text:
            sep = "\t" if suffix == ".tsv" else ","
            df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        else:
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"table: {path}: the file is empty (no header row, no rows); expected a header "
            f"row naming the columns (e.g. {', '.join(AUDIO_COLUMNS)}) and one row per recording"
        ) from None
    except OSError as exc:
        raise ValueError(f"table: {path}: {os_error_reason(exc)}") from None
    except (ValueError, pd.errors.ParserError) as exc:  # pyarrow's errors are ValueErrors
        raise ValueError(f"table: {path}: cannot read the table: {exc}") from None
    if len(df) == 0:
        raise ValueError(
            f"table: {path}: the table has a header row ({', '.join(map(str, df.columns))}) but "
            "no rows; expected one row per recording"
        )
    return df


def find_audio_column(df: pd.DataFrame, table: str | Path, column: str | None = None) -> str:
    """The column of ``df`` (read from ``table``) that names the audio files.

    ``column`` when the table has it; otherwise (or when ``column`` is ``None``) the first
    of :data:`AUDIO_COLUMNS` the table has, so that ``path`` and ``audio`` both work wherever
    a table of recordings is read. A ``column`` that is neither, and absent, is an error, as
    is a table with none of them.
    """
    if column is not None and column in df.columns:
        return column
    if column is None or column in AUDIO_COLUMNS:
        for candidate in AUDIO_COLUMNS:
            if candidate in df.columns:
                return candidate
    wanted = [column] if column is not None and column not in AUDIO_COLUMNS else []
    wanted += list(AUDIO_COLUMNS)
    raise ValueError(
        f"table: {table} has no audio column; expected one of {wanted} (file paths, relative "
        f"to the table's folder), its columns are {list(df.columns)}"
    )


def resolve_audio_path(value: str, base: str | Path) -> str:
    """An audio path as written in a table, made absolute: relative entries are relative to
    ``base`` (the table's folder, or ``data_folder``). Links are not resolved."""
    target = Path(value)
    return os.path.abspath(target if target.is_absolute() else Path(base) / target)


def table_audio_paths(
    table: str | Path, *, column: str | None = None, data_folder: str | Path | None = None
) -> list[tuple[str, str]]:
    """The recordings a table lists: ``(as written, absolute path)`` per row, in order.

    The column is found by :func:`find_audio_column`; relative entries are relative to
    ``data_folder`` (default: the table's folder) by :func:`resolve_audio_path`. Blank
    cells are kept (as ``""``) so that the caller can report the row.
    """
    table = Path(table)
    df = load_table(table, as_text=True)
    name = find_audio_column(df, table, column)
    base = Path(data_folder) if data_folder is not None else table.parent
    values = ["" if pd.isna(v) else str(v) for v in df[name]]
    return [(v, resolve_audio_path(v, base)) for v in values]


def _require(df: pd.DataFrame, columns: Sequence[str], *, path: Path, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"table: {path} has no {what} column(s) {missing}; its columns are {list(df.columns)}"
        )


def _labels(df: pd.DataFrame, columns: list[str], unlabelled: Sequence[str], path: Path) -> list:
    """One label per row: the value of a single label column, or the name of the one hot
    column among several one-hot columns (none hot -> unlabelled)."""
    if len(columns) == 1:
        values = df[columns[0]]
        text = values.astype(object).where(values.notna(), None)
        return [
            None if v is None or str(v).strip().lower() in unlabelled else str(v).strip()
            for v in text
        ]
    hot = df[columns].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() >= 0.5
    several = np.flatnonzero(hot.sum(axis=1) > 1)
    if len(several):
        rows = ", ".join(str(i) for i in several[:5])
        raise ValueError(
            f"table: {path}: rows {rows} have more than one of the label columns {columns} set; "
            "a manifest holds one label per recording"
        )
    return [columns[int(np.argmax(row))] if row.any() else None for row in hot]


@register_reader("table")
def read_table(
    path: str | Path,
    *,
    data_folder: str | Path | None = None,
    audio_column: str = "audio",
    label_column: str | Sequence[str] = "class",
    patient_column: str | None = None,
    fold_column: str | None = None,
    unlabelled_values: Sequence[str] = UNLABELLED_VALUES,
) -> pd.DataFrame:
    """Manifest of a csv/tsv/parquet table of recordings (Hydrogen Torch ``train.pq`` style).

    Parameters
    ----------
    path
        The table.
    data_folder
        Folder that relative audio paths are relative to; defaults to the table's folder.
    audio_column
        Column of audio file paths; when the table lacks it, ``path`` or ``audio`` (see
        :func:`find_audio_column`).
    label_column
        One label column, or several one-hot columns (the hot column's name is the label).
        Values in ``unlabelled_values`` (case-insensitive) and missing values mean unlabelled.
    patient_column
        Column of patient ids; defaults to ``patient`` when the table has one, otherwise
        every recording is its own group (its path without suffix).
    fold_column
        Column of fold ids copied into ``fold``; defaults to ``fold`` when present, else -1.

    ``source`` is the table's ``source`` column when present, else the table's stem
    (``train``). All other columns are kept as extra manifest columns.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table: {path} not found")
    df = load_table(path).reset_index(drop=True)
    label_columns = [label_column] if isinstance(label_column, str) else list(label_column)
    audio_column = find_audio_column(df, path, audio_column)
    _require(df, label_columns, path=path, what="label")
    if patient_column is None and "patient" in df.columns:
        patient_column = "patient"
    if fold_column is None and "fold" in df.columns:
        fold_column = "fold"
    _require(df, [c for c in (patient_column, fold_column) if c], path=path, what="id")

    base = Path(data_folder) if data_folder is not None else path.parent
    audio = [Path(str(v)) for v in df[audio_column]]
    files = pd.DataFrame(
        {
            "path": [str((p if p.is_absolute() else base / p).resolve()) for p in audio],
            "label": _labels(df, label_columns, [v.lower() for v in unlabelled_values], path),
            "source": df["source"].astype(str) if "source" in df.columns else path.stem,
        }
    )
    if patient_column:
        files["patient"] = df[patient_column].astype(str)
    else:
        files["patient"] = [
            f"{src}/{p.with_suffix('')}" for src, p in zip(files["source"], audio, strict=True)
        ]
    if fold_column:
        files["fold"] = pd.to_numeric(df[fold_column], errors="raise").fillna(-1).astype(int)
    else:
        files["fold"] = -1
    used = {audio_column, *label_columns, patient_column, fold_column, *MANIFEST_COLUMNS}
    extra = [c for c in df.columns if c not in used]
    files = pd.concat([files, df[extra]], axis=1)

    headers = audio_headers(files["path"], name=f"table {path}")
    manifest = files.merge(headers, on="path", how="inner")
    return manifest[[*MANIFEST_COLUMNS, *extra]]


@register_reader("manifest")
def read_manifest(path: str | Path) -> pd.DataFrame:
    """A Manifest table (``manifest.parquet`` of a run, or one written by a tool), as it is.

    The table must hold the columns of :data:`~stetho.data.manifest.MANIFEST_COLUMNS` with
    absolute paths; :func:`~stetho.data.readers.read_dataset` validates it like any reader's
    output. Nothing is re-read from the audio headers: the table is the dataset.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest: {path} not found")
    df = load_table(path, as_text=path.suffix.lower() not in (".parquet", ".pq"))
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"manifest: {path} lacks the manifest column(s) {missing}; a manifest has "
            f"{MANIFEST_COLUMNS} (read a table of paths and labels with --layout table)"
        )
    return df


@register_reader("folder")
def read_folder(root: str | Path, *, labels_from_folders: bool | None = None) -> pd.DataFrame:
    """Manifest of every audio file under ``root`` (or of ``root`` itself if it is a file).

    With ``labels_from_folders=True`` each file's label is the name of its top-level
    subfolder (``root/<label>/...``); files directly in ``root`` stay unlabelled. ``None``
    (default) decides so when every file sits exactly one level down (in one or more class
    subfolders); otherwise all files are unlabelled. ``source`` is the folder's name and
    each recording is its own patient group (``<source>/<relative path without suffix>``).
    """
    root = Path(root)
    files = iter_audio_files(root)
    if not files:
        raise ValueError(f"folder: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {root}")
    base = root.parent if root.is_file() else root
    relative = [p.relative_to(base) for p in files]
    if labels_from_folders is None:
        folders = {r.parts[0] for r in relative if len(r.parts) == 2}
        # One subfolder holding every file is one class (a single-class training folder), so
        # that "found one class" can be said; files directly in root stay unlabelled.
        labels_from_folders = all(len(r.parts) == 2 for r in relative) and len(folders) >= 1
        if labels_from_folders:
            logger.info("folder: labels from subfolders of %s: %s", root, sorted(folders))
    source = base.name
    frame = pd.DataFrame(
        {
            "path": [str(p.resolve()) for p in files],
            "label": [
                r.parts[0] if labels_from_folders and len(r.parts) > 1 else None for r in relative
            ],
            "patient": [f"{source}/{r.with_suffix('')}" for r in relative],
            "source": source,
        }
    )
    headers = audio_headers(frame["path"], name=f"folder {root}")
    manifest = frame.merge(headers, on="path", how="inner", validate="one_to_one")
    manifest["fold"] = -1
    return manifest[MANIFEST_COLUMNS]
