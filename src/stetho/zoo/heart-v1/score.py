#!/usr/bin/env python3
"""Score heart-sound recordings with an exported stetho pipeline.

Needs numpy, soundfile, soxr and onnxruntime only (pyarrow too, for parquet tables or output).
It reads ``model.onnx``, ``labels.json`` and ``preprocess.json`` from its own folder (or
``--pipeline DIR``) and writes the table ``stetho predict`` writes::

    python score.py INPUT... --out preds.csv [--batch-size 64] [--threshold 0.5] [--threads 0]

INPUT is an audio file, a folder (searched recursively by audio extension) or a csv/tsv/
parquet table with a ``path`` (or ``audio``) column. One row per recording: ``path``,
``prob_<class>``..., ``label``, ``abnormal``, ``abnormal_prob`` and ``outcome`` (when the
decision rule has a normal class), ``duration_s`` and ``error`` (empty when fine). A bad
file gets its reason in ``error`` and the rest are scored. Exit code: 0 when every file was
scored, 1 when any failed, 2 for a usage error or an unusable pipeline file.

The decoding, validation and chunking below are copies of ``stetho.data.audio.read_audio`` and
``stetho.scoring.chunking.recording_chunks``: the same recording gives the same chunks, the same
error reason, and probabilities equal to ``stetho predict``'s within 1e-4. The decision is a
copy of ``stetho.decision.DecisionRule`` (renormalisation, calibration, threshold, abstain
band, label): the same probabilities give the same decisions.
"""

from __future__ import annotations

import argparse
import csv
import errno
import io
import json
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

#: File suffixes treated as audio (as stetho.data.audio.AUDIO_EXTENSIONS).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
#: Inputs read as tables of paths.
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
#: Columns a table may name its audio paths by, in order of preference.
PATH_COLUMNS = ("path", "audio")
#: Files stored above this rate are refused (as stetho.data.audio.MAX_SAMPLE_RATE_HZ).
MAX_SAMPLE_RATE_HZ = 384_000
#: Frames decoded at a time (as stetho.data.audio.BLOCK_FRAMES): memory stays at the output
#: plus one block, whatever the file's length.
BLOCK_FRAMES = 65536
#: Peak-to-peak span (full scale = 2) under which a recording is digital silence.
SILENCE_PEAK_TO_PEAK = 1e-6
DEFAULT_BATCH_SIZE = 64
#: Chunks per onnxruntime call, whatever --batch-size. On one CPU core small batches run
#: fastest (the activations stay in cache; a 5-fold HeartNet: ~3.3 ms per 6 s chunk at 1-4
#: chunks a call, ~4.3 ms at 16, ~9 ms at 64) and keep onnxruntime's memory arena small.
CHUNKS_PER_CALL = 4


class UsageError(Exception):
    """A bad input table or output name: the run stops with exit code 2."""


