"""``stetho export``: write a run's standalone scoring pipeline (ONNX, no torch)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from stetho.cli.common import cli_errors

console = Console(stderr=True)


def export(
    run_dir: Path = typer.Argument(..., help="A finished run folder (runs/<name>)."),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="The pipeline folder to create (refused if it exists, unless --force).",
    ),
    fold: int = typer.Option(None, "--fold", help="Export this fold's model only."),
    name: str = typer.Option(
        None, "--name", help="Title of the pipeline's README [default: the run's name]."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Replace an existing OUT pipeline folder (never the run, a folder holding it, "
        "or a folder with files a pipeline does not have).",
    ),
) -> None:
    """Write a standalone scoring pipeline (numpy, soundfile, soxr, onnxruntime; no torch).

    It accepts and decides like stetho predict: the run's duration limits and decision rule.

    Exit code: 0 on success, 2 for a usage error or an unusable run file.
    """
    from stetho.export import export_pipeline
    from stetho.runs.zoo import refuse_model_name

    with cli_errors():
        refuse_model_name(
            run_dir,
            needs="stetho export",
            hint="it is exported already (stetho models shows its folder)",
        )
        path = export_pipeline(
            run_dir, out, folds=None if fold is None else [fold], overwrite=force, name=name
        )
    console.print(f"scoring pipeline written to {path}")
    console.print(f"run it with: python {path / 'score.py'} INPUT... --out preds.csv")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
