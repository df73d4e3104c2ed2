"""The ``stetho`` command line: a thin face over the library.

Each command group lives in its own module with a ``register(app)`` function; this module only
joins them. Library errors become a one-line message and a non-zero exit code.
"""

from __future__ import annotations

import logging

import typer

from stetho.cli import analyze as _analyze
from stetho.cli import calibrate as _calibrate
from stetho.cli import data as _data
from stetho.cli import evaluate as _evaluate
from stetho.cli import explain as _explain
from stetho.cli import export as _export
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


def main() -> None:
    app()
