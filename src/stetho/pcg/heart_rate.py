"""Heart rate and systolic interval from the autocorrelation of the homomorphic envelope.

The method is that of the PhysioNet/CinC 2016 reference code (Springer's ``getHeartRateSchmidt``,
after Schmidt et al. 2010): the autocorrelation of the normalised homomorphic envelope peaks at
the cardiac cycle length.  Two changes let it cover 30-200 bpm instead of 30-120 bpm:

* a candidate lag ``L`` is scored by ``(r(L) + r(2L)) / 2``: the true cycle length repeats at
  twice its lag, whereas the S1-S2 and S2-S1 lags (which also give autocorrelation peaks) do not,
  and the biased autocorrelation's decay keeps ``2T`` from beating ``T``;
* the autocorrelation cannot tell systole (S1->S2) from diastole (S2->S1), and Springer's
  search window (0.2 s, T/2] assumes systole is the shorter, which fails above ~120 bpm; the
  systolic peak is instead sought near the physiological systole for the cycle length
  (:func:`stetho.pcg.synthetic.systole_interval_s`), which also keeps a systolic murmur from
  pulling it to the end of S1.

A short loud artifact (a knock, a rub, speech) can outweigh many clean cycles in an
autocorrelation, so the envelope is first clipped at its median plus two robust standard
deviations (1.4826 MAD): every heart sound then counts about the same, whatever its loudness.
On synthetic recordings with 0.2-0.8 s noise bursts this raised the share of estimates within
5 bpm from 77 % to 89 % (two bursts) and from 93 % to 99 % (one burst).

The confidence is the normalised autocorrelation at the chosen lag: 1 for a perfectly periodic
envelope, near 0 for noise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import fft
from scipy import signal as sps

from stetho.pcg.envelopes import normalise
from stetho.pcg.synthetic import systole_interval_s

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeartRateEstimate:
    """Heart rate (bpm), its confidence in [0, 1], and the S1-onset to S2-onset interval (s).

    ``heart_rate_bpm`` and ``systole_s`` are NaN when no periodicity could be found.
    """

    heart_rate_bpm: float
    confidence: float
    systole_s: float

    @property
    def cycle_s(self) -> float:
        """Cardiac cycle length (s)."""
        return 60.0 / self.heart_rate_bpm


def clip_outliers(envelope: np.ndarray, *, n_sd: float = 2.0) -> np.ndarray:
    """Clip an envelope at its median plus ``n_sd`` robust standard deviations (1.4826 MAD)."""
    centre = float(np.median(envelope))
    spread = 1.4826 * float(np.median(np.abs(envelope - centre)))
    return np.minimum(envelope, centre + n_sd * spread) if spread > 0 else envelope


def autocorrelation(envelope: np.ndarray) -> np.ndarray:
    """Biased autocorrelation of the normalised envelope, ``r[0] == 1``; (lags,) = (frames,)."""
    z = normalise(np.asarray(envelope, dtype=np.float64))
    n = len(z)
    spectrum = fft.rfft(z, fft.next_fast_len(2 * n))
    r = fft.irfft(np.abs(spectrum) ** 2)[:n]
    return r / r[0] if r[0] > 0 else np.zeros(n)


def _refine_peak(r: np.ndarray, k: int) -> tuple[float, float]:
    """Parabolic interpolation of a peak at index ``k``: (lag in frames, height)."""
    if 0 < k < len(r) - 1:
        a, b, c = r[k - 1], r[k], r[k + 1]
        denom = a - 2 * b + c
        if denom < 0:
            shift = 0.5 * (a - c) / denom
            return k + shift, b - 0.25 * (a - c) * shift
    return float(k), float(r[k])


def _near_max(r: np.ndarray, centre: float, half_width: float) -> float:
    lo = max(0, int(np.floor(centre - half_width)))
    hi = min(len(r), int(np.ceil(centre + half_width)) + 1)
    return float(r[lo:hi].max()) if hi > lo else float("nan")


def estimate_heart_rate(
    envelope: np.ndarray,
    envelope_hz: float,
    *,
    min_bpm: float = 30.0,
    max_bpm: float = 200.0,
) -> HeartRateEstimate:
    """Estimate heart rate from an envelope (frames,) sampled at ``envelope_hz``.

    Returns NaN heart rate and zero confidence when the envelope holds no autocorrelation peak
    between the lags of ``max_bpm`` and ``min_bpm`` (too short, or not periodic).
    """
    if not 0 < min_bpm < max_bpm:
        raise ValueError(f"min_bpm={min_bpm}, max_bpm={max_bpm}: expected 0 < min_bpm < max_bpm")
    r = autocorrelation(np.asarray(envelope, dtype=np.float64))
    lo = max(1, int(np.floor(60.0 / max_bpm * envelope_hz)))
    hi = min(len(r) - 2, int(np.ceil(60.0 / min_bpm * envelope_hz)))
    nothing = HeartRateEstimate(float("nan"), 0.0, float("nan"))
    if hi <= lo:
        return nothing
    peaks, _ = sps.find_peaks(r[lo - 1 : hi + 2])
    peaks = peaks + lo - 1
    peaks = peaks[(peaks >= lo) & (peaks <= hi)]
    if peaks.size == 0:
        return nothing
    scores = []
    for k in peaks:
        second = _near_max(r, 2 * k, 0.1 * k) if 2 * k < len(r) else float("nan")
        scores.append(r[k] if np.isnan(second) else 0.5 * (r[k] + second))
    best = int(peaks[int(np.argmax(scores))])
    lag, height = _refine_peak(r, best)
    cycle_s = lag / envelope_hz
    return HeartRateEstimate(
        heart_rate_bpm=60.0 / cycle_s,
        confidence=float(np.clip(height, 0.0, 1.0)),
        systole_s=_systole_s(r, envelope_hz, cycle_s=cycle_s),
    )


def _systole_s(r: np.ndarray, envelope_hz: float, *, cycle_s: float) -> float:
    """S1-onset to S2-onset interval (s) from the autocorrelation ``r``, guided by physiology.

    Candidates are autocorrelation peaks within 40 % of the physiological systole ``p`` for the
    cycle length; the one maximising ``r(L) - |L - p| / p`` wins.  Without a candidate (a murmur
    filling systole flattens the peak) the physiological value itself is returned.
    """
    prior_s = float(systole_interval_s(cycle_s))
    lo = max(int(np.ceil(0.6 * prior_s * envelope_hz)), int(np.ceil(0.1 * envelope_hz)))
    hi = min(
        int(np.floor(1.4 * prior_s * envelope_hz)),
        int(np.floor((cycle_s - 0.1) * envelope_hz)),
        len(r) - 2,
    )
    if hi <= lo + 1:
        return prior_s
    peaks, _ = sps.find_peaks(r[lo - 1 : hi + 2])
    peaks = peaks + lo - 1
    peaks = peaks[(peaks >= lo) & (peaks <= hi)]
    if peaks.size == 0:
        return prior_s
    refined = [_refine_peak(r, int(k)) for k in peaks]
    scores = [height - abs(lag / envelope_hz - prior_s) / prior_s for lag, height in refined]
    return refined[int(np.argmax(scores))][0] / envelope_hz
