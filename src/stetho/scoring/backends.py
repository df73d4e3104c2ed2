"""Scoring for the service: a model loaded once, behind one small protocol.

Two implementations of :class:`Scorer`:

* :class:`RunScorer` serves a finished run folder (torch; weights from safetensors, the fold
  ensemble averaged as in :meth:`stetho.runs.Run.predict_waves`);
* :class:`PipelineScorer` serves an exported scoring pipeline folder (onnxruntime alone:
  ``model.onnx`` with input ``wave`` ``(batch, samples)`` float32, ``labels.json``,
  ``preprocess.json``).

Neither loads anything with pickle. Every function here is synchronous and CPU-bound; the app
runs them in its bounded worker pool, never on the event loop.

The *abnormal probability* that drives alerts is ``1 - p(normal)`` when the model has a
``normal`` class (the PhysioNet/CinC 2016 normal-vs-abnormal view: every other class is some
abnormality or an unusable recording); for another two-class model it is the probability of
the second class, as in ``stetho predict`` (:func:`stetho.scoring.batch.abnormal_rule`); otherwise
the largest class probability. A window or recording counts as abnormal when it is at or above
the threshold (the run's ``prediction.probability_threshold`` unless the service sets one).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from stetho.config import PredictionConfig
from stetho.pcg import analyze
from stetho.scoring.batch import abnormal_rule
from stetho.scoring.chunking import recording_chunks

logger = logging.getLogger(__name__)


@runtime_checkable
class Scorer(Protocol):
    """A loaded classifier: mono float32 waves at :attr:`sample_rate` in, probabilities out."""

    #: What is served, for ``/health`` (the folder's name).
    name: str
    #: ``"run"`` or ``"pipeline"``.
    kind: str
    classes: list[str]
    #: Hz; waves handed to :meth:`predict` must be at this rate.
    sample_rate: int
    #: The model's scoring chunk in seconds: the default streaming window.
    chunk_seconds: float
    #: The run's abnormal-probability threshold (``prediction.probability_threshold``).
    threshold: float

    def predict(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """``(n, n_classes)`` class probabilities for ``n`` recordings."""
        ...


class RunScorer:
    """Serve a finished run folder with torch (see :func:`stetho.runs.load_run`)."""

    kind = "run"

    def __init__(self, run_dir: str | Path, *, threads: int = 1) -> None:
        import torch

        from stetho.runs import load_run

        torch.set_num_threads(threads)
        self._run = load_run(run_dir)
        if self._run.n_extra_features:
            raise ValueError(
                f"{run_dir}: the model takes {self._run.n_extra_features} rhythm features per "
                "recording (training.rhythm_features=true); serving such runs is not supported, "
                "export the run or train without rhythm features"
            )
        self.name = Path(run_dir).resolve().name
        self.classes = list(self._run.classes)
        self.sample_rate = self._run.sample_rate
        self.chunk_seconds = _chunk_seconds(self._run.config.prediction)
        self.threshold = float(self._run.config.prediction.probability_threshold)

    def predict(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        return self._run.predict_waves(list(waves))


class PipelineScorer:
    """Serve an exported scoring pipeline with onnxruntime (no torch needed)."""

    kind = "pipeline"

    def __init__(self, pipe_dir: str | Path, *, threads: int = 1) -> None:
        import onnxruntime as ort

        pipe_dir = Path(pipe_dir)
        labels = json.loads((pipe_dir / "labels.json").read_text())
        preprocess = json.loads((pipe_dir / "preprocess.json").read_text())
        self.name = pipe_dir.resolve().name
        self.classes = list(labels["classes"] if isinstance(labels, dict) else labels)
        self.sample_rate = int(preprocess["sample_rate"])
        self._prediction = PredictionConfig.model_validate(
            {k: v for k, v in preprocess.items() if k in PredictionConfig.model_fields}
        )
        self.chunk_seconds = _chunk_seconds(self._prediction)
        self.threshold = float(self._prediction.probability_threshold)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(pipe_dir / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input = str(preprocess.get("input", "wave"))
        self._output = str(preprocess.get("output", "probs"))

    def predict(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(waves), len(self.classes)))
        for i, wave in enumerate(waves):
            chunks = recording_chunks(
                np.asarray(wave, np.float32),
                sample_rate=self.sample_rate,
                prediction=self._prediction,
            )
            (probs,) = self._session.run([self._output], {self._input: chunks})
            out[i] = np.asarray(probs, dtype=np.float64).mean(axis=0)
        return out


def load_scorer(path: str | Path, *, threads: int = 1) -> Scorer:
    """A :class:`RunScorer` for a run folder, a :class:`PipelineScorer` for a pipeline folder.

    A run folder may hold its exported pipeline in ``scoring/``; the run itself is served.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder (expected a run or a scoring pipeline)")
    if (path / "config.yaml").is_file():
        return RunScorer(path, threads=threads)
    if (path / "model.onnx").is_file():
        return PipelineScorer(path, threads=threads)
    raise FileNotFoundError(
        f"{path}: neither a finished run (config.yaml) nor a scoring pipeline (model.onnx)"
    )


