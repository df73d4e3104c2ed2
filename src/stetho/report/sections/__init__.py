"""The report's sections, in page order: ``(id, title, function)``.

Each function takes the :class:`stetho.report.context.Context` and returns the section's
inner HTML; figures are numbered in the order the functions run, which is page order.
"""

from __future__ import annotations

from collections.abc import Callable

from stetho.report.context import Context
from stetho.report.sections import data, decisions, metrics, overview, sources, worst

Section = Callable[[Context], str]

SECTIONS: tuple[tuple[str, str, Section], ...] = (
    ("summary", "Summary", overview.summary),
    ("warnings", "Warnings", overview.warnings),
    ("config", "Configuration", overview.configuration),
    ("data", "Data", data.data),
    ("metrics", "Metrics", metrics.metrics),
    ("roc", "ROC curves", metrics.roc),
    ("pr", "Precision-recall", metrics.precision_recall),
    ("confusion", "Confusion matrix", metrics.confusion),
    ("calibration", "Calibration", metrics.calibration),
    ("decisions", "Decisions", decisions.decisions),
    ("learning", "Learning curves", metrics.learning_curves),
    ("sources", "Per source", sources.sources),
    ("worst", "Worst-classified", worst.worst),
    ("environment", "Environment", overview.environment),
)

__all__ = ["SECTIONS", "Section"]
