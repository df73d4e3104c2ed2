"""``stetho predict``: inputs, one row per recording, bad files reported, ensemble and chunking."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import fixtures_runs
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from fixtures_runs import BAD_FILES
from typer.testing import CliRunner

from stetho.cli import app
from stetho.config import load_config
from stetho.data.audio import AudioError, read_audio
from stetho.decision import DecisionRule
from stetho.export import export_pipeline
from stetho.runs import load_run
from stetho.scoring.batch import (
    collect_inputs,
    output_columns,
    predict_files,
    score_file,
)
from stetho.scoring.chunking import recording_chunks
from stetho.training.experiment import run_experiment

# Shared fixtures (session-scoped, built once per test session).
dynamic_run = fixtures_runs.dynamic_run
one_torch_thread = fixtures_runs.one_torch_thread
scoring_folder = fixtures_runs.scoring_folder
sharp_run = fixtures_runs.sharp_run
tiny_run = fixtures_runs.tiny_run


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(sharp_run):
    return load_run(sharp_run)


@pytest.fixture(scope="module")
def folder_preds(run, scoring_folder):
    return predict_files(run, collect_inputs([scoring_folder]), progress=False)


def _manual_probs(run, path: Path) -> tuple[np.ndarray, tuple[int, ...]]:
    """Fold-mean of chunk-mean probabilities, computed here by hand with torch."""
    import torch

    ds = run.config.dataset
    wave = read_audio(
        path,
        sample_rate=run.sample_rate,
        min_duration_s=ds.min_duration_seconds,
        max_duration_s=ds.max_duration_seconds,
    ).samples
    chunks = recording_chunks(wave, sample_rate=run.sample_rate, prediction=run.config.prediction)
    with torch.no_grad():
        per_fold = [
            torch.softmax(m(torch.from_numpy(chunks)), dim=-1).numpy().mean(0) for m in run.models
        ]
    return np.mean(per_fold, axis=0), chunks.shape


# --- inputs -------------------------------------------------------------------------------


def test_collect_inputs_folder_file_and_table(tmp_path, scoring_folder):
    items = collect_inputs([scoring_folder])
    rel = [Path(i.path).relative_to(scoring_folder).as_posix() for i in items]
    # Recursive, sorted, audio suffixes only, hidden folders skipped; names keep the folder
    # as given.
    assert rel[:6] == [
        "a_normal.wav",
        "b_empty.wav",
        "c_murmur.flac",
        "d_stereo44k.wav",
        "e_short_ok.wav",
        "m_corrupt.wav",
    ]
    assert rel[-3:] == ["s_short.wav", "sub/n_nan.wav", "sub/z_long.wav"]
    assert not any(".hidden" in r or r.endswith(".txt") for r in rel)
    assert all(i.abs_path == str(Path(i.path).resolve()) for i in items)

    (tmp_path / "list.csv").write_text(
        f"path,other\n{scoring_folder / 'a_normal.wav'},1\nrel/x.wav,2\n007.wav,3\n"
    )
    table_items = collect_inputs([tmp_path / "list.csv", "missing.wav"])
    assert [i.path for i in table_items] == [
        str(scoring_folder / "a_normal.wav"),
        "rel/x.wav",
        "007.wav",  # read as text: not the number 7
        "missing.wav",
    ]
    assert table_items[1].abs_path == str(tmp_path / "rel" / "x.wav")
    assert table_items[3].abs_path == str(Path.cwd() / "missing.wav")

    pd.DataFrame({"audio": ["a.wav", "b.wav"]}).to_parquet(tmp_path / "ht.parquet")
    assert [i.path for i in collect_inputs([tmp_path / "ht.parquet"])] == ["a.wav", "b.wav"]
    pd.DataFrame({"file": ["a.wav"]}).to_csv(tmp_path / "bad.csv", index=False)
    # One rule with every table reader (stetho.data.readers.table.find_audio_column).
    with pytest.raises(
        ValueError, match=r"no audio column; expected one of \['path', 'audio'\].*\['file'\]"
    ):
        collect_inputs([tmp_path / "bad.csv"])


# --- one row per recording ----------------------------------------------------------------


def test_one_row_per_recording_and_bad_files_reported(run, scoring_folder, folder_preds):
    df = folder_preds
    items = collect_inputs([scoring_folder])
    assert list(df.columns) == output_columns(run.classes)
    assert list(df.columns) == [
        "path",
        "prob_murmur",
        "prob_normal",
        "label",
        "abnormal",
        "abnormal_prob",
        "outcome",
        "duration_s",
        "error",
    ]
    assert df["path"].tolist() == [i.path for i in items]
    errors = {
        Path(p).relative_to(scoring_folder).as_posix(): e
        for p, e in zip(df["path"], df["error"], strict=True)
        if e
    }
    assert sorted(errors) == sorted(BAD_FILES)
    for name, start in BAD_FILES.items():
        assert start in errors[name]
    bad = df["error"] != ""
    assert df.loc[bad, ["prob_murmur", "prob_normal", "duration_s"]].isna().all().all()
    assert df.loc[bad, "label"].isna().all() and df.loc[bad, "abnormal"].isna().all()
    good = df[~bad]
    # The files after the corrupt one in the middle are scored too.
    assert len(good) == len(df) - len(BAD_FILES) >= 5
    probs = good[["prob_murmur", "prob_normal"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)  # softmax
    assert good["label"].tolist() == [run.classes[i] for i in probs.argmax(axis=1)]
    assert good["abnormal"].tolist() == [int(1 - p >= 0.5) for p in good["prob_normal"]]
    assert probs[:, 1].std() > 0.05  # the sharpened run tells recordings apart
    for path, duration in zip(good["path"], good["duration_s"], strict=True):
        assert duration == pytest.approx(sf.info(path).duration, abs=1e-3)


def test_probabilities_are_fold_mean_of_chunk_mean(run, scoring_folder, folder_preds):
    for name in ("a_normal.wav", "d_stereo44k.wav", "e_short_ok.wav", "sub/z_long.wav"):
        expected, shape = _manual_probs(run, scoring_folder / name)
        got = folder_preds.set_index("path").loc[str(scoring_folder / name)]
        # float32 convolutions batched differently sum in another order: a few 1e-6 apart,
        # more or less with the thread count. 1e-5 is the project's parity tolerance, and
        # still far below the spread between recordings (> 0.05) that the run gives.
        np.testing.assert_allclose(
            got[["prob_murmur", "prob_normal"]].to_numpy(float), expected, atol=1e-5
        )
    # z_long: 11.7 s at 2 s chunks -> 5 full chunks + a 1.7 s tail (>= half a chunk) = 6.
    assert _manual_probs(run, scoring_folder / "sub/z_long.wav")[1] == (6, 4000)


def test_fold_option_and_ensemble_is_mean_of_folds(sharp_run, scoring_folder):
    items = collect_inputs([scoring_folder / "a_normal.wav", scoring_folder / "c_murmur.flac"])
    per_fold = [
        predict_files(load_run(sharp_run, folds=[k]), items, progress=False) for k in (0, 1)
    ]
    both = predict_files(load_run(sharp_run), items, progress=False)
    cols = ["prob_murmur", "prob_normal"]
    np.testing.assert_allclose(
        both[cols], (per_fold[0][cols].to_numpy() + per_fold[1][cols].to_numpy()) / 2, atol=1e-7
    )
    assert np.abs(per_fold[0][cols].to_numpy() - per_fold[1][cols].to_numpy()).max() > 1e-3


def test_threshold_and_batch_size_do_not_change_probabilities(run, scoring_folder, folder_preds):
    items = collect_inputs([scoring_folder])
    lo = predict_files(run, items, batch_size=3, progress=False, threshold=0.0)
    hi = predict_files(run, items, progress=False, threshold=1.0)
    ok = lo["error"] == ""
    assert (lo.loc[ok, "abnormal"] == 1).all()
    assert (hi.loc[ok, "abnormal"] == (hi.loc[ok, "prob_normal"] <= 0.0).astype(int)).all()
    cols = ["prob_murmur", "prob_normal"]
    # Other batches round differently in float32 (the sharpened heads amplify it).
    np.testing.assert_allclose(lo[cols], folder_preds[cols], atol=1e-5)
    np.testing.assert_allclose(hi[cols], folder_preds[cols], atol=1e-12)


def test_abnormal_rule():
    # abnormal = not normal; for another two-class run, abnormal = the second class.
    assert DecisionRule.default(["artifact", "murmur", "normal"]).normal_class == "normal"
    binary = DecisionRule.default(["absent", "present"])
    assert binary.normal_class == "absent"
    p = np.array([[0.3, 0.7], [0.8, 0.2]])
    np.testing.assert_allclose(binary.abnormal_probability(p), p[:, 1])
    assert DecisionRule.default(["a", "b", "c"]).normal_class is None
    assert "abnormal" not in output_columns(["a", "b", "c"])


def test_dynamic_chunking(dynamic_run, scoring_folder):
    run = load_run(dynamic_run)
    assert run.config.prediction.inference_chunk_method == "Dynamic"
    names = ["a_normal.wav", "d_stereo44k.wav", "e_short_ok.wav", "sub/z_long.wav"]
    items = collect_inputs([scoring_folder / n for n in names])
    df = predict_files(run, items, progress=False)
    shapes = {}
    for name, (_, row) in zip(names, df.iterrows(), strict=True):
        expected, shapes[name] = _manual_probs(run, scoring_folder / name)
        np.testing.assert_allclose(
            row[["prob_murmur", "prob_normal"]].to_numpy(float), expected, atol=1e-6
        )
    # Whole recordings up to 2.5 s; longer ones in 2.5 s chunks (wrap-padded tail).
    assert shapes["d_stereo44k.wav"] == (1, 4400)
    assert shapes["e_short_ok.wav"] == (1, 1800)
    assert shapes["a_normal.wav"] == (2, 5000)
    assert shapes["sub/z_long.wav"] == (5, 5000)


# --- single file (the service's helper) ---------------------------------------------------


def test_score_file_matches_predict_files(run, scoring_folder, folder_preds):
    path = scoring_folder / "c_murmur.flac"
    out = score_file(run, path)
    row = folder_preds.set_index("path").loc[str(path)]
    assert out["path"] == str(path)
    assert out["label"] == row["label"]
    assert out["abnormal"] == bool(row["abnormal"])
    assert out["duration_s"] == pytest.approx(row["duration_s"])
    assert out["probs"] == pytest.approx(
        {"murmur": row["prob_murmur"], "normal": row["prob_normal"]}, abs=1e-6
    )
    from_bytes = score_file(run, io.BytesIO(path.read_bytes()), name="upload.flac")
    assert from_bytes["path"] == "upload.flac"
    assert from_bytes["probs"] == pytest.approx(out["probs"], abs=1e-6)
    with pytest.raises(AudioError, match="cannot decode"):
        score_file(run, scoring_folder / "m_corrupt.wav")
    with pytest.raises(AudioError, match="empty"):
        score_file(run, b"")


# --- command line -------------------------------------------------------------------------


def test_cli_predict_exit_codes_and_formats(
    sharp_run, scoring_folder, folder_preds, tmp_path, monkeypatch
):
    runner = CliRunner()
    out = tmp_path / "preds.csv"
    res = runner.invoke(
        app, ["predict", str(sharp_run), str(scoring_folder), "--out", str(out), "--no-progress"]
    )
    assert res.exit_code == 1, res.output  # some files failed
    got = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert got["path"].tolist() == folder_preds["path"].tolist()
    np.testing.assert_allclose(got["prob_normal"], folder_preds["prob_normal"], atol=1e-5)
    assert got["error"].fillna("").tolist() == folder_preds["error"].tolist()

    good = [str(scoring_folder / "a_normal.wav"), str(scoring_folder / "c_murmur.flac")]
    out_pq = tmp_path / "good.parquet"
    res = runner.invoke(
        app,
        ["predict", str(sharp_run), *good, "--out", str(out_pq), "--fold", "1", "--no-progress"],
    )
    assert res.exit_code == 0, res.output
    pq = pd.read_parquet(out_pq)
    assert pq["path"].tolist() == good and (pq["error"] == "").all()

    # Inputs are repeated as typed, "./" included (score.py does the same).
    monkeypatch.chdir(scoring_folder)
    res = runner.invoke(
        app,
        ["predict", str(sharp_run), "./a_normal.wav", "sub", "--out", str(out), "--no-progress"],
    )
    assert res.exit_code == 1, res.output  # sub/n_nan.wav
    assert pd.read_csv(out)["path"].tolist() == [
        "./a_normal.wav",
        "sub/n_nan.wav",
        "sub/z_long.wav",
    ]

    res = runner.invoke(app, ["predict", str(sharp_run), *good, "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "unsupported table format" in res.output
    res = runner.invoke(app, ["predict", str(tmp_path), *good, "--out", str(out)])
    assert res.exit_code == 2 and "not a finished stetho run" in res.output
    res = runner.invoke(app, ["predict", str(sharp_run), *good, "--out", str(out), "--fold", "7"])
    assert res.exit_code == 2 and "not trained" in res.output


def test_rhythm_feature_run_reproduces_its_validation_scores(tmp_path):
    """A run whose models also take rhythm features: predict computes them as training did,
    so fold k's model reproduces the out-of-fold probabilities of fold k's recordings."""
    data = fixtures_runs.write_training_folder(tmp_path / "data")
    # No calibration: the run's rule then passes the fold models' probabilities through.
    cfg = load_config(
        None,
        [
            *fixtures_runs.TINY_OVERRIDES,
            "training.rhythm_features=true",
            "prediction.calibration=none",
        ],
    )
    run_experiment(cfg, out_dir=tmp_path / "run", data=data, progress=False)
    oof = pd.read_parquet(tmp_path / "run" / "oof_predictions.parquet")
    part = oof[oof["fold"] == 0]
    run = load_run(tmp_path / "run", folds=[0])
    assert run.n_extra_features > 0
    got = predict_files(run, collect_inputs(part["path"].tolist()), progress=False)
    cols = ["prob_murmur", "prob_normal"]
    np.testing.assert_allclose(got[cols].to_numpy(), part[cols].to_numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="rhythm features"):
        export_pipeline(tmp_path / "run", tmp_path / "pipe")
    assert not (tmp_path / "pipe").exists()


# --- unusable model files (issue #15) -----------------------------------------------------


def _corrupt(kind: str, path: Path) -> None:
    import pickle

    good = path.read_bytes()
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "foreign":  # valid safetensors, other weights
        from safetensors.numpy import save_file

        save_file({"head.weight": np.zeros((3, 3), np.float32)}, str(path))


@pytest.mark.parametrize("kind", ["random", "pickle", "empty", "truncated", "foreign"])
def test_corrupt_model_file_is_a_clear_error(kind, sharp_run, scoring_folder, tmp_path):
    from stetho.io import ArtifactError
    from stetho.runs.folder import RunFolder

    run_dir = tmp_path / "run"
    shutil.copytree(sharp_run, run_dir, ignore=shutil.ignore_patterns("scoring"))
    bad = RunFolder(run_dir).fold_model(1)
    _corrupt(kind, bad)
    with pytest.raises(ArtifactError) as caught:
        load_run(run_dir)
    assert caught.value.path == bad and "retrain" in caught.value.remedy
    runner = CliRunner()
    wav = str(scoring_folder / "a_normal.wav")
    commands = {
        "predict": ["predict", str(run_dir), wav, "--out", str(tmp_path / "p.csv")],
        "export": ["export", str(run_dir), "--out", str(tmp_path / "pipe")],
        "serve": ["serve", str(run_dir)],
    }
    for name, args in commands.items():
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (name, res.output)
        assert str(bad) in res.output and "Traceback" not in res.output, (name, res.output)
        assert "retrain" in res.output
    assert not (tmp_path / "pipe").exists() and not (tmp_path / "p.csv").exists()
