"""Envelopes of a heart-sound signal, the features that heart-rate estimation and segmentation use.

The envelopes follow the heart-sound literature:

* homomorphic envelope: ``exp(lowpass(log|analytic signal|))`` (Gupta et al. 2007; used by
  Schmidt et al. 2010 and Springer et al. 2016 for heart rate and segmentation);
* Hilbert envelope: magnitude of the analytic signal (Springer et al. 2016);
* Shannon energy envelope: ``-x^2 log x^2`` averaged over 20 ms (Liang et al. 1997, "Heart sound
  segmentation algorithm based on heart sound envelolgram", Computers in Cardiology);
* wavelet envelope: magnitude of the discrete-wavelet detail band around 62.5-125 Hz, rbio3.9
  wavelet (Springer et al. 2016, their level-3 detail at 1 kHz);
* power spectral density in 40-60 Hz per 50 ms frame (Springer et al. 2016's PSD feature).

The band-limited wavelet and PSD envelopes follow the valve sounds, whose energy lies mostly
below 150 Hz, and ignore most of a murmur, which lies higher (100-600 Hz); the broadband
homomorphic envelope follows both.  The segmentation therefore uses the two band-limited ones
(in a design study on synthetic recordings with systolic murmurs, S2 onsets found within 60 ms
rose from 28 % with homomorphic, Hilbert, Shannon and wavelet envelopes together to 75 % with
wavelet and PSD, with no loss without murmur), and the heart rate and quality use the
homomorphic one.  The Hilbert and Shannon envelopes are offered for other uses.

The envelope functions take a pre-processed 1-D signal (samples,) and return an envelope of
the same length; :func:`envelope_matrix` stacks the three the analysis uses, at the 50 Hz
feature rate of Springer et al. 2016.
"""

from __future__ import annotations

import math

import numpy as np
import pywt
from scipy import fft, ndimage, signal

#: Rate of the envelope features used for heart rate and segmentation (Springer et al. 2016).
FEATURE_RATE_HZ = 50

#: Names of the columns returned by :func:`envelope_matrix`, in order.
ENVELOPE_NAMES = ("homomorphic", "wavelet", "psd")

_TINY = 1e-12


def _analytic_magnitude(x: np.ndarray) -> np.ndarray:
    n = len(x)
    return np.abs(signal.hilbert(x, N=fft.next_fast_len(n))[:n])


def hilbert_envelope(x: np.ndarray) -> np.ndarray:
    """Magnitude of the analytic signal (samples,)."""
    return _analytic_magnitude(np.asarray(x, dtype=np.float64))


def homomorphic_envelope(
    x: np.ndarray, sample_rate_hz: float, *, lowpass_hz: float = 8.0
) -> np.ndarray:
    """Homomorphic envelope: ``exp`` of the zero-phase 8 Hz low-passed ``log|hilbert(x)|``.

    The 8 Hz first-order Butterworth filter is the one of Springer et al. 2016
    (``Homomorphic_Envelope_with_Hilbert.m``).
    """
    log_magnitude = np.log(hilbert_envelope(x) + _TINY)
    b, a = signal.butter(1, lowpass_hz, btype="low", fs=sample_rate_hz)
    padlen = min(3 * max(len(a), len(b)), len(x) - 1)
    return np.exp(signal.filtfilt(b, a, log_magnitude, padlen=max(padlen, 0)))


def shannon_envelope(x: np.ndarray, sample_rate_hz: float, *, window_s: float = 0.02) -> np.ndarray:
    """Shannon energy ``-x^2 log(x^2)`` of the peak-normalised signal, averaged over ``window_s``.

    Shannon energy emphasises medium intensities over both low-level noise and the few loudest
    samples (Liang et al. 1997).
    """
    peak = np.max(np.abs(x))
    if peak <= 0:
        return np.zeros(len(x))
    power = (np.asarray(x, dtype=np.float64) / peak) ** 2
    energy = -power * np.log(power + _TINY)
    size = max(1, int(round(window_s * sample_rate_hz)))
    return ndimage.uniform_filter1d(energy, size=size, mode="nearest")


