"""``stetho analyze`` through typer's CliRunner, on synthetic recordings with known truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import WORKSPACE
from typer.testing import CliRunner

from stetho.cli import app
from stetho.pcg.synthetic import SyntheticPCG, synthesize_pcg

runner = CliRunner()

MISSION_DIR = WORKSPACE / "shared/data/heartbeat-sounds"


def write(path: Path, s: SyntheticPCG) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, s.samples, s.sample_rate, subtype="PCM_16")
    return path


@pytest.fixture
def recordings(tmp_path: Path) -> tuple[Path, dict[str, SyntheticPCG]]:
    """A folder with two recordings (4 kHz and 44.1 kHz) and one file that is not audio."""
    truth = {
        "slow.wav": synthesize_pcg(62, duration_s=8.0, sample_rate=4000, snr_db=15, seed=1),
        "fast.wav": synthesize_pcg(118, duration_s=6.0, sample_rate=44100, snr_db=15, seed=2),
    }
    root = tmp_path / "recordings"
    for name, s in truth.items():
        write(root / name, s)
    (root / "broken.wav").write_text("this is not audio")
    return root, truth


def test_one_file_as_json(recordings: tuple[Path, dict[str, SyntheticPCG]]) -> None:
    root, truth = recordings
    result = runner.invoke(app, ["analyze", str(root / "slow.wav"), "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    s = truth["slow.wav"]
    assert d["path"] == str(root / "slow.wav")
    assert abs(d["heart_rate_bpm"] - 60 / np.median(np.diff(s.s1_onsets_s))) < 3
    assert 0 <= d["heart_rate_confidence"] <= 1 and d["usable"] is True
    assert d["quality_reasons"] == []
    onsets = np.array(d["s1"])
    inner = s.s1_onsets_s[(s.s1_onsets_s > 0.15) & (s.s1_onsets_s < 7.85)]
    assert all(np.min(np.abs(onsets - t)) < 0.06 for t in inner)
    assert [pair[0] for pair in d["s2_intervals"]] == d["s2"]
    for key in ("systole_ms", "diastole_ms", "rr_ms", "irregularity", "quality"):
        assert d[key] is not None
    assert {"count", "mean", "median", "sd", "min", "max"} <= set(d["rr_ms"])


def test_folder_as_json_lists_every_file_and_fails_on_a_bad_one(
    recordings: tuple[Path, dict[str, SyntheticPCG]],
) -> None:
    root, truth = recordings
    result = runner.invoke(app, ["analyze", str(root), "--json"])
    assert result.exit_code == 1
    items = {Path(d["path"]).name: d for d in json.loads(result.stdout)}
    assert set(items) == {"broken.wav", "fast.wav", "slow.wav"}
    assert set(items["broken.wav"]) == {"path", "error"}
    assert "cannot decode" in items["broken.wav"]["error"]
    fast = truth["fast.wav"]
    assert abs(items["fast.wav"]["heart_rate_bpm"] - 60 / np.median(np.diff(fast.s1_onsets_s))) < 3


def test_table_and_plots(recordings: tuple[Path, dict[str, SyntheticPCG]], tmp_path: Path) -> None:
    root, _ = recordings
    (root / "broken.wav").unlink()
    plots = tmp_path / "plots"
    result = runner.invoke(
        app, ["analyze", str(root), "--plot", str(plots)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    for text in ("slow.wav", "fast.wav", "yes", "HR bpm"):
        assert text in result.stdout
    assert sorted(p.name for p in plots.iterdir()) == ["fast.png", "slow.png"]
    assert (plots / "slow.png").read_bytes()[:4] == b"\x89PNG"


def test_noise_is_reported_not_usable(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).standard_normal(4000 * 6).astype(np.float32) * 0.3
    path = tmp_path / "noise.wav"
    sf.write(path, noise, 4000)
    result = runner.invoke(app, ["analyze", str(path), "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["usable"] is False and d["quality"] < 0.5 and d["quality_reasons"]


def test_missing_path_and_empty_folder_are_usage_errors(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["analyze", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "nope" in missing.output
    empty = runner.invoke(app, ["analyze", str(tmp_path)])
    assert empty.exit_code == 2 and "no audio files" in empty.output


@pytest.mark.slow
def test_a_mission_recording() -> None:
    path = MISSION_DIR / "set_a" / "normal__201108011114.wav"
    if not path.is_file():
        pytest.skip(f"mission dataset not found at {MISSION_DIR}")
    result = runner.invoke(app, ["analyze", str(path), "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert abs(d["heart_rate_bpm"] - 59.1) < 5 and d["usable"] is True


def test_method_option_picks_the_segmenter(
    recordings: tuple[Path, dict[str, SyntheticPCG]],
) -> None:
    root, truth = recordings
    s = truth["slow.wav"]
    hr = 60 / np.median(np.diff(s.s1_onsets_s))
    for method in ("lr-hsmm", "envelope"):
        result = runner.invoke(
            app, ["analyze", str(root / "slow.wav"), "--json", "--method", method]
        )
        assert result.exit_code == 0, result.output
        d = json.loads(result.stdout)
        assert d["method"] == method and abs(d["heart_rate_bpm"] - hr) < 3
    default = json.loads(runner.invoke(app, ["analyze", str(root / "slow.wav"), "--json"]).stdout)
    assert default["method"] == "lr-hsmm"
    bad = runner.invoke(app, ["analyze", str(root / "slow.wav"), "--method", "nope"])
    assert bad.exit_code == 2 and "nope" in bad.output
