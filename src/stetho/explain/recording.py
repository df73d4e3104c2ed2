"""Explaining a recording with a loaded run: its fold models, classes, chunking and extras."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stetho.explain.attribution import DEFAULT_METHODS, Attribution, explain_recording
from stetho.features.rhythm import rhythm_extras
from stetho.models import HeartSoundClassifier
from stetho.runs import Run
from stetho.scoring.chunking import predict_recordings


def fold_models(run: Run, fold: int | None) -> list[HeartSoundClassifier]:
    """The model of ``fold`` (``None``: the whole ensemble); a fold the run lacks is refused."""
    if fold is None:
        return list(run.models)
    if fold not in run.folds:
        raise ValueError(f"fold {fold}: the run {run.path} has folds {run.folds}")
    return [run.models[run.folds.index(fold)]]


def run_extras(run: Run, wave: np.ndarray) -> np.ndarray | None:
    """The run's per-recording extra features (rhythm statistics), computed as in training."""
    if not run.n_extra_features:
        return None
    return rhythm_extras([wave], run.sample_rate)[0]


def run_probabilities(
    run: Run,
    models: Sequence[HeartSoundClassifier],
    wave: np.ndarray,
    extra: np.ndarray | None,
) -> dict[str, float]:
    """Every class's probability for ``wave`` from ``models``, as the scorer computes it."""
    p = predict_recordings(
        list(models),
        [wave],
        sample_rate=run.sample_rate,
        prediction=run.config.prediction,
        loss_function=run.config.training.loss_function,
        extras=None if extra is None else [extra],
    )[0]
    return {c: float(v) for c, v in zip(run.classes, p, strict=True)}


def explain_with_run(
    run: Run,
    wave: np.ndarray,
    *,
    fold: int | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    target: int | str | None = None,
    extra: np.ndarray | None = None,
    show_progress: bool = False,
) -> list[Attribution]:
    """Attribution maps of ``wave`` (at ``run.sample_rate``) by a run's models.

    Args:
        run: a loaded run (:func:`stetho.runs.load_run`).
        wave: ``(samples,)`` waveform at the run's sample rate.
        fold: explain with this fold's model (a validation recording is best explained by the
            model that did not train on it); ``None``: the whole ensemble.
        methods: registered method names.
        target: class name or index; ``None``: the predicted class.
        extra: the recording's extra features when already computed (:func:`run_extras`
            otherwise).
        show_progress: a progress bar inside each chunk's occlusion.
    """
    return explain_recording(
        fold_models(run, fold),
        wave,
        methods=methods,
        target=target,
        classes=run.classes,
        loss_function=run.config.training.loss_function,
        prediction=run.config.prediction,
        extra=run_extras(run, wave) if extra is None else extra,
        show_progress=show_progress,
    )
