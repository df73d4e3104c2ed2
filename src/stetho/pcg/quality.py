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


# --- quality of an LR-HSMM segmentation --------------------------------------------------------
#
# The LR-HSMM's quality judges the signal through the decoded cycle, not the rhythm: an
# extrasystole changes a diastole's length, which the checks below ignore, while noise, a
# wrong rate or a missing sound make the decoded states disagree with the frame-wise evidence
# or the systoles (the steadiest interval of the cycle, Weissler et al. 1968) vary.

#: (bad, good) ends of the ramp of the mean posterior of the decoded states (the "fit").
FIT_RAMP = (0.6, 0.75)
#: (bad, good) ends of the ramp of the sound coverage: the share of the frames the emission
#: model holds to be sounds (posterior of S1 or S2 at least 0.5) that the decoded path puts in
#: S1 or S2.  A decoding at half the rate leaves every other sound in a gap (coverage near
#: 0.5); a right one misses only the blurred edges of the sounds (about 0.9 on CirCor,
#: cross-validated).  The midpoint sits between the two; it was placed with those
#: cross-validated values in view.
COVERAGE_RAMP = (0.6, 0.85)
#: (bad, good) ends of the ramp of the number of complete S1 sounds of a decoding: at least
#: three (two RR intervals, one to check the other against).  A learned decoder fills a short
#: recording with a plausible second beat more readily than the envelope method (whose ramp,
#: :data:`CYCLES_RAMP`, stays at one interval), so one interval is not evidence of a rate.
DECODED_CYCLES_RAMP = (2.0, 3.0)
#: (bad, good) ends of the ramp of the share of cycles with a consistent systole.
CONSISTENCY_RAMP = (0.5, 0.85)
#: A decoded systole (S1 onset to S2 onset) counts as consistent within this fraction of the
#: median: beat-to-beat variation of systole is a few percent, that of diastole much more.
SYSTOLE_TOLERANCE = 0.2
#: Smoothing window (s) of the per-frame fit for the usable segments: two cycles at 60 bpm.
SEGMENT_WINDOW_S = 2.0
#: Shortest usable segment (s).
MIN_SEGMENT_S = 2.0


def cycle_consistency(s1_s: np.ndarray, s2_s: np.ndarray) -> float:
    """Share of decoded S1 sounds followed by an S2 at a systolic lag near the median one.

    NaN when fewer than two S1-S2 pairs were decoded.
    """
    if len(s1_s) == 0 or len(s2_s) == 0:
        return float("nan")
    s2_on = np.sort(s2_s[:, 0])
    lags = []
    for on in s1_s[:, 0]:
        after = s2_on[s2_on > on]
        lags.append(after[0] - on if after.size else np.nan)
    lags_arr = np.asarray(lags)
    finite = lags_arr[np.isfinite(lags_arr)]
    if finite.size < 2:
        return float("nan")
    median = float(np.median(finite))
    ok = np.abs(lags_arr - median) <= SYSTOLE_TOLERANCE * median
    return float(np.mean(ok))


def sound_coverage(p_sound: np.ndarray, is_sound: np.ndarray) -> float:
    """Share of the frames with sound posterior ``p_sound >= 0.5`` that ``is_sound`` marks.

    Frames, not posterior mass, so that the diffuse low posterior of long, noisy gaps at slow
    rates does not count.  NaN when no frame reaches 0.5.
    """
    likely = np.asarray(p_sound) >= 0.5
    return float(np.mean(np.asarray(is_sound)[likely])) if likely.any() else float("nan")


