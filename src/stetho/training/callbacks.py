"""Callbacks: code that watches a training run without being part of it.

A :class:`TrainingCallback` is handed to :func:`stetho.training.experiment.run_experiment`
(``callbacks=[...]``); the experiment tracker's live feed, Optuna's pruning and the tests'
simulated crashes are callbacks. Under torchrun they are called on rank 0 only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class TrainingCallback:
    """Base class: override the events you need; the default does nothing.

    An exception raised by a callback stops the training as a crash would, after the epoch's
    checkpoint is written: ``--resume`` continues from there.
    """

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """After an epoch of a fold: ``record`` is its line of ``metrics.jsonl`` (``fold``,
        ``epoch`` (1-based), ``train_loss``, ``valid_macro_auc``..., ``round`` with
        pseudo-labelling), already logged and checkpointed."""


class OnEpochEnd(TrainingCallback):
    """A plain function ``fn(record)`` as a callback's :meth:`on_epoch_end`."""

    def __init__(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self.fn = fn

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.fn(record)
