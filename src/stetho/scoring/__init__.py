"""Scoring recordings: one chunking loop, two backends, one result type, one decision path.

* :mod:`stetho.scoring.chunking`: :func:`~stetho.scoring.chunking.chunk_mean`, the chunk-and-
  score loop every backend uses (and the torch fold ensemble on top of it);
* :mod:`stetho.scoring.backends`: the :class:`~stetho.scoring.backends.Scorer` protocol, a
  torch run (:class:`~stetho.scoring.backends.RunScorer`) and an ONNX pipeline
  (:class:`~stetho.scoring.backends.PipelineScorer`), both giving raw fold-mean probabilities;
* :mod:`stetho.scoring.core`: the acceptance rule, the run's decision rule, :class:`Scored`;
* :mod:`stetho.scoring.batch`: ``stetho predict`` (files, folders, tables -> one table);
* :mod:`stetho.scoring.dask`: the same over a Dask cluster.
"""

from stetho.scoring.backends import (
    PipelineScorer,
    RunScorer,
    Scorer,
    load_scorer,
    predict_waves,
    score_wave,
)
from stetho.scoring.core import Acceptance, Scored, decide, run_acceptance, run_rule

__all__ = [
    "Acceptance",
    "PipelineScorer",
    "RunScorer",
    "Scored",
    "Scorer",
    "decide",
    "load_scorer",
    "predict_waves",
    "run_acceptance",
    "run_rule",
    "score_wave",
]
