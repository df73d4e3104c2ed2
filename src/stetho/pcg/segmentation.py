"""Segmentation of a PCG into S1, systole, S2 and diastole with a duration-dependent HSMM.

The model is that of Springer et al. 2016 ("Logistic regression-HSMM-based heart sound
segmentation", IEEE TBME 63(4)), itself built on Schmidt et al. 2010: four states visited in a
fixed cycle S1 -> systole -> S2 -> diastole -> S1, Gaussian state durations derived from the heart
rate and the systolic interval, and an extended Viterbi decoder that lets the first and the last
state be cut by the recording's edges.  Two departures, both for lack of labelled training data
and for irregular rhythms:

* emissions: Springer's logistic regression was trained on annotated recordings.  Here the
  probability that a frame belongs to a heart sound is a logistic function of the mean of the
  normalised band-limited envelopes (wavelet and PSD, see :mod:`stetho.pcg.envelopes`;
  :func:`sound_probability`), its two constants set on synthetic recordings.  S1 and S2 share
  it, as do systole and diastole, so the duration model alone tells S1 from S2 (in Springer's
  decoder too the duration model does most of that work).  The labelling is then checked once
  per recording (:func:`resolve_labels`: systole nearer the physiological value, S2 the
  higher-pitched sound), and the recording decoded again the other way round when it fails.
* diastole: a premature beat shortens the diastole before it far beyond Springer's
  ``3 * std`` cut-off; the diastolic duration is therefore a mixture of Springer's Gaussian and
  a uniform component (weight :data:`ECTOPIC_WEIGHT`) from 0.1 s to 2.2 mean diastoles: wide
  enough for a premature beat and its compensatory pause at rest, too narrow to skip a beat or,
  at fast rates where systole and diastole are alike, to swap S1 and S2 halfway through
  (allowing 0.6 cycles instead dropped the synthetic heart-rate score from 96 % to 62 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from stetho.pcg.envelopes import normalise
from stetho.pcg.physiology import (
    S1_MEAN_S,
    S1_SD_S,
    S2_MEAN_S,
    S2_SD_S,
    systole_interval_s,
)

#: States in cycle order.
STATES = ("S1", "systole", "S2", "diastole")
S1, SYSTOLE, S2, DIASTOLE = range(4)

#: Weight of the uniform component of the diastolic duration (premature beats, pauses).
ECTOPIC_WEIGHT = 0.1

#: Spread (s) of a recording's median S1-to-S2 interval about the physiological systole for
#: its cycle length (:func:`stetho.pcg.physiology.systole_interval_s`): between-subject spread
#: of electromechanical systole at a given rate (~15 ms, Weissler et al. 1968) and of the
#: Q-to-S1 delay, plus the 20 ms frame grid.  Used by :func:`label_evidence`.
SYSTOLE_SPREAD_S = 0.03

#: Share of recordings in which S2 is the higher-pitched sound (aortic and pulmonary closure,
#: 80-150 Hz and above, against S1's 50-80 Hz; the rule is general but not universal).  It caps
#: the weight of the spectral vote in :func:`label_evidence` at log(q / (1 - q)).
S2_HIGHER_PITCH_RELIABILITY = 0.8

# Emission constants: the probability of a heart sound is
# sigmoid(_SLOPE * (mean z-scored envelope - _OFFSET)).  Chosen among slopes 1.5-8 and offsets
# -0.5 to 1.5 on 250 varied synthetic recordings (S1/S2 onsets within 60 ms and heart rate).
_SLOPE = 4.0
_OFFSET = 0.5


@dataclass(frozen=True)
class Segmentation:
    """Per-frame states and the complete S1 and S2 sounds found.

    ``states`` (frames,) holds indices into :data:`STATES`; ``s1_s`` and ``s2_s`` are (n, 2)
    arrays of [onset, offset] times in seconds.  Sounds cut by the recording's edges are left out.
    """

    states: np.ndarray
    frame_hz: float
    log_probability: float
    s1_s: np.ndarray
    s2_s: np.ndarray


@dataclass(frozen=True)
class DurationModel:
    """Log-probabilities of each state's duration, (4, max_frames + 1), index = frames."""

    log_pmf: np.ndarray
    log_survival: np.ndarray


