"""Helpers shared by the CLI modules: default data path, error-to-exit-code mapping, and the
command group that renders help text as plain text."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup, TyperOption

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


#: Optional packages (top-level module) and the ``stetho[EXTRA]`` that installs each.
OPTIONAL_EXTRAS = {"dask": "dask", "distributed": "dask", "mlflow": "mlflow", "optuna": "tune"}


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn library errors into one line on stderr and exit code 2.

    A missing optional package (:data:`OPTIONAL_EXTRAS`) is one line naming the extra that
    brings it; any other exception is left to :func:`stetho.cli.main` (an internal error).
    """
    try:
        yield
    except typer.Exit:  # a RuntimeError too: an exit decided inside the block stays as it is
        raise
    except ImportError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in OPTIONAL_EXTRAS:
            raise
        logging.getLogger("stetho").debug("traceback", exc_info=True)
        extra = OPTIONAL_EXTRAS[top]
        typer.secho(
            f"error: this needs the optional package {top!r}, which is not installed: "
            f"pip install 'stetho[{extra}]' (in a checkout: pip install -e '.[{extra}]')",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(code=2) from None
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        logging.getLogger("stetho").debug("traceback", exc_info=True)
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None


#: ``name`` in a docstring (reStructuredText literal), shown as 'name' in --help.
_RST_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)


def plain_help(text: str | None) -> str | None:
    """Help text as the terminal shows it: RST literals quoted, brackets kept literally.

    Docstrings are written for the API docs (double-backtick literals) and help strings hold
    ``[default: ...]``; typer renders both through Rich markup, which would print the backticks
    and swallow the bracketed text as an unknown style tag.
    """
    if text is None:
        return None
    return escape(_RST_LITERAL.sub(r"'\1'", text))


class PlainHelpGroup(TyperGroup):
    """The root command group: tidies the help of every command below it, once, on first use.

    Help text is plain text (:func:`plain_help`), and flags (``--json``, ``--help``) show no
    ``<bool>`` value type: they take no value.
    """

    _tidied = False

    # ``ctx`` is typer's vendored click Context, whose class typer does not export.
    def get_params(self, ctx: Any) -> list[Any]:
        if not self._tidied:
            self._tidied = True
            _tidy_help(self, ctx)
        return super().get_params(ctx)


def _tidy_help(command: Any, ctx: Any) -> None:
    command.help = plain_help(command.help)
    command.short_help = plain_help(command.short_help)
    help_option = command.get_help_option(ctx)
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""
        param.help = plain_help(getattr(param, "help", None))
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub, ctx)
