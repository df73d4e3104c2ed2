"""Heart-sound signal analysis: heart rate, S1/S2 segmentation, rhythm and signal quality.

One function, :func:`analyze`, takes a mono signal at any sample rate and returns a
:class:`PCGAnalysis`; :func:`analyze_file` does the same for a file and returns a JSON-able dict
(an ``error`` entry for a file that cannot be read); :func:`rhythm_features` gives a fixed-length,
NaN-free feature vector for classifiers.  The CLI (``stetho analyze``), the report and the
service all call these.

Two segmentation methods (:data:`METHODS`), sharing the front end (resample to 2 kHz, band-pass
25-400 Hz, spike removal after Schmidt et al. 2010; envelopes at 50 Hz):

* ``"lr-hsmm"`` (default): Springer et al. 2016's HSMM with learned emissions
  (:mod:`stetho.pcg.lr_hsmm`), decoded by the duration-aware Viterbi; the shipped emissions are
  the small perceptron of :mod:`stetho.pcg.mlp_emissions` (better than Springer's logistic
  regression in patient-grouped cross-validation on CirCor; the regression stays available as
  ``emission_model=stetho.pcg.lr_hsmm.default_emission_model()``); heart rate from the decoded
  S1 sounds, cross-checked against the envelope autocorrelation; quality from how well the
  decoded cycle fits the signal (:func:`stetho.pcg.quality.assess_segmentation`);
* ``"envelope"``: the earlier unsupervised decoder (:mod:`stetho.pcg.segmentation`): a fixed
  logistic map of the band-limited envelopes, S1/S2 told apart by durations and pitch, heart
  rate from the autocorrelation, quality from periodicity
  (:func:`stetho.pcg.quality.assess_quality`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stetho.data.audio import AudioError, read_audio
from stetho.pcg.envelopes import FEATURE_RATE_HZ, envelope_matrix
from stetho.pcg.filters import INTERNAL_SAMPLE_RATE_HZ, check_signal, preprocess
from stetho.pcg.heart_rate import cycle_candidates, estimate_heart_rate
from stetho.pcg.lr_hsmm import Emissions, decode, envelope_features
from stetho.pcg.mlp_emissions import default_mlp_emission_model
from stetho.pcg.physiology import MAX_HEART_RATE_BPM, MIN_HEART_RATE_BPM, in_range
from stetho.pcg.quality import (
    MIN_DURATION_S,
    Quality,
    assess_quality,
    assess_segmentation,
    clipping_fraction,
    cycle_consistency,
    sound_contrast,
    sound_coverage,
    usable_segments,
)
from stetho.pcg.rhythm import RhythmStats, rhythm_stats
from stetho.pcg.segmentation import (
    DIASTOLE,
    S1,
    S2,
    SYSTOLE,
    complete_runs,
    energy_centroids_s,
    resolve_labels,
    segment,
)

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "RHYTHM_FEATURE_NAMES",
    "PCGAnalysis",
    "RecordingEnvelopes",
    "analyze",
    "analyze_file",
    "recording_envelopes",
    "rhythm_features",
]

logger = logging.getLogger(__name__)

#: Segmentation methods :func:`analyze` offers, the default first.
METHODS = ("lr-hsmm", "envelope")
DEFAULT_METHOD = METHODS[0]

#: Names of the columns of :func:`rhythm_features`, in order.
RHYTHM_FEATURE_NAMES = (
    "heart_rate_bpm",
    "heart_rate_confidence",
    "rr_cv",
    "irregularity",
    "premature_beat_rate",
    "systole_fraction",
    "quality",
    "usable",
)

#: Envelope method: the segmentation's heart rate (60 / median RR) replaces the
#: autocorrelation's when the two agree within this fraction; a larger gap means the
#: segmentation missed or invented beats.  LR-HSMM: the decoded rate counts as confirmed by the
#: autocorrelation when they agree within this fraction.
AGREEMENT = 0.15

#: Highest rate the envelope method searches (its constants were set for 30-200 bpm).
ENVELOPE_MAX_BPM = 200.0

#: Values used where a feature cannot be measured: a typical resting adult (75 bpm, systole
#: (S1 end to S2 start) a quarter of the cycle), a regular rhythm, and no confidence or quality.
_FALLBACK = {
    "heart_rate_bpm": 75.0,
    "heart_rate_confidence": 0.0,
    "rr_cv": 0.0,
    "irregularity": 0.0,
    "premature_beat_rate": 0.0,
    "systole_fraction": 0.25,
    "quality": 0.0,
    "usable": 0.0,
}


@dataclass(frozen=True)
class PCGAnalysis:
    """Everything :func:`analyze` measures on one recording.

    Times are seconds from the start of the recording.  ``s1_s`` and ``s2_s`` are (n, 2) arrays
    of [onset, offset] of each complete heart sound, ``systole_s`` and ``diastole_s`` the same
    for the complete systole (S1 offset to S2 onset) and diastole (S2 offset to the next S1
    onset) intervals; ``systole_ms`` and ``diastole_ms`` are their medians.  RR intervals run
    between the energy centres of consecutive S1 sounds.  ``heart_rate_bpm`` is NaN when it
    cannot be estimated and never outside 30-250 bpm: a rate out of that range is left out and
    ``heart_rate_flag`` says so.  ``usable_segments_s`` (n, 2) are the stretches whose decoded
    cycle fits the signal.  ``envelope`` is the homomorphic envelope (frames,) at
    ``envelope_hz`` and ``states`` the state per frame (indices into
    :data:`stetho.pcg.segmentation.STATES`), kept for plots.
    """

    duration_s: float
    heart_rate_bpm: float
    heart_rate_acf_bpm: float
    heart_rate_confidence: float
    s1_s: np.ndarray
    s2_s: np.ndarray
    systole_ms: float
    diastole_ms: float
    rhythm: RhythmStats
    quality: Quality
    envelope: np.ndarray
    states: np.ndarray
    envelope_hz: float
    method: str = DEFAULT_METHOD
    systole_s: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    diastole_s: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    usable_segments_s: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    heart_rate_flag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary: times in seconds (ms resolution), NaN written as ``None``."""
        rr = self.rhythm

        def spans(a: np.ndarray) -> list[list[float | None]]:
            return [[_num(on, 3), _num(off, 3)] for on, off in a]

        return {
            "method": self.method,
            "duration_s": _num(self.duration_s, 3),
            "heart_rate_bpm": _num(self.heart_rate_bpm, 1),
            "heart_rate_acf_bpm": _num(self.heart_rate_acf_bpm, 1),
            "heart_rate_confidence": _num(self.heart_rate_confidence, 3),
            "heart_rate_flag": self.heart_rate_flag,
            "s1": [_num(t, 3) for t in self.s1_s[:, 0]],
            "s2": [_num(t, 3) for t in self.s2_s[:, 0]],
            "s1_intervals": spans(self.s1_s),
            "s2_intervals": spans(self.s2_s),
            "systole_intervals": spans(self.systole_s),
            "diastole_intervals": spans(self.diastole_s),
            "systole_ms": _num(self.systole_ms, 1),
            "diastole_ms": _num(self.diastole_ms, 1),
            "rr_ms": {
                "count": rr.count,
                "mean": _num(rr.mean_ms, 1),
                "median": _num(rr.median_ms, 1),
                "sd": _num(rr.sd_ms, 1),
                "min": _num(rr.min_ms, 1),
                "max": _num(rr.max_ms, 1),
                "rmssd": _num(rr.rmssd_ms, 1),
            },
            "rr_intervals_ms": [_num(v, 1) for v in rr.rr_ms],
            "irregularity": _num(rr.irregularity, 3),
            "premature_beats": rr.premature_beats,
            "quality": _num(self.quality.index, 3),
            "usable": self.quality.usable,
            "quality_reasons": list(self.quality.reasons),
            "quality_scores": {k: _num(v, 3) for k, v in self.quality.scores.items()},
            "usable_segments": spans(self.usable_segments_s),
        }


