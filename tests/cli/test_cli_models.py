"""``stetho:NAME`` through the commands: predict, serve, evaluate and ``stetho models`` take a
ready model; the commands that need a training run say it is not one; nothing writes into it.

(Named test_cli_models.py, not test_models.py: tests/models/test_models.py has that name.)
"""

from __future__ import annotations

from pathlib import Path

import fixtures_runs
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from zoo_helpers import CARD, make_zoo, snapshot

from stetho.cli import app
from stetho.data.audio import read_audio
from stetho.runs import zoo as zoo_module
from stetho.scoring.backends import PipelineScorer
from stetho.serve import ServeSettings, create_app

pytestmark = pytest.mark.usefixtures("one_torch_thread")

one_torch_thread = fixtures_runs.one_torch_thread
sharp_run = fixtures_runs.sharp_run
scoring_folder = fixtures_runs.scoring_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def zoo_root(sharp_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The sharpened run: its probabilities move with the input, so equal columns mean
    # the same model scored the same audio.
    return make_zoo(tmp_path_factory.mktemp("zoo") / "zoo", sharp_run)


@pytest.fixture
def zoo(zoo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(zoo_module, "ZOO_DIR", zoo_root)
    return zoo_root


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labelled folder dataset (class subfolders normal/ and murmur/, 6 recordings each)."""
    return fixtures_runs.write_training_folder(tmp_path_factory.mktemp("labelled") / "data")


def _good_files(folder: Path) -> list[str]:
    return [str(folder / n) for n in ("a_normal.wav", "c_murmur.flac", "sub/z_long.wav")]


def test_predict_with_a_name_equals_predict_with_its_folder(zoo, scoring_folder, tmp_path):
    before = snapshot(zoo)
    files = _good_files(scoring_folder)
    by_name = runner.invoke(
        app, ["predict", "stetho:tiny", *files, "--out", str(tmp_path / "a.csv"), "--no-progress"]
    )
    assert by_name.exit_code == 0, by_name.output
    by_path = runner.invoke(
        app,
        ["predict", str(zoo / "tiny"), *files, "--out", str(tmp_path / "b.csv"), "--no-progress"],
    )
    assert by_path.exit_code == 0, by_path.output
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert a["path"].tolist() == files and (a["error"].isna() | (a["error"] == "")).all()
    probs = [c for c in a.columns if c.startswith("prob_")]
    assert probs == ["prob_murmur", "prob_normal"]
    np.testing.assert_array_equal(a[probs].to_numpy(), b[probs].to_numpy())
    pd.testing.assert_frame_equal(a, b)
    # The probabilities are the pipeline's own (not, say, a default or a constant).
    scorer = PipelineScorer(zoo / "tiny")
    waves = [read_audio(f, sample_rate=scorer.sample_rate).samples for f in files]
    np.testing.assert_allclose(a[probs].to_numpy(), scorer.predict(waves), atol=1e-6)
    assert a[probs].to_numpy().std(axis=0).max() > 1e-3  # input-sensitive scores
    assert snapshot(zoo) == before


def test_batch_options_work_with_a_name(zoo, scoring_folder, tmp_path):
    before = snapshot(zoo)
    out = tmp_path / "q.csv"
    res = runner.invoke(
        app,
        ["predict", "stetho:tiny", *_good_files(scoring_folder), "--out", str(out)]
        + ["--quality-gate", "--patient-regex", r"^(\w)_", "--no-progress"],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "q.decisions.json").is_file() and (tmp_path / "q.patients.csv").is_file()
    assert snapshot(zoo) == before


def test_predict_unknown_name_lists_the_shipped_ones_and_exits_2(zoo, scoring_folder, tmp_path):
    res = runner.invoke(
        app,
        [
            "predict",
            "stetho:heart-v9",
            *_good_files(scoring_folder),
            "--out",
            str(tmp_path / "a.csv"),
        ],
    )
    assert res.exit_code == 2
    assert "stetho:heart-v9" in res.output and "stetho:tiny" in res.output
    assert "stetho models" in res.output
    assert not (tmp_path / "a.csv").exists()


def test_predict_refuses_a_fold_and_an_output_inside_the_model(zoo, scoring_folder, tmp_path):
    before = snapshot(zoo)
    files = _good_files(scoring_folder)
    res = runner.invoke(
        app, ["predict", "stetho:tiny", *files, "--out", str(tmp_path / "a.csv"), "--fold", "0"]
    )
    assert res.exit_code == 2 and "no fold can be chosen" in res.output
    res = runner.invoke(
        app, ["predict", "stetho:tiny", *files, "--out", str(zoo / "tiny" / "preds.csv")]
    )
    assert res.exit_code == 2 and "only ever read" in res.output
    assert snapshot(zoo) == before


def test_models_lists_the_ready_models_and_shows_a_card(zoo):
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0, res.output
    assert "stetho:tiny" in res.output
    assert "Tiny test screener: two synthetic classes, not for patients" in res.output
    assert str(zoo / "tiny") in res.output
    assert "pretrained backbones" in res.output
    shown = runner.invoke(app, ["models", "show", "tiny"])
    assert shown.exit_code == 0 and shown.output == CARD
    assert runner.invoke(app, ["models", "show", "stetho:tiny"]).output == CARD
    unknown = runner.invoke(app, ["models", "show", "nope"])
    assert unknown.exit_code == 2 and "stetho:tiny" in unknown.output


def test_models_in_an_install_without_any(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo_module, "ZOO_DIR", tmp_path / "zoo")
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0
    assert res.output.count("none shipped in this install") >= 1
    assert "stetho:" not in res.output.split("pretrained backbones")[0]
    shown = runner.invoke(app, ["models", "show", "heart-v1"])
    assert shown.exit_code == 2 and "none is shipped in this install" in shown.output


def test_service_starts_from_a_name_and_scores_an_upload(zoo, scoring_folder):
    before = snapshot(zoo)
    wav = scoring_folder / "a_normal.wav"
    with TestClient(create_app(ServeSettings(model_path="stetho:tiny"))) as client:
        health = client.get("/health").json()
        assert health["model"] == "stetho:tiny" and health["kind"] == "pipeline"
        r = client.post("/v1/predict", files={"file": ("a.wav", wav.read_bytes(), "audio/wav")})
    assert r.status_code == 200, r.text
    body = r.json()
    scorer = PipelineScorer(zoo / "tiny")
    expected = scorer.predict([read_audio(wav, sample_rate=scorer.sample_rate).samples])[0]
    np.testing.assert_allclose([body["prob_murmur"], body["prob_normal"]], expected, atol=1e-6)
    assert snapshot(zoo) == before


def test_serve_command_reports_an_unknown_name(zoo):
    res = runner.invoke(app, ["serve", "stetho:nope"])
    assert res.exit_code == 2 and "stetho:tiny" in res.output


def test_evaluate_takes_a_name_and_needs_an_out(zoo, labelled, tmp_path):
    before = snapshot(zoo)
    res = runner.invoke(app, ["evaluate", "stetho:tiny", str(labelled), "--no-progress"])
    assert res.exit_code == 2 and "--out" in res.output
    res = runner.invoke(
        app,
        ["evaluate", "stetho:tiny", str(labelled), "--out", str(tmp_path / "a"), "--no-progress"],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        ["evaluate", str(zoo / "tiny"), str(labelled), "--out", str(tmp_path / "b")]
        + ["--no-progress"],
    )
    assert res.exit_code == 0, res.output
    a = pd.read_csv(tmp_path / "a" / "predictions.csv")
    b = pd.read_csv(tmp_path / "b" / "predictions.csv")
    assert len(a) == 12 and set(a["target"]) == {"normal", "murmur"}
    pd.testing.assert_frame_equal(a, b)
    res = runner.invoke(
        app,
        ["evaluate", "stetho:tiny", str(labelled), "--out", str(zoo / "tiny" / "ev")]
        + ["--no-progress"],
    )
    assert res.exit_code == 2 and "only ever read" in res.output
    assert snapshot(zoo) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "stetho:tiny"],
        ["explain", "stetho:tiny", "x.wav", "--out", "ex"],
        ["export", "stetho:tiny", "--out", "pipe"],
        ["calibrate", "stetho:tiny", "data"],
    ],
)
def test_commands_that_need_a_run_say_a_name_is_not_one(zoo, argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = snapshot(zoo)
    res = runner.invoke(app, argv)
    assert res.exit_code == 2, res.output
    assert "not a training run" in res.output and f"stetho {argv[0]}" in res.output
    assert snapshot(zoo) == before
    assert list(tmp_path.iterdir()) == []