def assess_segmentation(
    *,
    clipping: float,
    fit: float,
    consistency: float,
    contrast: float,
    n_s1: int,
    duration_s: float,
    coverage: float = float("nan"),
) -> Quality:
    """Quality of a recording from its LR-HSMM decoding (see the comment above).

    ``fit`` is the mean emission posterior of the decoded state, ``consistency`` the share of
    cycles with a consistent systole (:func:`cycle_consistency`), ``coverage`` the share of the
    sound evidence the decoded sounds explain (:func:`sound_coverage`; NaN leaves it out, for
    callers without emissions).  The index is the smallest of the scores, as in
    :func:`assess_quality`.
    """
    measurements = {
        "clipping": clipping,
        "fit": fit,
        "coverage": coverage,
        "consistency": consistency,
        "contrast": contrast,
        "cycles": float(n_s1),
    }
    ramps = {
        "clipping": CLIPPING_RAMP,
        "fit": FIT_RAMP,
        "coverage": COVERAGE_RAMP,
        "consistency": CONSISTENCY_RAMP,
        "contrast": CONTRAST_RAMP,
        "cycles": DECODED_CYCLES_RAMP,
    }
    if not np.isfinite(coverage):
        del measurements["coverage"]
    scores = {name: _ramp(value, *ramps[name]) for name, value in measurements.items()}
    messages = {
        "clipping": f"clipping: {100 * clipping:.1f}% of samples at the peak level",
        "fit": f"noise: the decoded heart cycle fits the signal poorly (fit {fit:.2f})",
        "coverage": (
            f"ambiguous cycle: only {100 * coverage:.0f}% of the sound evidence decoded as "
            "S1/S2 (the rate may be halved)"
        ),
        "consistency": (
            f"inconsistent cycle: only {100 * consistency:.0f}% of systoles alike"
            if np.isfinite(consistency)
            else "inconsistent cycle: no S1-S2 pairs decoded"
        ),
        "contrast": f"noise: heart sounds only {contrast:.2f}x the background envelope",
        "cycles": f"too few cycles: {n_s1} complete S1 found",
    }
    index = min(scores.values())
    reasons = tuple(messages[name] for name, score in scores.items() if score < 0.5)
    del duration_s  # the caller has already refused recordings under MIN_DURATION_S
    return Quality(
        index=index, usable=index >= 0.5, reasons=reasons, scores=scores, measurements=measurements
    )


def usable_segments(
    fit: np.ndarray,
    envelope: np.ndarray,
    is_sound: np.ndarray,
    frame_hz: float,
    *,
    usable: bool = True,
) -> np.ndarray:
    """[start, end] spans (n, 2), in seconds, where the decoded cycle fits the signal locally.

    Over a sliding :data:`SEGMENT_WINDOW_S`, the mean per-frame ``fit`` (posterior of the
    decoded kind, sound or gap) and the local contrast (geometric mean of ``envelope`` in the
    decoded sounds over that in the gaps) must both reach the middle of their ramps
    (:data:`FIT_RAMP`, :data:`CONTRAST_RAMP`); runs shorter than :data:`MIN_SEGMENT_S` are
    dropped.  Empty when the recording as a whole is not ``usable``.
    """
    from scipy import ndimage

    n = len(fit)
    if not usable or n == 0:
        return np.empty((0, 2))
    size = max(1, int(round(SEGMENT_WINDOW_S * frame_hz)))

    def mean(values: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter1d(values.astype(np.float64), size=size, mode="nearest")

    log_env = np.log(np.maximum(envelope, 1e-12 * max(float(np.max(envelope)), 1e-300)))
    sound = is_sound.astype(np.float64)
    n_sound, n_gap = mean(sound), mean(1.0 - sound)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_contrast = mean(log_env * sound) / n_sound - mean(log_env * (1.0 - sound)) / n_gap
    good = (mean(np.asarray(fit)) >= 0.5 * sum(FIT_RAMP)) & (
        np.nan_to_num(log_contrast, nan=-np.inf) >= np.log(0.5 * sum(CONTRAST_RAMP))
    )
    edges = np.flatnonzero(np.diff(np.concatenate([[0], good.astype(np.int8), [0]])))
    runs = edges.reshape(-1, 2) / frame_hz
    keep = (runs[:, 1] - runs[:, 0]) >= min(MIN_SEGMENT_S, n / frame_hz)
    return runs[keep]
