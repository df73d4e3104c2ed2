"""Dataset readers: each turns one folder layout into a Manifest (see :mod:`stetho.data.manifest`).

A reader is a function ``reader(root, **kwargs) -> DataFrame`` filed under a name with
:func:`register_reader`. :func:`read_dataset` is the one front door: it picks the reader (by
name, or by :func:`detect_layout`) and validates the result with
:func:`~stetho.data.manifest.check_manifest`, so every reader's output obeys the same contract.

Registered layouts:

``pascal``        PASCAL Classifying Heart Sounds Challenge 2011 (Kaggle "Heartbeat Sounds")
``physionet2016`` PhysioNet/CinC Challenge 2016 (``training-a`` ... ``training-f``)
``circor``        CirCor DigiScope / PhysioNet Challenge 2022 (``training_data.csv``)
``table``         a csv/parquet table of audio paths and labels (Hydrogen Torch ``train.pq``)
``folder``        a plain folder of audio files, labelled by class subfolders if present
``manifest``      a Manifest table stetho wrote (``manifest.parquet``), read back as it is
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from stetho.data.manifest import apply_patient_regex, check_manifest

Reader = Callable[..., pd.DataFrame]
R = TypeVar("R", bound=Reader)

_READERS: dict[str, Reader] = {}

#: Suffixes read as a table by the ``table`` layout.
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def register_reader(name: str) -> Callable[[R], R]:
    """Decorator filing a reader ``fn(root, **kwargs) -> DataFrame`` under ``name``."""

    def decorator(fn: R) -> R:
        if name in _READERS and _READERS[name] is not fn:
            raise ValueError(f"a dataset reader named {name!r} is already registered")
        _READERS[name] = fn
        return fn

    return decorator


def list_readers() -> list[str]:
    """Names of the registered dataset layouts, sorted."""
    return sorted(_READERS)


def get_reader(name: str) -> Reader:
    """The reader registered as ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return _READERS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset layout {name!r}; registered layouts: "
            f"{', '.join(list_readers())} (or 'auto')"
        ) from None


def detect_layout(root: str | Path) -> str:
    """Guess the layout of ``root`` from marker files.

    * ``pascal``: ``set_a.csv`` or ``set_b.csv`` in ``root``;
    * ``physionet2016``: ``training-?/REFERENCE.csv`` below ``root``, or ``REFERENCE.csv`` in it;
    * ``circor``: ``training_data.csv`` in ``root``;
    * ``table``: ``root`` is a csv/tsv/parquet file;
    * ``folder``: anything else (a folder of audio files, or one audio file).
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    if root.is_file():
        return "table" if root.suffix.lower() in TABLE_SUFFIXES else "folder"
    if (root / "set_a.csv").is_file() or (root / "set_b.csv").is_file():
        return "pascal"
    if (root / "REFERENCE.csv").is_file() or any(root.glob("training-?/REFERENCE.csv")):
        return "physionet2016"
    if (root / "training_data.csv").is_file():
        return "circor"
    return "folder"


def read_dataset(
    root: str | Path,
    *,
    layout: str = "auto",
    patient_regex: str | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Read a dataset into a validated Manifest.

    ``layout`` is a registered name (see :func:`list_readers`) or ``"auto"``
    (:func:`detect_layout`). ``patient_regex`` takes each recording's patient id from its
    file name (:func:`~stetho.data.manifest.apply_patient_regex`) instead of the reader's.
    Extra keyword arguments go to the reader (e.g. ``data_folder``, ``label_column`` and
    ``patient_column`` for ``table``).
    """
    root = Path(root).expanduser()
    name = detect_layout(root) if layout == "auto" else layout
    reader = get_reader(name)
    where = f"{name} dataset {root}"
    manifest = check_manifest(reader(root, **kwargs), name=where)
    if patient_regex is not None:
        manifest = apply_patient_regex(manifest, patient_regex, name=where)
    return manifest


# The readers register themselves on import; they need register_reader defined above.
from stetho.data.readers import circor, pascal, physionet2016, table  # noqa: E402
from stetho.data.readers.table import read_folder, read_manifest, read_table  # noqa: E402

__all__ = [
    "TABLE_SUFFIXES",
    "circor",
    "detect_layout",
    "get_reader",
    "list_readers",
    "pascal",
    "physionet2016",
    "read_dataset",
    "read_folder",
    "read_manifest",
    "read_table",
    "register_reader",
    "table",
]
