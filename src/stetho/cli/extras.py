"""Optional features and the pip extra that brings each.

A command that needs an optional package checks for it first, with :func:`require_extra`, so a
missing extra is one line naming the ``pip install`` that fixes it, not an ``ImportError``
traceback from deep inside the library.
"""

from __future__ import annotations

import importlib.util

from stetho.cli.common import cli_errors


class MissingExtraError(RuntimeError):
    """An optional feature was asked for without the extra that provides it."""


def extra_installed(module: str) -> bool:
    """Whether the top-level ``module`` can be imported (found without importing it)."""
    # Called through the module so tests can simulate a missing package.
    return importlib.util.find_spec(module) is not None


def require_extra(module: str, extra: str, feature: str) -> None:
    """Stop the command with exit code 2 and one line unless ``module`` is installed.

    ``feature`` names what was asked for (``"stetho tune"``, ``"--dask"``); ``extra`` is the
    ``stetho[EXTRA]`` that installs ``module``.
    """
    if extra_installed(module):
        return
    with cli_errors():
        raise MissingExtraError(
            f"{feature} needs the optional package {module!r}: "
            f"pip install 'stetho[{extra}]' (in a checkout: pip install -e '.[{extra}]')"
        )