class AudioError(ValueError):
    """A recording that cannot be used; ``reason`` goes into the ``error`` column."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


# --- decoding and validation (as stetho.data.audio.read_audio) ---------------------------------


def _check_duration(
    label: str, duration_s: float, min_duration_s: float, max_duration_s: float | None
) -> None:
    if duration_s < min_duration_s:
        raise AudioError(label, f"too short: {duration_s:.3g} s, minimum is {min_duration_s:g} s")
    if max_duration_s is not None and duration_s > max_duration_s:
        raise AudioError(label, f"too long: {duration_s:.4g} s, maximum is {max_duration_s:g} s")


_LINK_LOOP = "symbolic link loop: the link points (via other links) back to itself"


def os_error_reason(exc: OSError) -> str:
    """What an operating-system error means, in a few words (as stetho's os_error_reason)."""
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied: this user may not read the file; check its permissions"
    if code == errno.ELOOP:
        return _LINK_LOOP
    if code == errno.ENOENT:
        return "file not found"
    if code == errno.EISDIR:
        return "is a folder, not an audio file"
    if code == errno.EIO:
        return "input/output error while reading (failing disk or network share); retry"
    return f"cannot read: {exc.strerror or exc}"


def path_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as a file (a dangling link, a link loop, a folder, missing),
    or ``None`` (as stetho.data.audio.path_problem)."""
    path = Path(path)
    if path.is_symlink():
        target = os.readlink(path)
        try:
            resolved = path.resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports a loop as RuntimeError
            return _LINK_LOOP
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return _LINK_LOOP
            return f"dangling symbolic link to {target!r} (which does not exist)"
        if resolved.is_dir():
            parent = path.parent.resolve()
            if parent == resolved or parent.is_relative_to(resolved):
                return f"symbolic link loop: folder link to its own ancestor {str(resolved)!r}"
            return "is a folder, not an audio file"
    if path.is_dir():
        return "is a folder, not an audio file"
    if not path.exists():
        return "file not found"
    if not path.is_file():
        return "not a regular file (a device, socket or pipe)"
    return None


def _open(path: str, label: str) -> sf.SoundFile:
    p = Path(path)
    problem = path_problem(p)
    if problem is not None:
        raise AudioError(label, problem)
    try:
        # libsndfile reports a refused open as "System error."; ask the OS ourselves.
        os.close(os.open(p, os.O_RDONLY))
        size = p.stat().st_size
    except OSError as exc:
        raise AudioError(label, os_error_reason(exc)) from None
    if size == 0:
        raise AudioError(label, "empty file (0 bytes)")
    try:
        return sf.SoundFile(p)
    except OSError as exc:
        raise AudioError(label, os_error_reason(exc)) from None
    except (sf.SoundFileError, RuntimeError, TypeError) as exc:
        detail = str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)
        raise AudioError(label, f"cannot decode: {detail}") from None


#: libsndfile's log line for a chunk claiming more bytes than the file holds
#: (``data : 80000 (should be 26666)``); sizes 0 and 0xFFFFFFFF mean "not known".
_SHORT_CHUNK = re.compile(r"^(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_UNKNOWN_CHUNK_SIZES = (0, 0xFFFFFFFF)


def promised_frames(fh: sf.SoundFile) -> int:
    """Frames per channel the header promises (libsndfile trims a short WAV/AIFF to what is
    there and logs the claim; this reads the claim back)."""
    match = _SHORT_CHUNK.search(fh.extra_info)
    if match is None:
        return int(fh.frames)
    declared, present = int(match.group(1)), int(match.group(2))
    if declared in _UNKNOWN_CHUNK_SIZES or present <= 0 or declared <= present:
        return int(fh.frames)
    return int(round(fh.frames * declared / present))


class _Decoded:
    """Streaming decode state: mono output (grown in place), level range, bad-sample count."""

    def __init__(self, capacity: int) -> None:
        self.out = np.empty(max(capacity, 1), dtype=np.float32)
        self.n_out = 0
        self.frames = 0
        self.n_bad = 0
        self.n_values = 0
        self.low = np.inf
        self.high = -np.inf

    def append(self, x: np.ndarray) -> None:
        end = self.n_out + len(x)
        if end > len(self.out):
            grown = np.empty(max(end, 2 * len(self.out)), dtype=np.float32)
            grown[: self.n_out] = self.out[: self.n_out]
            self.out = grown
        self.out[self.n_out : end] = x
        self.n_out = end


def _decode(fh: sf.SoundFile, label: str, sample_rate: int, promised: int) -> _Decoded:
    """Decode block by block into mono float32, resampling on the fly: memory is the output
    plus one block (as stetho.data.audio's decoder, block for block)."""
    original_sr = int(fh.samplerate)
    resampling = sample_rate != original_sr
    expected = max(promised, 0)
    if resampling:
        expected = int(np.ceil(expected * sample_rate / original_sr)) + 16
        stream = soxr.ResampleStream(original_sr, sample_rate, 1, dtype="float32", quality="HQ")
    state = _Decoded(expected)
    buffer = np.empty((BLOCK_FRAMES, int(fh.channels)), dtype=np.float32)
    try:
        while len(block := fh.read(BLOCK_FRAMES, dtype="float32", always_2d=True, out=buffer)):
            state.frames += len(block)
            state.n_values += block.size
            if not np.isfinite(block.sum(dtype=np.float64)):
                state.n_bad += int(np.count_nonzero(~np.isfinite(block)))
            if state.n_bad:
                continue
            mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
            mono = np.ascontiguousarray(mono)
            state.low = min(state.low, float(mono.min()))
            state.high = max(state.high, float(mono.max()))
            state.append(stream.resample_chunk(mono) if resampling else mono)
    except OSError as exc:
        raise AudioError(label, os_error_reason(exc)) from None
    except (sf.SoundFileError, RuntimeError) as exc:
        read = f"{state.frames / original_sr:.4g} s"
        if promised > 0:
            read += f" of the {promised / original_sr:.4g} s the header promises"
        detail = str(exc).removeprefix("Error : ").strip().rstrip(".")
        raise AudioError(
            label,
            f"cannot decode samples ({read} read): {detail}; the file is truncated or "
            "corrupt: copy it again from its source",
        ) from None
    if resampling and not state.n_bad:
        state.append(stream.resample_chunk(np.empty(0, dtype=np.float32), last=True))
    return state


def read_audio(
    path: str,
    *,
    sample_rate: int,
    min_duration_s: float,
    max_duration_s: float | None,
    name: str,
) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate`` Hz: ``(samples,)``.

    Channels are mixed by their mean, resampling is soxr ``HQ`` (block-wise), durations are
    checked in seconds before resampling; a file holding fewer samples than its header
    promises is refused (truncated). Raises :class:`AudioError` with the reason.
    """
    try:
        with _open(path, name) as fh:
            original_sr = int(fh.samplerate)
            if original_sr > MAX_SAMPLE_RATE_HZ:
                raise AudioError(
                    name,
                    f"sample rate {original_sr} Hz is above the {MAX_SAMPLE_RATE_HZ} Hz "
                    "accepted; resample the file (e.g. sox IN -r 4000 OUT)",
                )
            if fh.frames == 0:
                raise AudioError(name, "no audio samples (header only)")
            promised = promised_frames(fh)
            if promised > 0 and max_duration_s is not None:
                _check_duration(name, promised / original_sr, 0.0, max_duration_s)
            state = _decode(fh, name, sample_rate, promised)
    except OSError as exc:  # permission denied, I/O error on a network share
        raise AudioError(name, os_error_reason(exc)) from None
    frames = state.frames
    if frames == 0:
        raise AudioError(name, "no audio samples could be read (truncated data)")
    if frames < promised:
        raise AudioError(
            name,
            f"truncated: the header promises {promised / original_sr:.4g} s ({promised} "
            f"samples), the file holds {frames / original_sr:.4g} s ({frames}); copy the "
            "file again from its source (or re-save it to use the part that is there)",
        )
    if state.n_bad:
        raise AudioError(name, f"{state.n_bad} of {state.n_values} samples are NaN or infinite")
    duration_s = frames / original_sr
    _check_duration(name, duration_s, min_duration_s, None)
    if frames < 2:
        raise AudioError(name, f"too short: a single sample ({duration_s:.3g} s)")
    if state.high - state.low < SILENCE_PEAK_TO_PEAK:
        raise AudioError(name, f"digital silence: all {frames} samples are equal")
    _check_duration(name, duration_s, 0.0, max_duration_s)
    return np.ascontiguousarray(state.out[: state.n_out], dtype=np.float32)


# --- chunking (as stetho.data.audio.chunk and stetho.scoring.chunking.recording_chunks) ---


def chunk(x: np.ndarray, *, chunk_samples: int, hop_samples: int) -> np.ndarray:
    """``(samples,)`` -> ``(n_chunks, chunk_samples)``: full chunks every ``hop_samples``; a
    signal shorter than a chunk, and a tail of at least half a chunk, are wrap-padded."""
    n = len(x)
    if n < chunk_samples:
        return np.resize(x, chunk_samples)[None, :]
    starts = range(0, n - chunk_samples + 1, hop_samples)
    chunks = [x[s : s + chunk_samples] for s in starts]
    if starts[-1] + chunk_samples < n:
        tail = x[starts[-1] + hop_samples :]
        if 2 * len(tail) >= chunk_samples:
            chunks.append(np.resize(tail, chunk_samples))
    return np.stack(chunks)


def recording_chunks(x: np.ndarray, *, sample_rate: int, prep: dict[str, Any]) -> np.ndarray:
    """``(samples,)`` -> ``(n_chunks, chunk_samples)`` under the pipeline's chunking method.

    ``Fix``: chunks of ``inference_chunk_seconds``. ``Dynamic``: the whole recording, split
    into chunks of ``max_inference_chunk_seconds`` only when longer.
    """
    if prep["inference_chunk_method"] == "Fix":
        n = max(1, round(prep["inference_chunk_seconds"] * sample_rate))
    else:
        max_n = max(1, round(prep["max_inference_chunk_seconds"] * sample_rate))
        if x.shape[0] <= max_n:
            return x[None, :].astype(np.float32, copy=False)
        n = max_n
    return chunk(x, chunk_samples=n, hop_samples=n).astype(np.float32, copy=False)


# --- inputs -------------------------------------------------------------------------------


def _may_be_audio(name: str) -> bool:
    suffix = Path(name).suffix.lower()
    return suffix in AUDIO_EXTENSIONS or suffix == ""


def iter_audio_files(root: Path) -> list[Path]:
    """Audio files under ``root`` (recursive, sorted, hidden entries skipped), as
    stetho.data.audio.iter_audio_files: links to folders are followed except a loop; broken
    links (dangling, loops) with an audio suffix or none are listed, so that each gets its
    reason in the ``error`` column."""
    found: list[Path] = []
    pending: list[tuple[Path, tuple[str, ...]]] = [(root, (os.path.realpath(root),))]
    while pending:
        folder, ancestors = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            print(
                f"warning: {folder}: folder not searched: {os_error_reason(exc)}", file=sys.stderr
            )
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_symlink():
                try:
                    os.stat(entry.path)
                except OSError:  # dangling, or a loop of links
                    if _may_be_audio(entry.name):
                        found.append(path)
                    continue
            if entry.is_dir():
                real = os.path.realpath(entry.path)
                if real in ancestors:
                    found.append(path)  # read_audio names it a link loop
                    continue
                pending.append((path, (*ancestors, real)))
            elif entry.name.lower().endswith(AUDIO_EXTENSIONS) and entry.is_file():
                found.append(path)
    return sorted(found)


def read_path_table(path: Path) -> list[str]:
    """The audio paths a csv/tsv/parquet table lists, as written."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise UsageError(f"reading {path} needs pyarrow; give a csv table") from None
        table = pq.read_table(path)
        columns = list(table.column_names)
        for column in PATH_COLUMNS:
            if column in columns:
                return ["" if v is None else str(v) for v in table.column(column).to_pylist()]
    else:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            columns = list(reader.fieldnames or [])
            for column in PATH_COLUMNS:
                if column in columns:
                    return [row.get(column) or "" for row in reader]
    raise UsageError(
        f"{path}: no path column; expected one of {list(PATH_COLUMNS)}, the table has {columns}"
    )


def collect_inputs(inputs: Sequence[str]) -> list[tuple[str, str]]:
    """``(path as given / found, absolute path)`` for every recording, in order."""
    items: list[tuple[str, str]] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            items += [(str(f), os.path.abspath(f)) for f in iter_audio_files(path)]
        elif path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
            for value in read_path_table(path):
                target = Path(value)
                full = target if target.is_absolute() else path.parent / target
                items.append((value, os.path.abspath(full)))
        else:
            items.append((given, os.path.abspath(path)))
    return items


# --- scoring ------------------------------------------------------------------------------


REEXPORT = "re-export the pipeline: stetho export RUN_DIR --out DIR --force"


class ArtifactError(UsageError):
    """A pipeline file that cannot be used (as ``stetho.io.ArtifactError``): exit code 2."""

    def __init__(self, path: Path, problem: str, remedy: str = REEXPORT) -> None:
        super().__init__(f"{path}: {problem}; {remedy}")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ArtifactError(path, "missing from the pipeline folder")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, f"not valid JSON ({exc})") from None


def open_session(path: Path, *, threads: int) -> Any:
    """An onnxruntime session; :class:`ArtifactError` when ``path`` is not a usable model."""
    import onnxruntime as ort

    if not path.is_file():
        raise ArtifactError(path, "missing from the pipeline folder")
    if path.stat().st_size == 0:
        raise ArtifactError(path, "empty file (0 bytes), not an ONNX model")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ArtifactError(
            path, f"not a usable ONNX model ({type(exc).__name__}: {message})"
        ) from None


# --- the decision (as stetho.decision.DecisionRule) ----------------------------------------


class DecisionRule:
    """``preprocess.json``'s ``decision``: probabilities -> label, abnormal flag, outcome.

    Under BCE (``multilabel``) rows are renormalised to sum to 1; then the optional
    calibration ``p' = softmax(weight * log(clip(p, 1e-12)) + bias)``; the abnormal
    probability is ``1 - p'(normal)``, abnormal when at or above ``threshold``; the label is
    the most probable non-normal class when abnormal, the normal class when not; the outcome
    is ``re-record`` inside ``abstain_band`` ``[lo, hi)``.
    """

    def __init__(self, data: dict[str, Any], *, threshold: float | None = None) -> None:
        self.classes = [str(c) for c in data["classes"]]
        self.normal_class = data.get("normal_class")
        self.multilabel = bool(data.get("multilabel", False))
        self.calibration = data.get("calibration")
        self.threshold = float(data.get("threshold", 0.5) if threshold is None else threshold)
        band = data.get("abstain_band")
        self.abstain_band = None if band is None else (float(band[0]), float(band[1]))

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        p = np.asarray(raw, dtype=np.float64).reshape(-1, len(self.classes))
        if self.multilabel:
            p = p / np.clip(p.sum(axis=1, keepdims=True), 1e-12, None)
        if self.calibration is not None:
            weight = np.asarray(self.calibration["weight"], dtype=np.float64)
            bias = np.asarray(self.calibration["bias"], dtype=np.float64)
            z = weight * np.log(np.clip(p, 1e-12, None)) + bias
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            p = e / e.sum(axis=1, keepdims=True)
        return p

    def decide(self, probs: np.ndarray) -> dict[str, Any]:
        """``label`` and, with a normal class, ``abnormal`` (0/1), ``abnormal_prob``,
        ``outcome`` for one row of :meth:`probabilities`."""
        if self.normal_class is None:
            return {"label": self.classes[int(np.argmax(probs))]}
        j = self.classes.index(self.normal_class)
        q = float(np.clip(1.0 - probs[j], 0.0, 1.0))
        flag = q >= self.threshold
        others = np.array(probs, dtype=np.float64)
        others[j] = -np.inf
        band = self.abstain_band
        in_band = band is not None and band[0] <= q < band[1]
        return {
            "label": self.classes[int(np.argmax(others))] if flag else self.normal_class,
            "abnormal": int(flag),
            "abnormal_prob": q,
            "outcome": "re-record" if in_band else ("abnormal" if flag else "normal"),
        }


class Pipeline:
    """The exported model and its settings, loaded once."""

    def __init__(self, folder: Path, *, threads: int = 0) -> None:
        self.folder = folder
        labels = _read_json(folder / "labels.json")
        self.classes: list[str] = [str(c) for c in labels["classes"]]
        self.prep: dict[str, Any] = _read_json(folder / "preprocess.json")
        if "decision" not in self.prep or "sample_rate" not in self.prep:
            raise ArtifactError(
                folder / "preprocess.json", "no decision rule or sample rate (an older export?)"
            )
        self.sample_rate = int(self.prep["sample_rate"])
        self.session = open_session(folder / self.prep.get("model", "model.onnx"), threads=threads)
        self.input_name = self.session.get_inputs()[0].name

    def decode(self, path: str, name: str) -> np.ndarray:
        """Decode within the model's acceptance rule (``min/max_duration_s``)."""
        return read_audio(
            path,
            sample_rate=self.sample_rate,
            min_duration_s=float(self.prep["min_duration_s"]),
            max_duration_s=self.prep["max_duration_s"],
            name=name,
        )

    def predict_waves(self, waves: list[np.ndarray], *, batch_size: int) -> np.ndarray:
        """``(len(waves), n_classes)`` probabilities: the graph averages the folds; the chunks
        of a recording are averaged here. Chunks of equal length are batched together, at
        most ``min(batch_size, CHUNKS_PER_CALL)`` per call."""
        chunks = [recording_chunks(w, sample_rate=self.sample_rate, prep=self.prep) for w in waves]
        owner = np.concatenate([np.full(len(c), i) for i, c in enumerate(chunks)])
        flat = [c for cs in chunks for c in cs]
        by_len: dict[int, list[int]] = {}
        for j, c in enumerate(flat):
            by_len.setdefault(c.shape[0], []).append(j)
        chunk_probs = np.zeros((len(flat), len(self.classes)))
        for idx in by_len.values():
            step = min(batch_size, CHUNKS_PER_CALL)
            for start in range(0, len(idx), step):
                sel = idx[start : start + step]
                x = np.stack([flat[j] for j in sel]).astype(np.float32, copy=False)
                chunk_probs[sel] = self.session.run(None, {self.input_name: x})[0]
        rec = np.zeros((len(waves), len(self.classes)))
        np.add.at(rec, owner, chunk_probs)
        return rec / np.bincount(owner, minlength=len(waves))[:, None]


def output_columns(pipe: Pipeline) -> list[str]:
    extra = (
        ["abnormal", "abnormal_prob", "outcome"]
        if pipe.prep["decision"].get("normal_class")
        else []
    )
    return ["path", *(f"prob_{c}" for c in pipe.classes), "label", *extra, "duration_s", "error"]


def score_group(
    pipe: Pipeline, group: Sequence[tuple[str, str]], *, batch_size: int, rule: DecisionRule
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    waves: list[np.ndarray] = []
    good: list[int] = []
    for given, full in group:
        row: dict[str, Any] = {"path": given, "error": ""}
        try:
            wave = pipe.decode(full, given)
        except AudioError as exc:
            row["error"] = exc.reason
        else:
            good.append(len(rows))
            waves.append(wave)
        rows.append(row)
    if waves:
        probs = rule.probabilities(pipe.predict_waves(waves, batch_size=batch_size))
        for k, i in enumerate(good):
            row = rows[i]
            for c, p in zip(pipe.classes, probs[k], strict=True):
                row[f"prob_{c}"] = float(p)
            row.update(rule.decide(probs[k]))
            row["duration_s"] = len(waves[k]) / pipe.sample_rate
    return rows


def _groups(items: Sequence[tuple[str, str]], size: int) -> Iterator[Sequence[tuple[str, str]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def score(
    pipe: Pipeline,
    items: Sequence[tuple[str, str]],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    threshold: float | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """One row dict per item, in order (missing keys are empty cells)."""
    rule = DecisionRule(pipe.prep["decision"], threshold=threshold)
    rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    for group in _groups(items, batch_size):
        rows += score_group(pipe, group, batch_size=batch_size, rule=rule)
        if progress:
            rate = len(rows) / max(time.monotonic() - t0, 1e-9)
            print(
                f"\rscoring: {len(rows)}/{len(items)} files ({rate:.0f}/s)",
                end="",
                file=sys.stderr,
                flush=True,
            )
    if progress and items:
        print(file=sys.stderr)
    return rows


# --- output -------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def can_write_parquet() -> bool:
    """Whether pyarrow (the parquet writer) is importable here."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def write_rows(rows: Sequence[dict[str, Any]], columns: list[str], out: Path) -> None:
    """Write the table as csv (or parquet, with pyarrow) to a temporary sibling, then rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise UsageError("writing parquet needs pyarrow; use --out preds.csv") from None
        types = {
            "path": pa.string(),
            "label": pa.string(),
            "error": pa.string(),
            "abnormal": pa.int64(),
            "outcome": pa.string(),
        }
        table = pa.table(
            {
                c: pa.array([r.get(c) for r in rows], type=types.get(c, pa.float64()))
                for c in columns
            }
        )
        payload = io.BytesIO()
        pq.write_table(table, payload)
        data = payload.getvalue()
    elif suffix in (".csv", ".txt"):
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_cell(r.get(c)) for c in columns])
        data = text.getvalue().encode("utf-8")
    else:
        raise UsageError(f"{out}: unsupported table format {suffix!r}; use .csv or .parquet")
    atomic_write(out, data)


#: Temporaries are named ``.<target>.<host>-<pid>.<random>.stetho.tmp`` (as stetho.io): the
#: next writer into the folder removes those whose process is gone (a killed run's).
TEMP_SUFFIX = ".stetho.tmp"
_TEMP_NAME = re.compile(
    r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+"
    + re.escape(TEMP_SUFFIX)
    + "$"
)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"


def _process_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove this host's temporaries in ``folder`` whose process is gone; say so."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or match["host"] != _host() or not _process_gone(int(match["pid"])):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError as exc:
            print(f"warning: {entry.path}: cannot remove a leftover: {exc}", file=sys.stderr)
            continue
        removed.append(Path(entry.path))
    if removed:
        names = ", ".join(p.name for p in removed)
        print(
            f"warning: {folder}: removed {len(removed)} leftover temporary file(s) of a killed "
            f"run: {names}",
            file=sys.stderr,
        )
    return removed


def atomic_write(out: Path, data: bytes) -> None:
    """Write ``data`` to a temporary sibling of ``out``, then rename it over ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out.parent)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{out.name}.{_host()}-{os.getpid()}.", suffix=TEMP_SUFFIX, dir=out.parent
    )
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Score heart-sound recordings (files, folders, csv/parquet tables)."
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT")
    parser.add_argument("--out", "-o", required=True, type=Path, help="preds.csv or .parquet")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="recordings decoded and scored together",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="abnormal decision threshold (default: the run's)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="onnxruntime intra-op threads (0: onnxruntime's default)",
    )
    parser.add_argument(
        "--pipeline",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="folder holding model.onnx, labels.json, preprocess.json",
    )
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size}: expected a positive number")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold {args.threshold}: expected a probability in [0, 1]")
    if args.out.suffix.lower() not in (".csv", ".txt", ".parquet"):
        parser.error(f"--out {args.out}: unsupported table format; use .csv or .parquet")
    if args.out.suffix.lower() == ".parquet" and not can_write_parquet():
        # Before scoring: an archive must not be scored only to find the writer missing.
        parser.error(f"--out {args.out}: writing parquet needs pyarrow; use --out preds.csv")
    try:
        pipe = Pipeline(args.pipeline, threads=args.threads)
        items = collect_inputs(args.inputs)
        rows = score(
            pipe,
            items,
            batch_size=args.batch_size,
            threshold=args.threshold,
            progress=args.progress,
        )
        write_rows(rows, output_columns(pipe), args.out)
    except (UsageError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n_bad = sum(1 for r in rows if r["error"])
    print(f"scored {len(rows) - n_bad} of {len(rows)} recording(s) -> {args.out}", file=sys.stderr)
    if n_bad:
        print(f"{n_bad} recording(s) could not be scored: see the error column", file=sys.stderr)
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