def _chunk_seconds(prediction: PredictionConfig) -> float:
    if prediction.inference_chunk_method == "Fix":
        return float(prediction.inference_chunk_seconds)
    return min(float(prediction.max_inference_chunk_seconds), 10.0)


def abnormal_probability(probs: np.ndarray, classes: Sequence[str]) -> float:
    """The probability that a recording is abnormal, by :func:`stetho.scoring.batch.abnormal_rule`.

    ``1 - p(normal)`` when ``classes`` has ``normal``; ``p(classes[1])`` for another two-class
    model; otherwise the largest class probability.
    """
    probs = np.asarray(probs, dtype=np.float64)
    rule = abnormal_rule(classes)
    if rule is None:
        return float(probs.max())
    kind, name = rule
    p = float(probs[list(classes).index(name)])
    return float(np.clip(1.0 - p if kind == "not" else p, 0.0, 1.0))


def waveform_envelope(x: np.ndarray, sample_rate: int, *, points: int = 1200) -> dict[str, Any]:
    """Min and max of ``x`` over ``points`` equal spans, for drawing a waveform.

    Returns ``{"min": [...], "max": [...], "seconds_per_point": s}`` rounded to 4 decimals.
    """
    n = len(x)
    per = max(1, math.ceil(n / points))
    padded = np.pad(np.asarray(x, np.float32), (0, (-n) % per), mode="edge").reshape(-1, per)
    return {
        "min": np.round(padded.min(axis=1), 4).tolist(),
        "max": np.round(padded.max(axis=1), 4).tolist(),
        "seconds_per_point": per / sample_rate,
    }


def spectrogram_image(
    x: np.ndarray,
    sample_rate: int,
    *,
    n_fft: int = 128,
    max_frames: int = 360,
    range_db: float = 70,
) -> dict[str, Any]:
    """A small magnitude spectrogram for display: ``(n_fft // 2 + 1, frames)`` levels 0..255.

    Hann-windowed frames of ``n_fft`` samples (64 ms at 2 kHz), hop chosen so there are at most
    ``max_frames`` frames; levels map the top ``range_db`` dB linearly onto 0..255. Row 0 is
    0 Hz, the last row the Nyquist frequency.
    """
    x = np.asarray(x, np.float32)
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    hop = max(n_fft // 4, math.ceil((len(x) - n_fft) / max(1, max_frames - 1)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1)) ** 2
    db = 10.0 * np.log10(power + 1e-12)
    top = float(db.max())
    levels = np.clip((db - (top - range_db)) / range_db * 255.0, 0, 255).round().astype(np.uint8)
    return {
        "levels": levels.T.tolist(),
        "seconds_per_frame": hop / sample_rate,
        "max_frequency_hz": sample_rate / 2,
    }


@dataclass
class Scored:
    """One scored recording or streaming window."""

    probs: np.ndarray
    classes: list[str]
    analysis: dict[str, Any]
    detail: dict[str, Any] | None = field(default=None)

    @property
    def label(self) -> str:
        return self.classes[int(np.argmax(self.probs))]

    @property
    def abnormal_prob(self) -> float:
        return abnormal_probability(self.probs, self.classes)

    def prob_dict(self) -> dict[str, float]:
        return {c: round(float(p), 6) for c, p in zip(self.classes, self.probs, strict=True)}


def score_wave(scorer: Scorer, wave: np.ndarray, *, detail: bool = False) -> Scored:
    """Classify and analyse one mono float32 recording at ``scorer.sample_rate`` (blocking).

    The analysis is :meth:`stetho.pcg.PCGAnalysis.to_dict` (heart rate, S1/S2 onsets, quality,
    usable, rhythm); it never fails on a finite signal, which decoding guarantees.
    """
    probs = scorer.predict([wave])[0]
    analysis = analyze(wave, scorer.sample_rate).to_dict()
    extra = None
    if detail:
        extra = {
            "waveform": waveform_envelope(wave, scorer.sample_rate),
            "spectrogram": spectrogram_image(wave, scorer.sample_rate),
        }
    return Scored(probs=probs, classes=scorer.classes, analysis=analysis, detail=extra)
