"""Heart-sound signal analysis: heart rate, S1/S2 segmentation, rhythm and signal quality.

One function, :func:`analyze`, takes a mono signal at any sample rate and returns a
:class:`PCGAnalysis`; :func:`analyze_file` does the same for a file and returns a JSON-able dict
(an ``error`` entry for a file that cannot be read); :func:`rhythm_features` gives a fixed-length,
NaN-free feature vector for classifiers.  The CLI (``stetho analyze``), the report and the
service all call these.

Pipeline (Springer et al. 2016, "Logistic regression-HSMM-based heart sound segmentation"):
resample to 2 kHz, band-pass 25-400 Hz, remove spikes (Schmidt et al. 2010) ->
homomorphic, wavelet and 40-60 Hz PSD envelopes at 50 Hz -> heart rate and systolic interval
from the homomorphic envelope's autocorrelation -> duration-dependent HSMM segmentation on the
wavelet and PSD envelopes -> RR statistics -> quality.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stetho.data.audio import AudioError, read_audio
from stetho.pcg.envelopes import FEATURE_RATE_HZ, envelope_matrix
from stetho.pcg.filters import INTERNAL_SAMPLE_RATE_HZ, check_signal, preprocess
from stetho.pcg.heart_rate import estimate_heart_rate
from stetho.pcg.quality import (
    MIN_DURATION_S,
    Quality,
    assess_quality,
    clipping_fraction,
    sound_contrast,
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
    "RHYTHM_FEATURE_NAMES",
    "PCGAnalysis",
    "analyze",
    "analyze_file",
    "rhythm_features",
]

logger = logging.getLogger(__name__)

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

#: The segmentation's heart rate (60 / median RR) replaces the autocorrelation's when the two
#: agree within this fraction: it is the median the clinical definition asks for, and it is
#: not blurred by respiratory arrhythmia; a larger gap means the segmentation missed or
#: invented beats.
AGREEMENT = 0.15

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
    of [onset, offset] of each complete heart sound.  ``systole_ms`` and ``diastole_ms`` are the
    medians of the HSMM's systole (S1 offset to S2 onset) and diastole (S2 offset to the next S1
    onset) states.  RR intervals run between the energy centres of consecutive S1 sounds.
    ``heart_rate_bpm`` is 60 / median RR interval when the segmentation found at least two
    intervals and agrees with the autocorrelation estimate ``heart_rate_acf_bpm`` within
    :data:`AGREEMENT`, else the latter; NaN when there is neither.
    ``envelope`` is the homomorphic envelope (frames,) at ``envelope_hz`` and ``states`` the HSMM
    state per frame (indices into :data:`stetho.pcg.segmentation.STATES`), kept for plots.
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary: times in seconds (ms resolution), NaN written as ``None``."""
        rr = self.rhythm
        return {
            "duration_s": _num(self.duration_s, 3),
            "heart_rate_bpm": _num(self.heart_rate_bpm, 1),
            "heart_rate_acf_bpm": _num(self.heart_rate_acf_bpm, 1),
            "heart_rate_confidence": _num(self.heart_rate_confidence, 3),
            "s1": [_num(t, 3) for t in self.s1_s[:, 0]],
            "s2": [_num(t, 3) for t in self.s2_s[:, 0]],
            "s1_intervals": [[_num(a, 3), _num(b, 3)] for a, b in self.s1_s],
            "s2_intervals": [[_num(a, 3), _num(b, 3)] for a, b in self.s2_s],
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
        }


def _num(value: float, digits: int) -> float | None:
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def _median_ms(runs: np.ndarray, frame_hz: float) -> float:
    if runs.size == 0:
        return float("nan")
    return float(np.median(runs[:, 1] - runs[:, 0]) / frame_hz * 1000.0)


def analyze(x: np.ndarray, sample_rate_hz: int) -> PCGAnalysis:
    """Analyse a mono heart-sound signal ``x`` (samples,) recorded at ``sample_rate_hz``.

    Never raises for a finite 1-D signal of any length: a recording too short, silent or
    without heart sounds comes back with NaN measurements and ``quality.usable == False``.
    Raises ``ValueError``/``TypeError`` for an empty, non-1-D or non-finite array, or a
    non-positive rate.
    """
    raw = check_signal(x, sample_rate_hz)
    duration_s = len(raw) / sample_rate_hz
    silent = bool(np.ptp(raw) == 0)
    empty_runs = np.empty((0, 2))
    hz = float(FEATURE_RATE_HZ)
    s1_centres_s = np.empty(0)
    if silent or duration_s < MIN_DURATION_S:
        envelope = np.zeros(max(1, int(duration_s * hz)))
        states = np.full(len(envelope), DIASTOLE)
        acf_bpm, confidence = float("nan"), 0.0
        s1_s = s2_s = empty_runs
    else:
        clean = preprocess(raw, sample_rate_hz)
        envelopes = envelope_matrix(clean, INTERNAL_SAMPLE_RATE_HZ, feature_hz=hz)
        envelope = envelopes[:, 0]
        estimate = estimate_heart_rate(envelope, hz)
        acf_bpm, confidence = estimate.heart_rate_bpm, estimate.confidence
        if math.isfinite(acf_bpm):
            seg = segment(
                envelopes[:, 1:], hz, heart_rate_bpm=acf_bpm, systole_s=estimate.systole_s
            )
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
            s1_s = s2_s = empty_runs
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
        silent=silent,
    )
    return PCGAnalysis(
        duration_s=duration_s,
        heart_rate_bpm=heart_rate_bpm,
        heart_rate_acf_bpm=acf_bpm,
        heart_rate_confidence=confidence,
        s1_s=s1_s,
        s2_s=s2_s,
        systole_ms=_median_ms(complete_runs(states, SYSTOLE), hz),
        diastole_ms=_median_ms(complete_runs(states, DIASTOLE), hz),
        rhythm=rhythm,
        quality=quality,
        envelope=envelope,
        states=states,
        envelope_hz=hz,
    )


def analyze_file(path: str | Path, *, plot_dir: str | Path | None = None) -> dict[str, Any]:
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
    analysis = analyze(audio.samples, audio.sample_rate)
    result: dict[str, Any] = {"path": str(path), **analysis.to_dict()}
    if plot_dir is not None:
        from stetho.pcg.plot import plot_analysis  # matplotlib only when a plot is asked for

        png = Path(plot_dir) / f"{Path(path).stem}.png"
        plot_analysis(audio.samples, audio.sample_rate, analysis, png, title=Path(path).name)
        result["plot"] = str(png)
    return result


def rhythm_features(x: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """Rhythm features of a recording, (len(RHYTHM_FEATURE_NAMES),) float64, never NaN.

    Columns are :data:`RHYTHM_FEATURE_NAMES`: heart rate (bpm) and its confidence, RR
    coefficient of variation, irregularity, premature beats per RR interval, systole (S1 end to
    S2 start) over the median RR interval, quality index and usable flag (0/1).  A feature that
    cannot be measured (too few cycles, no periodicity) takes a neutral fallback value (75 bpm,
    a regular rhythm, zero confidence and quality).  Raises only for an invalid signal (see
    :func:`analyze`).
    """
    a = analyze(x, sample_rate_hz)
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