def duration_model(*, heart_rate_bpm: float, systole_s: float, frame_hz: float) -> DurationModel:
    """Springer et al. 2016 duration distributions (``get_duration_distributions.m``).

    S1 122 +/- 22 ms and S2 94 +/- 22 ms (Schmidt et al. 2010); systole (S1 offset to S2 onset)
    ``systole_s - 122 ms`` +/- 25 ms; diastole ``60 / HR - systole_s - 94 ms`` with standard
    deviation ``0.07 * mean + 6 ms``; each cut at three standard deviations.  Diastole gets a
    uniform ectopic component, see the module docstring.
    """
    cycle_s = 60.0 / heart_rate_bpm
    mean_s1, sd_s1, mean_s2, sd_s2 = S1_MEAN_S, S1_SD_S, S2_MEAN_S, S2_SD_S
    mean_sys = max(systole_s - mean_s1, 0.03)
    sd_sys = 0.025
    mean_dia = max(cycle_s - systole_s - mean_s2, 0.05)
    sd_dia = 0.07 * mean_dia + 0.006
    floor_s = 1.0 / frame_hz
    bounds = [
        (max(mean_s1 - 3 * sd_s1, floor_s), mean_s1 + 3 * sd_s1),
        (max(mean_sys - 3 * (sd_sys + sd_s1), floor_s), mean_sys + 3 * (sd_sys + sd_s1)),
        (max(mean_s2 - 3 * sd_s2, floor_s), mean_s2 + 3 * sd_s2),
        (min(max(mean_dia - 3 * sd_dia, floor_s), 0.1), max(mean_dia + 3 * sd_dia, 2.2 * mean_dia)),
    ]
    max_frames = int(np.ceil(max(b[1] for b in bounds) * frame_hz)) + 1
    d_s = np.arange(max_frames + 1) / frame_hz
    pmf = np.zeros((4, max_frames + 1))
    for state, (mean, sd) in enumerate(
        ((mean_s1, sd_s1), (mean_sys, sd_sys), (mean_s2, sd_s2), (mean_dia, sd_dia))
    ):
        lo, hi = bounds[state]
        inside = (d_s >= lo - 0.5 / frame_hz) & (d_s <= hi + 0.5 / frame_hz) & (d_s > 0)
        density = stats.norm.pdf(d_s, mean, sd) * inside
        density /= density.sum()
        if state == DIASTOLE:
            uniform = inside / inside.sum()
            density = (1 - ECTOPIC_WEIGHT) * density + ECTOPIC_WEIGHT * uniform
        pmf[state] = density
    survival = np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1]  # P(D >= d)
    with np.errstate(divide="ignore"):
        return DurationModel(log_pmf=np.log(pmf), log_survival=np.log(survival))


def sound_probability(envelopes: np.ndarray) -> np.ndarray:
    """Probability (frames,) that a frame lies in S1 or S2, from envelopes (frames, k).

    Each envelope column is z-scored, the columns are averaged, and a logistic function maps the
    mean to a probability.
    """
    z = np.column_stack([normalise(column) for column in envelopes.T]).mean(axis=1)
    return special.expit(_SLOPE * (z - _OFFSET))


