"""Springer's LR-HSMM heart-sound segmenter: logistic-regression emissions, duration-aware Viterbi.

Written from the papers (Springer, Tarassenko, Clifford, "Logistic regression-HSMM-based heart
sound segmentation", IEEE TBME 63(4), 2016; Schmidt et al., "Segmentation of heart sound
recordings by a duration-dependent hidden Markov model", Physiol. Meas. 31(4), 2010):

* features: the homomorphic, Hilbert, wavelet and 40-60 Hz PSD envelopes at 50 Hz, each z-scored
  per recording (Springer's four), each taken at the frame and at :data:`CONTEXT_FRAMES` around
  it.  The context (+/- 80 ms, less than one sound's length) lets the model see whether a frame
  sits on a sound's rising or falling edge, which Springer's frame-wise model cannot;
* emissions: a multinomial logistic regression gives ``P(state | features)``; dividing by the
  state's prior ``P(state)`` turns it into a likelihood up to a per-frame constant (Springer's
  equation 9, the "hybrid" HMM trick of Bourlard and Morgan), which is what Viterbi needs;
* durations: Springer's heart-rate-dependent Gaussians
  (:func:`stetho.pcg.segmentation.duration_model`);
* decoding: the explicit-duration Viterbi of :func:`stetho.pcg.segmentation.viterbi`, extended so
  that the first and last state may start before / end after the recording.

The heart rate that sets the duration model comes from the autocorrelation, whose peak can sit at
half or twice the cycle (:func:`stetho.pcg.heart_rate.cycle_candidates`).  Springer decodes once,
with the best peak; here each candidate cycle is decoded and the path of highest probability wins,
then the recording is decoded once more with the cycle and systole the winner measured.  The
emission model sees the sounds, so a doubled rate (sounds asked for where there are none) or a
halved one (sounds labelled diastole) costs likelihood; this is what keeps infants at 150-200 bpm
from being read at half rate, and short windows from being read at twice the rate.

The fitted model ships as ``data/lr_hsmm_emissions.npz`` (plain arrays, loaded with
``allow_pickle=False``): it is fitted on all 100 CirCor 2022 dev patients by
:func:`train_emissions` (``python benchmarks/bench_pcg.py --train``).  Benchmark figures come
from patient-grouped cross-validation, with models fitted without the test patients.  The
analysis's default emissions are no longer this regression but the perceptron of
:mod:`stetho.pcg.mlp_emissions` (wider context, one more envelope), which :func:`decode` takes
through the same :class:`Emissions` interface; this module keeps the decoder, the features and
the CirCor readers both share.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy import special

from stetho.pcg.envelopes import (
    FEATURE_RATE_HZ,
    downsample,
    hilbert_envelope,
    normalise,
    wavelet_envelope,
)
from stetho.pcg.heart_rate import cycle_candidates
from stetho.pcg.physiology import systole_interval_s
from stetho.pcg.segmentation import (
    DIASTOLE,
    S1,
    S2,
    SYSTOLE,
    Segmentation,
    duration_model,
    make_segmentation,
    viterbi,
)

#: Frame offsets whose features each frame sees (+/- 80 ms at 50 Hz: under one sound's length,
#: chosen from the sounds' physiology, not tuned).
CONTEXT_FRAMES = (-4, -2, 0, 2, 4)

#: Names of the per-frame envelopes, in column order: Springer's four, then the 125-250 Hz
#: wavelet band (S2's aortic and pulmonary components are higher-pitched than S1, whose
#: energy lies mostly under 100 Hz; the MLP emissions may use it to tell the two apart).
FEATURE_ENVELOPES = ("homomorphic", "hilbert", "wavelet", "psd", "wavelet_high")

#: Number of leading columns that are Springer's envelopes (those the LR emissions use).
SPRINGER_ENVELOPES = 4

#: Inverse regularisation strength of the logistic regression: scikit-learn's default, kept
#: (with ~1.5 million training frames and 20 features the fit is data-dominated).
REGULARISATION_C = 1.0

#: CirCor ``.tsv`` state codes -> our state indices (0 = unannotated is dropped).
CIRCOR_STATES = {1: S1, 2: SYSTOLE, 3: S2, 4: DIASTOLE}

#: File name of the shipped emission model inside the package.
MODEL_FILE = "lr_hsmm_emissions.npz"

#: Largest relative gap between a path's decoded cycle and the cycle its durations assumed for
#: the path to count as a reading of that rate (beat-to-beat variation at rest is under 10 %).
SELF_CONSISTENCY = 0.15

#: A decoded path must beat the first pass's by this much (log units) to replace it; 0 keeps
#: the refinement whenever it is at least as likely.
_REFINE_MARGIN = 0.0


class Emissions(Protocol):
    """What the decoder needs of an emission model (:class:`EmissionModel`,
    :class:`stetho.pcg.mlp_emissions.MLPEmissionModel`)."""

    @property
    def context(self) -> tuple[int, ...]:
        """Frame offsets whose envelopes each frame's features stack."""
        ...

    @property
    def log_prior(self) -> np.ndarray:
        """Log share (4,) of each state in the training frames."""
        ...

    @property
    def n_envelopes(self) -> int:
        """How many leading columns of the envelope features the model reads."""
        ...

    def log_posterior(self, features: np.ndarray) -> np.ndarray:
        """``log P(state | features)`` (frames, 4) of :func:`frame_features` rows."""
        ...


