"""The HTTP service through FastAPI's TestClient: scoring, every error code, the page, the CLI.

One tiny run is trained per module on real mission recordings (6 normal, 6 murmur from
set_b, copied into class folders): about five seconds on two cores.
"""

from __future__ import annotations

import pickle
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner

from stetho.cli import app as cli_app
from stetho.data.audio import read_audio
from stetho.decision import DecisionRule
from stetho.scoring.backends import PipelineScorer, RunScorer
from stetho.scoring.core import Acceptance
from stetho.serve import ServeSettings, create_app
from stetho.serve.app import MULTIPART_SLACK_BYTES, STATIC_DIR


@pytest.fixture(scope="module")
def run_dir(mission_run: Path) -> Path:
    return mission_run


@pytest.fixture(scope="module")
def murmur_wav(mission_dir: Path) -> Path:
    """A real murmur recording the tiny run was not trained on (4 kHz, 5.6 s)."""
    return mission_dir / "set_b" / "murmur__122_1306325762831_C.wav"


@pytest.fixture(scope="module")
def client(run_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServeSettings(model_path=run_dir))) as c:
        yield c


def upload(
    client: TestClient,
    data: bytes,
    *,
    name: str = "x.wav",
    media: str = "audio/wav",
    url: str = "/v1/predict",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return client.post(url, files={"file": (name, data, media)}, headers=headers or {})


def wav_bytes(x: np.ndarray, sr: int, *, subtype: str = "PCM_16") -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def tone(seconds: float, sr: int = 4000) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 60 * t) * (np.sin(2 * np.pi * 1.2 * t) > 0.8)).astype(
        np.float32
    ) + np.float32(0.01) * np.sin(2 * np.pi * 150 * t).astype(np.float32)


# --- health, scoring ----------------------------------------------------------------------


def test_health_describes_the_model(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["kind"] == "run"
    assert body["classes"] == ["murmur", "normal"]
    assert body["sample_rate"] == 2000
    assert body["auth_required"] is False
    assert body["max_upload_bytes"] == 20_000_000
    assert body["alert_threshold"] == 0.5  # the run's prediction.probability_threshold


def test_predict_scores_a_real_murmur_recording(
    client: TestClient, run_dir: Path, murmur_wav: Path
) -> None:
    r = upload(client, murmur_wav.read_bytes(), name=murmur_wav.name)
    assert r.status_code == 200, r.text
    body = r.json()
    probs = np.array([body["prob_murmur"], body["prob_normal"]])
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)  # softmax over two classes
    assert body["label"] == ["murmur", "normal"][int(probs.argmax())]
    assert body["abnormal_prob"] == pytest.approx(1 - body["prob_normal"], abs=1e-5)
    assert body["abnormal"] is (body["abnormal_prob"] >= 0.5)
    assert body["duration_s"] == pytest.approx(sf.info(murmur_wav).duration, abs=1e-3)
    assert body["sample_rate"] == 4000
    assert body["filename"] == murmur_wav.name
    assert body["detail"] is None
    analysis = body["analysis"]
    assert 40 < analysis["heart_rate_bpm"] < 200
    assert isinstance(analysis["usable"], bool)
    assert 0.0 <= analysis["quality"] <= 1.0
    assert len(analysis["s1"]) >= 3 and all(0 <= t <= body["duration_s"] for t in analysis["s1"])
    # The service gives the same probabilities as the library on the same decoded audio.
    scorer = RunScorer(run_dir)
    audio = read_audio(murmur_wav, sample_rate=scorer.sample_rate)
    expected = scorer.predict([audio.samples])[0]
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_predict_detail_gives_drawing_data(client: TestClient, murmur_wav: Path) -> None:
    r = upload(client, murmur_wav.read_bytes(), url="/v1/predict?detail=true")
    assert r.status_code == 200, r.text
    body = r.json()
    wave = body["detail"]["waveform"]
    assert len(wave["min"]) == len(wave["max"]) <= 1200
    assert all(lo <= hi for lo, hi in zip(wave["min"], wave["max"], strict=True))
    assert len(wave["min"]) * wave["seconds_per_point"] == pytest.approx(
        body["duration_s"], abs=2 * wave["seconds_per_point"]
    )
    spec = body["detail"]["spectrogram"]
    levels = np.array(spec["levels"])
    assert levels.shape[0] == 65  # n_fft 128 -> 65 rows, 0 Hz to Nyquist
    assert 10 < levels.shape[1] <= 360
    assert levels.min() >= 0 and levels.max() == 255
    assert spec["max_frequency_hz"] == 1000