def viterbi(log_emission: np.ndarray, durations: DurationModel) -> tuple[np.ndarray, float]:
    """Most likely state per frame under the cyclic explicit-duration HSMM.

    ``log_emission`` is (frames, 4).  A segment may begin before the first frame or end after the
    last one; its observed length then counts with the survival ``P(D >= d)`` instead of the
    probability mass ``P(D = d)`` (the edge handling of Springer's ``viterbiDecodePCG_Springer``).
    Returns the (frames,) state indices and the path's log-probability; when no path exists
    (durations that cannot tile the recording) every frame is diastole and the log-probability
    is ``-inf``.
    """
    n_frames = log_emission.shape[0]
    log_pmf, log_surv = durations.log_pmf, durations.log_survival
    max_d = log_pmf.shape[1] - 1
    cum = np.vstack([np.zeros((1, 4)), np.cumsum(log_emission, axis=0)])  # (frames + 1, 4)
    prev = np.array([DIASTOLE, S1, SYSTOLE, S2])
    log_init = np.log(0.25)
    d = np.arange(1, max_d + 1)
    delta = np.full((n_frames, 4), -np.inf)
    delta_prev = np.full((n_frames, 4), -np.inf)  # delta[:, prev]: the state before each
    best_d = np.zeros((n_frames, 4), dtype=np.int64)
    pmf_by_d = log_pmf[:, 1:].T  # (max_d, 4), row d - 1
    states4 = np.arange(4)
    rows, gains = np.empty((max_d, 4)), np.empty((max_d, 4))
    for t in range(n_frames):
        if t >= max_d:
            # Every length 1..max_d starts inside the recording: contiguous slices, no masks,
            # one buffer (the same arithmetic as below, several times faster).  Row d - 1.
            np.add(delta_prev[t - max_d : t][::-1], pmf_by_d, out=rows)
            rows += np.subtract(cum[t + 1], cum[t - max_d + 1 : t + 1][::-1], out=gains)
            k = rows.argmax(axis=0)
            values = rows[k, states4]
            delta[t] = values
            delta_prev[t] = values[prev]
            best_d[t] = k + 1
            continue
        starts = t - d + 1  # first frame of a segment of length d ending at t
        valid = starts >= 0
        dv, sv = d[valid], starts[valid]
        gain = cum[t + 1][:, None] - cum[sv].T  # (4, n_valid)
        before = np.where(sv[None, :] >= 1, delta[np.maximum(sv - 1, 0)][:, prev].T, -np.inf)
        score = before + log_pmf[:, dv] + gain
        # A first segment cut by the recording's start: any length up to its maximum.
        first = sv == 0
        score[:, first] = log_init + log_surv[:, dv[first]] + gain[:, first]
        k = np.argmax(score, axis=1)
        delta[t] = score[states4, k]
        delta_prev[t] = delta[t, prev]
        best_d[t] = dv[k]
    # The last segment may be cut by the recording's end: score it with the survival.
    end_score = np.full((4, max_d + 1), -np.inf)
    for length in range(1, min(max_d, n_frames) + 1):
        start = n_frames - length
        gain = cum[n_frames] - cum[start]
        before = delta[start - 1, prev] if start >= 1 else np.full(4, log_init)
        end_score[:, length] = before + log_surv[:, length] + gain
    end_state, end_length = np.unravel_index(int(np.argmax(end_score)), end_score.shape)
    log_probability = float(end_score[end_state, end_length])
    if not np.isfinite(log_probability):
        # No sequence of allowed durations tiles the recording: report no heart sounds.
        return np.full(n_frames, DIASTOLE, dtype=np.int64), log_probability
    states = np.empty(n_frames, dtype=np.int64)
    t = n_frames - 1
    state, length = int(end_state), int(end_length)
    while t >= 0:
        states[t - length + 1 : t + 1] = state
        t -= length
        state = int(prev[state])
        if t >= 0:
            length = int(best_d[t, state])
    return states, log_probability


def segment(
    envelopes: np.ndarray, frame_hz: float, *, heart_rate_bpm: float, systole_s: float
) -> Segmentation:
    """Segment a recording, given its envelopes (frames, k) at ``frame_hz``, into four states.

    ``heart_rate_bpm`` and ``systole_s`` (S1 onset to S2 onset) set the duration model; they
    come from :func:`stetho.pcg.heart_rate.estimate_heart_rate`.
    """
    p_sound = np.clip(sound_probability(envelopes), 1e-6, 1 - 1e-6)
    log_emission = np.log(np.stack([p_sound, 1 - p_sound, p_sound, 1 - p_sound], axis=1))
    durations = duration_model(
        heart_rate_bpm=heart_rate_bpm, systole_s=systole_s, frame_hz=frame_hz
    )
    states, log_probability = viterbi(log_emission, durations)
    return make_segmentation(states, frame_hz, log_probability)


