"""Signal quality: can the heart rate and the segmentation of a recording be trusted?

Four checks, each scored in [0, 1] by a linear ramp between a "bad" and a "good" value so that
0.5 falls on the decision threshold; the quality index is the smallest score (a recording is as
good as its worst aspect), ``usable`` is ``index >= 0.5`` and every score under 0.5 gives a
reason.  The checks follow the signal-quality literature for PCG (Springer et al. 2016,
"Automated signal quality assessment of mobile phone-recorded heart sound signals", J. Med.
Eng. Technol.: autocorrelation-based periodicity and envelope measures):

* ``clipping``: share of samples of the raw input within 0.1 % of its peak; a clean recording
  touches its peak on a handful of samples, a saturated one on whole plateaus;
* ``periodicity``: the autocorrelation peak of the envelope at the cardiac cycle (the heart-rate
  confidence); noise and speech have none;
* ``contrast``: median envelope inside the S1/S2 segments over the median envelope in systole
  and diastole; segmenting noise finds "sounds" barely louder than the gaps;
* ``cycles``: the number of complete S1 sounds found; fewer than two leaves no RR interval.

The ramp midpoints were placed between synthetic noise and synthetic PCG (40 of each): white
and brown noise reach a periodicity of at most 0.19 and a contrast of at most 1.31 (90th
percentiles), PCG at 0-20 dB SNR at least 0.59 and 2.47 (10th percentiles); clean synthetic
PCG has a clipping share of 0.01 %, the same clipped at a fifth of its peak 4.4 %.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Shortest recording analysed (s); heart rate needs at least a cycle at 120 bpm.
MIN_DURATION_S = 0.5

#: (bad, good) ends of each score's ramp.
CLIPPING_RAMP = (0.02, 0.002)
PERIODICITY_RAMP = (0.1, 0.4)
CONTRAST_RAMP = (1.3, 2.3)
CYCLES_RAMP = (1.0, 3.0)


@dataclass(frozen=True)
class Quality:
    """Quality index in [0, 1], the usable flag, the reasons against, each check's score in
    [0, 1] and the measurement it was scored from (empty for silent or too-short input)."""

    index: float
    usable: bool
    reasons: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)
    measurements: dict[str, float] = field(default_factory=dict)


def _ramp(value: float, bad: float, good: float) -> float:
    """0 at ``bad``, 1 at ``good``, linear between (either direction); NaN counts as bad."""
    if not np.isfinite(value):
        return 0.0
    return float(np.clip((value - bad) / (good - bad), 0.0, 1.0))


def clipping_fraction(x: np.ndarray) -> float:
    """Share of samples whose magnitude is within 0.1 % of the peak magnitude (0 for silence)."""
    magnitude = np.abs(np.asarray(x, dtype=np.float64))
    peak = float(magnitude.max()) if magnitude.size else 0.0
    return float(np.mean(magnitude >= 0.999 * peak)) if peak > 0 else 0.0


def sound_contrast(envelope: np.ndarray, is_sound: np.ndarray) -> float:
    """Median ``envelope`` where ``is_sound`` over the median elsewhere (NaN if either is empty)."""
    sound = envelope[is_sound]
    quiet = envelope[~is_sound]
    if sound.size == 0 or quiet.size == 0:
        return float("nan")
    quiet_level = float(np.median(quiet))
    return float(np.median(sound)) / quiet_level if quiet_level > 0 else float("nan")


def assess_quality(
    *,
    clipping: float,
    periodicity: float,
    contrast: float,
    n_s1: int,
    duration_s: float,
    silent: bool,
) -> Quality:
    """Combine the four measurements (see the module docstring) into a :class:`Quality`.

    A silent recording, or one shorter than :data:`MIN_DURATION_S`, scores 0 with that reason.
    """
    if silent:
        return Quality(0.0, False, ("silent: the signal is constant",), {})
    if duration_s < MIN_DURATION_S:
        reason = f"too short: {duration_s:.2f} s, minimum {MIN_DURATION_S} s"
        return Quality(0.0, False, (reason,), {})
    measurements = {
        "clipping": clipping,
        "periodicity": periodicity,
        "contrast": contrast,
        "cycles": float(n_s1),
    }
    ramps = {
        "clipping": CLIPPING_RAMP,
        "periodicity": PERIODICITY_RAMP,
        "contrast": CONTRAST_RAMP,
        "cycles": CYCLES_RAMP,
    }
    scores = {name: _ramp(value, *ramps[name]) for name, value in measurements.items()}
    messages = {
        "clipping": f"clipping: {100 * clipping:.1f}% of samples at the peak level",
        "periodicity": f"no periodicity: envelope autocorrelation {periodicity:.2f} at the cycle",
        "contrast": f"noise: heart sounds only {contrast:.2f}x the background envelope",
        "cycles": f"too few cycles: {n_s1} complete S1 found",
    }
    index = min(scores.values())
    reasons = tuple(messages[name] for name, score in scores.items() if score < 0.5)
    return Quality(
        index=index, usable=index >= 0.5, reasons=reasons, scores=scores, measurements=measurements
    )
