"""The two scoring backends behind one protocol: waves in, raw fold-mean probabilities out.

* :class:`RunScorer` scores with a finished run folder (torch; weights from safetensors, the
  fold ensemble averaged by :func:`stetho.scoring.chunking.predict_recordings`);
* :class:`PipelineScorer` scores with an exported scoring pipeline folder (onnxruntime alone:
  ``model.onnx`` with input ``wave`` ``(batch, samples)`` float32, ``labels.json``,
  ``preprocess.json``).

Both cut recordings with the one chunking loop (:func:`stetho.scoring.chunking.chunk_mean`),
carry the model's :class:`~stetho.decision.DecisionRule` (``rule``) and
:class:`~stetho.scoring.core.Acceptance` (``acceptance``), and load nothing with pickle. A file
that cannot be used raises :class:`~stetho.io.ArtifactError` naming it. Every function here is
synchronous and CPU-bound; the service runs them in its worker pool.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from stetho.config import PredictionConfig
from stetho.decision import DecisionRule
from stetho.features.rhythm import rhythm_extras
from stetho.io import ArtifactError
from stetho.pcg import analyze
from stetho.runs import Run, load_run
from stetho.runs.folder import PipelineFolder, RunFolder
from stetho.runs.zoo import is_model_name, resolve_model
from stetho.scoring.chunking import chunk_mean, predict_recordings
from stetho.scoring.core import Acceptance, Scored, decide, run_acceptance, run_rule

logger = logging.getLogger(__name__)

#: Chunks per onnxruntime call, whatever the batch size (as ``score.py``): on one CPU core
#: small batches run fastest and keep onnxruntime's memory arena small.
CHUNKS_PER_CALL = 4
#: How to recover from an unusable pipeline file.
REEXPORT = "re-export the pipeline: stetho export RUN_DIR --out DIR --force"


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
    #: How the model's probabilities become decisions.
    rule: DecisionRule
    #: Which recordings the model accepts.
    acceptance: Acceptance

    def predict(self, waves: Sequence[np.ndarray], *, batch_size: int = 64) -> np.ndarray:
        """``(n, n_classes)`` raw fold-mean probabilities for ``n`` recordings."""
        ...


def predict_waves(
    run: Run,
    waves: Sequence[np.ndarray],
    *,
    extras: Sequence[np.ndarray] | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """``(n, n_classes)`` mean fold-ensemble probabilities of a run; waves at its rate."""
    return predict_recordings(
        run.models,
        waves,
        sample_rate=run.sample_rate,
        prediction=run.config.prediction,
        loss_function=run.loss_function,
        extras=extras,
        batch_size=batch_size,
    )


def run_extras(run: Run, waves: Sequence[np.ndarray]) -> list[np.ndarray] | None:
    """Per-recording rhythm features ``(n_extra,)`` for runs trained with
    ``training.rhythm_features``; ``None`` for the others."""
    if not run.n_extra_features:
        return None
    if not run.config.training.rhythm_features:
        raise ValueError(
            f"{run.path}: the models take {run.n_extra_features} extra features but the config "
            "has training.rhythm_features off"
        )
    return list(rhythm_extras(list(waves), run.sample_rate))


class RunScorer:
    """Score with a finished run (see :func:`stetho.runs.load_run`), rhythm features included."""

    kind = "run"

    def __init__(
        self, run: Run | str | Path, *, threads: int | None = None, folds: list[int] | None = None
    ) -> None:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.run = run if isinstance(run, Run) else load_run(run, folds=folds)
        self.name = self.run.path.resolve().name
        self.classes = list(self.run.classes)
        self.sample_rate = self.run.sample_rate
        self.chunk_seconds = chunk_seconds(self.run.config.prediction)
        self.rule = run_rule(self.run)
        self.acceptance = run_acceptance(self.run)

    @property
    def threshold(self) -> float:
        return self.rule.threshold

    def predict(self, waves: Sequence[np.ndarray], *, batch_size: int = 64) -> np.ndarray:
        return predict_waves(
            self.run, waves, extras=run_extras(self.run, waves), batch_size=batch_size
        )


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ArtifactError(path, "missing from the pipeline folder", REEXPORT)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, f"not valid JSON ({exc})", REEXPORT) from None


def pipeline_rule(preprocess: dict[str, Any], classes: Sequence[str], loss: str) -> DecisionRule:
    """The rule stored in ``preprocess.json`` (older exports: the default rule)."""
    stored = preprocess.get("decision")
    if stored is None:
        return DecisionRule.default(
            classes,
            loss_function=loss,
            threshold=float(preprocess.get("probability_threshold", 0.5)),
        )
    return DecisionRule.from_dict(stored)


def pipeline_acceptance(preprocess: dict[str, Any]) -> Acceptance:
    """The acceptance rule stored in ``preprocess.json``."""
    return Acceptance.from_dict(preprocess.get("acceptance", preprocess))


def open_onnx(path: Path, *, threads: int = 1) -> Any:
    """An onnxruntime session on ``path``; :class:`ArtifactError` when it is not a usable model
    (missing, empty, truncated, not ONNX)."""
    import onnxruntime as ort

    if not path.is_file():
        raise ArtifactError(path, "missing from the pipeline folder", REEXPORT)
    if path.stat().st_size == 0:
        raise ArtifactError(path, "empty file (0 bytes), not an ONNX model", REEXPORT)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ArtifactError(
            path, f"not a usable ONNX model ({type(exc).__name__}: {message})", REEXPORT
        ) from None


class PipelineScorer:
    """Score with an exported scoring pipeline and onnxruntime (no torch needed)."""

    kind = "pipeline"

    def __init__(self, pipe_dir: str | Path, *, threads: int = 1) -> None:
        folder = PipelineFolder(pipe_dir)
        labels = _read_json(folder.labels)
        preprocess = _read_json(folder.preprocess)
        if not isinstance(preprocess, dict) or "sample_rate" not in preprocess:
            raise ArtifactError(folder.preprocess, "no sample_rate", REEXPORT)
        self.name = folder.root.resolve().name
        self.classes = [str(c) for c in (labels["classes"] if isinstance(labels, dict) else labels)]
        loss = str(labels.get("loss_function", "CrossEntropy")) if isinstance(labels, dict) else ""
        self.sample_rate = int(preprocess["sample_rate"])
        self._prediction = PredictionConfig.model_validate(
            {k: v for k, v in preprocess.items() if k in PredictionConfig.model_fields}
        )
        self.chunk_seconds = chunk_seconds(self._prediction)
        try:
            self.rule = pipeline_rule(preprocess, self.classes, loss)
        except ValueError as exc:
            raise ArtifactError(folder.preprocess, str(exc), REEXPORT) from None
        self.acceptance = pipeline_acceptance(preprocess)
        # preprocess.json names its graph; pipelines exported before it did use the default.
        model = folder.root / str(preprocess["model"]) if "model" in preprocess else folder.model
        self._session = open_onnx(model, threads=threads)
        self._input = str(preprocess.get("input", "wave"))
        self._output = str(preprocess.get("output", "probs"))

    @property
    def threshold(self) -> float:
        return self.rule.threshold

    def _forward(self, x: np.ndarray, owners: np.ndarray) -> np.ndarray:
        (probs,) = self._session.run([self._output], {self._input: x.astype(np.float32)})
        return np.asarray(probs, dtype=np.float64)

    def predict(self, waves: Sequence[np.ndarray], *, batch_size: int = 64) -> np.ndarray:
        if not waves:
            return np.zeros((0, len(self.classes)))
        return chunk_mean(
            [np.asarray(w, np.float32) for w in waves],
            sample_rate=self.sample_rate,
            prediction=self._prediction,
            forward=self._forward,
            batch_size=min(batch_size, CHUNKS_PER_CALL),
        )


def load_scorer(
    path: str | Path, *, threads: int | None = 1, folds: list[int] | None = None
) -> Scorer:
    """A :class:`RunScorer` for a run folder, a :class:`PipelineScorer` for a pipeline folder
    or a ready model (``stetho:NAME``, :mod:`stetho.runs.zoo`; served under that name).

    A run folder may hold its exported pipeline in ``scoring/``; the run itself is served.
    ``threads``: torch / onnxruntime threads (``None``: torch's own setting, one for
    onnxruntime). ``folds``: a run's folds to score with (a pipeline holds its folds in one
    graph: ``ValueError``).
    """
    given = path
    path = resolve_model(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder (expected a run or a scoring pipeline)")
    scorer: Scorer
    if RunFolder(path).config.is_file():
        scorer = RunScorer(path, threads=threads, folds=folds)
    elif PipelineFolder(path).model.is_file():
        if folds is not None:
            raise ValueError(
                f"{given}: a scoring pipeline averages its folds inside one graph, so no fold "
                "can be chosen; export the fold you want (stetho export RUN --fold K) instead"
            )
        scorer = PipelineScorer(path, threads=1 if threads is None else threads)
    else:
        hint = (
            " (training still running or crashed: see stetho train --resume)"
            if RunFolder(path).working().root.exists()
            else ""
        )
        raise FileNotFoundError(
            f"{path}: not a finished stetho run (no config.yaml{hint}) nor a scoring pipeline "
            "(no model.onnx)"
        )
    if is_model_name(given):
        scorer.name = str(given)
    return scorer


def chunk_seconds(prediction: PredictionConfig) -> float:
    """The model's scoring chunk in seconds (``Dynamic``: its longest chunk, at most 10 s)."""
    if prediction.inference_chunk_method == "Fix":
        return float(prediction.inference_chunk_seconds)
    return min(float(prediction.max_inference_chunk_seconds), 10.0)


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


def score_wave(
    scorer: Scorer,
    wave: np.ndarray,
    *,
    name: str = "",
    rule: DecisionRule | None = None,
    detail: bool = False,
) -> Scored:
    """Classify and analyse one mono float32 recording at ``scorer.sample_rate`` (blocking).

    The decision is ``rule``'s (default: the scorer's). The analysis is
    :meth:`stetho.pcg.PCGAnalysis.to_dict` (heart rate, S1/S2 onsets, quality, usable,
    rhythm); it never fails on a finite signal, which decoding guarantees.
    """
    raw = scorer.predict([wave])
    (scored,) = decide(
        rule or scorer.rule, raw, paths=[name], durations=[len(wave) / scorer.sample_rate]
    )
    extra = None
    if detail:
        extra = {
            "waveform": waveform_envelope(wave, scorer.sample_rate),
            "spectrogram": spectrogram_image(wave, scorer.sample_rate),
        }
    return Scored(
        path=scored.path,
        probs=scored.probs,
        decision=scored.decision,
        duration_s=scored.duration_s,
        analysis=analyze(wave, scorer.sample_rate).to_dict(),
        detail=extra,
    )
