"""What runs after training, before the run folder is sealed: report, scoring pipeline, ...

Each hook takes the (still partial) run folder. A hook that fails is logged and recorded in
``warnings.json``; it never throws away a trained run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

Hook = Callable[[Path], None]


def _guarded(name: str, fn: Hook) -> Hook:
    def run(run_dir: Path) -> None:
        try:
            fn(run_dir)
        except Exception as exc:  # noqa: BLE001 - a failed extra must not lose the run
            logger.exception("%s failed", name)
            path = run_dir / "warnings.json"
            warns = json.loads(path.read_text()) if path.exists() else []
            warns.append(f"{name} failed: {type(exc).__name__}: {exc}")
            from stetho.io import atomic_write_json

            atomic_write_json(path, warns)

    return run


def default_after_run() -> list[Hook]:
    """The hooks ``stetho train`` runs, in order."""
    from stetho.explain import interpretations_hook  # when training.run_interpretations
    from stetho.export import export_hook  # writes scoring/ when build_scoring_pipelines
    from stetho.report import report_hook  # always: report.html
    from stetho.workflows.tracking import (
        after_run as tracking_hook,  # MLflow; last, to log the rest
    )

    hooks: list[tuple[str, Hook]] = [
        ("scoring pipeline export", export_hook),
        ("interpretations", interpretations_hook),
        ("report", report_hook),
        ("experiment tracking", tracking_hook),
    ]
    return [_guarded(name, fn) for name, fn in hooks]
