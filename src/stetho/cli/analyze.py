"""``stetho analyze``: heart rate, S1/S2 timing, rhythm and signal quality of recordings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from stetho.cli.common import cli_errors


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="heart-sound analysis")
    table.add_column("file", overflow="fold")
    for column in ("HR bpm", "conf", "beats", "sys/dia ms", "irreg.", "quality"):
        table.add_column(column, justify="right")
    table.add_column("usable", min_width=8)
    for r in results:
        name = Path(r["path"]).name
        if "error" in r:
            table.add_row(name, *["-"] * 6, f"[red]error: {r['error']}[/red]")
            continue
        # Each reason reads "short name: details"; the table shows the short names.
        verdict = (
            "[green]yes[/green]"
            if r["usable"]
            else (
                "[yellow]no[/yellow]: " + ", ".join(x.split(":")[0] for x in r["quality_reasons"])
            )
        )
        table.add_row(
            name,
            _fmt(r["heart_rate_bpm"], ".0f"),
            _fmt(r["heart_rate_confidence"], ".2f"),
            str(len(r["s1"])),
            f"{_fmt(r['systole_ms'], '.0f')}/{_fmt(r['diastole_ms'], '.0f')}",
            _fmt(r["irregularity"], ".2f"),
            _fmt(r["quality"], ".2f"),
            verdict,
        )
    return table


def analyze(
    target: Path = typer.Argument(..., help="An audio file, or a folder searched recursively."),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON: one object for a file, a list for a folder."
    ),
    plot: Path = typer.Option(
        None, "--plot", help="Write a PNG per recording (waveform, envelope, S1/S2) here."
    ),
    method: str = typer.Option(
        "lr-hsmm",
        "--method",
        help="Segmentation: lr-hsmm (the duration-aware HSMM of Springer et al. with learned "
        "emissions, an MLP by default) or envelope (the earlier unsupervised decoder).",
    ),
) -> None:
    """Heart rate, S1/S2 onsets, systole/diastole, RR statistics, irregularity and quality.

    Exit code 0 when every recording was analysed, 1 when any could not be read (its reason is
    in its ``error`` entry), 2 for a usage error.
    """
    from stetho.data.audio import iter_audio_files
    from stetho.pcg import METHODS, analyze_file

    if method not in METHODS:
        raise typer.BadParameter(
            f"{method!r}: expected one of {', '.join(METHODS)}", param_hint="--method"
        )
    with cli_errors():
        files = [target] if target.is_file() else iter_audio_files(target)
        if not files:
            raise FileNotFoundError(f"{target}: no audio files found")
        results = [analyze_file(path, plot_dir=plot, method=method) for path in files]
    if as_json:
        payload: Any = results[0] if target.is_file() else results
        typer.echo(json.dumps(payload, indent=2))
    else:
        Console().print(_table(results))
    n_bad = sum("error" in r for r in results)
    if n_bad:
        Console(stderr=True).print(
            f"[yellow]{n_bad} of {len(results)} recording(s) could not be analysed[/yellow]"
        )
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
