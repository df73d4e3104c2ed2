"""Evaluating a trained run on labelled data it never saw (``stetho evaluate``).

:mod:`~stetho.evaluation.labels` maps a dataset's labels onto the run,
:mod:`~stetho.evaluation.metrics` computes the numbers, :mod:`~stetho.evaluation.evaluate`
scores the data through :mod:`stetho.scoring` and writes the folder, and
:mod:`~stetho.evaluation.page` the self-contained page. This package sits above scoring and
report, below the CLI.
"""

from stetho.evaluation.evaluate import Evaluation, evaluate, read_datasets
from stetho.evaluation.labels import ABNORMAL, LEFT_OUT, parse_label_map, resolve_label_map
from stetho.evaluation.metrics import evaluation_metrics

__all__ = [
    "ABNORMAL",
    "LEFT_OUT",
    "Evaluation",
    "evaluate",
    "evaluation_metrics",
    "parse_label_map",
    "read_datasets",
    "resolve_label_map",
]
