"""One model, one decision: ``predict``, the service (uploads and the live stream), Dask, the
metrics' abnormal rule and the exported ``score.py`` give the same probabilities and decisions
on real mission recordings, under a CrossEntropy run, a BCE run, a hand-written rule with
calibration and an abstain band, and a rule fitted by the library (stetho calibrate) with
both."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import fixtures_runs
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from stetho.decision import Calibration, DecisionRule
from stetho.export import export_pipeline
from stetho.io import atomic_write_json
from stetho.metrics import normal_vs_abnormal
from stetho.runs import load_run
from stetho.runs.folder import RunFolder
from stetho.scoring import RunScorer, run_rule
from stetho.scoring.batch import collect_inputs, predict_files
from stetho.serve import ServeSettings, create_app

bce_run = fixtures_runs.bce_run
one_torch_thread = fixtures_runs.one_torch_thread
sharp_run = fixtures_runs.sharp_run
tiny_run = fixtures_runs.tiny_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Same backend (torch): predict, the service, Dask and the metrics.
SAME = 1e-5
#: torch vs onnxruntime (score.py): as close on these recordings.
ONNX = 1e-5
CLASSES = ["murmur", "normal"]
PROBS = [f"prob_{c}" for c in CLASSES]


@pytest.fixture(scope="module")
def recordings(mission_dir, tmp_path_factory) -> Path:
    return fixtures_runs.mission_recordings(mission_dir, tmp_path_factory.mktemp("parity") / "r")


def _score_py(pipe: Path):
    """``score.py`` imported from the exported folder (as it runs there, without stetho)."""
    spec = importlib.util.spec_from_file_location(f"score_{pipe.parent.name}", pipe / "score.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _service_rows(run_dir: Path, files: list[Path]) -> dict[str, dict]:
    # The model's own limits, set explicitly: the service is then no stricter than predict.
    settings = ServeSettings(model_path=run_dir, min_duration_s=0.5, max_duration_s=600.0)
    rows = {}
    with TestClient(create_app(settings)) as client:
        for f in files:
            r = client.post("/v1/predict", files={"file": (f.name, f.read_bytes(), "audio/wav")})
            rows[str(f)] = r.json() if r.status_code == 200 else {"status": r.status_code}
    return rows


def _check_same(df: pd.DataFrame, other: pd.DataFrame, tol: float) -> None:
    assert other["path"].tolist() == df["path"].tolist()
    assert other["error"].fillna("").tolist() == df["error"].fillna("").tolist()
    ok = (df["error"] == "").to_numpy()
    np.testing.assert_allclose(
        other.loc[ok, PROBS].to_numpy(float), df.loc[ok, PROBS].to_numpy(float), atol=tol
    )
    np.testing.assert_allclose(
        other.loc[ok, "abnormal_prob"].to_numpy(float),
        df.loc[ok, "abnormal_prob"].to_numpy(float),
        atol=tol,
    )
    for column in ("label", "abnormal", "outcome"):
        assert other.loc[ok, column].astype(str).tolist() == df.loc[ok, column].astype(str).tolist()


def _all_paths(run_dir: Path, recordings: Path, tmp_path: Path, *, dask: bool) -> pd.DataFrame:
    """Score with every path; assert they agree with predict; return predict's table."""
    items = collect_inputs([recordings])
    run = load_run(run_dir)
    rule = run_rule(run)
    df = predict_files(run, items, progress=False)
    ok = (df["error"] == "").to_numpy()
    assert ok.sum() >= 8, df[["path", "error"]]

    # The service, upload by upload.
    rows = _service_rows(run_dir, [Path(p) for p in df["path"]])
    for _, row in df.iterrows():
        body = rows[row["path"]]
        if row["error"]:
            assert body.get("status") in (415, 422)
            continue
        np.testing.assert_allclose([body[c] for c in PROBS], row[PROBS].to_numpy(float), atol=SAME)
        assert body["abnormal_prob"] == pytest.approx(row["abnormal_prob"], abs=SAME)
        assert (body["label"], body["abnormal"], body["outcome"]) == (
            row["label"],
            bool(row["abnormal"]),
            row["outcome"],
        )

    # The live stream: the first chunk of each recording as one window, sent at the model's
    # rate (nothing to resample), against predict on that same chunk.
    _check_stream(run_dir, run, df.loc[ok, "path"].tolist(), tmp_path / "stream")
    # Dask, on an in-process cluster.
    if dask:
        from distributed import Client

        from stetho.scoring.dask import predict_files_dask

        with Client(processes=False, n_workers=1, threads_per_worker=1) as client:
            _check_same(
                df,
                predict_files_dask(run_dir, items, scheduler=client, progress=False),
                SAME,
            )

    # The metrics' normal-vs-abnormal rule, on the raw fold-mean probabilities.
    raw = RunScorer(run).predict([_wave(run, p) for p in df.loc[ok, "path"]])
    truth = np.array(
        [
            "normal" if Path(p).name.split("_", 2)[-1].startswith("normal") else "abnormal"
            for p in df.loc[ok, "path"]
        ],
        dtype=object,
    )
    figures = normal_vs_abnormal(truth, raw, CLASSES, rule=rule)
    flags = df.loc[ok, "abnormal"].to_numpy(int).astype(bool)
    is_abn = truth != "normal"
    if is_abn.any():
        assert figures["sensitivity"] == pytest.approx((flags & is_abn).sum() / is_abn.sum())
    if (~is_abn).any():
        assert figures["specificity"] == pytest.approx((~flags & ~is_abn).sum() / (~is_abn).sum())
    np.testing.assert_allclose(
        rule.abnormal_probability(rule.probabilities(raw)),
        df.loc[ok, "abnormal_prob"].to_numpy(float),
        atol=SAME,
    )

    # The exported score.py, imported from its folder.
    pipe = export_pipeline(run_dir, tmp_path / "pipe")
    score = _score_py(pipe)
    pipeline = score.Pipeline(pipe, threads=1)
    got = pd.DataFrame(
        score.score(pipeline, score.collect_inputs([str(recordings)]), progress=False),
        columns=score.output_columns(pipeline),
    )
    assert list(got.columns) == list(df.columns)
    got["error"] = got["error"].fillna("")
    _check_same(df, got, ONNX)
    return df


