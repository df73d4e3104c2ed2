"""``stetho evaluate``: check a trained run on labelled data it never saw."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from stetho.cli.common import cli_errors

console = Console(stderr=True)


def evaluate(
    run_dir: Path = typer.Argument(
        ...,
        metavar="MODEL",
        help="A finished run folder (runs/<name>), an exported scoring pipeline folder, or a "
        "ready model stetho:NAME (a pipeline or ready model needs --out).",
    ),
    data: list[Path] = typer.Argument(
        ..., help="One or more labelled datasets (folders or tables) the run was not trained on."
    ),
    layout: str = typer.Option(
        "auto",
        "--layout",
        help="Dataset layout: pascal, physionet2016, circor, table, folder, manifest "
        "(default: detected).",
    ),
    label_map: list[str] = typer.Option(
        None,
        "--label-map",
        help="Map the data's labels onto the run: FROM=TO,... where TO is a class of the run, "
        "'abnormal' (its abnormal decision) or '-' (leave out), e.g. "
        "present=abnormal,absent=normal,unknown=-",
    ),
    patient_regex: str = typer.Option(
        None,
        "--patient-regex",
        help="Take patient ids from the file names: a regex with one group or a group named "
        "'patient' (confidence intervals then resample whole patients).",
    ),
    patient_column: str = typer.Option(
        None, "--patient-column", help="Take patient ids from this column of a table."
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Output folder [default: RUN/evaluations/<dataset> for a run folder; required "
        "for a pipeline or ready model].",
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace an evaluation that stetho evaluate wrote in --out."
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Recordings scored together."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Score a labelled dataset with a model and write metrics, plots and per-source tables."""
    from stetho.evaluation import evaluate as run_evaluation
    from stetho.evaluation import parse_label_map

    with cli_errors():
        done = run_evaluation(
            run_dir,
            data,
            layout=layout,
            label_map=parse_label_map(label_map),
            patient_regex=patient_regex,
            patient_column=patient_column,
            out=out,
            force=force,
            batch_size=batch_size,
            progress=progress,
        )
    result = done.result
    table = Table(title=f"{done.folder.root} ({result['recordings']['scored']} recordings)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in console_rows(result["metrics"]):
        table.add_row(name, value)
    Console().print(table)
    for w in result["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    console.print(f"wrote {done.folder.page} and {done.folder.metrics}")


def console_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """The closing table: normal vs abnormal with intervals, then the multi-class figures."""
    rows = [("patients", str(metrics["patients"]["patients"]))]
    nva = metrics.get("normal_vs_abnormal")
    if nva is not None:
        rows += [
            ("abnormal / normal", f"{nva['n_abnormal']} / {nva['n_normal']}"),
            ("ROC AUC abnormal", _ci(nva["auc"], nva["auc_ci"])),
            (
                f"sensitivity @ {nva['threshold']:.3f}",
                _ci(nva["sensitivity"], nva["sensitivity_ci"]),
            ),
            (
                f"specificity @ {nva['threshold']:.3f}",
                _ci(nva["specificity"], nva["specificity_ci"]),
            ),
            ("MAcc", _fmt(nva["macc"])),
            ("ECE (15 bins)", _fmt(nva["ece"])),
        ]
    mc = metrics.get("multiclass")
    if mc is not None:
        rows += [(f"AUC {c}", _fmt(v["auc"])) for c, v in mc["per_class"].items()]
        rows += [
            ("macro AUC", _fmt(mc["macro_auc"])),
            ("balanced accuracy", _fmt(mc["balanced_accuracy"])),
        ]
    for source, g in metrics["per_source"].items():
        if "auc" in g:
            rows.append((f"AUC abnormal, {source} (n={g['n']})", _fmt(g["auc"])))
    return rows


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _ci(value: float, ci: list[float | None]) -> str:
    lo, hi = ci
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return _fmt(value)
    return f"{_fmt(value)} ({lo:.3f}-{hi:.3f})"


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
