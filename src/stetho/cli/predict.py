"""``stetho predict`` and ``stetho export``: score recordings with a run, or export its pipeline."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from stetho.cli._common import cli_errors
from stetho.cli.extras import require_extra

console = Console(stderr=True)

#: Suffixes ``--out`` may have (``stetho.io.write_table``).
OUT_SUFFIXES = (".csv", ".txt", ".parquet")


def predict(
    run_dir: Path = typer.Argument(..., help="A finished run folder (runs/<name>)."),
    # Kept as typed (str, not Path): the output's path column repeats them unchanged, as
    # the exported score.py does ("./a.wav" stays "./a.wav").
    inputs: list[str] = typer.Argument(
        ...,
        help="Audio files, folders (searched recursively) and csv/parquet tables with a "
        "path column.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output table: preds.csv or preds.parquet."),
    fold: int = typer.Option(None, "--fold", help="Score with this fold's model only."),
    batch_size: int = typer.Option(
        64, "--batch-size", min=1, help="Recordings scored together (and chunks per forward)."
    ),
    threshold: float = typer.Option(
        None,
        "--threshold",
        min=0.0,
        max=1.0,
        help="Abnormal decision threshold (default: the run's prediction.probability_threshold).",
    ),
    dask: str = typer.Option(
        None,
        "--dask",
        help="Spread the files over a Dask cluster: a scheduler address "
        "(tcp://host:8786) or 'local'.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Score recordings with the run's fold ensemble; one row per recording.

    Exit code 0 when every recording was scored, 1 when any failed (its reason is in the
    error column), 2 for a usage error.
    """
    from stetho.io import write_table
    from stetho.runs import load_run
    from stetho.scoring.batch import collect_inputs, predict_files

    with cli_errors():
        if out.suffix.lower() not in OUT_SUFFIXES:
            raise ValueError(f"--out {out}: unsupported table format; use .csv or .parquet")
        items = collect_inputs(inputs)
        folds = None if fold is None else [fold]
        if dask:
            require_extra("distributed", "dask", "--dask")
            from stetho.scoring.dask import predict_files_dask

            df = predict_files_dask(
                run_dir,
                items,
                scheduler=dask,
                folds=folds,
                batch_size=batch_size,
                threshold=threshold,
                progress=progress,
            )
        else:
            run = load_run(run_dir, folds=folds)
            df = predict_files(
                run, items, batch_size=batch_size, progress=progress, threshold=threshold
            )
        write_table(df, out)
    n_bad = int((df["error"] != "").sum())
    console.print(f"scored {len(df) - n_bad} of {len(df)} recording(s) -> {out}")
    if n_bad:
        console.print(
            f"[yellow]{n_bad} recording(s) could not be scored:[/yellow] see the error column"
        )
        raise typer.Exit(code=1)


def export(
    run_dir: Path = typer.Argument(..., help="A finished run folder (runs/<name>)."),
    out: Path = typer.Option(..., "--out", "-o", help="Pipeline folder to create."),
    fold: int = typer.Option(None, "--fold", help="Export this fold's model only."),
    force: bool = typer.Option(False, "--force", help="Replace an existing OUT folder."),
) -> None:
    """Write a standalone scoring pipeline (numpy + soundfile + soxr + onnxruntime, no torch)."""
    from stetho.export import export_pipeline

    with cli_errors():
        path = export_pipeline(
            run_dir, out, folds=None if fold is None else [fold], overwrite=force
        )
    console.print(f"scoring pipeline written to {path}")
    console.print(f"run it with: python {path / 'score.py'} INPUT... --out preds.csv")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
    app.command("export")(export)
