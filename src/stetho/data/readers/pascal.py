"""PASCAL Classifying Heart Sounds Challenge 2011 (Bentley et al.), as published on Kaggle.

Layout::

    root/set_a.csv        dataset,fname,label,sublabel  (labelled set_a files only)
    root/set_b.csv        same columns, every set_b file, with names that differ on disk
    root/set_a/*.wav      44.1 kHz, iStethoscope app: artifact, extrahls, murmur, normal
    root/set_b/*.wav      4 kHz, DigiScope: normal, murmur, extrastole

The traps this reader handles (see the dataset README):

* ``set_a.csv`` omits the 52 ``Aunlabelledtest__*`` files: they are read from disk, unlabelled.
* ``set_b.csv`` names no file as written: ``Btraining_murmur_112_...`` is
  ``murmur__112_...`` on disk, ``Btraining_normal_Btraining_noisynormal_...`` is
  ``normal_noisynormal_...``, ``Bunlabelledtest_...`` is ``Bunlabelledtest__...``.
* Noisy sub-classes are folded into their class (``noisynormal`` -> ``normal``,
  ``noisymurmur`` -> ``murmur``); the original is kept in the ``sublabel`` column.
* set_b names carry a patient id (``murmur__112_1306243000964_A.wav`` -> ``set_b/112``;
  letters A, B, C... are further recordings of that patient), so folds can group patients.
  set_a names carry only a recording timestamp, so set_a files are grouped by it
  (``set_a/201104021355``): two files share a timestamp twice, and one of those pairs is the
  same recording under two labels (``murmur__`` and ``extrahls__201104021355``), which must not
  sit on both sides of a fold.
* Labels from the csv are cross-checked against the file-name prefix; files listed but
  missing, or present but unlisted, are reported with a warning, never dropped silently.

Labels: ``artifact, extrahls, extrastole, murmur, normal``; unlabelled files get ``None``.
artifact and extrahls occur only in set_a, so ``source`` alone predicts them.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import pandas as pd

from stetho.data.audio import iter_audio_files
from stetho.data.manifest import MANIFEST_COLUMNS, audio_headers
from stetho.data.readers import register_reader

logger = logging.getLogger(__name__)

SETS = ("set_a", "set_b")
LABELS = ("artifact", "extrahls", "extrastole", "murmur", "normal")
#: Noisy sub-classes and the class they belong to.
SUBLABEL_TO_LABEL = {"noisynormal": "normal", "noisymurmur": "murmur"}
#: File-name prefixes of the challenge's unlabelled test recordings.
UNLABELLED_PREFIXES = ("Aunlabelledtest", "Bunlabelledtest")

#: ``<prefix>__<rest>`` or ``<prefix>_<sublabel>_<rest>``; set_b ``rest`` starts with the
#: patient id: ``<patient>_<timestamp>_<letter>[<n>|_<n>]``.
_FILE_NAME = re.compile(r"^(?P<prefix>[A-Za-z]+)_(?:(?P<sublabel>noisy[a-z]+)_|_)(?P<rest>.+)$")
_PATIENT = re.compile(r"^(?P<patient>\d+)_\d+_")


def _parse_stem(stem: str) -> tuple[str | None, str | None, str | None]:
    """``(label, sublabel, group)`` from a file stem; ``None`` where absent.

    The group is the set_b patient number, or the whole id after the label (the set_a
    recording timestamp) where there is no patient number.
    """
    match = _FILE_NAME.match(stem)
    if match is None:
        return None, None, None
    prefix, sublabel, rest = match["prefix"], match["sublabel"], match["rest"]
    label = None if prefix in UNLABELLED_PREFIXES else prefix
    patient = _PATIENT.match(rest)
    return label, sublabel, patient["patient"] if patient else rest


def csv_name_to_file_name(fname: str) -> str:
    """Map a ``fname`` of the csv files onto the file name on disk.

    >>> csv_name_to_file_name("set_b/Btraining_murmur_112_1306243000964_A.wav")
    'murmur__112_1306243000964_A.wav'
    >>> csv_name_to_file_name("set_b/Btraining_normal_Btraining_noisynormal_101_13_B.wav")
    'normal_noisynormal_101_13_B.wav'
    >>> csv_name_to_file_name("set_b/Bunlabelledtest_101_1305030823364_A.wav")
    'Bunlabelledtest__101_1305030823364_A.wav'
    >>> csv_name_to_file_name("set_a/artifact__201012172012.wav")
    'artifact__201012172012.wav'
    """
    name = Path(fname).name.replace("Btraining_", "")
    # Without a sub-label the files use a double underscore before the patient id.
    return re.sub(r"^([A-Za-z]+)_(?=\d)", r"\1__", name)


def _normalise(label: object) -> str | None:
    """A csv label as a class name: empty -> None, noisy sub-class -> its class."""
    if label is None or (isinstance(label, float) and math.isnan(label)) or label is pd.NA:
        return None
    text = str(label).strip()
    if not text:
        return None
    return SUBLABEL_TO_LABEL.get(text, text)


def _read_set(root: Path, name: str) -> pd.DataFrame:
    folder, table = root / name, root / f"{name}.csv"
    files = {p.name: p for p in iter_audio_files(folder)} if folder.is_dir() else {}
    if not folder.is_dir():
        logger.warning("pascal: folder %s not found", folder)

    listed: dict[str, tuple[str | None, str | None]] = {}
    if table.is_file():
        csv = pd.read_csv(table, dtype=str, keep_default_na=False)
        for fname, label, sublabel in zip(csv["fname"], csv["label"], csv["sublabel"], strict=True):
            listed[csv_name_to_file_name(fname)] = (_normalise(label), sublabel.strip() or None)
    else:
        logger.warning("pascal: %s not found; labels taken from file names", table)

    missing = sorted(set(listed) - set(files))
    if missing:
        logger.warning(
            "pascal: %d file(s) listed in %s are not in %s, left out: %s",
            len(missing),
            table.name,
            folder,
            ", ".join(missing),
        )
    rows = []
    disagree, unlisted, unparsed = [], [], []
    for file_name, path in sorted(files.items()):
        stem_label, stem_sublabel, patient = _parse_stem(path.stem)
        if stem_label is None and not path.stem.startswith(UNLABELLED_PREFIXES):
            unparsed.append(file_name)
        if file_name in listed:
            label, sublabel = listed[file_name]
            if label != stem_label:
                disagree.append(f"{file_name} (csv {label!r}, file name {stem_label!r})")
        else:
            label, sublabel = stem_label, stem_sublabel
            # The unlabelled set_a files are known to be absent from set_a.csv.
            if table.is_file() and label is not None:
                unlisted.append(file_name)
        rows.append(
            {
                "path": str(path.resolve()),
                "label": label,
                "patient": f"{name}/{patient}" if patient else f"{name}/{path.stem}",
                "source": name,
                "sublabel": sublabel,
            }
        )
    if disagree:
        logger.warning(
            "pascal: %s label and file name disagree for %d file(s), the csv label is used: %s",
            table.name,
            len(disagree),
            "; ".join(disagree),
        )
    if unlisted:
        logger.warning(
            "pascal: %d labelled file(s) in %s are not listed in %s; label from the file name: %s",
            len(unlisted),
            folder,
            table.name,
            ", ".join(unlisted),
        )
    if unparsed:
        logger.warning(
            "pascal: %d file name(s) in %s do not follow <label>__<id>.wav, left unlabelled: %s",
            len(unparsed),
            folder,
            ", ".join(unparsed),
        )
    return pd.DataFrame(rows, columns=["path", "label", "patient", "source", "sublabel"])


@register_reader("pascal")
def read_pascal(root: str | Path) -> pd.DataFrame:
    """Manifest of the PASCAL heart-sound challenge folder ``root`` (set_a and set_b).

    Durations and sample rates come from the WAV headers. Extra column: ``sublabel``
    (``noisynormal``/``noisymurmur`` in set_b, else ``None``).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"pascal: {root} is not a folder")
    files = pd.concat([_read_set(root, name) for name in SETS], ignore_index=True)
    unknown = sorted(set(files["label"].dropna()) - set(LABELS))
    if unknown:
        logger.warning("pascal: labels outside the challenge's five classes: %s", unknown)
    headers = audio_headers(files["path"], name=f"pascal {root}")
    manifest = files.merge(headers, on="path", how="inner", validate="one_to_one")
    manifest["fold"] = -1
    return manifest[[*MANIFEST_COLUMNS, "sublabel"]]
