"""Score recordings with a trained run: files, folders and tables in, one row per recording out.

The flow is the one the run was validated with: decode (:func:`stetho.data.audio.read_audio`:
mono mean, float32, soxr ``HQ`` to the model's rate, the run's duration limits), cut with the
run's chunking rule (:func:`stetho.scoring.chunking.recording_chunks`, ``Fix`` or
``Dynamic``), score each chunk with every fold model, average the probabilities over chunks
and then over folds.

Output columns, in order (:func:`output_columns`):

``path``
    The recording as given on the command line, as found under a given folder
    (``<folder as given>/<relative path>``), or as written in a table's path column.
``prob_<class>``
    Mean probability of each class (float).
``label``
    The most probable class; empty when the file failed.
``abnormal``
    Only when the run allows a normal/abnormal decision (:func:`abnormal_rule`):
    ``1 - prob_normal >= threshold`` when the classes include ``normal``; for other binary
    runs ``prob_<positive class> >= threshold``, the positive class being the second of the
    two (classes are sorted). 0 or 1; empty when the file failed.
``duration_s``
    Length of the decoded recording in seconds; empty when the file failed.
``error``
    Empty when the file was scored, otherwise why not (the reason of the
    :class:`~stetho.data.audio.AudioError`: ``empty file (0 bytes)``, ``cannot decode: ...``,
    ``too short: ...``). A bad file never stops the batch.

The torch-free pipeline written by :mod:`stetho.export` (``score.py``) produces the same table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from stetho.data.audio import AudioError, AudioSource, DecodeError, iter_audio_files, read_audio
from stetho.data.readers import TABLE_SUFFIXES
from stetho.features.rhythm import rhythm_extras
from stetho.runs import Run

logger = logging.getLogger(__name__)

#: Columns a table may name its audio paths by, in order of preference (``audio`` is
#: Hydrogen Torch's name).
PATH_COLUMNS = ("path", "audio")

#: Default number of recordings decoded and scored together (also the most chunks per
#: forward pass).
DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class InputItem:
    """One recording to score.

    ``path`` is how the output names it (as given, as found under a folder, as written in a
    table); ``abs_path`` is where it is read from.
    """

    path: str
    abs_path: str


@dataclass(frozen=True)
class Scored:
    """The outcome for one recording: ``probs`` ``(n_classes,)`` or an ``error`` reason."""

    path: str
    probs: np.ndarray | None
    duration_s: float | None
    error: str = ""


def collect_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[InputItem]:
    """Expand command-line inputs into recordings, keeping their order.

    * a folder: every audio file below it (recursive, :data:`stetho.data.audio.AUDIO_EXTENSIONS`,
      hidden entries skipped, sorted), named ``<folder as given>/<relative path>``;
    * a ``.csv``/``.tsv``/``.parquet``/``.pq`` file: a table whose ``path`` (or ``audio``)
      column lists recordings; relative entries are relative to the table's folder;
    * anything else, existing or not: one recording (a missing one is reported in its row's
      ``error``, like any other bad file).

    Raises ``ValueError`` for a table without a path column, ``FileNotFoundError`` for an
    empty input list.
    """
    if not inputs:
        raise FileNotFoundError("no inputs: give audio files, folders or tables")
    items: list[InputItem] = []
    for raw in inputs:
        given = os.fspath(raw)
        path = Path(given)
        if path.is_dir():
            found = iter_audio_files(path)
            if not found:
                logger.warning("%s: no audio files in this folder", given)
            items += [InputItem(str(f), os.path.abspath(f)) for f in found]
        elif path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
            base = path.parent
            for value in read_path_table(path):
                target = Path(value)
                full = target if target.is_absolute() else base / target
                items.append(InputItem(value, os.path.abspath(full)))
        else:
            items.append(InputItem(given, os.path.abspath(path)))
    return items


def read_path_table(path: str | os.PathLike[str]) -> list[str]:
    """The audio paths listed in a csv/tsv/parquet table, as written (strings, blanks kept)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        df = pd.read_parquet(path)
    else:
        df = pd.read_csv(
            path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False
        )
    for column in PATH_COLUMNS:
        if column in df.columns:
            return ["" if pd.isna(v) else str(v) for v in df[column]]
    raise ValueError(
        f"{path}: no path column; expected one of {list(PATH_COLUMNS)}, "
        f"the table has {list(df.columns)}"
    )


