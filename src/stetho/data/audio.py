"""Decode, validate, mix down, resample and cut audio: pure numpy + soundfile + soxr.

Conventions used throughout:

* A decoded signal is a 1-D ``float32`` array of samples in ``[-1, 1]`` (integer PCM is scaled
  by libsndfile; float files are returned as stored). Multi-channel arrays follow soundfile's
  layout ``(frames, channels)``.
* Sample rates are integers in Hz, durations floats in seconds, lengths integers in samples;
  names say which (``duration_s``, ``chunk_samples``).
* Every failure to use a file raises a subclass of :class:`AudioError` that names the file and
  the reason, so a command can list bad files instead of stopping at the first one.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf
import soxr
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

#: File suffixes treated as audio (all decoded by libsndfile through soundfile).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")

#: A recording whose samples span less than this (peak to peak, full scale = 2) carries no
#: signal: it is digital silence or a constant DC offset. One 16-bit step is ~3e-5.
SILENCE_PEAK_TO_PEAK = 1e-6

AudioSource = str | os.PathLike[str] | bytes | BinaryIO


class AudioError(ValueError):
    """A recording that cannot be used; ``str()`` is ``"{path}: {reason}"``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class MissingFileError(AudioError):
    """The path does not exist or is not a file."""


class EmptyFileError(AudioError):
    """The file has zero bytes, or a valid header and no samples."""


class DecodeError(AudioError):
    """Not audio, a truncated header, or a format libsndfile does not support."""


class NonFiniteError(AudioError):
    """The samples contain NaN or infinity (possible in float WAV files)."""


class SilentError(AudioError):
    """Every sample has the same value: digital silence (or a constant offset)."""


class TooShortError(AudioError):
    """Shorter than the minimum duration."""


class TooLongError(AudioError):
    """Longer than the maximum duration."""


@dataclass(frozen=True, eq=False)
class Audio:
    """A decoded recording.

    ``samples`` is mono ``float32`` of shape ``(n_samples,)`` at ``sample_rate`` Hz (after any
    resampling); ``original_sample_rate`` and ``channels`` describe the file as stored.
    """

    samples: np.ndarray
    sample_rate: int
    path: str
    original_sample_rate: int
    channels: int

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate


def _source_name(source: AudioSource, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, str | os.PathLike):
        return str(source)
    if isinstance(source, bytes):
        return "<bytes>"
    return str(getattr(source, "name", "<stream>"))


