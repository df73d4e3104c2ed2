"""``stetho data summary`` and ``stetho data check`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import BROKEN_AUDIO, ODD_AUDIO, MakeWav
from typer.testing import CliRunner

from stetho.cli import app

runner = CliRunner()


def test_summary_on_the_mission_set(mission_dir: Path) -> None:
    result = runner.invoke(app, ["data", "summary", str(mission_dir)])
    assert result.exit_code == 0, result.output
    assert "832 recordings, 585 labelled, 247 unlabelled, 345 patients" in result.output
    for line in ("artifact", "extrahls", "extrastole", "(unlabelled)"):
        assert line in result.output
    assert "44100" in result.output and "27.87" in result.output


def test_summary_json(mission_dir: Path) -> None:
    result = runner.invoke(app, ["data", "summary", str(mission_dir), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["totals"]["recordings"] == 832
    assert facts["counts"]["normal"] == {"set_a": 31, "set_b": 320}
    assert facts["counts"]["(unlabelled)"] == {"set_a": 52, "set_b": 195}


def test_summary_of_a_folder_with_a_layout(tmp_path: Path, make_wav: MakeWav) -> None:
    for name in ("normal/a.wav", "murmur/b.wav"):
        make_wav(tmp_path / name, 1.0, 4000)
    result = runner.invoke(app, ["data", "summary", str(tmp_path), "--layout", "folder"])
    assert result.exit_code == 0, result.output
    assert "2 recordings, 2 labelled, 0 unlabelled" in result.output
    bad = runner.invoke(app, ["data", "summary", str(tmp_path), "--layout", "kaggle"])
    assert bad.exit_code == 2
    assert "unknown dataset layout 'kaggle'" in bad.output


def test_check_lists_every_broken_file(audio_zoo: Path) -> None:
    result = runner.invoke(app, ["data", "check", str(audio_zoo)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("BAD ")]
    assert len(lines) == len(BROKEN_AUDIO)
    for name, (kind, words) in BROKEN_AUDIO.items():
        (line,) = [line for line in lines if line.startswith(f"BAD {name}: ")]
        assert words in line and kind in line
    for name in ODD_AUDIO:
        assert name not in result.stdout
    total = len(BROKEN_AUDIO) + len(ODD_AUDIO)
    assert (
        f"{total} file(s) checked: {len(ODD_AUDIO)} fine, {len(BROKEN_AUDIO)} bad" in result.stdout
    )


def test_check_duration_limits_and_clean_exit(tmp_path: Path, make_wav: MakeWav) -> None:
    make_wav(tmp_path / "a.wav", 2.0, 4000)
    make_wav(tmp_path / "b.wav", 5.0, 4000)
    assert runner.invoke(app, ["data", "check", str(tmp_path)]).exit_code == 0
    result = runner.invoke(app, ["data", "check", str(tmp_path), "--max-duration", "3"])
    assert result.exit_code == 1
    assert "BAD b.wav: too long: 5 s, maximum is 3 s" in result.stdout
    result = runner.invoke(app, ["data", "check", str(tmp_path), "--min-duration", "3"])
    assert "BAD a.wav: too short: 2 s, minimum is 3 s" in result.stdout


def test_check_of_a_folder_without_audio(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert result.exit_code == 2
    assert "no audio files found" in result.output