def abnormal_rule(classes: Sequence[str]) -> tuple[str, str] | None:
    """How the ``abnormal`` column is derived from the class probabilities, if at all.

    Returns ``("not", "normal")`` (abnormal probability = ``1 - prob_normal``) when the
    classes include ``normal``; ``("is", classes[1])`` for any other two-class run; ``None``
    otherwise (no ``abnormal`` column).
    """
    if "normal" in classes:
        return ("not", "normal")
    if len(classes) == 2:
        return ("is", classes[1])
    return None


def output_columns(classes: Sequence[str]) -> list[str]:
    """The output table's columns, in order (see the module docstring)."""
    extra = ["abnormal"] if abnormal_rule(classes) else []
    return ["path", *(f"prob_{c}" for c in classes), "label", *extra, "duration_s", "error"]


def results_frame(
    results: Sequence[Scored], classes: Sequence[str], *, threshold: float
) -> pd.DataFrame:
    """The output table (:func:`output_columns`) of scored recordings, in their order.

    ``threshold`` is applied to the abnormal probability (see :func:`abnormal_rule`).
    """
    n, k = len(results), len(classes)
    probs = np.full((n, k), np.nan)
    ok = np.zeros(n, dtype=bool)
    for i, r in enumerate(results):
        if r.probs is not None:
            probs[i] = r.probs
            ok[i] = True
    df = pd.DataFrame({"path": pd.Series([r.path for r in results], dtype=object)})
    for j, c in enumerate(classes):
        df[f"prob_{c}"] = probs[:, j]
    top = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=1) if k else np.zeros(n, dtype=int)
    df["label"] = pd.Series(
        [classes[t] if good else None for t, good in zip(top, ok, strict=True)], dtype=object
    )
    rule = abnormal_rule(classes)
    if rule is not None:
        kind, name = rule
        p = probs[:, list(classes).index(name)]
        p_abnormal = 1.0 - p if kind == "not" else p
        df["abnormal"] = pd.array(
            [int(q >= threshold) if good else None for q, good in zip(p_abnormal, ok, strict=True)],
            dtype="Int64",
        )
    df["duration_s"] = [np.nan if r.duration_s is None else r.duration_s for r in results]
    df["error"] = pd.Series([r.error for r in results], dtype=object)
    return df[output_columns(classes)]


def read_for_run(run: Run, source: AudioSource, *, name: str | None = None) -> np.ndarray:
    """Decode ``source`` as the run expects: mono float32 at ``run.sample_rate`` Hz, within the
    run's ``dataset.min/max_duration_seconds``. Raises :class:`~stetho.data.audio.AudioError`."""
    ds = run.config.dataset
    try:
        audio = read_audio(
            source,
            sample_rate=run.sample_rate,
            min_duration_s=ds.min_duration_seconds,
            max_duration_s=ds.max_duration_seconds,
            name=name,
        )
    except OSError as exc:  # e.g. permission denied, I/O error on a network share
        label = name if name is not None else str(source)
        raise DecodeError(label, f"cannot read: {exc}") from None
    return audio.samples


def _extras(run: Run, waves: list[np.ndarray]) -> list[np.ndarray] | None:
    """Per-recording rhythm features ``(n_extra,)`` for runs trained with
    ``training.rhythm_features``; ``None`` for the others."""
    if not run.n_extra_features:
        return None
    if not run.config.training.rhythm_features:
        raise ValueError(
            f"{run.path}: the models take {run.n_extra_features} extra features but the config "
            "has training.rhythm_features off"
        )
    return rhythm_extras(waves, run.sample_rate)


