"""Attribution maps of one recording: chunk as the scorer does, explain each chunk, stitch.

Recordings are cut into the chunks the scorer uses
(:func:`stetho.scoring.chunking.recording_chunks`), each chunk is explained on its own by a
method of :mod:`stetho.explain.methods`, and the maps are placed back on the recording's time
axis, so the map explains the prediction that was actually made. With several models (a fold
ensemble) the maps and probabilities are averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from stetho.config import PredictionConfig
from stetho.explain.methods import MethodSettings, forward_passes, get_method, method_names
from stetho.models import HeartSoundClassifier
from stetho.scoring.chunking import recording_chunks

#: Methods used when none are named: one perturbation-based, one gradient-based; both put
#: most of their mass on the evidence in the synthetic-truth test (tests/test_explain.py).
DEFAULT_METHODS = ("occlusion", "integrated_gradients")
#: Backbones with more parameters than this get :data:`LARGE_MODEL_SETTINGS` by default.
LARGE_MODEL_PARAMETERS = 5_000_000
#: Cheaper defaults for large backbones (issue #16: resnet50 on 28 s chunks took ~9 minutes
#: per recording): occlusion patches of 16 bands x 1 s instead of 8 x 0.25 s (on the reference
#: config, 4000 Hz, hop 512, 128 mels: 810 instead of 6,789 patches per chunk) and 16 instead
#: of 32 integration steps, about 8x cheaper in all.
LARGE_MODEL_SETTINGS = MethodSettings(occlusion_window=(16, 1.0), ig_steps=16)


@dataclass(frozen=True, eq=False)
class Attribution:
    """One attribution map of one recording.

    Attributes:
        map: ``(n_mels, frames)`` float32; positive values raised the class score, negative
            ones lowered it (Grad-CAM is never negative). Units are the method's own.
        times_s: ``(frames,)`` centre of each frame, seconds from the recording's start.
        freqs_hz: ``(n_mels,)`` centre frequency of each mel band, Hz.
        class_name: the class explained.
        class_index: its column in the model's output.
        method: a name from :func:`stetho.explain.methods.method_names`.
        probability: the model's probability of ``class_name`` for the whole recording (mean
            over chunks and models, as the scorer computes it).
        spectrogram: ``(n_mels, frames)`` the log-mel input the model saw (after its
            normalisation), for display; NaN where the model saw nothing.
        scored_s: seconds from the start that the model scored. The scorer drops a tail
            shorter than half a chunk (:func:`stetho.data.audio.chunk`); frames after
            ``scored_s`` have no attribution (zero in ``map``).
    """

    map: np.ndarray
    times_s: np.ndarray
    freqs_hz: np.ndarray
    class_name: str
    class_index: int
    method: str
    probability: float
    spectrogram: np.ndarray = field(repr=False)
    scored_s: float

    def positive_mass_fraction(
        self, *, time_s: tuple[float, float], freq_hz: tuple[float, float]
    ) -> float:
        """Share of the positive attribution mass inside a time x frequency box.

        A frame or band counts as inside when its centre lies in the closed interval.
        Returns NaN when the map has no positive mass.
        """
        pos = np.clip(self.map, 0.0, None)
        total = float(pos.sum())
        if total <= 0:
            return float("nan")
        t = (self.times_s >= time_s[0]) & (self.times_s <= time_s[1])
        f = (self.freqs_hz >= freq_hz[0]) & (self.freqs_hz <= freq_hz[1])
        return float(pos[np.ix_(f, t)].sum() / total)

    def profiles(self) -> tuple[np.ndarray, np.ndarray]:
        """Positive mass over time ``(frames,)`` and frequency ``(n_mels,)``; each sums to 1."""
        pos = np.clip(self.map, 0.0, None).astype(np.float64)
        total = pos.sum()
        if total <= 0:
            return np.zeros(pos.shape[1]), np.zeros(pos.shape[0])
        return pos.sum(axis=0) / total, pos.sum(axis=1) / total

    def axes_json(self) -> dict[str, Any]:
        """JSON-able description of the map: method, class, probability and both axes."""
        return {
            "method": self.method,
            "class": self.class_name,
            "class_index": self.class_index,
            "probability": self.probability,
            "scored_s": round(self.scored_s, 6),
            "shape": list(self.map.shape),
            "layout": "map[band, frame]: rows are mel bands (freqs_hz), columns frames (times_s)",
            "times_s": [round(float(t), 6) for t in self.times_s],
            "freqs_hz": [round(float(f), 3) for f in self.freqs_hz],
        }


def n_parameters(model: torch.nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def default_settings(
    model: HeartSoundClassifier | Sequence[HeartSoundClassifier],
) -> MethodSettings:
    """The methods' settings for ``model``: :data:`LARGE_MODEL_SETTINGS` above
    :data:`LARGE_MODEL_PARAMETERS` parameters, the finer defaults below."""
    first = as_models(model)[0]
    if n_parameters(first) > LARGE_MODEL_PARAMETERS:
        return LARGE_MODEL_SETTINGS
    return MethodSettings()


def estimate_forward_passes(
    model: HeartSoundClassifier | Sequence[HeartSoundClassifier],
    n_samples: int,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    prediction: PredictionConfig | None = None,
    settings: MethodSettings | None = None,
) -> float:
    """Forward-pass equivalents (chunk-sized) :func:`explain_recording` costs for a recording
    of ``n_samples`` samples: a machine-independent measure of how long it takes."""
    models = as_models(model)
    fe = models[0].frontend
    settings = settings or default_settings(models)
    if prediction is None:
        n_chunks, chunk = 1, n_samples
    else:
        chunks = recording_chunks(
            np.zeros(n_samples, dtype=np.float32),
            sample_rate=int(fe.sample_rate),
            prediction=prediction,
        )
        n_chunks, chunk = chunks.shape
    frames = int(fe.frames(chunk))
    n_mels = len(fe.band_centres_hz())
    per_chunk = sum(
        forward_passes(m, models[0], settings, n_mels=n_mels, frames=frames) for m in methods
    )
    return float(per_chunk * n_chunks * len(models))


def stitch(chunk_maps: np.ndarray, *, chunk_samples: int, hop: int, n_frames: int) -> np.ndarray:
    """``(K, M, 1 + chunk_samples // hop)`` per-chunk maps -> ``(M, n_frames)`` recording map.

    Chunk ``k`` starts at sample ``k * chunk_samples``; its frame ``j`` is the recording's frame
    ``round(k * chunk_samples / hop) + j``. Frames of the wrap-padded tail are dropped.
    """
    out = np.zeros((chunk_maps.shape[1], n_frames), dtype=np.float32)
    for k, m in enumerate(chunk_maps):
        start = round(k * chunk_samples / hop)
        stop = min(n_frames, start + m.shape[1])
        if stop > start:
            out[:, start:stop] = m[:, : stop - start]
    return out


def as_models(
    model: HeartSoundClassifier | Sequence[HeartSoundClassifier],
) -> list[HeartSoundClassifier]:
    """One model or several as a non-empty list; anything but a classifier is refused."""
    models = [model] if isinstance(model, torch.nn.Module) else list(model)
    if not models:
        raise ValueError("model: expected a HeartSoundClassifier or a non-empty list of them")
    for m in models:
        if not all(hasattr(m, a) for a in ("frontend", "forward_features", "forward_head")):
            raise TypeError(
                f"model: expected a HeartSoundClassifier (frontend, forward_features, "
                f"forward_head), got {type(m).__name__}"
            )
    return models


def _resolve_target(target: int | str | None, probs: np.ndarray, classes: Sequence[str]) -> int:
    n = len(probs)
    if target is None:
        return int(np.argmax(probs))
    if isinstance(target, str):
        if target not in classes:
            raise ValueError(f"target={target!r} is not one of the model's classes {list(classes)}")
        return list(classes).index(target)
    if not 0 <= int(target) < n:
        raise ValueError(f"target={target}: expected a class index in [0, {n - 1}]")
    return int(target)


def _check_methods(methods: Sequence[str]) -> None:
    known = method_names()
    unknown = [m for m in methods if m not in known]
    if unknown or not methods:
        raise ValueError(f"methods={list(methods)}: expected one or more of {list(known)}")


def explain_recording(
    model: HeartSoundClassifier | Sequence[HeartSoundClassifier],
    wave: np.ndarray,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    target: int | str | None = None,
    classes: Sequence[str] | None = None,
    loss_function: str = "CrossEntropy",
    prediction: PredictionConfig | None = None,
    extra: np.ndarray | None = None,
    occlusion_window: tuple[int, float] | None = None,
    ig_steps: int | None = None,
    show_progress: bool = False,
) -> list[Attribution]:
    """Attribution maps of one recording, one per method, all for the same class.

    Args:
        model: a classifier, or several (a fold ensemble: maps and probabilities are averaged).
        wave: ``(samples,)`` mono float waveform at the model's sample rate
            (``model.frontend.sample_rate``).
        methods: registered method names (:func:`stetho.explain.methods.method_names`).
        target: class index or name to explain; ``None`` explains the predicted class.
        classes: class names in output order (default ``"0"``, ``"1"``, ...).
        loss_function: the run's ``training.loss_function`` (``CrossEntropy`` or ``BCE``).
        prediction: the run's chunking (:func:`stetho.scoring.chunking.recording_chunks`);
            ``None`` scores the whole recording in one pass.
        extra: ``(n_extra,)`` per-recording extra features, for models that take them.
        occlusion_window: occlusion patch as ``(mel bands, seconds)``; patches overlap by half.
            ``None``: ``(8, 0.25)``, or :data:`LARGE_MODEL_SETTINGS`'s for a large backbone.
        ig_steps: integration steps of integrated gradients; ``None``: 32, or 16 for a large
            backbone (:func:`default_settings`).
        show_progress: a progress bar inside each chunk's occlusion.

    Returns:
        One :class:`Attribution` per method, in the order given.
    """
    models = as_models(model)
    _check_methods(methods)
    if loss_function not in ("CrossEntropy", "BCE"):
        raise ValueError(f"loss_function={loss_function!r}: expected 'CrossEntropy' or 'BCE'")
    x = np.asarray(wave, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"wave: expected a non-empty 1-D waveform, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("wave: contains NaN or infinite samples")
    base = default_settings(models)
    settings = MethodSettings(
        occlusion_window=base.occlusion_window if occlusion_window is None else occlusion_window,
        ig_steps=base.ig_steps if ig_steps is None else ig_steps,
        show_progress=show_progress,
    )
    frontend = models[0].frontend
    sr, hop = int(frontend.sample_rate), int(frontend.hop)
    if prediction is None:
        chunks = x[None, :]
    else:
        chunks = recording_chunks(x, sample_rate=sr, prediction=prediction)
    chunk_samples = chunks.shape[1]
    n_frames = int(frontend.frames(len(x)))
    device = next(models[0].parameters()).device
    batch = torch.from_numpy(np.ascontiguousarray(chunks)).to(device)
    extra_t = None
    if extra is not None:
        extra_t = torch.as_tensor(np.asarray(extra, dtype=np.float32), device=device)
        extra_t = extra_t.reshape(1, -1).expand(len(chunks), -1).contiguous()

    specs, chunk_logits = [], []
    for m in models:
        m.eval()
        with torch.no_grad():
            spec = m.frontend(batch)
            specs.append(spec)
            chunk_logits.append(m.forward_spec(spec, extra_t))
    n_classes = chunk_logits[0].shape[1]
    names = list(classes) if classes is not None else [str(i) for i in range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(f"classes: {len(names)} names for a model with {n_classes} outputs")
    probs = np.mean(
        [
            (torch.sigmoid(lg) if loss_function == "BCE" else torch.softmax(lg, dim=-1))
            .mean(dim=0)
            .cpu()
            .numpy()
            for lg in chunk_logits
        ],
        axis=0,
    )
    t = _resolve_target(target, probs, names)

    times_s = np.arange(n_frames, dtype=np.float64) * hop / sr
    freqs_hz = np.asarray(frontend.band_centres_hz(), dtype=np.float64)
    spectrogram = stitch(
        specs[0][:, 0].cpu().numpy(), chunk_samples=chunk_samples, hop=hop, n_frames=n_frames
    )
    covered = stitch(
        np.ones((len(chunks), 1, specs[0].shape[-1]), dtype=np.float32),
        chunk_samples=chunk_samples,
        hop=hop,
        n_frames=n_frames,
    )[0].astype(bool)
    spectrogram[:, ~covered] = np.nan
    scored_s = min(len(x), len(chunks) * chunk_samples) / sr
    out = []
    for method in methods:
        fn = get_method(method)
        maps = [
            fn(m, spec, extra_t, target=t, loss_function=loss_function, settings=settings)
            .float()
            .cpu()
            .numpy()
            for m, spec in zip(models, specs, strict=True)
        ]
        chunk_maps = np.mean(maps, axis=0)
        out.append(
            Attribution(
                map=stitch(chunk_maps, chunk_samples=chunk_samples, hop=hop, n_frames=n_frames),
                times_s=times_s,
                freqs_hz=freqs_hz,
                class_name=names[t],
                class_index=t,
                method=method,
                probability=float(probs[t]),
                spectrogram=spectrogram,
                scored_s=scored_s,
            )
        )
    return out


def explain_waveform(
    model: HeartSoundClassifier | Sequence[HeartSoundClassifier],
    wave: np.ndarray,
    *,
    method: str,
    target: int | str | None = None,
    **kwargs: Any,
) -> Attribution:
    """One method's :class:`Attribution` of ``wave``; see :func:`explain_recording` for options."""
    return explain_recording(model, wave, methods=[method], target=target, **kwargs)[0]
