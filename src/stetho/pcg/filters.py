"""Pre-processing of heart-sound recordings: resampling, band-pass filtering, spike removal.

Heart sounds and murmurs carry their energy below ~600 Hz, so every recording is brought to
:data:`INTERNAL_SAMPLE_RATE_HZ` (2 kHz) before analysis, band-passed to 25-400 Hz (the band used
by Springer et al. 2016, "Logistic regression-HSMM-based heart sound segmentation", IEEE TBME
63(4)) and cleaned of friction spikes with the method of Schmidt et al. 2010 ("Segmentation of
heart sound recordings by a duration-dependent hidden Markov model", Physiol. Meas. 31(4)).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from stetho.data.audio import resample as _resample_audio

#: Sample rate at which all PCG analysis runs (Hz).
INTERNAL_SAMPLE_RATE_HZ = 2000


def check_signal(x: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    """Return ``x`` as a finite float64 1-D array, or raise ``ValueError`` saying what is wrong."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"x: expected a 1-D mono signal, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("x: the signal is empty")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"x: expected real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr.sum()) and not np.isfinite(arr).all():
        raise ValueError(f"x: {int((~np.isfinite(arr)).sum())} samples are NaN or infinite")
    if not sample_rate_hz > 0:
        raise ValueError(f"sample_rate_hz: expected a positive rate, got {sample_rate_hz!r}")
    return arr


def resample(
    x: np.ndarray, sample_rate_hz: int, *, target_hz: int = INTERNAL_SAMPLE_RATE_HZ
) -> np.ndarray:
    """Resample ``x`` (samples,) from ``sample_rate_hz`` to ``target_hz`` (soxr HQ, float64)."""
    arr = check_signal(x, sample_rate_hz)
    if sample_rate_hz == target_hz:
        return arr.copy()
    return _resample_audio(arr, int(sample_rate_hz), target_hz).astype(np.float64)


def bandpass(
    x: np.ndarray,
    sample_rate_hz: float,
    *,
    low_hz: float = 25.0,
    high_hz: float = 400.0,
    order: int = 4,
) -> np.ndarray:
    """Zero-phase Butterworth band-pass (``sosfiltfilt``), 25-400 Hz by default (Springer 2016).

    ``high_hz`` is capped just below the Nyquist frequency, so 4 kHz and 2 kHz input both work.
    """
    nyquist_hz = sample_rate_hz / 2
    if not 0 < low_hz < nyquist_hz:
        raise ValueError(f"low_hz={low_hz} must lie in (0, {nyquist_hz}) for rate {sample_rate_hz}")
    high_hz = min(high_hz, 0.95 * nyquist_hz)
    if high_hz <= low_hz:
        raise ValueError(f"high_hz={high_hz} must exceed low_hz={low_hz}")
    sos = signal.butter(order, [low_hz, high_hz], btype="bandpass", fs=sample_rate_hz, output="sos")
    # sosfiltfilt pads by 3 filter lengths; a very short input is padded less, never refused.
    padlen = min(3 * (2 * len(sos) + 1), len(x) - 1)
    return signal.sosfiltfilt(sos, x, padlen=max(padlen, 0))


def remove_spikes(
    x: np.ndarray, sample_rate_hz: float, *, window_s: float = 0.5, threshold: float = 3.0
) -> np.ndarray:
    """Remove friction spikes as Schmidt et al. 2010 do (section 2.2).

    The signal is cut into ``window_s`` windows; while some window's maximum absolute amplitude
    (MAA) exceeds ``threshold`` times the median MAA, the largest spike of the loudest window is
    zeroed from the zero crossing before it to the zero crossing after it.  A trailing partial
    window is left unchanged, as in Springer's reference implementation.

    Returns a new array (samples,); ``x`` is not modified.
    """
    out = np.array(x, dtype=np.float64)
    window = int(round(window_s * sample_rate_hz))
    n_windows = len(out) // window if window > 0 else 0
    if n_windows < 2:
        return out
    frames = out[: n_windows * window].reshape(n_windows, window)  # a view into ``out``
    maas = np.abs(frames).max(axis=1)
    limit = threshold * float(np.median(maas))
    if limit <= 0:
        return out
    while maas.max() > limit:
        k = int(np.argmax(maas))
        frame = frames[k]
        peak = int(np.argmax(np.abs(frame)))
        crossings = np.flatnonzero(np.abs(np.diff(np.sign(frame))) > 1)
        before = crossings[crossings < peak]
        after = crossings[crossings >= peak]
        start = int(before[-1]) if before.size else 0
        stop = int(after[0]) + 1 if after.size else window
        frame[start:stop] = 0.0
        maas[k] = np.abs(frame).max()
    return out


def preprocess(x: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """Resample to 2 kHz, band-pass 25-400 Hz and remove spikes; returns (samples at 2 kHz,)."""
    y = resample(x, sample_rate_hz)
    y = bandpass(y, INTERNAL_SAMPLE_RATE_HZ)
    return remove_spikes(y, INTERNAL_SAMPLE_RATE_HZ)