@dataclass(frozen=True)
class EmissionModel:
    """A multinomial logistic regression from frame features to the four states.

    ``coef`` (4, features) and ``intercept`` (4,) act on the raw features (the scaler is folded
    in); ``log_prior`` (4,) is the log share of each state in the training frames.
    """

    coef: np.ndarray
    intercept: np.ndarray
    log_prior: np.ndarray
    context: tuple[int, ...] = CONTEXT_FRAMES

    @property
    def n_envelopes(self) -> int:
        """Leading envelope columns the features are built from (Springer's four)."""
        return SPRINGER_ENVELOPES

    def log_posterior(self, features: np.ndarray) -> np.ndarray:
        """``log P(state | features)``, (frames, 4)."""
        logits = features @ self.coef.T + self.intercept
        return logits - special.logsumexp(logits, axis=1, keepdims=True)

    def log_emissions(self, features: np.ndarray) -> np.ndarray:
        """Scaled log-likelihoods ``log P(state | x) - log P(state)``, (frames, 4)."""
        return np.maximum(self.log_posterior(features), np.log(1e-6)) - self.log_prior

    def save(self, path: str | Path) -> None:
        """Write the model as a plain ``.npz`` (no pickled objects)."""
        np.savez(
            path,
            coef=self.coef,
            intercept=self.intercept,
            log_prior=self.log_prior,
            context=np.asarray(self.context, dtype=np.int64),
        )

    @classmethod
    def load(cls, path: str | Path) -> EmissionModel:
        """Read a model written by :meth:`save`; raises ``ValueError`` for a malformed file."""
        with np.load(path, allow_pickle=False) as f:
            missing = {"coef", "intercept", "log_prior", "context"} - set(f.files)
            if missing:
                raise ValueError(f"{path}: not an emission model, missing {sorted(missing)}")
            model = cls(
                coef=f["coef"].astype(np.float64),
                intercept=f["intercept"].astype(np.float64),
                log_prior=f["log_prior"].astype(np.float64),
                context=tuple(int(c) for c in f["context"]),
            )
        n_features = SPRINGER_ENVELOPES * len(model.context)
        if model.coef.shape != (4, n_features) or model.intercept.shape != (4,):
            raise ValueError(f"{path}: coefficient shapes {model.coef.shape} do not fit")
        return model


@functools.cache
def default_emission_model() -> EmissionModel:
    """The shipped model (fitted on all 100 CirCor dev patients), read once."""
    with resources.as_file(resources.files("stetho.pcg") / "data" / MODEL_FILE) as path:
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: the LR-HSMM emission model is missing; fit it with "
                "`python benchmarks/bench_pcg.py --train`"
            )
        return EmissionModel.load(path)