def test_abnormal_probability_rules() -> None:
    # The service decides with the model's DecisionRule (no fallback of its own).
    p = np.array([0.1, 0.2, 0.7])
    rule = DecisionRule.default(["murmur", "artifact", "normal"])
    assert rule.abnormal_probability(rule.probabilities(p))[0] == pytest.approx(0.3)
    binary = DecisionRule.default(["a", "b"])
    assert binary.abnormal_probability(binary.probabilities(p[:2] / 0.3))[0] == pytest.approx(2 / 3)
    none = DecisionRule.default(["a", "b", "c"])
    assert np.isnan(none.abnormal_probability(p)).all()
    assert none.decide(p)[0].abnormal is None and none.decide(p)[0].label == "c"


# --- errors -------------------------------------------------------------------------------


def _nan_wav() -> bytes:
    x = np.full(8000, 0.1, dtype=np.float32)
    x[100:110] = np.nan
    return wav_bytes(x, 4000, subtype="FLOAT")


@pytest.mark.parametrize(
    ("name", "make", "media", "status", "error", "words"),
    [
        (
            "notes.wav",
            lambda: b"this is not audio at all\n" * 20,
            "audio/wav",
            415,
            "decode_error",
            "cannot decode",
        ),
        ("notes.txt", lambda: b"hello", "text/plain", 415, "unsupported_media_type", "text/plain"),
        ("photo.png", lambda: b"\x89PNG\r\n", "image/png", 415, "unsupported_media_type", "image"),
        ("empty.wav", lambda: b"", "audio/wav", 422, "empty", "empty"),
        (
            "silent.wav",
            lambda: wav_bytes(np.zeros(8000), 4000),
            "audio/wav",
            422,
            "silent",
            "silence",
        ),
        (
            "short.wav",
            lambda: wav_bytes(tone(0.4), 4000),
            "audio/wav",
            422,
            "too_short",
            "too short",
        ),
        ("nan.wav", _nan_wav, "audio/wav", 422, "non_finite", "NaN"),
        (
            "long.wav",
            lambda: wav_bytes(tone(121.0, 2000), 2000),
            "audio/wav",
            422,
            "too_long",
            "too long",
        ),
    ],
)
def test_bad_uploads_get_a_named_reason(
    client: TestClient,
    name: str,
    make: Callable[[], bytes],
    media: str,
    status: int,
    error: str,
    words: str,
) -> None:
    r = upload(client, make(), name=name, media=media)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error
    assert words in body["detail"]


def test_missing_file_field_is_422(client: TestClient) -> None:
    r = client.post("/v1/predict", data={"other": "x"})
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request"
    assert "file" in r.json()["detail"]


@pytest.fixture(scope="module")
def small_client(run_dir: Path) -> Iterator[TestClient]:
    """Limits small enough to test cheaply: 100 kB uploads, 4 s recordings."""
    settings = ServeSettings(model_path=run_dir, max_upload_bytes=100_000, max_duration_s=4.0)
    with TestClient(create_app(settings)) as c:
        yield c


def test_oversize_upload_is_413(small_client: TestClient) -> None:
    # Just over the file limit, within the multipart slack: refused after parsing.
    r = upload(small_client, wav_bytes(tone(3.0, 20_000), 20_000))  # 120 kB
    assert r.status_code == 413
    assert r.json()["error"] == "too_large"
    assert "100000" in r.json()["detail"]
    # Far over: refused from Content-Length before the body is read.
    big = b"\0" * (100_000 + MULTIPART_SLACK_BYTES + 10)
    r = upload(small_client, big)
    assert r.status_code == 413
    assert r.json()["error"] == "too_large"


