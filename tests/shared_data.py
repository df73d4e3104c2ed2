"""Small slices of the shared PhysioNet 2016 and CirCor 2022 data, in their published layouts,
for tests that read, train on or evaluate real recordings of other devices."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest
from conftest import WORKSPACE

SHARED = WORKSPACE / "shared/data"
PHYSIONET = SHARED / "physionet-2016"
CIRCOR = SHARED / "circor-2022-dev"

needs_physionet = pytest.mark.skipif(
    not (PHYSIONET / "training-b/REFERENCE.csv").is_file(), reason="shared PhysioNet 2016 absent"
)
needs_circor = pytest.mark.skipif(
    not (CIRCOR / "training_data.csv").is_file(), reason="shared CirCor 2022 sample absent"
)

#: Two normal (-1) and two abnormal (1) records of training-b.
PHYSIONET_RECORDS = ("b0001", "b0002", "b0008", "b0013")
#: Absent, Present and Unknown patients with two recordings each (AV, MV).
CIRCOR_PATIENTS = ("49873", "49900", "29378")


def physionet_slice(
    root: Path, records: Sequence[str] = PHYSIONET_RECORDS, *, folder: str = "training-b"
) -> Path:
    """``root/<folder>`` with ``records``' FLAC audio, WFDB headers and REFERENCE.csv rows."""
    src, dest = PHYSIONET / folder, root / folder
    dest.mkdir(parents=True)
    reference = pd.read_csv(src / "REFERENCE.csv", header=None, dtype=str)
    reference[reference[0].isin(records)].to_csv(dest / "REFERENCE.csv", header=False, index=False)
    for record in records:
        for suffix in (".flac", ".hea"):
            shutil.copy(src / f"{record}{suffix}", dest / f"{record}{suffix}")
    return root


def circor_slice(
    root: Path, patients: Sequence[str] = CIRCOR_PATIENTS, *, new_release: bool = False
) -> Path:
    """``root`` in the CirCor layout with ``patients``' rows and recordings.

    ``new_release`` renames ``Locations`` to ``Recording locations:`` and adds an ``Outcome``
    column, as the full release has.
    """
    (root / "training_data").mkdir(parents=True)
    table = pd.read_csv(CIRCOR / "training_data.csv", dtype=str, keep_default_na=False)
    table = table[table["Patient ID"].isin(patients)].copy()
    if new_release:
        table = table.rename(columns={"Locations": "Recording locations:"})
        table["Outcome"] = ["Abnormal" if m == "Present" else "Normal" for m in table["Murmur"]]
    table.to_csv(root / "training_data.csv", index=False)
    for patient in patients:
        for path in sorted((CIRCOR / "training_data").glob(f"{patient}_*")):
            shutil.copy(path, root / "training_data" / path.name)
    return root
