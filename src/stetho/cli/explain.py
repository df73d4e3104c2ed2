"""The explain command: why a recording got its class, as attribution maps."""

from __future__ import annotations

from pathlib import Path

import typer

from stetho.cli.common import cli_errors


def explain(
    run_dir: Path = typer.Argument(
        ..., metavar="RUN_DIR", help="A finished run folder (stetho train --out)."
    ),
    files: list[Path] = typer.Argument(
        ..., metavar="FILE...", help="Recordings to explain (wav, flac, ...)."
    ),
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
    budget: float = typer.Option(
        None,
        "--budget",
        min=1,
        help="Seconds to spend at most: no new recording is started once the budget would "
        "be passed (default: no limit).",
    ),
) -> None:
    """Attribution maps over time x frequency: a PNG, .npy and .json per recording.

    Progress and an ETA are logged after every recording.

    Exit code: 0 when all were explained, 1 when any could not be read (see index.json), 2 on
    misuse or an unusable run.
    """
    from stetho.explain import DEFAULT_METHODS, explain_files, read_index
    from stetho.runs import load_run
    from stetho.runs.folder import ExplanationFolder
    from stetho.runs.zoo import refuse_model_name

    with cli_errors():
        refuse_model_name(run_dir, needs="stetho explain")
        run = load_run(run_dir, folds=None if fold is None else [fold])
        done = explain_files(
            run,
            [str(f) for f in files],
            out,
            methods=method or list(DEFAULT_METHODS),
            target=target,
            budget_s=budget,
        )
    for e in done:
        p = e.probabilities[e.predicted]
        typer.echo(f"{e.path}: {e.predicted} (p={p:.3f}) -> {out / e.png}")
    index = read_index(out) or {}
    left = len(index.get("not_explained", []))
    failed = len(files) - len(done) - left
    if left:
        typer.secho(
            f"warning: {left} of {len(files)} file(s) not explained within the budget",
            err=True,
            fg=typer.colors.YELLOW,
        )
    if failed:
        typer.secho(
            f"error: {failed} of {len(files)} file(s) could not be read; "
            f"see {ExplanationFolder(out).index}",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(code=1)  # some recordings failed: code 1, as predict and analyze


def register(app: typer.Typer) -> None:
    app.command("explain")(explain)
