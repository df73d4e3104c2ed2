"""Scoring whole recordings with a waveform-in classifier.

Hydrogen Torch's two chunking methods:
- ``Fix``: cut the recording into chunks of ``inference_chunk_seconds`` (a recording shorter
  than one chunk is wrap-padded to a full chunk), score each, average the probabilities.
- ``Dynamic``: score the whole recording in one pass, up to ``max_inference_chunk_seconds``
  (longer recordings are split into chunks of that length and averaged).

The chunking is plain numpy (:func:`recording_chunks`) so that the torch-free scoring pipeline
can import the same rule from its own copy and produce identical chunks. :func:`chunk_mean` is
the one chunk-and-score loop: the torch ensemble (:func:`predict_recordings`) and the ONNX
backend (:class:`stetho.scoring.backends.PipelineScorer`) both run through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import torch
from torch import nn

from stetho.config import PredictionConfig
from stetho.data.audio import chunk
from stetho.models import HeartSoundClassifier


def recording_chunks(
    x: np.ndarray, *, sample_rate: int, prediction: PredictionConfig
) -> np.ndarray:
    """``(samples,)`` -> ``(n_chunks, chunk_samples)`` under the config's chunking method."""
    if prediction.inference_chunk_method == "Fix":
        n = max(1, round(prediction.inference_chunk_seconds * sample_rate))
    else:
        max_n = max(1, round(prediction.max_inference_chunk_seconds * sample_rate))
        if x.shape[0] <= max_n:
            return x[None, :].astype(np.float32, copy=False)
        n = max_n
    return chunk(x, chunk_samples=n, hop_samples=n, pad=True).astype(np.float32, copy=False)


def logits_to_probs(logits: torch.Tensor, loss_function: str) -> torch.Tensor:
    """Sigmoid for BCE (multi-label, as Hydrogen Torch), softmax for cross-entropy."""
    return torch.sigmoid(logits) if loss_function == "BCE" else torch.softmax(logits, dim=-1)


#: A function scoring a batch of chunks: ``(chunks (b, samples) float32, owners (b,))`` ->
#: ``(b, n_classes)`` probabilities (the owners index the recordings, for per-recording
#: extra features).
ChunkForward = Callable[[np.ndarray, np.ndarray], np.ndarray]


def chunk_mean(
    waves: Sequence[np.ndarray],
    *,
    sample_rate: int,
    prediction: PredictionConfig,
    forward: ChunkForward,
    batch_size: int = 64,
) -> np.ndarray:
    """The one chunk-and-score loop of every backend: ``(len(waves), n_classes)`` float64.

    Each recording is cut by :func:`recording_chunks`; chunks of equal length (``Dynamic``
    chunks differ) are scored together, at most ``batch_size`` per ``forward`` call, in
    recording order; the probabilities of a recording's chunks are averaged.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: expected a positive number of chunks")
    if not waves:
        return np.zeros((0, 0))
    chunks = [recording_chunks(w, sample_rate=sample_rate, prediction=prediction) for w in waves]
    owner = np.concatenate([np.full(len(c), i) for i, c in enumerate(chunks)])
    flat = [c for cs in chunks for c in cs]
    by_len: dict[int, list[int]] = {}
    for j, c in enumerate(flat):
        by_len.setdefault(c.shape[0], []).append(j)
    chunk_probs: np.ndarray | None = None
    for idx in by_len.values():
        for start in range(0, len(idx), batch_size):
            sel = idx[start : start + batch_size]
            p = np.asarray(forward(np.stack([flat[j] for j in sel]), owner[sel]), np.float64)
            if chunk_probs is None:
                chunk_probs = np.zeros((len(flat), p.shape[1]))
            chunk_probs[sel] = p
    assert chunk_probs is not None
    rec = np.zeros((len(waves), chunk_probs.shape[1]))
    np.add.at(rec, owner, chunk_probs)
    out: np.ndarray = rec / np.bincount(owner, minlength=len(waves))[:, None]
    return out


@torch.no_grad()
def predict_recordings(
    models: Sequence[nn.Module],
    waves: Sequence[np.ndarray],
    *,
    sample_rate: int,
    prediction: PredictionConfig,
    loss_function: str,
    extras: Sequence[np.ndarray] | None = None,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    autocast: bool = False,
) -> np.ndarray:
    """Mean class probabilities over chunks and over ``models`` (a fold ensemble), by
    :func:`chunk_mean`.

    Args:
        waves: mono float32 recordings at ``sample_rate``.
        extras: optional per-recording extra features ``(n_extra,)`` for models that take them.

    Returns:
        ``(len(waves), n_classes)`` float64 probabilities.
    """
    # Waveform-in classifiers (front end + forward_spec), whatever the caller's static type.
    classifiers = [cast(HeartSoundClassifier, m) for m in models]
    for model in classifiers:
        model.eval()
    device_type = torch.device(device).type

    def forward(x: np.ndarray, owners: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(x).to(device)
        extra = None
        if extras is not None:
            extra = torch.from_numpy(np.stack([extras[o] for o in owners])).float().to(device)
        total: np.ndarray | None = None
        for model in classifiers:
            # The log-mel front end stays in float32: its log needs the range.
            spec = model.frontend(xt)
            with torch.autocast(device_type=device_type, enabled=autocast):
                logits = model.forward_spec(spec, extra)
            p = logits_to_probs(logits.float(), loss_function).cpu().numpy().astype(np.float64)
            total = p if total is None else total + p
        assert total is not None
        return total / len(models)

    return chunk_mean(
        waves,
        sample_rate=sample_rate,
        prediction=prediction,
        forward=forward,
        batch_size=batch_size,
    )
