"""``stetho explain`` and ``stetho report``: why a recording got its class, and the run report."""

from __future__ import annotations

from pathlib import Path

import typer

from stetho.cli._common import cli_errors


def explain(
    run_dir: Path = typer.Argument(..., help="A finished run folder (stetho train --out)."),
    files: list[Path] = typer.Argument(..., help="Recordings to explain (wav, flac, ...)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the PNGs, maps and index."),
    method: list[str] = typer.Option(
        None,
        "--method",
        "-m",
        help="gradcam, occlusion or integrated_gradients; repeat for several "
        "(default: occlusion and integrated_gradients).",
    ),
    target: str = typer.Option(
        None, "--class", "-c", help="Class to explain (default: each recording's predicted class)."
    ),
    fold: int = typer.Option(
        None,
        "--fold",
        help="Explain with this fold's model only (default: the whole ensemble, slower).",
    ),
) -> None:
    """Attribution maps over time x frequency: a PNG, .npy and .json per recording."""
    from stetho.explain import DEFAULT_METHODS, explain_files
    from stetho.runs import load_run

    with cli_errors():
        run = load_run(run_dir, folds=None if fold is None else [fold])
        done = explain_files(
            run,
            [str(f) for f in files],
            out,
            methods=method or list(DEFAULT_METHODS),
            target=target,
        )
    for e in done:
        p = e.probabilities[e.predicted]
        typer.echo(f"{e.path}: {e.predicted} (p={p:.3f}) -> {out / e.png}")
    if len(done) < len(files):
        typer.secho(
            f"error: {len(files) - len(done)} of {len(files)} file(s) could not be read; "
            f"see {out / 'index.json'}",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(code=2)


def report(
    run_dir: Path = typer.Argument(..., help="A finished run folder."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Where to write the html (default: RUN_DIR/report.html)."
    ),
    worst: int = typer.Option(
        None,
        "--worst",
        help="Worst-classified recordings to show (default: logging.number_of_audios).",
    ),
) -> None:
    """(Re)write the run's self-contained report.html."""
    from stetho.report import write_report

    with cli_errors():
        path = write_report(run_dir, out=out, n_worst=worst)
    typer.echo(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB)")


def register(app: typer.Typer) -> None:
    app.command("explain")(explain)
    app.command("report")(report)