def score_group(run: Run, items: Sequence[InputItem], *, batch_size: int) -> list[Scored]:
    """Decode and score a group of recordings together (bad ones get their reason).

    The unit of work of :func:`predict_files` and of the Dask workers
    (:mod:`stetho.scoring.dask`): same groups, same batches, same numbers.
    """
    results: list[Scored | None] = [None] * len(items)
    good: list[int] = []
    waves: list[np.ndarray] = []
    for i, item in enumerate(items):
        try:
            wave = read_for_run(run, item.abs_path, name=item.path)
        except AudioError as exc:
            logger.debug("not scored: %s", exc)
            results[i] = Scored(item.path, None, None, exc.reason)
            continue
        good.append(i)
        waves.append(wave)
    if waves:
        probs = run.predict_waves(waves, extras=_extras(run, waves), batch_size=batch_size)
        for row, i in enumerate(good):
            duration = len(waves[row]) / run.sample_rate
            results[i] = Scored(items[i].path, probs[row], duration)
    return [r for r in results if r is not None]


def groups(items: Sequence[InputItem], size: int) -> Iterator[Sequence[InputItem]]:
    """Consecutive groups of ``size`` items (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"batch_size={size}: expected a positive number of recordings")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_files(
    run: Run,
    items: Sequence[InputItem],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    threshold: float | None = None,
) -> pd.DataFrame:
    """Score recordings with the run's fold ensemble; one row per item, in order.

    Args:
        run: a loaded run (:func:`stetho.runs.load_run`), all folds or the chosen ones.
        items: from :func:`collect_inputs`.
        batch_size: recordings decoded and scored together, and the most chunks per
            forward pass; bounds memory on large archives.
        progress: a progress bar on stderr.
        threshold: for the ``abnormal`` column; defaults to the run's
            ``prediction.probability_threshold``.

    Returns:
        The table described in the module docstring (:func:`output_columns`).
    """
    threshold = _threshold(run, threshold)
    results: list[Scored] = []
    with tqdm(total=len(items), desc="scoring", unit="file", disable=not progress) as bar:
        for group in groups(items, batch_size):
            results += score_group(run, group, batch_size=batch_size)
            bar.update(len(group))
    n_bad = sum(1 for r in results if r.error)
    if n_bad:
        logger.warning(
            "%d of %d recording(s) could not be scored: see the error column", n_bad, len(results)
        )
    return results_frame(results, run.classes, threshold=threshold)


def _threshold(run: Run, threshold: float | None) -> float:
    value = run.config.prediction.probability_threshold if threshold is None else threshold
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold={value}: expected a probability in [0, 1]")
    return float(value)


def score_file(
    run: Run, source: AudioSource, *, name: str | None = None, threshold: float | None = None
) -> dict[str, Any]:
    """Score one recording (a path, its bytes or a binary file object): the HTTP service's call.

    Returns ``{"path", "probs": {class: p}, "label", "duration_s"}`` plus ``"abnormal"``
    (bool) when the run allows the decision (:func:`abnormal_rule`). Raises
    :class:`~stetho.data.audio.AudioError` for a recording that cannot be used.
    """
    if name is None:
        name = os.fspath(source) if isinstance(source, str | os.PathLike) else "<upload>"
    wave = read_for_run(run, source, name=name)
    probs = run.predict_waves([wave], extras=_extras(run, [wave]))[0]
    row = results_frame(
        [Scored(name, probs, len(wave) / run.sample_rate)],
        run.classes,
        threshold=_threshold(run, threshold),
    ).iloc[0]
    out: dict[str, Any] = {
        "path": row["path"],
        "probs": {c: float(p) for c, p in zip(run.classes, probs, strict=True)},
        "label": row["label"],
        "duration_s": float(row["duration_s"]),
    }
    if "abnormal" in row:
        out["abnormal"] = bool(row["abnormal"])
    return out