def test_oversize_chunked_upload_is_413(small_client: TestClient) -> None:
    """A body sent without Content-Length is counted as it arrives."""
    boundary = "xyz"

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"'
            "\r\nContent-Type: audio/wav\r\n\r\n"
        ).encode()
        for _ in range(40):
            yield b"\0" * 8192
        yield f"\r\n--{boundary}--\r\n".encode()

    r = small_client.post(
        "/v1/predict",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413
    assert r.json()["error"] == "too_large"


def test_duration_limit_from_settings(small_client: TestClient) -> None:
    r = upload(small_client, wav_bytes(tone(5.0), 4000))
    assert r.status_code == 422
    assert r.json()["error"] == "too_long"
    assert "maximum is 4 s" in r.json()["detail"]
    assert upload(small_client, wav_bytes(tone(3.0), 4000)).status_code == 200


# --- API key ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_client(run_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServeSettings(model_path=run_dir, api_key="s3cret"))) as c:
        yield c


def test_api_key_is_required_when_set(keyed_client: TestClient, murmur_wav: Path) -> None:
    data = murmur_wav.read_bytes()
    for headers in ({}, {"X-API-Key": "wrong"}):
        r = upload(keyed_client, data, headers=headers)
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized"
    assert upload(keyed_client, data, headers={"X-API-Key": "s3cret"}).status_code == 200
    health = keyed_client.get("/health")
    assert health.status_code == 200 and health.json()["auth_required"] is True
    assert keyed_client.get("/").status_code == 200


def test_settings_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServeSettings(model_path=tmp_path, api_key="  ").api_key is None
    monkeypatch.setenv("STETHO_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("STETHO_API_KEY", "from-env")
    s = ServeSettings(model_path=tmp_path)
    assert s.max_upload_bytes == 1234 and s.auth_required
    with pytest.raises(ValidationError, match="webhook_url"):
        ServeSettings(model_path=tmp_path, webhook_url="ftp://example")
    with pytest.raises(ValidationError, match="min_duration_s"):
        ServeSettings(model_path=tmp_path, min_duration_s=10, max_duration_s=5)
    with pytest.raises(ValidationError, match="alert_windows"):
        ServeSettings(model_path=tmp_path, alert_windows=0)


# --- page, docs ---------------------------------------------------------------------------


def test_page_and_static_files_are_served_offline(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert 'id="file"' in r.text and "/static/app.js" in r.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    # No external resource anywhere: the page must work without a network.
    for path in STATIC_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"https?://", text), f"{path.name} refers to an external URL"
        assert "@import" not in text


def test_openapi_lists_the_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/health", "/v1/predict"} <= set(spec["paths"])
    responses = spec["paths"]["/v1/predict"]["post"]["responses"]
    assert {"200", "401", "413", "415", "422"} <= set(responses)


# --- loading, workers ---------------------------------------------------------------------


def test_models_load_without_pickle(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model file was unpickled")

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    app = create_app(ServeSettings(model_path=run_dir))
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200


def test_pipeline_folder_is_served_with_onnxruntime(
    run_dir: Path, murmur_wav: Path, tmp_path: Path
) -> None:
    from stetho.export import export_pipeline

    pipe = export_pipeline(run_dir, tmp_path / "pipe")
    with TestClient(create_app(ServeSettings(model_path=pipe))) as c:
        assert c.get("/health").json()["kind"] == "pipeline"
        body = upload(c, murmur_wav.read_bytes()).json()
    scorer = RunScorer(run_dir)
    expected = scorer.predict([read_audio(murmur_wav, sample_rate=2000).samples])[0]
    np.testing.assert_allclose([body["prob_murmur"], body["prob_normal"]], expected, atol=1e-4)
    assert isinstance(PipelineScorer(pipe).threshold, float)


class SlowScorer:
    """Takes 0.6 s per call: shows whether scoring blocks the event loop."""

    name = "slow"
    kind = "run"
    classes = ["murmur", "normal"]
    sample_rate = 2000
    chunk_seconds = 2.0
    threshold = 0.5
    rule = DecisionRule.default(["murmur", "normal"])
    acceptance = Acceptance(min_duration_s=0.5, max_duration_s=600.0)

    def predict(self, waves: Sequence[np.ndarray], *, batch_size: int = 64) -> np.ndarray:
        time.sleep(0.6)
        return np.tile([0.25, 0.75], (len(waves), 1))


def test_scoring_runs_off_the_event_loop(tmp_path: Path) -> None:
    app = create_app(ServeSettings(model_path=tmp_path, workers=1), scorer=SlowScorer())
    data = wav_bytes(tone(3.0), 4000)
    with TestClient(app) as c:
        results: list[int] = []
        worker = threading.Thread(target=lambda: results.append(upload(c, data).status_code))
        worker.start()
        time.sleep(0.15)
        t0 = time.perf_counter()
        assert c.get("/health").status_code == 200
        health_s = time.perf_counter() - t0
        worker.join(timeout=10)
    assert results == [200]
    assert health_s < 0.4, f"/health waited {health_s:.2f} s behind a scoring call"


# --- CLI ----------------------------------------------------------------------------------


def test_cli_serve_builds_the_app_from_flags_and_env(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    monkeypatch.setenv("STETHO_MAX_UPLOAD_BYTES", "4321")
    result = CliRunner().invoke(
        cli_app, ["serve", str(run_dir), "--port", "9123", "--api-key", "k", "--alert-windows", "2"]
    )
    assert result.exit_code == 0, result.output
    assert calls[0]["host"] == "127.0.0.1" and calls[0]["port"] == 9123
    with TestClient(calls[0]["app"]) as c:
        health = c.get("/health").json()
    assert health["auth_required"] is True
    assert health["alert_windows"] == 2
    assert health["max_upload_bytes"] == 4321


def test_cli_serve_refuses_a_bad_model_path(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["serve", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "no such folder" in result.output
    result = CliRunner().invoke(cli_app, ["serve", str(tmp_path), "--alert-windows", "0"])
    assert result.exit_code == 2
    assert "alert_windows" in result.output