def envelope_features(
    clean: np.ndarray, sample_rate_hz: float, envelopes: np.ndarray, *, feature_hz: float
) -> np.ndarray:
    """The :data:`FEATURE_ENVELOPES` (frames, 5), each z-scored.

    ``envelopes`` is :func:`stetho.pcg.envelopes.envelope_matrix` of ``clean`` (homomorphic,
    wavelet, PSD); the Hilbert envelope and the 125-250 Hz wavelet band are added here.  Each
    column is z-scored over the recording, as Springer does, so loudness and gain do not matter.
    """
    n = len(envelopes)

    def at_feature_rate(envelope: np.ndarray) -> np.ndarray:
        e = downsample(envelope, sample_rate_hz, target_hz=feature_hz)
        return np.pad(e[:n], (0, max(0, n - len(e))), mode="edge")

    hilbert = at_feature_rate(hilbert_envelope(clean))
    high = at_feature_rate(wavelet_envelope(clean, sample_rate_hz, band_low_hz=125.0))
    columns = (envelopes[:, 0], hilbert, envelopes[:, 1], envelopes[:, 2], high)
    return np.column_stack([normalise(np.asarray(c, dtype=np.float64)) for c in columns])


def frame_features(z: np.ndarray, context: Sequence[int] = CONTEXT_FRAMES) -> np.ndarray:
    """Stack each frame's envelopes with those ``context`` frames away, (frames, 4 * len(context)).

    Frames beyond the edges repeat the edge frame.
    """
    n = len(z)
    idx = np.arange(n)
    return np.concatenate([z[np.clip(idx + c, 0, n - 1)] for c in context], axis=1)


