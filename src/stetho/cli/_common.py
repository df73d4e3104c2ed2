"""Helpers shared by the CLI modules: default data path and error-to-exit-code mapping."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import typer

#: The mission dataset sits beside a checkout of the project.
DEFAULT_DATA_CANDIDATES = (
    Path("../shared/data/heartbeat-sounds"),
    Path(__file__).resolve().parents[4] / "shared" / "data" / "heartbeat-sounds",
)


def default_data_dir() -> Path | None:
    for candidate in DEFAULT_DATA_CANDIDATES:
        if candidate.is_dir():
            return candidate
    return None


def resolve_data_dir(data: Path | None) -> Path:
    if data is not None:
        return data
    found = default_data_dir()
    if found is None:
        raise typer.BadParameter(
            "no data folder given and ../shared/data/heartbeat-sounds not found; pass --data DIR"
        )
    return found


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn library errors into one line on stderr and exit code 2."""
    try:
        yield
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        logging.getLogger("stetho").debug("traceback", exc_info=True)
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None