def make_segmentation(
    states: np.ndarray, frame_hz: float, log_probability: float, *, edge_shift: float = 0.0
) -> Segmentation:
    """A :class:`Segmentation` from per-frame states; sound bounds at ``(frame - edge_shift) / hz``.

    A frame's features describe its centre, so a state change between frames ``k - 1`` and ``k``
    is best placed half-way, ``edge_shift = 0.5`` (the LR-HSMM, trained on annotated onsets);
    the envelope method keeps 0, its constants having been set with it.
    """
    return Segmentation(
        states=states,
        frame_hz=frame_hz,
        log_probability=log_probability,
        s1_s=(complete_runs(states, S1) - edge_shift) / frame_hz,
        s2_s=(complete_runs(states, S2) - edge_shift) / frame_hz,
    )


#: State of each state once S1 and S2 are swapped (systole and diastole follow).
_SWAPPED = np.array([S2, DIASTOLE, S1, SYSTOLE])


@dataclass(frozen=True)
class LabelEvidence:
    """Log-odds that a segmentation's S1/S2 labels are right rather than swapped.

    ``durations`` compares the median S1-onset to S2-onset and S2-onset to S1-onset intervals
    with the physiological systole; ``spectrum`` is the vote of the sounds' pitch (S2 higher).
    """

    durations: float
    spectrum: float

    @property
    def total(self) -> float:
        return self.durations + self.spectrum


def label_evidence(
    seg: Segmentation, x: np.ndarray, sample_rate_hz: float, *, heart_rate_bpm: float
) -> LabelEvidence:
    """Evidence, over the whole recording, for the labelling of ``seg`` against its swap.

    The HSMM alternates S1 and S2 but its duration model tells them apart only through the
    systolic lag, which the autocorrelation cannot tell from the diastolic one (the two sum to
    the cycle); at fast rates, where systole and diastole are alike, whole recordings come out
    swapped.  The decision is made once per recording, from two cues:

    * durations: systole varies little with heart rate while diastole absorbs the rest of the
      cycle, so the interval type whose median lies nearer the physiological systole ``p`` for
      the cycle length is systole.  With medians ``a`` (S1->S2) and ``b`` (S2->S1) and spread
      ``s`` (:data:`SYSTOLE_SPREAD_S`), the log-likelihood ratio is
      ``((b - p)^2 - (a - p)^2) / (2 s^2)``: large at rest, near zero where ``p`` is half the
      cycle (about 120 bpm);
    * spectrum: S2 is higher-pitched than S1.  The Welch ``t`` of the difference of the mean log
      spectral centroids (25-400 Hz) of the sounds labelled S2 and S1 gives the probability
      ``P = Phi(t)`` that S2 is the higher; with the reliability ``q`` of the rule
      (:data:`S2_HIGHER_PITCH_RELIABILITY`), the vote is
      ``log((q P + (1 - q)(1 - P)) / ((1 - q) P + q (1 - P)))``, at most ``log(q / (1 - q))``.

    ``x`` is the pre-processed signal at ``sample_rate_hz``.  A cue that cannot be measured
    (fewer than two sounds of a kind) gives 0.
    """
    hz = seg.frame_hz
    sounds = sorted(
        [(on / hz, off / hz, S1) for on, off in seg.s1_s * hz]
        + [(on / hz, off / hz, S2) for on, off in seg.s2_s * hz]
    )
    systole, diastole = [], []
    for (on, _, kind), (nxt, _, nxt_kind) in zip(sounds[:-1], sounds[1:], strict=True):
        if kind == S1 and nxt_kind == S2:
            systole.append(nxt - on)
        elif kind == S2 and nxt_kind == S1:
            diastole.append(nxt - on)
    durations = 0.0
    if systole and diastole:
        prior = float(systole_interval_s(60.0 / heart_rate_bpm))
        a, b = float(np.median(systole)), float(np.median(diastole))
        durations = ((b - prior) ** 2 - (a - prior) ** 2) / (2 * SYSTOLE_SPREAD_S**2)
    centroids: dict[int, list[float]] = {S1: [], S2: []}
    for on, off, kind in sounds:
        c = _log_centroid(x, sample_rate_hz, on, off)
        if np.isfinite(c):
            centroids[kind].append(c)
    spectrum = 0.0
    c1, c2 = np.asarray(centroids[S1]), np.asarray(centroids[S2])
    if len(c1) >= 2 and len(c2) >= 2:
        se = np.sqrt(c1.var(ddof=1) / len(c1) + c2.var(ddof=1) / len(c2))
        if se > 0:
            p = float(stats.norm.cdf((c2.mean() - c1.mean()) / se))
            q = S2_HIGHER_PITCH_RELIABILITY
            spectrum = float(np.log((q * p + (1 - q) * (1 - p)) / ((1 - q) * p + q * (1 - p))))
    return LabelEvidence(durations=float(durations), spectrum=spectrum)