def fit_emissions(
    features: np.ndarray, labels: np.ndarray, *, context: Sequence[int] = CONTEXT_FRAMES
) -> EmissionModel:
    """Fit the logistic regression on frames (n, features) with state labels (n,) in 0-3."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    if set(np.unique(labels)) != {S1, SYSTOLE, S2, DIASTOLE}:
        raise ValueError("fit_emissions: the labels must contain all four states")
    scaler = StandardScaler().fit(features)
    lr = LogisticRegression(C=REGULARISATION_C, max_iter=500)
    lr.fit(scaler.transform(features), labels)
    coef = lr.coef_ / scaler.scale_
    intercept = lr.intercept_ - coef @ scaler.mean_
    order = np.argsort(lr.classes_)
    prior = np.bincount(labels, minlength=4) / len(labels)
    return EmissionModel(
        coef=coef[order],
        intercept=intercept[order],
        log_prior=np.log(prior),
        context=tuple(context),
    )


# --- CirCor annotations ---------------------------------------------------------------------


@dataclass(frozen=True)
class Annotation:
    """One CirCor ``.tsv``: annotated segments (start_s, end_s, state index), sorted, unique."""

    segments: tuple[tuple[float, float, int], ...]

    @property
    def span_s(self) -> tuple[float, float]:
        """First annotated start and last annotated end (s)."""
        return self.segments[0][0], self.segments[-1][1]

    def onsets_s(self, state: int) -> np.ndarray:
        """Annotated onsets (s) of ``state`` (S1 or S2)."""
        return np.array([a for a, _, s in self.segments if s == state])

    def frame_labels(self, n_frames: int, frame_hz: float) -> np.ndarray:
        """State index of each frame centre ``k / frame_hz``; -1 where nothing is annotated."""
        labels = np.full(n_frames, -1, dtype=np.int64)
        t = np.arange(n_frames) / frame_hz
        for start, end, state in self.segments:
            labels[(t >= start) & (t < end)] = state
        return labels

    def annotated(self, times_s: np.ndarray) -> np.ndarray:
        """Mask of times that fall inside an annotated (non-zero) segment."""
        times_s = np.asarray(times_s, dtype=np.float64)
        mask = np.zeros(times_s.shape, dtype=bool)
        for start, end, _ in self.segments:
            mask |= (times_s >= start) & (times_s < end)
        return mask


def read_circor_tsv(path: str | Path) -> Annotation:
    """Read a CirCor segmentation ``start end state``; drops state 0 and repeated blocks.

    Raises ``ValueError`` for a file without annotated segments.
    """
    rows: set[tuple[float, float, int]] = set()
    with open(path, newline="") as f:
        for fields in csv.reader(f, delimiter="\t"):
            if len(fields) < 3 or not fields[0].strip():
                continue
            code = int(float(fields[2]))
            if code in CIRCOR_STATES:
                rows.add((round(float(fields[0]), 6), round(float(fields[1]), 6), code))
    if not rows:
        raise ValueError(f"{path}: no annotated S1/systole/S2/diastole segments")
    segments = tuple((a, b, CIRCOR_STATES[c]) for a, b, c in sorted(rows))
    return Annotation(segments)


def circor_recordings(data_dir: str | Path) -> list[tuple[Path, Path, str]]:
    """(audio, tsv, patient id) of every CirCor recording with a segmentation, sorted."""
    folder = Path(data_dir) / "training_data"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a CirCor data folder (no training_data/)")
    out = []
    for tsv in sorted(folder.glob("*.tsv")):
        for ext in (".flac", ".wav"):
            audio = tsv.with_suffix(ext)
            if audio.is_file():
                out.append((audio, tsv, tsv.stem.split("_")[0]))
                break
    return out


def training_frames(
    items: Iterable[tuple[np.ndarray, Annotation]],
    *,
    context: Sequence[int] = CONTEXT_FRAMES,
    n_envelopes: int = SPRINGER_ENVELOPES,
) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of the annotated frames of (z-scored envelopes, annotation) pairs.

    The features stack the first ``n_envelopes`` envelope columns at the ``context`` offsets.
    """
    xs, ys = [], []
    for z, annotation in items:
        labels = annotation.frame_labels(len(z), FEATURE_RATE_HZ)
        keep = labels >= 0
        xs.append(frame_features(z[:, :n_envelopes], context)[keep])
        ys.append(labels[keep])
    if not xs:
        raise ValueError("training_frames: no recordings")
    return np.concatenate(xs), np.concatenate(ys)


def train_emissions(data_dir: str | Path, out: str | Path | None = None) -> EmissionModel:
    """Fit the emission model on every annotated CirCor recording in ``data_dir``.

    With ``out``, the model is also written there (:meth:`EmissionModel.save`).
    """
    from stetho.data.audio import read_audio
    from stetho.pcg.analysis import recording_envelopes

    items = []
    for audio_path, tsv, _ in circor_recordings(data_dir):
        audio = read_audio(audio_path)
        z = recording_envelopes(audio.samples, audio.sample_rate).features
        items.append((z, read_circor_tsv(tsv)))
    model = fit_emissions(*training_frames(items))
    if out is not None:
        model.save(out)
    return model


# --- decoding -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decoding:
    """The winning segmentation, its frame-wise emission posteriors and the cycle it assumed."""

    segmentation: Segmentation
    posterior: np.ndarray
    cycle_s: float
    systole_s: float


def _decode_once(
    log_emission: np.ndarray, frame_hz: float, cycle_s: float, systole_s: float
) -> tuple[np.ndarray, float]:
    durations = duration_model(
        heart_rate_bpm=60.0 / cycle_s, systole_s=systole_s, frame_hz=frame_hz
    )
    return viterbi(log_emission, durations)


