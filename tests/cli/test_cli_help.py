"""Every command's ``--help`` reads cleanly, and an optional feature without its extra is one
line naming the ``pip install`` that brings it, before anything else runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from stetho.cli import app

#: Wide enough that Rich wraps no help text, so each string can be found whole.
WIDE = {"COLUMNS": "1000", "NO_COLOR": "1"}


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


def _flat(text: str) -> str:
    return " ".join(text.replace("``", "'").split())


COMMANDS = _commands(typer.main.get_command(app))


def test_every_command_is_reached() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    for expected in ("train", "predict", "serve", "tune", "analyze", "data check"):
        assert expected in names


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "stetho" for p, _ in COMMANDS]
)
def test_help_shows_every_help_string_as_written(path: tuple[str, ...], command: Any) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    shown = _flat(result.output)
    assert "<bool>" not in shown  # flags take no value
    assert "``" not in shown  # docstring literals are quoted, not printed as RST
    first_paragraph = (command.help or "").split("\n\n")[0]
    assert _flat(first_paragraph) in shown
    for param in command.params:
        if getattr(param, "help", None):
            # Brackets such as "[default: ...]" stay text, not a swallowed Rich style tag.
            assert _flat(param.help) in shown, f"{param.name}: help text not shown as written"


class Spy:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> None:
        self.calls += 1
        raise AssertionError("must not run without the extra")


@pytest.fixture
def without(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``without("optuna")``: make a top-level package look uninstalled."""
    real = importlib.util.find_spec

    def hide(module: str) -> None:
        def find_spec(name: str, package: str | None = None) -> Any:
            return None if name.split(".")[0] == module else real(name, package)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    return hide


def _assert_one_line(result: Any, extra: str) -> None:
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"pip install 'stetho[{extra}]'" in lines[0]
    assert "Traceback" not in result.output


def test_tune_without_optuna_says_which_extra(
    without: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    load = Spy()
    monkeypatch.setattr("stetho.config.load_config", load)
    without("optuna")
    out = tmp_path / "study"
    result = CliRunner().invoke(app, ["tune", "configs/heartbeat.yaml", "--out", str(out)])
    _assert_one_line(result, "tune")
    assert "stetho tune" in result.output and "'optuna'" in result.output
    assert load.calls == 0 and not out.exists()


def test_predict_dask_without_distributed_says_which_extra(
    without: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    score, load = Spy(), Spy()
    monkeypatch.setattr("stetho.scoring.dask.predict_files_dask", score)
    monkeypatch.setattr("stetho.runs.load_run", load)
    without("distributed")
    out = tmp_path / "preds.csv"
    args = ["predict", str(tmp_path / "run"), str(tmp_path / "a.wav"), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--dask", "local"])
    _assert_one_line(result, "dask")
    assert "--dask" in result.output
    assert score.calls == 0 and load.calls == 0 and not out.exists()


def test_serve_without_uvicorn_says_which_extra(
    without: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    create = Spy()
    monkeypatch.setattr("stetho.serve.create_app", create)
    without("uvicorn")
    result = CliRunner().invoke(app, ["serve", str(tmp_path)])
    _assert_one_line(result, "serve")
    assert create.calls == 0
