"""Explanation files: per recording a figure, each method's map and its axes, plus an index.

The layout is :class:`stetho.runs.folder.ExplanationFolder`'s: ``<stem>.png`` (waveform,
spectrogram and one overlay per method), ``<stem>.<method>.npy`` (the ``(n_mels, frames)``
float32 map), ``<stem>.<method>.json`` (its time and frequency axes, class and probability)
and ``index.json``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stetho.data.audio import AudioError, read_audio
from stetho.explain.attribution import DEFAULT_METHODS, default_settings
from stetho.explain.budget import Budget
from stetho.explain.plot import plot_explanation
from stetho.explain.recording import explain_with_run, fold_models, run_extras, run_probabilities
from stetho.io import atomic_path, atomic_write_json
from stetho.runs import Run
from stetho.runs.folder import ExplanationFolder
from stetho.viz import save_png

logger = logging.getLogger(__name__)


@dataclass
class ExplainedFile:
    """What :func:`explain_files` wrote for one recording (one entry of the index)."""

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


def explanation_title(name: str, probs: dict[str, float], explained: str, label: str | None) -> str:
    """Figure title: file, true class (when known), class explained, top probabilities."""
    ranked = sorted(probs.items(), key=lambda kv: -kv[1])[:3]
    top = ", ".join(f"{c} {p:.2f}" for c, p in ranked)
    truth = f"true: {label} | " if label else ""
    return f"{name}  ({truth}explained: {explained} | p: {top})"


def explain_files(
    run: Run,
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    target: int | str | None = None,
    folds: Sequence[int | None] | None = None,
    info: Sequence[dict[str, Any]] | None = None,
    budget_s: float | None = None,
    log_dir: str | Path | None = None,
    progress_bar: bool = False,
) -> list[ExplainedFile]:
    """Explain recordings with a run's models and write the files listed in the module docstring.

    Args:
        run: a loaded run (:func:`stetho.runs.load_run`).
        paths: audio files, any rate (resampled to the run's rate).
        out_dir: created if needed; files are named after each recording's stem.
        methods: registered method names (:func:`stetho.explain.methods.method_names`).
        target: class to explain (name or index); ``None``: each recording's predicted class.
        folds: per path, the fold whose model explains it (a validation recording is best
            explained by the model that did not train on it); ``None`` uses the whole ensemble.
        info: per path, extra fields stored in its index entry (true label, ...).
        budget_s: stop starting new recordings once this many seconds would be exceeded
            (:class:`stetho.explain.budget.Budget`); ``None``: no limit. Recordings left out
            are listed under ``"not_explained"`` in the index.
        log_dir: the folder to name in log lines instead of ``out_dir`` (a run's final folder
            while it is still written into ``<name>.partial``).
        progress_bar: a tqdm bar over the recordings (log lines with an ETA come regardless).

    Returns:
        One :class:`ExplainedFile` per recording that could be read; unreadable files are
        logged and listed under ``"errors"`` in the index.
    """
    folder = ExplanationFolder(out_dir)
    shown = ExplanationFolder(log_dir if log_dir is not None else out_dir)
    names = [str(p) for p in paths]
    if folds is not None and len(folds) != len(names):
        raise ValueError(f"folds: {len(folds)} entries for {len(names)} paths")
    if info is not None and len(info) != len(names):
        raise ValueError(f"info: {len(info)} entries for {len(names)} paths")
    for f in set(folds or []):
        fold_models(run, f)  # refuse a fold the run lacks before any work
    folder.root.mkdir(parents=True, exist_ok=True)
    budget = Budget(len(names), budget_s, progress_bar=progress_bar)
    settings = default_settings(run.models)
    taken: set[str] = set()
    done: list[ExplainedFile] = []
    errors: dict[str, str] = {}
    not_explained: list[str] = []
    for i, path in enumerate(names):
        if not budget.allows_next():
            not_explained = names[i:]
            break
        fold = None if folds is None else folds[i]
        try:
            wave = read_audio(
                path, sample_rate=run.sample_rate, min_duration_s=0.0, max_duration_s=None
            ).samples
        except AudioError as exc:
            logger.warning("cannot explain %s", exc)
            errors[path] = exc.reason
            budget.done(Path(path).name)
            continue
        entry_info = dict(info[i]) if info is not None else {}
        entry = _explain_one(
            run, path, wave, folder, _safe_stem(path, taken), fold, methods, target, entry_info
        )
        done.append(entry)
        budget.done(f"{Path(path).name} ({entry.explained_class})", shown.figure(entry.stem))
    warning = budget.close()
    atomic_write_json(
        folder.index,
        {
            "methods": list(methods),
            "classes": run.classes,
            "recordings": [e.to_json() for e in done],
            "errors": errors,
            "not_explained": not_explained,
            "budget_s": budget_s,
            "settings": {
                "occlusion_window": list(settings.occlusion_window),
                "ig_steps": settings.ig_steps,
            },
            **({"budget_warning": warning} if warning else {}),
        },
    )
    return done


def _explain_one(
    run: Run,
    path: str,
    wave: np.ndarray,
    folder: ExplanationFolder,
    stem: str,
    fold: int | None,
    methods: Sequence[str],
    target: int | str | None,
    info: dict[str, Any],
) -> ExplainedFile:
    extra = run_extras(run, wave)
    atts = explain_with_run(run, wave, fold=fold, methods=methods, target=target, extra=extra)
    probs = run_probabilities(run, fold_models(run, fold), wave, extra)
    maps: dict[str, dict[str, str]] = {}
    for a in atts:
        npy, meta = folder.map_array(stem, a.method), folder.map_axes(stem, a.method)
        with atomic_path(npy) as tmp, tmp.open("wb") as fh:
            np.save(fh, a.map.astype(np.float32), allow_pickle=False)
        atomic_write_json(meta, {"file": path, "map_file": npy.name, **a.axes_json()})
        maps[a.method] = {"npy": npy.name, "json": meta.name}
    title = explanation_title(Path(path).name, probs, atts[0].class_name, info.get("label"))
    png = folder.figure(stem)
    save_png(plot_explanation(wave, run.sample_rate, atts, title=title), png)
    return ExplainedFile(
        path=path,
        stem=stem,
        fold=fold,
        predicted=run.classes[int(np.argmax(list(probs.values())))],
        probabilities=probs,
        explained_class=atts[0].class_name,
        png=png.name,
        maps=maps,
        info=info,
    )


def read_index(folder: str | Path) -> dict[str, Any] | None:
    """The index of an :func:`explain_files` folder, or ``None`` when there is none."""
    return ExplanationFolder(folder).read_index()
