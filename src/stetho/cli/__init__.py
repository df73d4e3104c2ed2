"""The ``stetho`` command line: a thin face over the library.

Each command group lives in its own module with a ``register(app)`` function; this module only
joins them. Library errors become a one-line message and exit code 2; :func:`main` gives a
bug and Ctrl-C their own codes (docs/exit-codes.md).
"""

from __future__ import annotations

import logging
import sys
import traceback

import typer

from stetho.cli import analyze as _analyze
from stetho.cli import calibrate as _calibrate
from stetho.cli import data as _data
from stetho.cli import evaluate as _evaluate
from stetho.cli import explain as _explain
from stetho.cli import export as _export
from stetho.cli import models as _models
from stetho.cli import predict as _predict
from stetho.cli import pretrain as _pretrain
from stetho.cli import report as _report
from stetho.cli import serve as _serve
from stetho.cli import train as _train
from stetho.cli import tune as _tune
from stetho.cli.common import PlainHelpGroup

app = typer.Typer(
    name="stetho",
    cls=PlainHelpGroup,
    help="Heart-sound classification: train, validate, explain, score and serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for _module in (
    _analyze,
    _calibrate,
    _data,
    _evaluate,
    _explain,
    _export,
    _models,
    _predict,
    _pretrain,
    _report,
    _serve,
    _train,
    _tune,
):
    _module.register(app)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )


#: Exit codes besides the contract's 0, 1 and 2 (docs/exit-codes.md): a bug, and Ctrl-C
#: (the shell's 128 + SIGINT).
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> None:
    """The ``stetho`` entry point: the commands' own exit codes (0, 1, 2), and distinct ones
    for what no command decided: :data:`EXIT_INTERNAL_ERROR` for an unexpected exception
    (with its traceback), :data:`EXIT_INTERRUPTED` for Ctrl-C."""
    try:
        app(args=argv)
    except KeyboardInterrupt:  # typer maps one inside a command to 130; this is the rest
        typer.secho("interrupted", err=True, fg=typer.colors.YELLOW)
        sys.exit(EXIT_INTERRUPTED)
    except Exception:
        traceback.print_exc()
        typer.secho(
            "internal error: this is a bug in stetho, not a problem with your input; "
            "please report it with the traceback above",
            err=True,
            fg=typer.colors.RED,
        )
        sys.exit(EXIT_INTERNAL_ERROR)
