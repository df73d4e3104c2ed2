"""Why a recording was given a class: attributions over time x frequency on the log-mel input.

Three methods, each answering "which seconds and which frequency bands raised the score of
class *c*" on the ``(n_mels, frames)`` grid the model actually sees:

``gradcam``
    Grad-CAM (Selvaraju et al., ICCV 2017) on the backbone's last feature map
    (``model.forward_features``): channel weights are the spatially averaged gradients, the
    map is ``ReLU(sum_c w_c A_c)`` interpolated linearly to the input grid. Cheap (one forward
    and one backward pass) and never negative, but coarse: a cell of HeartNet's last block is
    16 mel bands x 8 frames (about 245 Hz x 130 ms for the default config) and its receptive
    field spans about a second, so the map is a broad blob around the evidence. Not among the
    default methods: in the synthetic-truth test (``tests/test_explain.py``) 55 % of its
    positive mass lies within one cell of the evidence (a region of 17 % of the map), against
    98 % for occlusion within one patch (16 %) and 68 % for integrated gradients within half a
    tile (3 %).
``occlusion``
    Occlusion (Zeiler & Fergus, ECCV 2014; Captum's ``Occlusion``): a ``window_bands`` x
    ``window_s`` patch is set to the chunk's mean level and the drop in score is credited to
    that patch. Model-agnostic and easy to read ("hiding this patch lowers the murmur score"),
    signed, at patch resolution; costs one forward pass per patch.
``integrated_gradients``
    Integrated gradients (Sundararajan et al., ICML 2017; Captum) from a flat baseline at the
    chunk's mean level, then averaged over a sliding tile of 3 mel bands x one STFT window
    (``n_fft / hop + 1`` frames). Neighbouring frames share most of their samples and
    neighbouring mel filters overlap, so detail finer than that tile is not in the input; at
    single-cell resolution the map is speckled with gradient noise that cancels in any sum
    (the raw map's total is the score difference, by completeness, and the tile average keeps
    it up to the edges). Signed; costs ``ig_steps`` forward and backward passes per chunk.

The score attributed is the log-probability of the class for cross-entropy models (evidence
for *c* relative to the other classes, which a raw logit is not) and the logit (log-odds) for
BCE models. Recordings are cut into the chunks the scorer uses
(:func:`stetho.scoring.chunking.recording_chunks`), each chunk is explained on its own, and the maps
are placed back on the recording's time axis, so the map explains the prediction that was
actually made. With several models (a fold ensemble) the maps and probabilities are averaged.

Files: :func:`explain_files` writes, per recording, ``<stem>.png`` (waveform, spectrogram and
one overlay per method), ``<stem>.<method>.npy`` (the ``(n_mels, frames)`` float32 map) and
``<stem>.<method>.json`` (its time and frequency axes, class and probability), plus
``index.json``. :func:`interpretations_hook` does this after training for the worst-classified
validation recordings (``logging.number_of_audios`` of them, each explained by the fold model
that did not train on it) into ``<run>/interpretations/``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, Occlusion

from stetho.config import PredictionConfig, load_config
from stetho.data.audio import AudioError, read_audio
from stetho.explain.plot import plot_explanation
from stetho.features.rhythm import rhythm_extras
from stetho.io import atomic_path, atomic_write_json
from stetho.models import HeartSoundClassifier
from stetho.runs import CONFIG, Run, load_run
from stetho.scoring.chunking import recording_chunks
from stetho.viz import save_png

logger = logging.getLogger(__name__)

METHODS = ("gradcam", "occlusion", "integrated_gradients")
#: Methods used when none are named: one perturbation-based, one gradient-based; both put
#: most of their mass on the evidence in the synthetic-truth test (tests/test_explain.py).
DEFAULT_METHODS = ("occlusion", "integrated_gradients")
INTERPRETATIONS = "interpretations"
INDEX = "index.json"

ScoreFn = Callable[..., torch.Tensor]


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
        method: one of :data:`METHODS`.
        probability: the model's probability of ``class_name`` for the whole recording (mean
            over chunks and models, as the scorer computes it).
        spectrogram: ``(n_mels, frames)`` the log-mel input the model saw (after its
            normalisation), for display; NaN where the model saw nothing.
        scored_s: seconds from the start that the model scored. The scorer drops a tail
            shorter than half a chunk (:func:`stetho.data.audio.chunk`); frames after ``scored_s``
            have no attribution (zero in ``map``).
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


def _class_scores(logits: torch.Tensor, loss_function: str) -> torch.Tensor:
    """``(B, n_classes)`` logits -> the per-class score attributed (see module docstring)."""
    return logits if loss_function == "BCE" else torch.log_softmax(logits, dim=-1)


def _score_fn(model: HeartSoundClassifier, target: int, loss_function: str) -> ScoreFn:
    def score(spec: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return _class_scores(model.forward_spec(spec, extra), loss_function)[:, target]

    return score


def _gradcam(
    model: HeartSoundClassifier,
    spec: torch.Tensor,
    extra: torch.Tensor | None,
    *,
    target: int,
    loss_function: str,
) -> torch.Tensor:
    """``(B, 1, M, T)`` -> ``(B, M, T)`` Grad-CAM on the last feature map."""
    with torch.enable_grad():
        fmap = model.forward_features(spec)
        score = _class_scores(model.forward_head(fmap, extra), loss_function)[:, target]
        (grads,) = torch.autograd.grad(score.sum(), fmap)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * fmap).sum(dim=1)).detach()  # (B, f, t)
    rows = _strided_interp(cam.shape[1], spec.shape[2]).to(cam)
    cols = _strided_interp(cam.shape[2], spec.shape[3]).to(cam)
    return rows @ cam @ cols.T


def _strided_interp(n_cells: int, n_out: int) -> torch.Tensor:
    """``(n_out, n_cells)`` linear interpolation from a strided feature axis to the input axis.

    A "same"-padded convolution of stride ``s`` centres output cell ``i`` on input position
    ``s * i`` (not ``s * i + (s - 1) / 2`` as ``F.interpolate`` assumes), and a stack of them
    keeps that alignment; input position ``y`` therefore sits at cell coordinate ``y / s``.
    Getting this wrong shifts HeartNet's Grad-CAM by 7.5 mel bands (about 115 Hz).
    """
    pos = (torch.arange(n_out, dtype=torch.float64) * (n_cells / n_out)).clamp(max=n_cells - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=n_cells - 1)
    w = pos - lo
    out = torch.zeros(n_out, n_cells, dtype=torch.float64)
    idx = torch.arange(n_out)
    out.index_put_((idx, lo), 1 - w, accumulate=True)
    out.index_put_((idx, hi), w, accumulate=True)
    return out


def _occlusion(
    model: HeartSoundClassifier,
    spec: torch.Tensor,
    extra: torch.Tensor | None,
    *,
    target: int,
    loss_function: str,
    window: tuple[int, int],
) -> torch.Tensor:
    bands = min(window[0], spec.shape[2])
    frames = min(window[1], spec.shape[3])
    baseline = spec.mean(dim=(1, 2, 3), keepdim=True).expand_as(spec).contiguous()
    occ = Occlusion(_score_fn(model, target, loss_function))
    attr = occ.attribute(
        spec,
        sliding_window_shapes=(1, bands, frames),
        strides=(1, max(1, bands // 2), max(1, frames // 2)),
        baselines=baseline,
        additional_forward_args=(extra,) if extra is not None else None,
        perturbations_per_eval=16,
    )
    return attr[:, 0].detach()


def _integrated_gradients(
    model: HeartSoundClassifier,
    spec: torch.Tensor,
    extra: torch.Tensor | None,
    *,
    target: int,
    loss_function: str,
    n_steps: int,
) -> torch.Tensor:
    baseline = spec.mean(dim=(1, 2, 3), keepdim=True).expand_as(spec).contiguous()
    ig = IntegratedGradients(_score_fn(model, target, loss_function))
    with torch.enable_grad():
        attr = ig.attribute(
            spec,
            baselines=baseline,
            additional_forward_args=(extra,) if extra is not None else None,
            n_steps=n_steps,
            internal_batch_size=max(1, spec.shape[0]) * 8,
        )
    return _tile_mean(attr.detach(), frames=ig_tile_frames(model))[:, 0]


def ig_tile_frames(model: HeartSoundClassifier) -> int:
    """Frames in integrated gradients' smoothing tile: one STFT window, rounded up to odd."""
    frames = model.frontend.n_fft // model.frontend.hop + 1
    return frames + 1 - frames % 2


