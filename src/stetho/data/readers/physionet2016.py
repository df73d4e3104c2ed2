"""PhysioNet/CinC Challenge 2016: classification of normal/abnormal heart sound recordings.

Layout (Liu et al. 2016, Physiol. Meas. 37(12))::

    root/training-a/REFERENCE.csv   record,label  (no header; 1 = abnormal, -1 = normal)
    root/training-a/a0001.wav       2 kHz mono 16-bit, plus a0001.hea (WFDB header)
    ...
    root/training-f/...

``root`` may also be one ``training-?`` folder (holding ``REFERENCE.csv`` itself).

Labels: ``abnormal`` / ``normal``. ``source`` is the folder name (each folder comes from a
different research group and device). The challenge publishes no patient ids, and some
patients contributed several records, so patient grouping is impossible here: each record
is its own group (``patient`` = record name, e.g. ``a0001``, unique across the folders
because of its letter). Expect folds on this set to be slightly optimistic.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from stetho.data.manifest import MANIFEST_COLUMNS, audio_headers
from stetho.data.readers import register_reader

logger = logging.getLogger(__name__)

#: REFERENCE.csv codes of the challenge.
LABEL_CODES = {"1": "abnormal", "-1": "normal"}


def _read_folder(folder: Path) -> pd.DataFrame:
    reference = pd.read_csv(
        folder / "REFERENCE.csv", header=None, names=["record", "code"], dtype=str
    )
    codes = reference["code"].str.strip()
    bad = reference.loc[~codes.isin(list(LABEL_CODES)), "record"]
    if len(bad):
        raise ValueError(
            f"physionet2016: {folder / 'REFERENCE.csv'}: label must be 1 (abnormal) or -1 "
            f"(normal); records {', '.join(bad)} have {sorted({str(c) for c in codes[bad.index]})}"
        )
    labels = dict(zip(reference["record"].str.strip(), codes.map(LABEL_CODES), strict=True))
    on_disk = {p.stem: p for p in sorted(folder.glob("*.wav"))}

    missing = sorted(set(labels) - set(on_disk))
    if missing:
        logger.warning(
            "physionet2016: %d record(s) in %s/REFERENCE.csv have no .wav file, left out: %s",
            len(missing),
            folder.name,
            ", ".join(missing),
        )
    unlisted = sorted(set(on_disk) - set(labels))
    if unlisted:
        logger.warning(
            "physionet2016: %d .wav file(s) in %s are not in REFERENCE.csv, kept unlabelled: %s",
            len(unlisted),
            folder.name,
            ", ".join(unlisted),
        )
    return pd.DataFrame(
        {
            "path": [str(p.resolve()) for p in on_disk.values()],
            "label": [labels.get(record) for record in on_disk],
            "patient": list(on_disk),
            "source": folder.name,
        }
    )


@register_reader("physionet2016")
def read_physionet2016(root: str | Path) -> pd.DataFrame:
    """Manifest of the PhysioNet/CinC 2016 training set under ``root`` (see module doc)."""
    root = Path(root)
    folders = (
        [root]
        if (root / "REFERENCE.csv").is_file()
        else sorted(p.parent for p in root.glob("training-?/REFERENCE.csv"))
    )
    if not folders:
        raise FileNotFoundError(
            f"physionet2016: no REFERENCE.csv in {root} or in its training-? folders"
        )
    files = pd.concat([_read_folder(folder) for folder in folders], ignore_index=True)
    headers = audio_headers(files["path"], name=f"physionet2016 {root}")
    manifest = files.merge(headers, on="path", how="inner", validate="one_to_one")
    manifest["fold"] = -1
    return manifest[MANIFEST_COLUMNS]