def _num(value: float, digits: int) -> float | None:
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def _median_ms(runs_s: np.ndarray) -> float:
    if runs_s.size == 0:
        return float("nan")
    return float(np.median(runs_s[:, 1] - runs_s[:, 0]) * 1000.0)


@dataclass(frozen=True)
class RecordingEnvelopes:
    """The pre-processed signal (2 kHz), its envelopes and the LR-HSMM features.

    ``envelopes`` (frames, 3) is :func:`stetho.pcg.envelopes.envelope_matrix` (homomorphic,
    wavelet, PSD); ``features`` (frames, 5) the z-scored envelopes of
    :func:`stetho.pcg.lr_hsmm.envelope_features`.
    """

    clean: np.ndarray
    envelopes: np.ndarray
    features: np.ndarray


def recording_envelopes(x: np.ndarray, sample_rate_hz: int) -> RecordingEnvelopes:
    """Pre-process a recording and compute its envelopes at the 50 Hz feature rate.

    The one front end of both methods and of emission training, so training and use agree.
    """
    hz = float(FEATURE_RATE_HZ)
    clean = preprocess(check_signal(x, sample_rate_hz), sample_rate_hz)
    envelopes = envelope_matrix(clean, INTERNAL_SAMPLE_RATE_HZ, feature_hz=hz)
    features = envelope_features(clean, INTERNAL_SAMPLE_RATE_HZ, envelopes, feature_hz=hz)
    return RecordingEnvelopes(clean=clean, envelopes=envelopes, features=features)


