"""``stetho tune``: hyperparameter search with Optuna over a YAML search space."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from stetho.cli.common import cli_errors, resolve_data_dir
from stetho.cli.extras import require_extra
from stetho.runs.folder import StudyFolder


def tune(
    config: Path = typer.Argument(..., help="Base YAML config every trial starts from."),
    overrides: list[str] = typer.Argument(None, help="Config overrides: section.key=value ..."),
    trials: int = typer.Option(
        20, "--trials", "-n", min=1, help="Finished trials the study should hold (resumes)."
    ),
    storage: str = typer.Option(
        None,
        "--storage",
        help="Optuna storage URL, e.g. sqlite:///tune.db (default: sqlite:///OUT/tune.db).",
    ),
    space: Path = typer.Option(
        Path("configs/search_space.yaml"), "--space", "-s", help="Search space YAML."
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Study folder: trial-<n>/ runs, best_config.yaml "
        "(default: runs/tune-<experiment_name>).",
    ),
    study_name: str = typer.Option(
        None, "--study-name", help="Study name in the storage (default: experiment_name)."
    ),
    data: Path = typer.Option(
        None, "--data", "-d", help="Dataset folder or table (default: the mission set)."
    ),
    pruning: bool = typer.Option(
        True, "--pruning/--no-pruning", help="Stop trials below the median early."
    ),
    heartbeat_seconds: int = typer.Option(
        60,
        "--heartbeat-seconds",
        min=1,
        help="A trial whose process is silent for twice this long is failed and retried.",
    ),
) -> None:
    """Search hyperparameters (objective: pooled out-of-fold macro AUC) and write the best
    config as YAML. Run it again with the same --storage to resume."""
    require_extra("optuna", "tune", "stetho tune")
    from stetho.config import load_config
    from stetho.workflows.tune import check_available, load_search_space
    from stetho.workflows.tune import tune as run_tune

    with cli_errors():
        check_available()  # optuna missing: say which extra, before reading anything
        base = load_config(config, overrides or [])
        dims = load_search_space(space, base=base)
        out = out or Path("runs") / f"tune-{base.experiment_name}"
        data_dir = (
            resolve_data_dir(data) if data is not None or not base.dataset.train_dataframe else data
        )
        result = run_tune(
            base,
            space=dims,
            trials=trials,
            storage=storage or f"sqlite:///{StudyFolder(out).storage.resolve()}",
            study_dir=out,
            study_name=study_name,
            data=data_dir,
            pruning=pruning,
            heartbeat_s=heartbeat_seconds,
        )
    table = Table(title=f"best of {result.n_finished} finished trials: trial {result.best_number}")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for key, value in result.best_params.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    table.add_row("pooled OOF macro AUC", f"{result.best_value:.4f}")
    Console().print(table)
    Console(stderr=True).print(f"best config: {result.best_config}")


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)
