"""A killed ``predict`` or ``export`` leaves a temporary (``stetho.io``'s naming); the next
command writing into the same folder removes it and says so, and leaves alone what is not a
dead process's temporary."""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
from pathlib import Path

import fixtures_runs
import numpy as np
import pytest
import soundfile as sf
from fixtures_runs import SYNTH_SR, beats
from typer.testing import CliRunner

from stetho.cli import app
from stetho.io import TEMP_SUFFIX

pytestmark = pytest.mark.usefixtures("one_torch_thread")

one_torch_thread = fixtures_runs.one_torch_thread
tiny_run = fixtures_runs.tiny_run


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def leftover_name(target: str, pid: int) -> str:
    """What a writer of ``target`` with process id ``pid`` on this host names its temporary."""
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"
    return f".{target}.{host}-{pid}.k1ll3d{TEMP_SUFFIX}"


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "rec.wav"
    path.parent.mkdir()
    sf.write(path, beats(np.random.default_rng(0), SYNTH_SR, 3.0, tone_hz=60.0), SYNTH_SR)
    return path


def test_next_predict_removes_a_killed_predicts_temporary(tiny_run, recording, tmp_path, caplog):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    stale = out_dir / leftover_name("preds.csv", dead_pid())
    stale.write_text("path,prob_normal\nhalf a tab")
    alive = out_dir / leftover_name("preds.csv", 1)  # pid 1 exists: a live writer's file
    alive.write_text("in use")
    mine = out_dir / ".preds.csv.notes"  # not our pattern: the user's
    mine.write_text("keep")
    with caplog.at_level(logging.WARNING, logger="stetho"):
        res = CliRunner().invoke(
            app,
            ["predict", str(tiny_run), str(recording), "--out", str(out_dir / "preds.csv")],
        )
    assert res.exit_code == 0, res.output
    assert not stale.exists()
    assert alive.exists() and mine.exists()
    assert (out_dir / "preds.csv").is_file()
    said = [r.getMessage() for r in caplog.records if "leftover" in r.getMessage()]
    assert len(said) == 1 and stale.name in said[0] and "killed" in said[0]


def test_next_export_removes_a_killed_exports_folder(tiny_run, tmp_path, caplog):
    stale = tmp_path / leftover_name("pipe", dead_pid())
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"\x08half a graph")
    with caplog.at_level(logging.WARNING, logger="stetho"):
        res = CliRunner().invoke(
            app, ["export", str(tiny_run), "--out", str(tmp_path / "pipe"), "--fold", "0"]
        )
    assert res.exit_code == 0, res.output
    assert not stale.exists()
    assert (tmp_path / "pipe" / "model.onnx").is_file()
    # Nothing of this export is left beside the pipeline either.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]
    said = [r.getMessage() for r in caplog.records if "leftover" in r.getMessage()]
    assert len(said) == 1 and stale.name in said[0]
