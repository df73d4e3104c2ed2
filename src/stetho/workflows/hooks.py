"""What runs after training, before the run folder is sealed: report, scoring pipeline, ...

Each hook takes the (still partial) run folder. A hook that fails is logged and recorded in
``warnings.json``; it never throws away a trained run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stetho.runs.folder import RunFolder

logger = logging.getLogger(__name__)

Hook = Callable[[Path], None]


@dataclass(frozen=True)
class AfterRunHook:
    """A named after-training step; a failure becomes a warning of the run, not an error."""

    name: str
    fn: Hook

    def __call__(self, run_dir: Path) -> None:
        try:
            self.fn(run_dir)
        except Exception as exc:  # noqa: BLE001 - a failed extra must not lose the run
            logger.exception("%s failed", self.name)
            RunFolder(run_dir).add_warning(f"{self.name} failed: {type(exc).__name__}: {exc}")


def default_after_run() -> list[AfterRunHook]:
    """The hooks ``stetho train`` runs, in order."""
    from stetho.explain import interpretations_hook  # when training.run_interpretations
    from stetho.export import export_hook  # writes scoring/ when build_scoring_pipelines
    from stetho.report import report_hook  # always: report.html
    from stetho.workflows.tracking import (
        after_run as tracking_hook,  # MLflow; last, to log the rest
    )

    return [
        AfterRunHook("scoring pipeline export", export_hook),
        AfterRunHook("interpretations", interpretations_hook),
        AfterRunHook("report", report_hook),
        AfterRunHook("experiment tracking", tracking_hook),
    ]
