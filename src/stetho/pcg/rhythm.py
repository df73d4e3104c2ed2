"""Rhythm statistics from the S1 onsets: RR intervals, variability, irregularity, premature beats.

The RR interval here is the interval between consecutive S1 sounds (the analysis passes their
energy centres), the acoustic counterpart of the ECG RR interval.  Two rhythm indices are reported:

* ``irregularity``: the mean absolute difference of successive RR intervals divided by the
  median RR interval (a normalised RMSSD-like index, dimensionless).  Sinus rhythm with a few
  percent beat-to-beat variability gives ~0.03; a premature beat every few cycles, ~0.2 or more.
* ``premature_beats``: the number of short-long pairs, an interval under 85 % of the median
  followed by one over 110 % of it: the signature of an extrasystole and its compensatory
  pause (a missed S1 gives a long interval without the short one, an extra S1 two short ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A premature interval is shorter than this fraction of the median RR ...
PREMATURE_FRACTION = 0.85
#: ... and is followed by a pause longer than this fraction of it.
PAUSE_FRACTION = 1.10


@dataclass(frozen=True)
class RhythmStats:
    """RR-interval statistics (ms) and rhythm indices; NaN where too few intervals exist."""

    rr_ms: np.ndarray
    mean_ms: float
    median_ms: float
    sd_ms: float
    min_ms: float
    max_ms: float
    rmssd_ms: float
    irregularity: float
    premature_beats: int

    @property
    def count(self) -> int:
        return int(self.rr_ms.size)


def rhythm_stats(s1_times_s: np.ndarray) -> RhythmStats:
    """Statistics of the intervals between consecutive S1 times (seconds, increasing).

    One interval gives its value as mean, median, min and max; the variability measures need
    two intervals and are NaN below that.
    """
    times = np.asarray(s1_times_s, dtype=np.float64)
    if times.ndim != 1:
        raise ValueError(f"s1_times_s: expected a 1-D array, got shape {times.shape}")
    rr_ms = np.diff(times) * 1000.0
    if np.any(rr_ms <= 0):
        raise ValueError("s1_times_s: times must be strictly increasing")
    nan = float("nan")
    if rr_ms.size == 0:
        return RhythmStats(rr_ms, nan, nan, nan, nan, nan, nan, nan, 0)
    median = float(np.median(rr_ms))
    successive = np.abs(np.diff(rr_ms))
    short = rr_ms[:-1] < PREMATURE_FRACTION * median
    long_after = rr_ms[1:] > PAUSE_FRACTION * median
    return RhythmStats(
        rr_ms=rr_ms,
        mean_ms=float(rr_ms.mean()),
        median_ms=median,
        sd_ms=float(rr_ms.std(ddof=1)) if rr_ms.size > 1 else nan,
        min_ms=float(rr_ms.min()),
        max_ms=float(rr_ms.max()),
        rmssd_ms=float(np.sqrt(np.mean(successive**2))) if successive.size else nan,
        irregularity=float(successive.mean() / median) if successive.size else nan,
        premature_beats=int(np.sum(short & long_after)),
    )