def _open(source: AudioSource, label: str) -> sf.SoundFile:
    """Open ``source`` with soundfile, mapping every failure onto an :class:`AudioError`."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise MissingFileError(label, "file not found")
        if path.stat().st_size == 0:
            raise EmptyFileError(label, "empty file (0 bytes)")
        target: Any = path
    elif isinstance(source, bytes):
        if not source:
            raise EmptyFileError(label, "empty data (0 bytes)")
        target = io.BytesIO(source)
    else:
        if source.seekable():
            start = source.tell()
            size = source.seek(0, io.SEEK_END) - start
            source.seek(start)
            if size == 0:
                raise EmptyFileError(label, "empty data (0 bytes)")
        target = source
    try:
        return sf.SoundFile(target)
    except (sf.SoundFileError, RuntimeError, TypeError) as exc:
        detail = str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)
        raise DecodeError(label, f"cannot decode: {detail}") from None


def _check_duration(
    label: str, duration_s: float, min_duration_s: float, max_duration_s: float | None
) -> None:
    if duration_s < min_duration_s:
        raise TooShortError(
            label, f"too short: {duration_s:.3g} s, minimum is {min_duration_s:g} s"
        )
    if max_duration_s is not None and duration_s > max_duration_s:
        raise TooLongError(label, f"too long: {duration_s:.4g} s, maximum is {max_duration_s:g} s")


def read_audio(
    source: AudioSource,
    *,
    sample_rate: int | None = None,
    min_duration_s: float = 0.5,
    max_duration_s: float | None = 600.0,
    name: str | None = None,
) -> Audio:
    """Decode a recording to mono ``float32`` and check that it is usable.

    Parameters
    ----------
    source
        A path, the file's bytes, or a binary file-like object: anything soundfile reads
        (WAV of any bit depth incl. unsigned 8-bit and float, FLAC, OGG, MP3, AIFF).
    sample_rate
        Target rate in Hz; the signal is resampled with soxr (quality ``HQ``). ``None`` keeps
        the file's rate.
    min_duration_s, max_duration_s
        Accepted duration range in seconds, measured before resampling. ``max_duration_s=None``
        means no upper limit.
    name
        How the recording is named in errors; defaults to the path (``<bytes>`` for bytes).

    Channels are mixed by their mean. Raises a subclass of :class:`AudioError` naming the
    recording and the reason: :class:`MissingFileError`, :class:`EmptyFileError`,
    :class:`DecodeError`, :class:`NonFiniteError`, :class:`SilentError`,
    :class:`TooShortError` or :class:`TooLongError`.
    """
    label = _source_name(source, name)
    if sample_rate is not None and sample_rate <= 0:
        raise ValueError(f"sample_rate={sample_rate}: expected a positive rate in Hz or None")
    with _open(source, label) as fh:
        original_sr = int(fh.samplerate)
        channels = int(fh.channels)
        if fh.frames == 0:
            raise EmptyFileError(label, "no audio samples (header only)")
        # Refuse an over-long file from its header before paying for decoding it.
        if fh.frames > 0 and max_duration_s is not None:
            _check_duration(label, fh.frames / original_sr, 0.0, max_duration_s)
        try:
            data = fh.read(dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as exc:
            raise DecodeError(label, f"cannot decode samples: {exc}") from None
    if data.shape[0] == 0:
        raise EmptyFileError(label, "no audio samples could be read (truncated data)")
    # Cheap whole-array test first; count the bad samples only when it fails.
    if not np.isfinite(data.sum(dtype=np.float64)):
        n_bad = int(np.count_nonzero(~np.isfinite(data)))
        raise NonFiniteError(label, f"{n_bad} of {data.size} samples are NaN or infinite")
    samples = to_mono(data)
    if float(samples.max() - samples.min()) < SILENCE_PEAK_TO_PEAK:
        raise SilentError(label, f"digital silence: all {len(samples)} samples are equal")
    _check_duration(label, len(samples) / original_sr, min_duration_s, max_duration_s)
    if sample_rate is not None and sample_rate != original_sr:
        samples = resample(samples, original_sr, sample_rate)
    return Audio(
        samples=np.ascontiguousarray(samples, dtype=np.float32),
        sample_rate=sample_rate or original_sr,
        path=label,
        original_sample_rate=original_sr,
        channels=channels,
    )


def audio_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Header facts of an audio file, without decoding the samples (cheap; for manifests).

    Returns ``sample_rate`` (Hz), ``channels``, ``frames`` (samples per channel),
    ``duration_s`` (seconds) and ``subtype`` (e.g. ``PCM_16``). Raises :class:`AudioError`
    like :func:`read_audio`. The header can be wrong for a truncated file; only
    :func:`read_audio` proves the samples are there.
    """
    label = str(path)
    with _open(path, label) as fh:
        return {
            "sample_rate": int(fh.samplerate),
            "channels": int(fh.channels),
            "frames": int(fh.frames),
            "duration_s": fh.frames / fh.samplerate,
            "subtype": fh.subtype,
        }


