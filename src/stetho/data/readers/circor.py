"""CirCor DigiScope phonocardiogram dataset / PhysioNet Challenge 2022 (Oliveira et al. 2022).

Layout::

    root/training_data.csv               one row per patient: Patient ID,
                                         Recording locations: (Locations in early releases),
                                         Murmur (Present/Absent/Unknown), Outcome (later releases)
    root/training_data/<id>_<loc>.wav    4 kHz (or .flac, any audio suffix); loc in AV, PV, TV,
                                         MV, Phc; repeats <id>_<loc>_<n>
    root/training_data/<id>_<loc>.tsv    segmentation (not read here), <id>.txt, *.hea

Labels are the patient-level murmur grade: ``present``, ``absent``, ``unknown`` (a label,
not a missing value: the annotator could not decide). Every recording of a patient takes
the patient's label; ``patient`` is ``circor/<id>``, ``source`` is ``circor``. Extra columns:
``location`` (auscultation site) and, when the csv has it, ``outcome`` (``abnormal``/``normal``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from stetho.data.audio import AUDIO_EXTENSIONS, iter_audio_files
from stetho.data.manifest import MANIFEST_COLUMNS, audio_headers
from stetho.data.readers import register_reader

logger = logging.getLogger(__name__)

LABELS = ("absent", "present", "unknown")
#: Column names of the locations list, newest release first.
LOCATION_COLUMNS = ("Recording locations:", "Locations")
_RECORDING = re.compile(r"^(?P<patient>\d+)_(?P<location>[A-Za-z]+)(?:_(?P<repeat>\d+))?$")


def _read_patients(table: Path) -> pd.DataFrame:
    patients = pd.read_csv(table, dtype=str, keep_default_na=False)
    patients.columns = [c.strip() for c in patients.columns]
    location_column = next((c for c in LOCATION_COLUMNS if c in patients.columns), None)
    missing = [c for c in ("Patient ID", "Murmur") if c not in patients.columns]
    if missing or location_column is None:
        raise ValueError(
            f"circor: {table} lacks column(s) {missing or list(LOCATION_COLUMNS)}; expected "
            f"'Patient ID', 'Murmur' and one of {list(LOCATION_COLUMNS)}, got "
            f"{list(patients.columns)}"
        )
    murmur = patients["Murmur"].str.strip().str.lower()
    bad = patients.loc[~murmur.isin(LABELS), "Patient ID"]
    if len(bad):
        raise ValueError(
            f"circor: {table}: Murmur must be Present, Absent or Unknown; patients "
            f"{', '.join(bad)} have {sorted(set(patients.loc[bad.index, 'Murmur']))}"
        )
    ids = patients["Patient ID"].str.strip()
    if ids.duplicated().any():
        raise ValueError(
            f"circor: {table}: each Patient ID must appear once, repeated: "
            f"{', '.join(ids[ids.duplicated()].unique())}"
        )
    out = pd.DataFrame(
        {
            "id": ids,
            "label": murmur,
            "locations": patients[location_column].str.split("+"),
        }
    )
    if "Outcome" in patients.columns:
        out["outcome"] = patients["Outcome"].str.strip().str.lower()
    return out.set_index("id")


@register_reader("circor")
def read_circor(root: str | Path) -> pd.DataFrame:
    """Manifest of the CirCor training set under ``root`` (see module doc)."""
    root = Path(root)
    table, folder = root / "training_data.csv", root / "training_data"
    if not table.is_file():
        raise FileNotFoundError(f"circor: {table} not found")
    if not folder.is_dir():
        raise FileNotFoundError(f"circor: recordings folder {folder} not found")
    patients = _read_patients(table)

    rows, unparsed, unknown_patients = [], [], []
    seen: set[tuple[str, str]] = set()
    for path in iter_audio_files(folder):
        match = _RECORDING.match(path.stem)
        if match is None:
            unparsed.append(path.name)
            continue
        pid, location = match["patient"], match["location"]
        seen.add((pid, location))
        known = pid in patients.index
        if not known:
            unknown_patients.append(path.name)
        row = {
            "path": str(path.resolve()),
            "label": patients.at[pid, "label"] if known else None,
            "patient": f"circor/{pid}",
            "source": "circor",
            "location": location,
        }
        if "outcome" in patients.columns:
            row["outcome"] = patients.at[pid, "outcome"] if known else None
        rows.append(row)

    if unparsed:
        logger.warning(
            "circor: %d file(s) in %s are not named <patient>_<location>[_n], left out: %s",
            len(unparsed),
            folder,
            ", ".join(unparsed),
        )
    if unknown_patients:
        logger.warning(
            "circor: %d file(s) belong to patients missing from %s, kept unlabelled: %s",
            len(unknown_patients),
            table.name,
            ", ".join(unknown_patients),
        )
    absent = [
        f"{pid}_{location}"
        for pid, locations in patients["locations"].items()
        for location in dict.fromkeys(loc.strip() for loc in locations if loc.strip())
        if (pid, location) not in seen
    ]
    if absent:
        logger.warning(
            "circor: %d recording location(s) listed in %s have no audio file: %s",
            len(absent),
            table.name,
            ", ".join(absent),
        )
    files = pd.DataFrame(rows)
    if files.empty:
        raise ValueError(
            f"circor: no <patient>_<location> audio recordings ({', '.join(AUDIO_EXTENSIONS)}) "
            f"in {folder}"
        )
    headers = audio_headers(files["path"], name=f"circor {root}")
    manifest = files.merge(headers, on="path", how="inner", validate="one_to_one")
    manifest["fold"] = -1
    extra = [c for c in ("location", "outcome") if c in manifest.columns]
    return manifest[[*MANIFEST_COLUMNS, *extra]]