def _runs_s(states: np.ndarray, state: int, hz: float, shift: float) -> np.ndarray:
    return (complete_runs(states, state) - shift) / hz


def analyze(
    x: np.ndarray,
    sample_rate_hz: int,
    *,
    method: str = DEFAULT_METHOD,
    emission_model: Emissions | None = None,
) -> PCGAnalysis:
    """Analyse a mono heart-sound signal ``x`` (samples,) recorded at ``sample_rate_hz``.

    ``method`` is one of :data:`METHODS`; ``emission_model`` replaces the shipped emissions of
    the ``"lr-hsmm"`` method (the MLP of :mod:`stetho.pcg.mlp_emissions`), e.g. with the
    logistic regression of :mod:`stetho.pcg.lr_hsmm` or a cross-validation fold's model.
    Never raises for a finite 1-D signal of any length: a recording too short, silent or
    without heart sounds comes back with NaN measurements and ``quality.usable == False``.
    Raises ``ValueError`` for an unknown method, an empty, non-1-D or non-finite array, or a
    non-positive rate; ``TypeError`` for a non-numeric one.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(METHODS)}")
    raw = check_signal(x, sample_rate_hz)
    duration_s = len(raw) / sample_rate_hz
    silent = bool(np.ptp(raw) == 0)
    if silent or duration_s < MIN_DURATION_S:
        hz = float(FEATURE_RATE_HZ)
        envelope = np.zeros(max(1, int(duration_s * hz)))
        quality = assess_quality(
            clipping=0.0,
            periodicity=0.0,
            contrast=float("nan"),
            n_s1=0,
            duration_s=duration_s,
            silent=silent,
        )
        return PCGAnalysis(
            duration_s=duration_s,
            heart_rate_bpm=float("nan"),
            heart_rate_acf_bpm=float("nan"),
            heart_rate_confidence=0.0,
            s1_s=np.empty((0, 2)),
            s2_s=np.empty((0, 2)),
            systole_ms=float("nan"),
            diastole_ms=float("nan"),
            rhythm=rhythm_stats(np.empty(0)),
            quality=quality,
            envelope=envelope,
            states=np.full(len(envelope), DIASTOLE),
            envelope_hz=hz,
            method=method,
        )
    rec = recording_envelopes(raw, sample_rate_hz)
    if method == "envelope":
        return _analyze_envelope(raw, rec, duration_s)
    return _analyze_lr_hsmm(raw, rec, duration_s, emission_model)


def _analyze_envelope(raw: np.ndarray, rec: RecordingEnvelopes, duration_s: float) -> PCGAnalysis:
    """The earlier unsupervised pipeline (``method="envelope"``), unchanged in behaviour."""
    hz = float(FEATURE_RATE_HZ)
    clean, envelopes = rec.clean, rec.envelopes
    envelope = envelopes[:, 0]
    estimate = estimate_heart_rate(envelope, hz, max_bpm=ENVELOPE_MAX_BPM)
    acf_bpm, confidence = estimate.heart_rate_bpm, estimate.confidence
    s1_centres_s = np.empty(0)
    if math.isfinite(acf_bpm):
        seg = segment(envelopes[:, 1:], hz, heart_rate_bpm=acf_bpm, systole_s=estimate.systole_s)
        seg = resolve_labels(
            seg,
            envelopes[:, 1:],
            clean,
            INTERNAL_SAMPLE_RATE_HZ,
            heart_rate_bpm=acf_bpm,
            systole_s=estimate.systole_s,
        )
        states, s1_s, s2_s = seg.states, seg.s1_s, seg.s2_s
        s1_centres_s = energy_centroids_s(clean, INTERNAL_SAMPLE_RATE_HZ, s1_s)
    else:
        states = np.full(len(envelope), DIASTOLE)
        s1_s = s2_s = np.empty((0, 2))
    rhythm = rhythm_stats(s1_centres_s)
    heart_rate_bpm = acf_bpm
    if rhythm.count >= 2 and abs(60000.0 / rhythm.median_ms - acf_bpm) <= AGREEMENT * acf_bpm:
        heart_rate_bpm = 60000.0 / rhythm.median_ms
    quality = assess_quality(
        clipping=clipping_fraction(raw),
        periodicity=confidence,
        contrast=sound_contrast(envelope, np.isin(states, (S1, S2))),
        n_s1=len(s1_s),
        duration_s=duration_s,
        silent=False,
    )
    flag = None
    if math.isfinite(heart_rate_bpm) and not in_range(heart_rate_bpm):
        flag = f"out of range: {heart_rate_bpm:.0f} bpm"
        heart_rate_bpm = float("nan")
    systole_s = _runs_s(states, SYSTOLE, hz, 0.0)
    diastole_s = _runs_s(states, DIASTOLE, hz, 0.0)
    segments = np.array([[0.0, duration_s]]) if quality.usable else np.empty((0, 2))
    return PCGAnalysis(
        duration_s=duration_s,
        heart_rate_bpm=heart_rate_bpm,
        heart_rate_acf_bpm=acf_bpm,
        heart_rate_confidence=confidence,
        s1_s=s1_s,
        s2_s=s2_s,
        systole_ms=_median_ms(systole_s),
        diastole_ms=_median_ms(diastole_s),
        rhythm=rhythm,
        quality=quality,
        envelope=envelope,
        states=states,
        envelope_hz=hz,
        method="envelope",
        systole_s=systole_s,
        diastole_s=diastole_s,
        usable_segments_s=segments,
        heart_rate_flag=flag,
    )


def _analyze_lr_hsmm(
    raw: np.ndarray, rec: RecordingEnvelopes, duration_s: float, model: Emissions | None
) -> PCGAnalysis:
    """LR-HSMM segmentation, heart rate from the decoded cycle, quality from its fit."""
    hz = float(FEATURE_RATE_HZ)
    envelope = rec.envelopes[:, 0]
    estimate = estimate_heart_rate(envelope, hz)
    acf_bpm = estimate.heart_rate_bpm
    candidates = cycle_candidates(envelope, hz)
    if not candidates:
        # No autocorrelation peak: decode at the resting rate and let the fit judge.
        candidates = [0.8]
    dec = decode(
        rec.features, hz, candidates, model=default_mlp_emission_model() if model is None else model
    )
    seg = dec.segmentation
    states = seg.states
    s1_s, s2_s = seg.s1_s, seg.s2_s
    s1_centres_s = energy_centroids_s(rec.clean, INTERNAL_SAMPLE_RATE_HZ, s1_s)
    rhythm = rhythm_stats(s1_centres_s)
    flag = None
    if rhythm.count >= 1:
        heart_rate_bpm = 60000.0 / rhythm.median_ms
    else:
        heart_rate_bpm = float("nan")
        flag = "too few beats decoded"
    if math.isfinite(heart_rate_bpm) and not in_range(heart_rate_bpm):
        flag = (
            f"out of range: {heart_rate_bpm:.0f} bpm decoded "
            f"(reported range {MIN_HEART_RATE_BPM:.0f}-{MAX_HEART_RATE_BPM:.0f})"
        )
        heart_rate_bpm = float("nan")
    # Fit per frame: the posterior of the decoded kind (sound = S1 or S2, gap = systole or
    # diastole).  Systole and diastole look alike frame by frame, so the four-state posterior
    # would score a clean gap at ~0.5; the sound/gap split is what the signal can show.
    p_sound = dec.posterior[:, S1] + dec.posterior[:, S2]
    is_sound = np.isin(states, (S1, S2))
    fit = np.where(is_sound, p_sound, 1.0 - p_sound)
    consistency = cycle_consistency(s1_s, s2_s)
    quality = assess_segmentation(
        clipping=clipping_fraction(raw),
        fit=float(np.mean(fit)),
        consistency=consistency,
        coverage=sound_coverage(p_sound, is_sound),
        contrast=sound_contrast(envelope, is_sound),
        n_s1=len(s1_s),
        duration_s=duration_s,
    )
    # The cross-check: the decoded rate against the autocorrelation's best cycle.
    agree = (
        math.isfinite(acf_bpm)
        and math.isfinite(heart_rate_bpm)
        and abs(heart_rate_bpm - 60.0 / candidates[0]) <= AGREEMENT * heart_rate_bpm
    )
    confidence = quality.index * (1.0 if agree else 0.7) if math.isfinite(heart_rate_bpm) else 0.0
    systole_s = _runs_s(states, SYSTOLE, hz, 0.5)
    diastole_s = _runs_s(states, DIASTOLE, hz, 0.5)
    return PCGAnalysis(
        duration_s=duration_s,
        heart_rate_bpm=heart_rate_bpm,
        heart_rate_acf_bpm=acf_bpm,
        heart_rate_confidence=float(confidence),
        s1_s=s1_s,
        s2_s=s2_s,
        systole_ms=_median_ms(systole_s),
        diastole_ms=_median_ms(diastole_s),
        rhythm=rhythm,
        quality=quality,
        envelope=envelope,
        states=states,
        envelope_hz=hz,
        method="lr-hsmm",
        systole_s=systole_s,
        diastole_s=diastole_s,
        usable_segments_s=usable_segments(fit, envelope, is_sound, hz, usable=quality.usable),
        heart_rate_flag=flag,
    )


def analyze_file(
    path: str | Path, *, plot_dir: str | Path | None = None, method: str = DEFAULT_METHOD
) -> dict[str, Any]:
    """Read and analyse one recording; returns ``{"path": ..., **analysis.to_dict()}``.

    A file that cannot be used (see :func:`stetho.data.audio.read_audio`) gives
    ``{"path": ..., "error": "<the AudioError message>"}`` instead of raising.  With
    ``plot_dir``, a PNG named after the file is written there and its path added as ``"plot"``.
    """
    try:
        audio = read_audio(path)
    except AudioError as exc:
        logger.warning("%s", exc)
        return {"path": str(path), "error": str(exc)}
    analysis = analyze(audio.samples, audio.sample_rate, method=method)
    result: dict[str, Any] = {"path": str(path), **analysis.to_dict()}
    if plot_dir is not None:
        from stetho.pcg.plot import plot_analysis  # matplotlib only when a plot is asked for

        png = Path(plot_dir) / f"{Path(path).stem}.png"
        plot_analysis(audio.samples, audio.sample_rate, analysis, png, title=Path(path).name)
        result["plot"] = str(png)
    return result


def rhythm_features(
    x: np.ndarray, sample_rate_hz: int, *, method: str = DEFAULT_METHOD
) -> np.ndarray:
    """Rhythm features of a recording, (len(RHYTHM_FEATURE_NAMES),) float64, never NaN.

    Columns are :data:`RHYTHM_FEATURE_NAMES`: heart rate (bpm) and its confidence, RR
    coefficient of variation, irregularity, premature beats per RR interval, systole (S1 end to
    S2 start) over the median RR interval, quality index and usable flag (0/1).  A feature that
    cannot be measured (too few cycles, no periodicity) takes a neutral fallback value (75 bpm,
    a regular rhythm, zero confidence and quality).  Raises only for an invalid signal (see
    :func:`analyze`).
    """
    a = analyze(x, sample_rate_hz, method=method)
    rr = a.rhythm
    values = {
        "heart_rate_bpm": a.heart_rate_bpm,
        "heart_rate_confidence": a.heart_rate_confidence,
        "rr_cv": rr.sd_ms / rr.mean_ms if rr.count >= 2 else float("nan"),
        "irregularity": rr.irregularity,
        "premature_beat_rate": rr.premature_beats / rr.count if rr.count else float("nan"),
        "systole_fraction": a.systole_ms / rr.median_ms if rr.count else float("nan"),
        "quality": a.quality.index,
        "usable": float(a.quality.usable),
    }
    return np.array(
        [
            values[name] if math.isfinite(values[name]) else _FALLBACK[name]
            for name in RHYTHM_FEATURE_NAMES
        ],
        dtype=np.float64,
    )