def _measured_cycle(states: np.ndarray, frame_hz: float) -> tuple[float, float] | None:
    """Median S1-to-S1 and S1-to-S2 onset intervals (s) of a decoded path, or None."""
    starts = np.flatnonzero(np.diff(states, prepend=-1) != 0)
    kinds = states[starts]
    s1 = starts[kinds == S1]
    s2 = starts[kinds == S2]
    if len(s1) < 3:
        return None
    cycle = float(np.median(np.diff(s1))) / frame_hz
    lags = [s2[s2 > a][0] - a for a in s1 if np.any(s2 > a)]
    systole = float(np.median(lags)) / frame_hz if lags else float(systole_interval_s(cycle))
    return cycle, systole


def merge_cycles(first: Sequence[float], more: Sequence[float]) -> list[float]:
    """``first``, then the cycles of ``more`` not within 5 % of one already listed."""
    out = list(first)
    for cycle in more:
        if all(abs(cycle - known) > 0.05 * known for known in out):
            out.append(cycle)
    return out


def decode(
    features: np.ndarray,
    frame_hz: float,
    cycles_s: Sequence[float],
    *,
    model: Emissions | None = None,
) -> Decoding:
    """Decode z-scored envelopes (frames, 5) with each candidate cycle; keep the likeliest.

    The candidates are ``cycles_s`` and those of the autocorrelation of the emissions' S1
    posterior (:func:`stetho.pcg.heart_rate.cycle_candidates`).

    Each candidate is decoded with the physiological systole for its cycle
    (:func:`stetho.pcg.physiology.systole_interval_s`), not the autocorrelation's systolic lag:
    at half the true rate that lag would be the true cycle, and a decoder told so reads every
    sound as alternately S1 and S2 at no cost.  The winner is then decoded once more with the
    cycle and systole it measured, kept when at least as likely.  ``cycles_s`` must not be empty.
    """
    if not cycles_s:
        raise ValueError("decode: no candidate cycle lengths")
    if model is None:
        model = default_emission_model()
    x = frame_features(features[:, : model.n_envelopes], model.context)
    log_post = model.log_posterior(x)
    log_emission = np.maximum(log_post, np.log(1e-6)) - model.log_prior
    # The S1 posterior is a cleaner pulse train than the envelope (noise and murmurs do not
    # make it periodic at the wrong lag): its autocorrelation adds the cycles it supports.
    s1_cycles = cycle_candidates(np.exp(log_post[:, S1]) + 1e-3, frame_hz)
    cycles_s = merge_cycles(cycles_s, s1_cycles)
    # A path is self-consistent when the cycle it decoded (median S1-S1) lies within
    # SELF_CONSISTENCY of the cycle its duration model assumed: one that had to insert or skip
    # beats against its prior is not a reading of that rate.  The likeliest self-consistent
    # path wins; the likeliest of all only when none is.
    best: tuple[bool, float, np.ndarray, float, float] | None = None
    for cycle_s in cycles_s:
        systole_s = float(systole_interval_s(cycle_s))
        states, lp = _decode_once(log_emission, frame_hz, cycle_s, systole_s)
        got = _measured_cycle(states, frame_hz) if math.isfinite(lp) else None
        consistent = got is not None and abs(got[0] - cycle_s) <= SELF_CONSISTENCY * cycle_s
        if best is None or (consistent, lp) > (best[0], best[1]):
            best = (consistent, lp, states, cycle_s, systole_s)
    assert best is not None  # cycles_s is not empty
    _, lp, states, cycle_s, systole_s = best
    measured = _measured_cycle(states, frame_hz) if math.isfinite(lp) else None
    if measured is not None:
        m_cycle, m_systole = measured
        m_systole = float(np.clip(m_systole, 0.5 * systole_interval_s(m_cycle), m_cycle - 0.12))
        if 0.24 <= m_cycle <= 2.0:
            states2, lp2 = _decode_once(log_emission, frame_hz, m_cycle, m_systole)
            if lp2 >= lp + _REFINE_MARGIN:
                lp, states, cycle_s, systole_s = lp2, states2, m_cycle, m_systole
    seg = make_segmentation(states, frame_hz, lp, edge_shift=0.5)
    return Decoding(
        segmentation=seg, posterior=np.exp(log_post), cycle_s=cycle_s, systole_s=systole_s
    )
