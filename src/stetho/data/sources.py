"""Several datasets as one Manifest (``dataset.sources``).

Each source is read by its reader (:func:`stetho.data.readers.read_dataset`), its labels are
mapped onto the run's vocabulary (``label_map``: a class, a name of ``dataset.label_groups``
or :data:`LEFT_OUT`), and the Manifests are joined with a ``dataset`` column naming the
source. Patient ids stay prefixed with their reader's source (``set_b/112``, ``circor/50001``)
so patient-grouped folds keep a patient on one side within each dataset, and a recording that
two sources both list is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from stetho.config import SourceConfig
from stetho.data.manifest import check_manifest
from stetho.data.readers import detect_layout, read_dataset

logger = logging.getLogger(__name__)

#: A label map target that leaves the label's recordings out of the run.
LEFT_OUT = "-"


def source_name(source: SourceConfig) -> str:
    """The ``dataset`` value of ``source``: its ``name``, else its folder's name."""
    return source.name or Path(source.path).expanduser().resolve().name


def map_labels(frame: pd.DataFrame, label_map: dict[str, str], *, name: str) -> pd.DataFrame:
    """``frame`` with its labels mapped (case-insensitively) and :data:`LEFT_OUT` rows dropped.

    A key of ``label_map`` that no recording carries is an error naming the labels there
    are: a typo would otherwise leave a class unmapped in silence.
    """
    targets = {str(k).strip().lower(): str(v).strip() for k, v in label_map.items()}
    present = {str(v).lower() for v in frame["label"].dropna()}
    unused = sorted(set(targets) - present)
    if unused:
        raise ValueError(
            f"dataset source {name!r}: label_map names label(s) {unused} that no recording "
            f"has; its labels are {sorted(present)}"
        )
    out = frame.copy()
    lowered = out["label"].map(lambda v: None if pd.isna(v) else str(v).lower())
    out["label"] = lowered.map(lambda v: None if v is None else targets.get(v, v))
    dropped = out["label"] == LEFT_OUT
    if dropped.any():
        logger.info(
            "dataset source %s: %d recording(s) left out by its label_map", name, dropped.sum()
        )
    return out[~dropped].reset_index(drop=True)


def read_sources(sources: Sequence[SourceConfig]) -> pd.DataFrame:
    """One Manifest of every source, labels mapped, with a ``dataset`` column (module doc)."""
    if not sources:
        raise ValueError("dataset.sources is empty: list at least one {path, layout, label_map}")
    frames, names = [], set()
    for source in sources:
        name = source_name(source)
        if name in names:
            raise ValueError(
                f"dataset.sources: two sources are named {name!r}; give each a distinct name"
            )
        names.add(name)
        root = Path(source.path).expanduser()
        layout = detect_layout(root) if source.layout == "auto" else source.layout
        frame = read_dataset(root, layout=layout, patient_regex=source.patient_regex)
        frame = map_labels(frame, source.label_map, name=name)
        frame["dataset"] = name
        frames.append(frame)
        logger.info("dataset source %s: %d recordings read as %s", name, len(frame), layout)
    joined = pd.concat(frames, ignore_index=True)
    twice = joined.loc[joined["path"].duplicated(), "path"]
    if len(twice):
        raise ValueError(
            f"dataset.sources: {len(twice)} recording(s) are listed by two sources, e.g. "
            f"{twice.iloc[0]}; point the sources at distinct folders"
        )
    return check_manifest(joined, name="dataset.sources")