def to_mono(x: np.ndarray) -> np.ndarray:
    """Mix ``(frames, channels)`` to ``(frames,)`` by the mean of the channels; 1-D passes."""
    x = np.asarray(x)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"to_mono: expected shape (frames,) or (frames, channels), got {x.shape}")
    return x[:, 0] if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float32)


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``x`` (``(frames,)`` or ``(frames, channels)``) from ``orig_sr`` to
    ``target_sr`` Hz with soxr's ``HQ`` quality; returns ``float32``."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(
            f"resample: sample rates must be positive Hz, got orig_sr={orig_sr}, "
            f"target_sr={target_sr}"
        )
    x = np.asarray(x, dtype=np.float32)
    if orig_sr == target_sr:
        return x
    return soxr.resample(x, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def peak_dbfs(x: np.ndarray) -> float:
    """Peak level in dB relative to full scale (1.0); ``-inf`` for an all-zero signal."""
    peak = float(np.max(np.abs(x))) if np.size(x) else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")


def rms_dbfs(x: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale; ``-inf`` for an all-zero signal."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if np.size(x) else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def _wrap(x: np.ndarray, n: int) -> np.ndarray:
    """Repeat ``x`` end to end until it is ``n`` samples long (a circular pad)."""
    return np.resize(x, n)


def chunk(
    x: np.ndarray, *, chunk_samples: int, hop_samples: int | None = None, pad: bool = True
) -> np.ndarray:
    """Cut a 1-D signal into chunks of ``chunk_samples``, one every ``hop_samples``.

    Returns an array of shape ``(n_chunks, chunk_samples)``. ``hop_samples`` defaults to
    ``chunk_samples`` (no overlap). Rules, chosen so that every chunk is real signal a model
    could have been trained on:

    * A signal shorter than one chunk is repeated end to end (wrap padding) to fill one
      chunk; a heart sound is quasi-periodic, so a repeat looks like more beats, not silence.
    * Full chunks start at ``0, hop, 2*hop, ...``.
    * If samples remain after the last full chunk, the next chunk (starting one hop later)
      is partial. It is dropped when shorter than half a chunk, and otherwise wrap-padded
      to a full chunk.

    With ``pad=False`` nothing is padded: only full chunks are returned, and a signal shorter
    than one chunk gives shape ``(0, chunk_samples)``.
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"chunk: expected a 1-D signal, got shape {x.shape}")
    if chunk_samples <= 0:
        raise ValueError(f"chunk: chunk_samples={chunk_samples}, expected a positive count")
    hop = chunk_samples if hop_samples is None else hop_samples
    if hop <= 0:
        raise ValueError(f"chunk: hop_samples={hop_samples}, expected a positive count")
    n = len(x)
    if n == 0:
        raise ValueError("chunk: the signal is empty")
    if n < chunk_samples:
        return _wrap(x, chunk_samples)[None, :] if pad else np.empty((0, chunk_samples), x.dtype)
    starts = range(0, n - chunk_samples + 1, hop)
    chunks = [x[s : s + chunk_samples] for s in starts]
    if pad and starts[-1] + chunk_samples < n:
        tail = x[starts[-1] + hop :]
        if 2 * len(tail) >= chunk_samples:
            chunks.append(_wrap(tail, chunk_samples))
    return np.stack(chunks)


def pad_or_crop(x: np.ndarray, n: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Return exactly ``n`` samples of the 1-D signal ``x``.

    Longer signals are cropped: at a random offset drawn from ``rng`` (training), or around
    the centre when ``rng`` is ``None`` (evaluation, deterministic). Shorter signals are
    wrap-padded (repeated end to end), as in :func:`chunk`.
    """
    x = np.asarray(x)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"pad_or_crop: expected a non-empty 1-D signal, got shape {x.shape}")
    if n <= 0:
        raise ValueError(f"pad_or_crop: n={n}, expected a positive number of samples")
    if len(x) == n:
        return x
    if len(x) < n:
        return _wrap(x, n)
    excess = len(x) - n
    start = int(rng.integers(0, excess + 1)) if rng is not None else excess // 2
    return x[start : start + n]


def scan_audio(
    paths: Iterable[str | os.PathLike[str]],
    *,
    min_duration_s: float = 0.5,
    max_duration_s: float | None = 600.0,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[AudioError]]:
    """Fully decode and check every file; never stops at a bad one.

    Returns ``(good, bad)``: for each usable file a dict with ``path``, ``sample_rate`` (Hz),
    ``channels``, ``duration_s`` (s), ``peak_dbfs`` and ``rms_dbfs``; for each unusable one its
    :class:`AudioError`. ``progress`` shows a bar on stderr.
    """
    paths = list(paths)
    good: list[dict[str, Any]] = []
    bad: list[AudioError] = []
    for path in tqdm(paths, desc="checking audio", unit="file", disable=not progress):
        try:
            audio = read_audio(path, min_duration_s=min_duration_s, max_duration_s=max_duration_s)
        except AudioError as exc:
            bad.append(exc)
            continue
        except OSError as exc:  # e.g. permission denied while reading
            bad.append(DecodeError(str(path), f"cannot read: {exc}"))
            continue
        good.append(
            {
                "path": str(path),
                "sample_rate": audio.sample_rate,
                "channels": audio.channels,
                "duration_s": audio.duration_s,
                "peak_dbfs": peak_dbfs(audio.samples),
                "rms_dbfs": rms_dbfs(audio.samples),
            }
        )
    return good, bad


def iter_audio_files(root: str | os.PathLike[str]) -> list[Path]:
    """All audio files under ``root`` (recursive), sorted, matched by
    :data:`AUDIO_EXTENSIONS` case-insensitively; hidden files and folders are skipped.

    ``root`` may also be a single audio file.
    """
    root = Path(root)
    if root.is_file():
        return [root] if root.suffix.lower() in AUDIO_EXTENSIONS else []
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file():
            found.append(path)
    return sorted(found)
