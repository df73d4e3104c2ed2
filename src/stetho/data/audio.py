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

import errno
import io
import logging
import os
import re
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

#: The highest sample rate accepted (Hz). Stethoscopes record at 4-48 kHz; studio audio goes
#: to 384 kHz. A file above that is a mistake (or a trap: FLAC allows 655 kHz), and decoding
#: it would cost memory for nothing.
MAX_SAMPLE_RATE_HZ = 384_000

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
    """The path does not exist or is not a file (a folder, a dangling link, a link loop)."""


class UnreadableFileError(AudioError):
    """The file exists but the operating system refuses to read it (permission, I/O error)."""


class EmptyFileError(AudioError):
    """The file has zero bytes, or a valid header and no samples."""


class DecodeError(AudioError):
    """Not audio, a truncated header, or a format libsndfile does not support."""


class TruncatedError(AudioError):
    """The file holds fewer samples than its header promises (an interrupted copy)."""


class SampleRateError(AudioError):
    """A sample rate no stethoscope records at (above :data:`MAX_SAMPLE_RATE_HZ`)."""


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


def os_error_reason(exc: OSError) -> str:
    """What an operating-system error means for the user, in a few words and the way out.

    ``EACCES``/``EPERM`` -> ``permission denied``, ``ELOOP`` -> a link loop, ``ENOENT`` ->
    not found, ``EISDIR`` -> a folder, ``EIO`` -> an input/output error; anything else its
    ``strerror``.
    """
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied: this user may not read the file; check its permissions"
    if code == errno.ELOOP:
        return "symbolic link loop: the link points (via other links) back to itself"
    if code == errno.ENOENT:
        return "file not found"
    if code == errno.EISDIR:
        return "is a folder, not an audio file"
    if code == errno.EIO:
        return "input/output error while reading (failing disk or network share); retry"
    return f"cannot read: {exc.strerror or exc}"


def path_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as a file, or ``None`` when it is a readable-looking file.

    Tells a dangling symbolic link (and where it points), a link loop (links pointing at each
    other, or a folder link to its own ancestor), a folder and a missing path apart.
    """
    path = Path(path)
    if path.is_symlink():
        target = os.readlink(path)
        try:
            resolved = path.resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports a loop as RuntimeError
            return "symbolic link loop: the link points (via other links) back to itself"
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symbolic link loop: the link points (via other links) back to itself"
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


def _open(source: AudioSource, label: str) -> sf.SoundFile:
    """Open ``source`` with soundfile, mapping every failure onto an :class:`AudioError`."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        problem = path_problem(path)
        if problem is not None:
            raise MissingFileError(label, problem)
        try:
            # libsndfile reports a refused open as "System error."; ask the OS ourselves.
            os.close(os.open(path, os.O_RDONLY))
            size = path.stat().st_size
        except OSError as exc:
            raise UnreadableFileError(label, os_error_reason(exc)) from None
        if size == 0:
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
    except OSError as exc:
        raise UnreadableFileError(label, os_error_reason(exc)) from None
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