def _check_stream(run_dir: Path, run, paths: list[str], folder: Path) -> None:
    folder.mkdir()
    sr = run.sample_rate
    chunk = float(run.config.prediction.inference_chunk_seconds)
    n = round(chunk * sr)
    waves = {p: _wave(run, p)[:n] for p in paths}
    waves = {p: w for p, w in waves.items() if len(w) == n}
    assert len(waves) >= 4
    files = []
    for i, w in enumerate(waves.values()):
        files.append(folder / f"chunk{i:02d}.wav")
        sf.write(files[-1], w, sr, subtype="FLOAT")
    expected = predict_files(run, collect_inputs(files), progress=False)
    settings = ServeSettings(model_path=run_dir, min_duration_s=0.5, max_duration_s=600.0)
    start = {"type": "start", "sample_rate": sr, "encoding": "float32_le"}
    start |= {"window_seconds": chunk, "hop_seconds": chunk}
    with TestClient(create_app(settings)) as client:
        for w, (_, row) in zip(waves.values(), expected.iterrows(), strict=True):
            with client.websocket_connect("/v1/stream") as ws:
                ws.send_text(json.dumps(start))
                assert ws.receive_json()["type"] == "ready"
                ws.send_bytes(w.astype("<f4").tobytes())
                ws.send_text('{"type": "stop"}')
                messages = []
                while (m := ws.receive_json())["type"] != "end":
                    messages.append(m)
            (window,) = [m for m in messages if m["type"] == "prediction"]
            np.testing.assert_allclose(
                [window["probs"][c] for c in CLASSES], row[PROBS].to_numpy(float), atol=SAME
            )
            assert window["abnormal_prob"] == pytest.approx(row["abnormal_prob"], abs=SAME)
            assert (window["label"], window["abnormal"], window["outcome"]) == (
                row["label"],
                bool(row["abnormal"]),
                row["outcome"],
            )


def _wave(run, path: str) -> np.ndarray:
    from stetho.scoring.batch import read_for

    return read_for(RunScorer(run), path)


@pytest.mark.parametrize("kind", ["CrossEntropy", "BCE"])
def test_every_path_decides_alike(kind, sharp_run, bce_run, recordings, tmp_path):
    run_dir = sharp_run if kind == "CrossEntropy" else bce_run
    df = _all_paths(run_dir, recordings, tmp_path, dask=True)
    ok = df["error"] == ""
    sums = df.loc[ok, PROBS].sum(axis=1)
    np.testing.assert_allclose(sums, 1.0, atol=1e-6)  # BCE: renormalised, as the rule says
    # Label and flag agree on every row.
    assert (df.loc[ok, "label"].eq("normal") == df.loc[ok, "abnormal"].eq(0)).all()


def test_calibrated_rule_with_abstain_band_decides_alike(sharp_run, recordings, tmp_path):
    run_dir = tmp_path / "calibrated"
    shutil.copytree(sharp_run, run_dir, ignore=shutil.ignore_patterns("scoring"))
    base = predict_files(load_run(run_dir), collect_inputs([recordings]), progress=False)
    q = base.loc[base["error"] == "", "abnormal_prob"].to_numpy(float)
    lo, hi = np.quantile(q, [0.3, 0.6])
    rule = DecisionRule(
        CLASSES,
        "normal",
        calibration=Calibration("vector", (0.7, 1.3), (0.2, -0.1)),
        threshold=float(np.median(q)),
        abstain_band=(float(lo), float(hi)),
    )
    atomic_write_json(RunFolder(run_dir).decision, rule.to_dict())
    assert run_rule(load_run(run_dir)) == rule
    df = _all_paths(run_dir, recordings, tmp_path, dask=False)
    outcomes = set(df.loc[df["error"] == "", "outcome"])
    assert "re-record" in outcomes and len(outcomes) >= 2
    prep = json.loads((tmp_path / "pipe" / "preprocess.json").read_text())
    assert DecisionRule.from_dict(prep["decision"]) == rule


def test_fitted_rule_with_calibration_and_band_decides_alike(sharp_run, recordings, tmp_path):
    """A rule the library fitted (``stetho calibrate``: vector scaling, a MAcc threshold and a
    band holding 40 % of the recordings), not one written by hand."""
    from stetho.scoring.calibrate import calibrate_run

    table = fixtures_runs.labelled_table(recordings, tmp_path / "labelled.csv")
    run_dir = calibrate_run(
        sharp_run,
        table,
        out=tmp_path / "fitted",
        layout="table",
        overrides={"calibration": "vector", "abstain_coverage": 0.6},
    )
    rule = run_rule(load_run(run_dir))
    assert rule.calibration is not None and rule.calibration.method.endswith("vector")
    assert rule.abstain_band is not None
    df = _all_paths(run_dir, recordings, tmp_path, dask=True)
    outcomes = set(df.loc[df["error"] == "", "outcome"])
    assert "re-record" in outcomes and len(outcomes) >= 2
    prep = json.loads((tmp_path / "pipe" / "preprocess.json").read_text())
    assert DecisionRule.from_dict(prep["decision"]) == rule
