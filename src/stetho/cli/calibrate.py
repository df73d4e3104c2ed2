"""``stetho calibrate``: refit a run's decision rule on labelled recordings of a new device."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from stetho.cli.common import cli_errors

console = Console(stderr=True)


def calibrate(
    run_dir: Path = typer.Argument(..., help="A finished run folder (left unchanged)."),
    data: Path = typer.Argument(
        ..., help="Labelled recordings of the new device: a table or a dataset folder."
    ),
    layout: str = typer.Option(
        "auto", "--layout", help="How to read DATA (see `stetho data layouts`); auto-detected."
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="The new run folder (default: RUN_DIR-calibrated); never overwritten.",
    ),
    calibration: str = typer.Option(
        None, "--calibration", help="none, auto, prior, temperature or vector (default: the run's)."
    ),
    target: str = typer.Option(
        None,
        "--target",
        help="Operating point: abnormal_sensitivity, specificity, macc, youden or fixed.",
    ),
    value: float = typer.Option(None, "--value", min=0.0, max=1.0, help="The target's value."),
    coverage: float = typer.Option(
        None, "--abstain-coverage", min=0.0, max=1.0, help="Fraction of recordings decided."
    ),
) -> None:
    """Refit calibration, threshold and abstain band on DATA into a new run folder.

    The new folder is a copy of RUN_DIR (without its exported pipeline) with the refitted
    decision.json and a recalibration.json recording what it was fitted on.
    """
    from stetho.runs.zoo import refuse_model_name
    from stetho.scoring.calibrate import calibrate_run

    with cli_errors():
        refuse_model_name(
            run_dir,
            needs="stetho calibrate",
            hint="its decision rule can only be refitted on the run it was exported from",
        )
        overrides: dict[str, object] = {}
        if calibration is not None:
            overrides["calibration"] = calibration
        if target is not None:
            overrides["operating_point"] = {"target": target, "value": value}
        elif value is not None:
            raise ValueError("--value needs --target")
        if coverage is not None:
            overrides["abstain_coverage"] = coverage
        new = calibrate_run(run_dir, data, out=out, layout=layout, overrides=overrides)
    console.print(f"recalibrated run -> {new} (the original {run_dir} is unchanged)")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
