"""``stetho predict``: score recordings with a run's fold ensemble."""

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
        help="Abnormal decision threshold (default: the run's decision rule, else its "
        "prediction.probability_threshold).",
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

    Label, abnormal flag and outcome follow the run's decision rule and duration limits.

    Exit code: 0 when all were scored, 1 when any failed (see the error column), 2 on misuse.
    """
    from stetho.io import check_not_input, write_table
    from stetho.runs import load_run
    from stetho.scoring.batch import collect_inputs, predict_files

    with cli_errors():
        if out.suffix.lower() not in OUT_SUFFIXES:
            raise ValueError(f"--out {out}: unsupported table format; use .csv or .parquet")
        check_not_input(out, inputs)  # a table it reads, however spelt or linked
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


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
