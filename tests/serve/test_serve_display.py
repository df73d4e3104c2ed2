"""Class names as a person reads them (``extrahls`` is "extra heart sound"), in the service's
answers, and the API description served offline (no CDN-backed ``/docs``)."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from stetho.data.classes import DISPLAY_NAMES, display_name
from stetho.decision import DecisionRule
from stetho.scoring.core import Acceptance
from stetho.serve import ServeSettings, create_app

PASCAL = ["artifact", "extrahls", "extrastole", "murmur", "normal"]


class FixedScorer:
    """A five-class model whose answer is always ``extrahls``."""

    name = "fixed"
    kind = "run"
    classes = PASCAL
    sample_rate = 2000
    chunk_seconds = 2.0
    threshold = 0.5
    rule = DecisionRule.default(PASCAL)
    acceptance = Acceptance(min_duration_s=0.5, max_duration_s=600.0)

    def predict(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        return np.tile([0.1, 0.5, 0.1, 0.1, 0.2], (len(waves), 1))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = ServeSettings(model_path=tmp_path_factory.mktemp("model"))
    with TestClient(create_app(settings, scorer=FixedScorer())) as c:
        yield c


def test_display_names_of_the_pascal_classes() -> None:
    assert [display_name(c) for c in PASCAL] == [
        "artifact",
        "extra heart sound",
        "extrasystole",
        "murmur",
        "normal",
    ]
    assert display_name("Extrahls") == "extra heart sound"
    assert set(PASCAL) <= set(DISPLAY_NAMES)


def test_unknown_class_names_are_title_cased() -> None:
    assert display_name("mitral_valve  prolapse") == "Mitral Valve Prolapse"


def test_prediction_and_health_carry_display_names(client: TestClient) -> None:
    t = np.arange(3 * 4000) / 4000
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 60 * t)).astype(np.float32), 4000, format="WAV")
    r = client.post("/v1/predict", files={"file": ("a.wav", buf.getvalue(), "audio/wav")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] == "extrahls"  # the stored name is unchanged
    assert body["display_label"] == "extra heart sound"
    assert body["display_names"] == {c: display_name(c) for c in PASCAL}
    assert body["prob_extrahls"] == pytest.approx(0.5)
    health = client.get("/health").json()
    assert health["display_names"]["extrastole"] == "extrasystole"


def test_api_description_is_served_without_cdn_pages(client: TestClient) -> None:
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    fields = spec.json()["components"]["schemas"]["PredictionResponse"]["properties"]
    assert {"display_label", "display_names"} <= set(fields)
    # Swagger UI and ReDoc come from a CDN: blank offline, so they are not offered.
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    page = client.get("/").text
    assert 'href="/docs"' not in page and 'href="/openapi.json"' in page
