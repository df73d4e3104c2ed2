"""The exit-code contract of docs/exit-codes.md, through the real entry point
(:func:`stetho.cli.main`): 0 done, 1 some recordings failed, 2 misuse or unusable input, 3 a
bug, 130 Ctrl-C. Each command's failure modes that are cheap to provoke are run here."""

from __future__ import annotations

import shutil
from pathlib import Path

import fixtures_runs
import numpy as np
import pytest
import soundfile as sf
from fixtures_runs import SYNTH_SR, beats

import stetho.scoring.backends
from stetho.cli import EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED, main
from stetho.runs.folder import RunFolder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

one_torch_thread = fixtures_runs.one_torch_thread
tiny_run = fixtures_runs.tiny_run


def _code(argv: list[str]) -> int:
    """The exit code of ``stetho ARGV`` (``main`` always ends by ``sys.exit``)."""
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in argv])
    code = done.value.code
    return 0 if code is None else int(code)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two good synthetic recordings and one empty file."""
    root = tmp_path_factory.mktemp("codes") / "recs"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        sf.write(root / f"good{i}.wav", beats(rng, SYNTH_SR, 3.0, tone_hz=60.0), SYNTH_SR)
    (root / "empty.wav").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def broken_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the run whose fold-0 weights are garbage."""
    run = tmp_path_factory.mktemp("broken") / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("scoring"))
    RunFolder(run).fold_model(0).write_bytes(b"not safetensors at all")
    return run


def test_predict_codes(tiny_run, broken_run, recordings, tmp_path, capsys):
    good = [recordings / "good0.wav", recordings / "good1.wav"]
    assert _code(["predict", tiny_run, *good, "--out", tmp_path / "a.csv", "--no-progress"]) == 0
    some_bad = ["predict", tiny_run, recordings, "--out", tmp_path / "b.csv", "--no-progress"]
    assert _code(some_bad) == 1
    assert _code(["predict", tmp_path / "no-run", *good, "--out", tmp_path / "c.csv"]) == 2
    assert _code(["predict", broken_run, *good, "--out", tmp_path / "d.csv"]) == 2
    table = tmp_path / "list.csv"
    table.write_text(f"path\n{good[0]}\n")
    before = table.read_text()
    assert _code(["predict", tiny_run, table, "--out", table]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert table.read_text() == before  # the input table is untouched


def test_export_codes(tiny_run, broken_run, tmp_path):
    assert _code(["export", tmp_path / "no-run", "--out", tmp_path / "p"]) == 2
    assert _code(["export", broken_run, "--out", tmp_path / "p"]) == 2
    assert _code(["export", tiny_run, "--out", tiny_run, "--force"]) == 2
    assert RunFolder(tiny_run).is_finished and RunFolder(tiny_run).trained_folds()


def test_explain_codes(tiny_run, recordings, tmp_path):
    one_fold = ["-m", "gradcam", "--fold", "0"]
    missing = tmp_path / "missing.wav"
    assert _code(["explain", tiny_run, missing, "--out", tmp_path / "e1", *one_fold]) == 1
    assert _code(["explain", tmp_path / "no-run", missing, "--out", tmp_path / "e2"]) == 2


def test_data_analyze_report_codes(recordings, tmp_path):
    assert _code(["data", "check", tmp_path / "nowhere"]) == 2
    assert _code(["data", "check", recordings]) == 1  # the empty file
    assert _code(["analyze", tmp_path / "nowhere"]) == 2
    assert _code(["report", tmp_path / "no-run"]) == 2
    assert _code(["predict"]) == 2  # usage: missing arguments


def test_a_bug_exits_3_and_ctrl_c_130(tiny_run, recordings, tmp_path, monkeypatch, capsys):
    argv = ["predict", tiny_run, recordings / "good0.wav", "--out", tmp_path / "x.csv"]

    def bug(*args, **kwargs):  # stetho predict loads its model (run, pipeline, stetho:NAME) here
        raise KeyError("a bug")

    monkeypatch.setattr(stetho.scoring.backends, "load_scorer", bug)
    assert _code(argv) == EXIT_INTERNAL_ERROR == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError" in err and "internal error" in err

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stetho.scoring.backends, "load_scorer", interrupt)
    assert _code(argv) == EXIT_INTERRUPTED == 130


def test_a_missing_optional_package_is_one_line(
    tiny_run, recordings, tmp_path, monkeypatch, capsys
):
    def missing(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'mlflow'", name="mlflow")

    monkeypatch.setattr(stetho.scoring.backends, "load_scorer", missing)
    argv = ["predict", tiny_run, recordings / "good0.wav", "--out", tmp_path / "x.csv"]
    assert _code(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "pip install 'stetho[mlflow]'" in err

    def core(*args, **kwargs):  # a missing core dependency is a broken install: a bug
        raise ModuleNotFoundError("No module named 'scipy'", name="scipy")

    monkeypatch.setattr(stetho.scoring.backends, "load_scorer", core)
    assert _code(argv) == EXIT_INTERNAL_ERROR
