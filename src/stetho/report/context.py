"""What every section function gets: the run's data, the figure counter, the options."""

from __future__ import annotations

from dataclasses import dataclass, field

from stetho.explain import Budget
from stetho.report.inputs import RunData
from stetho.report.markup import Figures


@dataclass
class Context:
    """One report being written.

    Attributes:
        data: the run's artifacts.
        n_worst: recordings in the worst-classified section.
        explain_budget_s: seconds the report may spend explaining recordings the
            interpretations hook did not cover; ``None``: no limit.
        figs: numbers and embeds the figures, in page order.
    """

    data: RunData
    n_worst: int
    explain_budget_s: float | None = None
    figs: Figures = field(default_factory=Figures)
    budget: Budget | None = None
