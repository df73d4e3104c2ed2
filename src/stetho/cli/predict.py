"""``stetho predict``: score recordings with a run, an exported pipeline or a ready model."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from stetho.cli.common import cli_errors
from stetho.cli.extras import require_extra

console = Console(stderr=True)

#: Suffixes ``--out`` may have (``stetho.io.write_table``).
OUT_SUFFIXES = (".csv", ".txt", ".parquet")


def predict(
    run_dir: Path = typer.Argument(
        ...,
        metavar="MODEL",
        help="A finished run folder (runs/<name>), an exported scoring pipeline folder, or a "
        "ready model stetho:NAME (see stetho models).",
    ),
    # Kept as typed (str, not Path): the output's path column repeats them unchanged, as
    # the exported score.py does ("./a.wav" stays "./a.wav").
    inputs: list[str] = typer.Argument(
        ...,
        help="Audio files, folders (searched recursively) and csv/parquet tables with a "
        "path column.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output table: preds.csv or preds.parquet."),
    fold: int = typer.Option(
        None, "--fold", help="Score with this fold's model only (a run folder only)."
    ),
    batch_size: int = typer.Option(
        64, "--batch-size", min=1, help="Recordings scored together (and chunks per forward)."
    ),
    threshold: float = typer.Option(
        None,
        "--threshold",
        min=0.0,
        max=1.0,
        help="Abnormal decision threshold (default: the model's decision rule, else its "
        "prediction.probability_threshold).",
    ),
    dask: str = typer.Option(
        None,
        "--dask",
        help="Spread the files over a Dask cluster: a scheduler address "
        "(tcp://host:8786) or 'local'.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    quality_gate: bool = typer.Option(
        False,
        "--quality-gate",
        help="Run the heart-sound analysis on each recording; unusable ones get outcome re-record.",
    ),
    adapt_priors: bool = typer.Option(
        False,
        "--adapt-priors",
        help="Re-estimate the class mix of this batch without labels (EM) and decide with the "
        "rule's bias updated for it; recorded in OUT.decisions.json.",
    ),
    patient_column: str = typer.Option(
        None, "--patient-column", help="Patient id column of the input table(s)."
    ),
    patient_regex: str = typer.Option(
        None,
        "--patient-regex",
        help="Patient id from each file name: the first group of this regex (else the match).",
    ),
) -> None:
    """Score recordings with a model (a run's fold ensemble); one row per recording.

    MODEL is a run folder, a pipeline folder (stetho export) or a ready model stetho:NAME.
    Label, abnormal flag and outcome follow the model's decision rule and duration limits.
    Beside OUT (with any of the options below, or when the batch looks unlike the training
    data): OUT.decisions.json (shift indicator, quality gate, adapted priors and the rule
    used) and, with a patient option, OUT.patients.csv (one decision per patient).

    Exit code: 0 when all were scored, 1 when any failed (see the error column), 2 on misuse.
    """
    from stetho.io import atomic_write_json, check_not_input, write_table
    from stetho.runs.zoo import check_outside_zoo
    from stetho.scoring.backends import load_scorer
    from stetho.scoring.batch import (
        collect_inputs,
        patients_from_inputs,
        predict_batch,
    )

    with cli_errors():
        if out.suffix.lower() not in OUT_SUFFIXES:
            raise ValueError(f"--out {out}: unsupported table format; use .csv or .parquet")
        check_not_input(out, inputs)  # a table it reads, however spelt or linked
        check_outside_zoo(out)  # a packaged model (and the sidecars beside OUT) is only read
        items = collect_inputs(inputs)
        folds = None if fold is None else [fold]
        batch_level = quality_gate or adapt_priors or patient_column or patient_regex
        if dask and batch_level:
            raise ValueError(
                "--quality-gate, --adapt-priors and the patient options run without --dask"
            )
        if not dask:
            patients = (
                patients_from_inputs(items, inputs, column=patient_column, regex=patient_regex)
                if patient_column or patient_regex
                else None
            )
            result = predict_batch(
                load_scorer(run_dir, threads=None, folds=folds),
                items,
                batch_size=batch_size,
                progress=progress,
                threshold=threshold,
                quality_gate=quality_gate,
                adapt=adapt_priors,
                patients=patients,
            )
            df = result.table
            write_table(df, out)
            shift = result.record["shift"]
            if batch_level or shift.get("looks_shifted"):
                atomic_write_json(sidecar(out, ".decisions.json"), result.record)
            if result.patients is not None:
                write_table(result.patients, sidecar(out, ".patients.csv"))
                console.print(
                    f"{len(result.patients)} patient(s) -> {sidecar(out, '.patients.csv')}"
                )
            if shift.get("looks_shifted"):
                console.print(f"[yellow]warning:[/yellow] {shift['message']}")
            if adapt_priors:
                adapted = result.record["adapted_priors"]
                if adapted["applied"]:
                    console.print(
                        "adapted priors: "
                        + ", ".join(f"{c} {v:.3f}" for c, v in adapted["batch_prior"].items())
                    )
                else:
                    console.print(f"[yellow]warning:[/yellow] {adapted['refused']}")
        else:
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
            write_table(df, out)
    n_bad = int((df["error"] != "").sum())
    console.print(f"scored {len(df) - n_bad} of {len(df)} recording(s) -> {out}")
    if n_bad:
        console.print(
            f"[yellow]{n_bad} recording(s) could not be scored:[/yellow] see the error column"
        )
        raise typer.Exit(code=1)


def sidecar(out: Path, suffix: str) -> Path:
    """``preds.csv`` -> ``preds<suffix>``: the files written beside the output table."""
    return out.with_name(out.stem + suffix)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
