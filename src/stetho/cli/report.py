"""The report command: (re)write a run's self-contained report.html."""

from __future__ import annotations

from pathlib import Path

import typer

from stetho.cli.common import cli_errors


def report(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A finished run folder."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Where to write the html (default: RUN_DIR/report.html)."
    ),
    worst: int = typer.Option(
        None,
        "--worst",
        min=0,
        help="Worst-classified recordings to show (default: logging.number_of_audios).",
    ),
    explain_budget: float = typer.Option(
        None,
        "--explain-budget",
        min=1,
        help="Seconds to spend at most explaining recordings the run's interpretations "
        "do not cover (default: training.interpretation_budget_s, or 600).",
    ),
) -> None:
    """(Re)write the run's self-contained report.html."""
    from stetho.report import write_report

    with cli_errors():
        path = write_report(
            run_dir,
            out=out,
            n_worst=worst,
            explain_budget_s="config" if explain_budget is None else explain_budget,
        )
    typer.echo(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB)")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
