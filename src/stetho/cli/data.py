"""``stetho data``: look at a dataset before training on it.

``summary`` reads a dataset (any registered layout) and prints its recordings per class and
source, patients and durations. ``check`` decodes every audio file and lists the unusable
ones with their reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from stetho.cli.common import cli_errors, resolve_data_dir
from stetho.config import DatasetConfig

data_app = typer.Typer(
    name="data", help="Inspect and check datasets.", no_args_is_help=True, add_completion=False
)

_DEFAULTS = DatasetConfig()


def _totals_line(totals: dict[str, float]) -> str:
    return (
        f"{totals['recordings']} recordings, {totals['labelled']} labelled, "
        f"{totals['unlabelled']} unlabelled, {totals['patients']} patients, "
        f"{totals['sources']} source(s), {totals['hours']:.2f} h"
    )


@data_app.command("summary")
def summary(
    data: Path = typer.Argument(
        None, help="Dataset folder or table (default: the mission set beside the checkout)."
    ),
    layout: str = typer.Option(
        "auto", "--layout", "-l", help="Reader: auto, pascal, physionet2016, circor, table, folder."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Recordings per class and source, patients, and durations of a dataset."""
    from stetho.data.manifest import summarize_manifest
    from stetho.data.readers import read_dataset

    with cli_errors():
        root = resolve_data_dir(data)
        facts = summarize_manifest(read_dataset(root, layout=layout))
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return

    console = Console()
    sources = sorted(facts["patients"])
    counts = Table(title=f"{root}: recordings per class and source")
    counts.add_column("class")
    for source in sources:
        counts.add_column(source, justify="right")
    counts.add_column("total", justify="right")
    for label, by_source in facts["counts"].items():
        counts.add_row(
            label,
            *(str(by_source.get(s, 0)) for s in sources),
            str(sum(by_source.values())),
        )
    console.print(counts)

    per_source = Table(title="per source")
    for column in ("source", "patients", "sample rates (Hz)", "min s", "median s", "max s"):
        per_source.add_column(column, justify="left" if column == "source" else "right")
    for source in sources:
        d = facts["duration_s"][source]
        per_source.add_row(
            source,
            str(facts["patients"][source]),
            ", ".join(str(r) for r in facts["sample_rates"][source]),
            f"{d['min']:.2f}",
            f"{d['median']:.2f}",
            f"{d['max']:.2f}",
        )
    console.print(per_source)
    console.print(_totals_line(facts["totals"]))


@data_app.command("check")
def check(
    data: Path = typer.Argument(
        None, help="Folder (searched recursively) or audio file (default: the mission set)."
    ),
    min_duration: float = typer.Option(
        _DEFAULTS.min_duration_seconds, "--min-duration", help="Shortest usable recording (s)."
    ),
    max_duration: float = typer.Option(
        _DEFAULTS.max_duration_seconds, "--max-duration", help="Longest usable recording (s)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Decode every audio file; list the unusable ones with the reason. Exit code 1 if any."""
    from stetho.data.audio import iter_audio_files, scan_audio

    with cli_errors():
        root = resolve_data_dir(data)
        files = iter_audio_files(root)
        if not files:
            raise ValueError(f"{root}: no audio files found")
        good, bad = scan_audio(
            files, min_duration_s=min_duration, max_duration_s=max_duration, progress=progress
        )
    base = root if root.is_dir() else root.parent
    for err in bad:
        path = Path(err.path)
        shown = path.relative_to(base) if path.is_relative_to(base) else path
        typer.echo(f"BAD {shown}: {err.reason} [{type(err).__name__}]")
    typer.echo(f"{len(files)} file(s) checked: {len(good)} fine, {len(bad)} bad")
    if bad:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