def _tile_mean(attr: torch.Tensor, *, frames: int, bands: int = 3) -> torch.Tensor:
    """``(B, 1, M, T)`` -> the same, averaged over a centred ``bands x frames`` tile."""
    return F.avg_pool2d(
        attr,
        (bands, frames),
        stride=1,
        padding=(bands // 2, frames // 2),
        count_include_pad=False,
    )


def _stitch(chunk_maps: np.ndarray, *, chunk_samples: int, hop: int, n_frames: int) -> np.ndarray:
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


def _as_models(
    model: HeartSoundClassifier | Sequence[HeartSoundClassifier],
) -> list[HeartSoundClassifier]:
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
    occlusion_window: tuple[int, float] = (8, 0.25),
    ig_steps: int = 32,
) -> list[Attribution]:
    """Attribution maps of one recording, one per method, all for the same class.

    Args:
        model: a classifier, or several (a fold ensemble: maps and probabilities are averaged).
        wave: ``(samples,)`` mono float waveform at the model's sample rate
            (``model.frontend.sample_rate``).
        methods: names from :data:`METHODS`.
        target: class index or name to explain; ``None`` explains the predicted class.
        classes: class names in output order (default ``"0"``, ``"1"``, ...).
        loss_function: the run's ``training.loss_function`` (``CrossEntropy`` or ``BCE``).
        prediction: the run's chunking (:func:`stetho.scoring.chunking.recording_chunks`); ``None``
            scores the whole recording in one pass.
        extra: ``(n_extra,)`` per-recording extra features, for models that take them.
        occlusion_window: occlusion patch as ``(mel bands, seconds)``; patches overlap by half.
        ig_steps: integration steps of integrated gradients.

    Returns:
        One :class:`Attribution` per method, in the order given.
    """
    models = _as_models(model)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods={list(methods)}: expected one or more of {list(METHODS)}")
    if loss_function not in ("CrossEntropy", "BCE"):
        raise ValueError(f"loss_function={loss_function!r}: expected 'CrossEntropy' or 'BCE'")
    x = np.asarray(wave, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"wave: expected a non-empty 1-D waveform, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("wave: contains NaN or infinite samples")
    frontend = models[0].frontend
    sr, hop = int(frontend.sample_rate), int(frontend.hop)
    if prediction is None:
        chunks = x[None, :]
    else:
        chunks = recording_chunks(x, sample_rate=sr, prediction=prediction)
    chunk_samples = chunks.shape[1]
    n_frames = frontend.frames(len(x))
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
    window = (int(occlusion_window[0]), max(1, round(occlusion_window[1] * sr / hop)))

    times_s = np.arange(n_frames, dtype=np.float64) * hop / sr
    freqs_hz = np.asarray(frontend.band_centres_hz(), dtype=np.float64)
    spectrogram = _stitch(
        specs[0][:, 0].cpu().numpy(), chunk_samples=chunk_samples, hop=hop, n_frames=n_frames
    )
    covered = _stitch(
        np.ones((len(chunks), 1, specs[0].shape[-1]), dtype=np.float32),
        chunk_samples=chunk_samples,
        hop=hop,
        n_frames=n_frames,
    )[0].astype(bool)
    spectrogram[:, ~covered] = np.nan
    scored_s = min(len(x), len(chunks) * chunk_samples) / sr
    out = []
    for method in methods:
        maps = []
        for m, spec in zip(models, specs, strict=True):
            kwargs: dict[str, Any] = {"target": t, "loss_function": loss_function}
            if method == "gradcam":
                a = _gradcam(m, spec, extra_t, **kwargs)
            elif method == "occlusion":
                a = _occlusion(m, spec, extra_t, window=window, **kwargs)
            else:
                a = _integrated_gradients(m, spec, extra_t, n_steps=ig_steps, **kwargs)
            maps.append(a.float().cpu().numpy())
        chunk_maps = np.mean(maps, axis=0)
        out.append(
            Attribution(
                map=_stitch(chunk_maps, chunk_samples=chunk_samples, hop=hop, n_frames=n_frames),
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


@dataclass
class ExplainedFile:
    """What :func:`explain_files` wrote for one recording (one entry of ``index.json``)."""

    path: str
    stem: str
    fold: int | None
    predicted: str
    probabilities: dict[str, float]
    explained_class: str
    png: str
    maps: dict[str, dict[str, str]]
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "stem": self.stem,
            "fold": self.fold,
            "predicted": self.predicted,
            "probabilities": self.probabilities,
            "explained_class": self.explained_class,
            "png": self.png,
            "maps": self.maps,
            **self.info,
        }


def _safe_stem(path: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem).strip("._") or "recording"
    candidate, i = stem, 2
    while candidate in taken:
        candidate, i = f"{stem}-{i}", i + 1
    taken.add(candidate)
    return candidate


def _run_extras(run: Run, path: str, wave: np.ndarray) -> np.ndarray | None:
    """The run's per-recording extra features (rhythm statistics), computed as in training."""
    if not run.n_extra_features:
        return None
    return rhythm_extras([wave], run.sample_rate)[0]


def explain_files(
    run: Run,
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    target: int | str | None = None,
    folds: Sequence[int | None] | None = None,
    info: Sequence[dict[str, Any]] | None = None,
) -> list[ExplainedFile]:
    """Explain recordings with a run's models and write the files listed in the module docstring.

    Args:
        run: a loaded run (:func:`stetho.runs.load_run`).
        paths: audio files, any rate (resampled to the run's rate).
        out_dir: created if needed; files are named after each recording's stem.
        methods: names from :data:`METHODS`.
        target: class to explain (name or index); ``None``: each recording's predicted class.
        folds: per path, the fold whose model explains it (a validation recording is best
            explained by the model that did not train on it); ``None`` uses the whole ensemble.
        info: per path, extra fields stored in its ``index.json`` entry (true label, ...).

    Returns:
        One :class:`ExplainedFile` per recording that could be read; unreadable files are
        logged and listed under ``"errors"`` in ``index.json``.
    """
    out = Path(out_dir)
    paths = [str(p) for p in paths]
    if folds is not None and len(folds) != len(paths):
        raise ValueError(f"folds: {len(folds)} entries for {len(paths)} paths")
    if info is not None and len(info) != len(paths):
        raise ValueError(f"info: {len(info)} entries for {len(paths)} paths")
    out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    done: list[ExplainedFile] = []
    errors: dict[str, str] = {}
    for i, path in enumerate(paths):
        fold = None if folds is None else folds[i]
        if fold is None:
            models = run.models
        elif fold in run.folds:
            models = [run.models[run.folds.index(fold)]]
        else:
            raise ValueError(f"fold {fold} for {path}: the run has folds {run.folds}")
        try:
            wave = read_audio(
                path, sample_rate=run.sample_rate, min_duration_s=0.0, max_duration_s=None
            ).samples
        except AudioError as exc:
            logger.warning("cannot explain %s", exc)
            errors[path] = exc.reason
            continue
        extra = _run_extras(run, path, wave)
        atts = explain_recording(
            models,
            wave,
            methods=methods,
            target=target,
            classes=run.classes,
            loss_function=run.config.training.loss_function,
            prediction=run.config.prediction,
            extra=extra,
        )
        probs = _ensemble_probs(run, models, wave, extra)
        stem = _safe_stem(path, taken)
        maps: dict[str, dict[str, str]] = {}
        for a in atts:
            npy, meta = f"{stem}.{a.method}.npy", f"{stem}.{a.method}.json"
            with atomic_path(out / npy) as tmp, tmp.open("wb") as fh:
                np.save(fh, a.map.astype(np.float32), allow_pickle=False)
            atomic_write_json(out / meta, {"file": path, "map_file": npy, **a.axes_json()})
            maps[a.method] = {"npy": npy, "json": meta}
        entry_info = dict(info[i]) if info is not None else {}
        title = explanation_title(
            Path(path).name, probs, atts[0].class_name, entry_info.get("label")
        )
        fig = plot_explanation(wave, run.sample_rate, atts, title=title)
        save_png(fig, out / f"{stem}.png")
        entry = ExplainedFile(
            path=path,
            stem=stem,
            fold=fold,
            predicted=run.classes[int(np.argmax(list(probs.values())))],
            probabilities=probs,
            explained_class=atts[0].class_name,
            png=f"{stem}.png",
            maps=maps,
            info=entry_info,
        )
        done.append(entry)
        logger.info("explained %s (%s) -> %s", path, entry.explained_class, out / entry.png)
    atomic_write_json(
        out / INDEX,
        {
            "methods": list(methods),
            "classes": run.classes,
            "recordings": [e.to_json() for e in done],
            "errors": errors,
        },
    )
    return done


def _ensemble_probs(
    run: Run,
    models: Sequence[HeartSoundClassifier],
    wave: np.ndarray,
    extra: np.ndarray | None,
) -> dict[str, float]:
    """Every class's probability for ``wave``, as the scorer computes it."""
    from stetho.scoring.chunking import predict_recordings

    p = predict_recordings(
        list(models),
        [wave],
        sample_rate=run.sample_rate,
        prediction=run.config.prediction,
        loss_function=run.config.training.loss_function,
        extras=None if extra is None else [extra],
    )[0]
    return {c: float(v) for c, v in zip(run.classes, p, strict=True)}


def explanation_title(name: str, probs: dict[str, float], explained: str, label: str | None) -> str:
    """Figure title: file, true class (when known), class explained, top probabilities."""
    ranked = sorted(probs.items(), key=lambda kv: -kv[1])[:3]
    top = ", ".join(f"{c} {p:.2f}" for c, p in ranked)
    truth = f"true: {label} | " if label else ""
    return f"{name}  ({truth}explained: {explained} | p: {top})"


def select_worst(oof: pd.DataFrame, classes: Sequence[str], n: int) -> pd.DataFrame:
    """The ``n`` worst-classified validation recordings, spread over the true classes.

    Within each class, recordings are ranked by the probability given to their true class
    (lowest first); the classes then take turns (rarest first), so a dominant class cannot
    fill the list. Adds columns ``p_true``, ``predicted`` and ``p_predicted``.
    """
    if n < 0:
        raise ValueError(f"n={n}: expected a non-negative count")
    cols = [f"prob_{c}" for c in classes]
    missing = [c for c in cols + ["label", "path"] if c not in oof.columns]
    if missing:
        raise ValueError(f"oof predictions lack columns {missing}")
    df = oof[oof["label"].isin(list(classes))].copy()
    if df.empty or n == 0:
        return df.iloc[:0].assign(p_true=[], predicted=[], p_predicted=[])
    p = df[cols].to_numpy(dtype=np.float64)
    idx = {c: i for i, c in enumerate(classes)}
    df["p_true"] = p[np.arange(len(df)), df["label"].map(idx).to_numpy()]
    df["predicted"] = np.asarray(classes, dtype=object)[p.argmax(axis=1)]
    df["p_predicted"] = p.max(axis=1)
    queues = {
        c: part.sort_values(["p_true", "path"]).index.tolist()
        for c, part in sorted(df.groupby("label"), key=lambda kv: (len(kv[1]), kv[0]))
    }
    picked: list[Any] = []
    while len(picked) < n and any(queues.values()):
        for q in queues.values():
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return df.loc[picked].sort_values("p_true").reset_index(drop=True)


def interpretations_hook(run_dir: Path) -> None:
    """After training: explain the worst-classified validation recordings into ``interpretations/``.

    Runs when the run's config says ``training.run_interpretations: true``, on
    ``logging.number_of_audios`` recordings chosen by :func:`select_worst`; each is explained by
    the model of the fold it was validated in.
    """
    run_dir = Path(run_dir)
    config = load_config(run_dir / CONFIG)
    n = config.logging.number_of_audios
    if not config.training.run_interpretations or n == 0:
        logger.info("interpretations skipped (training.run_interpretations=false or no audios)")
        return
    run = load_run(run_dir)
    oof = pd.read_parquet(run_dir / "oof_predictions.parquet")
    worst = select_worst(oof, run.classes, n)
    worst = worst[worst["fold"].isin(run.folds)]
    info = [
        {
            "label": r.label,
            "source": getattr(r, "source", None),
            "patient": getattr(r, "patient", None),
            "oof_p_true": float(r.p_true),
            "oof_predicted": r.predicted,
        }
        for r in worst.itertuples()
    ]
    explain_files(
        run,
        worst["path"].tolist(),
        run_dir / INTERPRETATIONS,
        methods=DEFAULT_METHODS,
        folds=[int(f) for f in worst["fold"]],
        info=info,
    )


def read_index(folder: str | Path) -> dict[str, Any] | None:
    """``index.json`` of an :func:`explain_files` folder, or ``None`` when there is none."""
    path = Path(folder) / INDEX
    if not path.is_file():
        return None
    return json.loads(path.read_text())