def _log_centroid(x: np.ndarray, sample_rate_hz: float, onset_s: float, offset_s: float) -> float:
    """Log of the 25-400 Hz spectral centroid (Hz) of ``x`` between two times (Hann window)."""
    lo = max(0, int(round(onset_s * sample_rate_hz)))
    hi = min(len(x), int(round(offset_s * sample_rate_hz)))
    if hi - lo < 8:
        return float("nan")
    n_fft = max(256, 1 << int(np.ceil(np.log2(hi - lo))))
    power = np.abs(np.fft.rfft(x[lo:hi] * np.hanning(hi - lo), n_fft)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
    band = (freqs >= 25.0) & (freqs <= 400.0)
    total = power[band].sum()
    return float(np.log(np.dot(freqs[band], power[band]) / total)) if total > 0 else float("nan")


def resolve_labels(
    seg: Segmentation,
    envelopes: np.ndarray,
    x: np.ndarray,
    sample_rate_hz: float,
    *,
    heart_rate_bpm: float,
    systole_s: float,
) -> Segmentation:
    """``seg``, or, when :func:`label_evidence` finds its S1/S2 labels swapped, a new one.

    ``seg`` came from :func:`segment` with ``envelopes``, ``heart_rate_bpm`` and ``systole_s``.
    When the evidence is against its labels, the recording is decoded again with the other
    reading of the autocorrelation (systole = cycle - ``systole_s``), so the sounds' bounds
    follow the S1 and S2 duration models; if that decoding is not itself labelled the other
    way round, ``seg``'s labels are swapped as they are.
    """
    if label_evidence(seg, x, sample_rate_hz, heart_rate_bpm=heart_rate_bpm).total >= 0:
        return seg
    other = segment(
        envelopes,
        seg.frame_hz,
        heart_rate_bpm=heart_rate_bpm,
        systole_s=60.0 / heart_rate_bpm - systole_s,
    )
    evidence = label_evidence(other, x, sample_rate_hz, heart_rate_bpm=heart_rate_bpm)
    if np.isfinite(other.log_probability) and evidence.total >= 0:
        return other
    return make_segmentation(_SWAPPED[seg.states], seg.frame_hz, seg.log_probability)


def energy_centroids_s(x: np.ndarray, sample_rate_hz: float, intervals_s: np.ndarray) -> np.ndarray:
    """Energy-weighted centre (s) of ``x`` inside each [onset, offset] row of ``intervals_s``.

    The segmentation's boundaries lie on the 20 ms frame grid; the centre of a sound's energy
    is located to the sample, which keeps RR intervals (and the heart rate) free of that
    quantisation: at 180 bpm a 20 ms step is a 10 bpm step.  Returns (n,) seconds.
    """
    energy = np.square(np.asarray(x, dtype=np.float64))
    centres = np.empty(len(intervals_s))
    for i, (onset_s, offset_s) in enumerate(intervals_s):
        lo = max(0, int(round(onset_s * sample_rate_hz)))
        hi = min(len(energy), max(lo + 1, int(round(offset_s * sample_rate_hz))))
        weights = energy[lo:hi]
        total = weights.sum()
        centres[i] = (
            (lo + np.dot(np.arange(hi - lo), weights) / total) / sample_rate_hz
            if total > 0
            else 0.5 * (onset_s + offset_s)
        )
    return centres


def complete_runs(states: np.ndarray, state: int) -> np.ndarray:
    """[start, stop) frame pairs (n, 2) of the runs of ``state`` that do not touch an edge."""
    inside = np.concatenate([[False], states == state, [False]])
    edges = np.flatnonzero(np.diff(inside.astype(np.int8)))
    runs = edges.reshape(-1, 2)
    keep = (runs[:, 0] > 0) & (runs[:, 1] < len(states))
    return runs[keep].astype(np.float64)