def wavelet_envelope(
    x: np.ndarray, sample_rate_hz: float, *, wavelet: str = "rbio3.9", band_low_hz: float = 62.5
) -> np.ndarray:
    """Magnitude of the single DWT detail band whose lower edge is nearest ``band_low_hz``.

    Springer et al. 2016 use the level-3 rbio3.9 detail at 1 kHz (62.5-125 Hz); the level is
    chosen here from the sample rate so the band is the same at any rate.
    """
    arr = np.asarray(x, dtype=np.float64)
    level = max(1, int(round(math.log2(sample_rate_hz / (2 * band_low_hz)))))
    max_level = pywt.dwt_max_level(len(arr), pywt.Wavelet(wavelet).dec_len)
    level = min(level, max(max_level, 1))
    coeffs = pywt.wavedec(arr, wavelet, level=level)
    # coeffs = [cA_level, cD_level, ...]: keep only the level's detail band.
    detail = pywt.waverec(
        [np.zeros_like(coeffs[0]), coeffs[1], *(np.zeros_like(c) for c in coeffs[2:])], wavelet
    )
    return np.abs(detail[: len(arr)])


def psd_envelope(
    x: np.ndarray,
    sample_rate_hz: float,
    *,
    frame_hz: float = FEATURE_RATE_HZ,
    band_hz: tuple[float, float] = (40.0, 60.0),
) -> np.ndarray:
    """Mean power spectral density in ``band_hz`` of 50 ms Hamming frames at ``frame_hz``.

    Springer et al. 2016's PSD feature, (frames,).  Frame ``k`` is centred on ``k / frame_hz``
    seconds; there are ``ceil(len(x) * frame_hz / sample_rate_hz)`` frames, as from
    :func:`downsample`.
    """
    hop = int(round(sample_rate_hz / frame_hz))
    window = max(int(round(0.05 * sample_rate_hz)), hop + 1)
    nfft = max(window, fft.next_fast_len(int(round(sample_rate_hz / 5))))  # 5 Hz resolution
    freqs_hz, _, spec = signal.stft(
        np.asarray(x, dtype=np.float64),
        fs=sample_rate_hz,
        window="hamming",
        nperseg=window,
        noverlap=window - hop,
        nfft=nfft,
        boundary="even",
        padded=True,
    )
    band = (freqs_hz >= band_hz[0]) & (freqs_hz <= band_hz[1])
    power = np.mean(np.abs(spec[band]) ** 2, axis=0)
    n_frames = int(np.ceil(len(x) * frame_hz / sample_rate_hz))
    return np.pad(power, (0, max(0, n_frames - len(power))), mode="edge")[:n_frames]


def downsample(envelope: np.ndarray, sample_rate_hz: float, *, target_hz: float) -> np.ndarray:
    """Anti-aliased polyphase downsampling of an envelope (samples,) -> (frames,)."""
    up, down = _ratio(target_hz, sample_rate_hz)
    return signal.resample_poly(envelope, up, down)


def _ratio(target_hz: float, source_hz: float) -> tuple[int, int]:
    g = math.gcd(int(round(target_hz)), int(round(source_hz)))
    return int(round(target_hz)) // g, int(round(source_hz)) // g


def normalise(envelope: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation (returns zeros for a constant envelope)."""
    centred = envelope - np.mean(envelope)
    scale = np.std(centred)
    return centred / scale if scale > 0 else np.zeros_like(centred)


def envelope_matrix(
    x: np.ndarray, sample_rate_hz: float, *, feature_hz: float = FEATURE_RATE_HZ
) -> np.ndarray:
    """Homomorphic, wavelet and PSD envelopes at ``feature_hz``, (frames, 3): ENVELOPE_NAMES.

    ``x`` is a pre-processed signal (see :func:`stetho.pcg.filters.preprocess`).  Values are
    non-negative and not normalised (apply :func:`normalise` per column for features).
    """
    homomorphic = downsample(
        homomorphic_envelope(x, sample_rate_hz), sample_rate_hz, target_hz=feature_hz
    )
    wavelet = downsample(wavelet_envelope(x, sample_rate_hz), sample_rate_hz, target_hz=feature_hz)
    psd = psd_envelope(x, sample_rate_hz, frame_hz=feature_hz)[: len(homomorphic)]
    return np.maximum(np.column_stack([homomorphic, wavelet, psd]), 0.0)