#: libsndfile's header log line for a chunk that claims more bytes than the file holds, e.g.
#: ``data : 80000 (should be 26666)`` (WAV) or ``SSND : ...`` (AIFF).
_SHORT_CHUNK = re.compile(r"^(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)

#: Chunk sizes that mean "not known" rather than a promise: a writer that never finalised its
#: header (0) or streamed to a pipe (0xFFFFFFFF). Such files are read as they are.
_UNKNOWN_CHUNK_SIZES = (0, 0xFFFFFFFF)


def promised_frames(fh: sf.SoundFile) -> int:
    """Frames per channel the file's header promises.

    libsndfile trims a WAV/AIFF whose data chunk claims more bytes than the file holds to what
    is there (``fh.frames``), and logs the claim; this reads the claim back. For other formats
    (FLAC, OGG, ...) the header's frame count is ``fh.frames`` itself.
    """
    match = _SHORT_CHUNK.search(fh.extra_info)
    if match is None:
        return int(fh.frames)
    declared, present = int(match.group(1)), int(match.group(2))
    if declared in _UNKNOWN_CHUNK_SIZES or present <= 0 or declared <= present:
        return int(fh.frames)
    return int(round(fh.frames * declared / present))


#: Frames decoded at a time: memory for decoding is this times the channels, whatever the
#: file's length (64 Ki frames of float32 = 256 KiB per channel).
BLOCK_FRAMES = 65536


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
        if end > len(self.out):  # the header undercounted: grow geometrically
            grown = np.empty(max(end, 2 * len(self.out)), dtype=np.float32)
            grown[: self.n_out] = self.out[: self.n_out]
            self.out = grown
        self.out[self.n_out : end] = x
        self.n_out = end

    def samples(self) -> np.ndarray:
        # A view when the estimate was close (the usual case, a few samples spare): copying
        # would double the peak memory for nothing.
        if 10 * self.n_out >= 9 * len(self.out):
            return self.out[: self.n_out]
        return self.out[: self.n_out].copy()


def _decode(
    fh: sf.SoundFile, label: str, sample_rate: int | None, promised: int
) -> tuple[_Decoded, int]:
    """Decode ``fh`` block by block into mono ``float32``, resampling on the fly.

    Peak memory is the output plus one block, whatever the file's length. Returns the state
    and the frames per channel decoded.
    """
    original_sr = int(fh.samplerate)
    channels = int(fh.channels)
    resampling = sample_rate is not None and sample_rate != original_sr
    expected = max(promised, 0)
    if resampling:
        assert sample_rate is not None
        expected = int(np.ceil(expected * sample_rate / original_sr)) + 16
        stream = soxr.ResampleStream(original_sr, sample_rate, 1, dtype="float32", quality="HQ")
    state = _Decoded(expected)
    buffer = np.empty((BLOCK_FRAMES, channels), dtype=np.float32)
    try:
        # fh.read(out=...) rather than fh.blocks(out=...): blocks() counts down the frames the
        # header announced and would yield stale buffer contents after a short read.
        while len(block := fh.read(BLOCK_FRAMES, dtype="float32", always_2d=True, out=buffer)):
            state.frames += len(block)
            state.n_values += block.size
            # Cheap whole-block test first; count the bad samples only when it fails.
            if not np.isfinite(block.sum(dtype=np.float64)):
                state.n_bad += int(np.count_nonzero(~np.isfinite(block)))
            if state.n_bad:
                continue  # the recording is refused; only the count matters from here on
            mono = np.ascontiguousarray(to_mono(block))
            state.low = min(state.low, float(mono.min()))
            state.high = max(state.high, float(mono.max()))
            state.append(stream.resample_chunk(mono) if resampling else mono)
    except OSError as exc:
        raise UnreadableFileError(label, os_error_reason(exc)) from None
    except (sf.SoundFileError, RuntimeError) as exc:
        read = f"{state.frames / original_sr:.4g} s"
        if promised > 0:
            read += f" of the {promised / original_sr:.4g} s the header promises"
        detail = str(exc).removeprefix("Error : ").strip().rstrip(".")
        raise DecodeError(
            label,
            f"cannot decode samples ({read} read): {detail}; the file is truncated or "
            "corrupt: copy it again from its source",
        ) from None
    if resampling and not state.n_bad:
        state.append(stream.resample_chunk(np.empty(0, dtype=np.float32), last=True))
    return state, state.frames


def read_audio(
    source: AudioSource,
    *,
    sample_rate: int | None = None,
    min_duration_s: float = 0.5,
    max_duration_s: float | None = 600.0,
    max_sample_rate_hz: int | None = None,
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
    max_sample_rate_hz
        Files stored above this rate are refused from their header (default
        :data:`MAX_SAMPLE_RATE_HZ`).
    name
        How the recording is named in errors; defaults to the path (``<bytes>`` for bytes).

    The file is decoded and resampled in blocks of :data:`BLOCK_FRAMES` frames, so memory
    stays at the output plus a constant however long the file is; the result equals a
    one-shot decode and :func:`resample` within float rounding. Channels are mixed by their
    mean.

    A file holding fewer samples than its header promises (an interrupted copy or download)
    is refused with :class:`TruncatedError` rather than scored on the part that is there: a
    result on a third of a recording, given without a word, is worse than none. A header
    whose size fields were never filled in (0, or 0xFFFFFFFF from a pipe) promises nothing
    and is read as it is.

    Raises a subclass of :class:`AudioError` naming the recording and the reason:
    :class:`MissingFileError`, :class:`UnreadableFileError`, :class:`EmptyFileError`,
    :class:`DecodeError`, :class:`SampleRateError`, :class:`TruncatedError`,
    :class:`NonFiniteError`, :class:`TooShortError`, :class:`SilentError` or
    :class:`TooLongError`.
    """
    label = _source_name(source, name)
    if sample_rate is not None and sample_rate <= 0:
        raise ValueError(f"sample_rate={sample_rate}: expected a positive rate in Hz or None")
    limit_sr = MAX_SAMPLE_RATE_HZ if max_sample_rate_hz is None else max_sample_rate_hz
    with _open(source, label) as fh:
        original_sr = int(fh.samplerate)
        channels = int(fh.channels)
        if original_sr > limit_sr:
            raise SampleRateError(
                label,
                f"sample rate {original_sr} Hz is above the {limit_sr} Hz accepted; "
                f"resample the file (e.g. sox IN -r 4000 OUT)",
            )
        if fh.frames == 0:
            raise EmptyFileError(label, "no audio samples (header only)")
        promised = promised_frames(fh)
        # Refuse an over-long file from its header before paying for decoding it.
        if promised > 0 and max_duration_s is not None:
            _check_duration(label, promised / original_sr, 0.0, max_duration_s)
        state, frames = _decode(fh, label, sample_rate, promised)
    if frames == 0:
        raise EmptyFileError(label, "no audio samples could be read (truncated data)")
    if frames < promised:
        raise TruncatedError(
            label,
            f"truncated: the header promises {promised / original_sr:.4g} s ({promised} "
            f"samples), the file holds {frames / original_sr:.4g} s ({frames}); copy the "
            "file again from its source (or re-save it to use the part that is there)",
        )
    if state.n_bad:
        raise NonFiniteError(
            label, f"{state.n_bad} of {state.n_values} samples are NaN or infinite"
        )
    duration_s = frames / original_sr
    # Before the silence test: one sample is "equal to itself", but the problem is its length.
    _check_duration(label, duration_s, min_duration_s, None)
    if frames < 2:
        raise TooShortError(label, f"too short: a single sample ({duration_s:.3g} s)")
    if state.high - state.low < SILENCE_PEAK_TO_PEAK:
        raise SilentError(label, f"digital silence: all {frames} samples are equal")
    _check_duration(label, duration_s, 0.0, max_duration_s)
    return Audio(
        samples=state.samples(),
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
        except OSError as exc:  # an I/O error that read_audio did not see coming
            bad.append(UnreadableFileError(str(path), os_error_reason(exc)))
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


def _is_broken_link(entry: os.DirEntry[str]) -> bool:
    """A symbolic link whose target cannot be reached (dangling, or a loop of links)."""
    if not entry.is_symlink():
        return False
    try:
        os.stat(entry.path)
    except OSError:
        return True
    return False


def _may_be_audio(name: str) -> bool:
    """A link that is broken may have pointed at a recording (audio suffix) or at a folder of
    them (no suffix); a broken ``notes.txt`` is none of our business."""
    suffix = Path(name).suffix.lower()
    return suffix in AUDIO_EXTENSIONS or suffix == ""


def iter_audio_files(root: str | os.PathLike[str]) -> list[Path]:
    """All audio files under ``root`` (recursive), sorted, matched by
    :data:`AUDIO_EXTENSIONS` case-insensitively; hidden files and folders are skipped.

    ``root`` may also be a single audio file. Links to folders are followed, except a link
    back to one of its own ancestors (a loop). Entries that cannot be read are *listed*, so
    that the command reading them reports each with its reason (see :func:`path_problem`)
    and goes on with the others: dangling links and link loops with an audio suffix or none,
    and folder links that loop. A ``root`` that is not a folder or a file raises
    ``FileNotFoundError`` saying what it is (missing, a dangling link, a link loop).
    """
    root = Path(root)
    if root.is_file():
        return [root] if root.suffix.lower() in AUDIO_EXTENSIONS else []
    if not root.is_dir():
        problem = path_problem(root)
        if problem in (None, "file not found"):
            problem = "no such folder"
        raise FileNotFoundError(f"{root}: {problem}")
    found: list[Path] = []
    # Real folders on the path from root to the folder being listed: a link to one of them
    # is a loop.
    pending: list[tuple[Path, tuple[str, ...]]] = [(root, (os.path.realpath(root),))]
    while pending:
        folder, ancestors = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            logger.warning("%s: folder not searched: %s", folder, os_error_reason(exc))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if _is_broken_link(entry):
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
