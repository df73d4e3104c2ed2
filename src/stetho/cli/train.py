"""``stetho train``: run an experiment from a YAML config (ours or Hydrogen Torch's)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from stetho.cli._common import cli_errors, resolve_data_dir

console = Console(stderr=True)


def train(
    config: Path = typer.Argument(
        ..., help="YAML config (configs/heartbeat.yaml, or a Hydrogen Torch one)."
    ),
    overrides: list[str] = typer.Argument(None, help="Config overrides: section.key=value ..."),
    data: Path = typer.Option(
        None, "--data", "-d", help="Dataset folder or table (default: the mission set)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to create."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run in OUT.partial."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Train and validate (patient-grouped k-fold), then write the run folder."""
    from stetho.config import load_config
    from stetho.experiment import final_table, run_experiment
    from stetho.hooks import default_after_run

    with cli_errors():
        cfg = load_config(config, overrides or [])
        data_dir = (
            resolve_data_dir(data) if data is not None or not cfg.dataset.train_dataframe else data
        )
        result = run_experiment(
            cfg,
            out_dir=out,
            data=data_dir,
            resume=resume,
            progress=progress,
            after_run=default_after_run(),
        )
    table = Table(title=f"{out} (pooled out-of-fold, {len(result.oof)} recordings)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in final_table(result.summary):
        table.add_row(name, value)
    Console().print(table)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
