"""Physiology the analysis relies on: the range of heart rates and how systole scales with it.

These are facts about hearts, not about any one method, so the heart-rate estimator, the
segmenters and the synthetic test-signal generator all read them from here.

* Heart-rate range: :data:`MIN_HEART_RATE_BPM` to :data:`MAX_HEART_RATE_BPM` (30-250 bpm).
  Adult bradycardia rarely goes below 30 bpm; neonates and infants run at 100-200 bpm, and
  supraventricular tachycardia in infants reaches 220-250 bpm.  An estimate outside this range
  is never reported as a heart rate without a flag.
* Systole: the S1-onset to S2-onset interval scales with the cycle length like
  electromechanical systole, ``0.35 s * sqrt(RR / 1 s)`` (a Bazett-type scaling that matches
  Weissler et al. 1968's resting regression ``QS2 = 546 - 2.1 HR`` ms at 50-100 bpm).
* Sound durations: Schmidt et al. 2010 measured S1 at 122 +/- 22 ms and S2 at 92-94 +/- 22 ms.
"""

from __future__ import annotations

import numpy as np

#: Lowest heart rate (bpm) the analysis reports.
MIN_HEART_RATE_BPM = 30.0

#: Highest heart rate (bpm) the analysis reports (infant tachycardia).
MAX_HEART_RATE_BPM = 250.0

#: Mean and standard deviation (s) of the S1 duration (Schmidt et al. 2010).
S1_MEAN_S, S1_SD_S = 0.122, 0.022

#: Mean and standard deviation (s) of the S2 duration (Schmidt et al. 2010; Springer 2016).
S2_MEAN_S, S2_SD_S = 0.094, 0.022


def systole_interval_s(rr_s: float | np.ndarray) -> float | np.ndarray:
    """Physiological S1-onset to S2-onset interval (s) for a cycle length ``rr_s`` (s)."""
    return 0.35 * np.sqrt(rr_s)


def in_range(heart_rate_bpm: float) -> bool:
    """Whether a heart rate lies in the documented range (NaN does not)."""
    return bool(MIN_HEART_RATE_BPM <= heart_rate_bpm <= MAX_HEART_RATE_BPM)
