"""PhysioNet/CinC Challenge 2016: classification of normal/abnormal heart sound recordings.

Layout (Liu et al. 2016, Physiol. Meas. 37(12))::

    root/training-a/REFERENCE.csv   record,label  (no header; 1 = abnormal, -1 = normal)
    root/training-a/a0001.wav       2 kHz mono 16-bit, plus a0001.hea (WFDB header); any
                                    audio suffix soundfile reads (a lossless .flac copy too)
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

from stetho.data.audio import AUDIO_EXTENSIONS
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
    on_disk = _audio_by_record(folder)
    if not on_disk:
        raise ValueError(
            f"physionet2016: {folder} holds no audio files ({', '.join(AUDIO_EXTENSIONS)}) "
            f"for the {len(labels)} records of its REFERENCE.csv; put each <record>.wav (or "
            ".flac) beside REFERENCE.csv"
        )

    missing = sorted(set(labels) - set(on_disk))
    if missing:
        logger.warning(
            "physionet2016: %d record(s) in %s/REFERENCE.csv have no audio file, left out: %s",
            len(missing),
            folder.name,
            ", ".join(missing),
        )
    unlisted = sorted(set(on_disk) - set(labels))
    if unlisted:
        logger.warning(
            "physionet2016: %d audio file(s) in %s are not in REFERENCE.csv, kept unlabelled: %s",
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


def _audio_by_record(folder: Path) -> dict[str, Path]:
    """The audio file of each record in ``folder`` (not below it), by record name.

    Any suffix of :data:`~stetho.data.audio.AUDIO_EXTENSIONS` is a record's audio (the
    challenge publishes WAV; a lossless FLAC copy is the same record). A record stored twice
    (``a0001.wav`` and ``a0001.flac``) is read from the first in that order, with a warning.
    """
    rank = {ext: i for i, ext in enumerate(AUDIO_EXTENSIONS)}
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in rank and not path.name.startswith(".") and path.is_file():
            found.setdefault(path.stem, []).append(path)
    out = {}
    for record, paths in found.items():
        paths.sort(key=lambda p: rank[p.suffix.lower()])
        if len(paths) > 1:
            logger.warning(
                "physionet2016: record %s of %s has %d audio files (%s): reading %s",
                record,
                folder.name,
                len(paths),
                ", ".join(p.name for p in paths),
                paths[0].name,
            )
        out[record] = paths[0]
    return out


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
