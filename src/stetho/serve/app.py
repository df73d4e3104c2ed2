"""The FastAPI app: ``create_app(settings)`` builds it around one model loaded once.

Routes:

* ``GET /health``: liveness and what is served (no key needed);
* ``POST /v1/predict``: score one uploaded recording (multipart field ``file``);
* ``WS /v1/stream``: score a live PCM stream, with alerts (see :mod:`stetho.serve.streaming`);
* ``GET /``: the web page (static files under ``/static``, no external resources);
* ``GET /openapi.json``: the API description. FastAPI's ``/docs`` and ``/redoc`` are off: they
  load Swagger UI / ReDoc from a CDN and would be blank on an offline ward network.

Scoring is CPU-bound and runs in worker threads, at most ``settings.workers`` at a time, never
on the event loop. Library errors map to HTTP codes here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import secrets
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio
import httpx
import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

import stetho
from stetho.data.audio import (
    Audio,
    AudioError,
    DecodeError,
    EmptyFileError,
    NonFiniteError,
    SilentError,
    TooLongError,
    TooShortError,
    read_audio,
)
from stetho.decision import DecisionRule
from stetho.scoring.backends import Scorer, load_scorer, score_wave
from stetho.scoring.core import Acceptance, Scored
from stetho.serve.schemas import (
    Detail,
    ErrorResponse,
    HealthResponse,
    HeartAnalysis,
    PredictionResponse,
    error_json,
)
from stetho.serve.settings import ServeSettings
from stetho.serve.streaming import CLOSE_POLICY, StreamConfig, Webhook, run_stream

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")

#: Set to ``1`` only by ``benchmarks/bench_serve_soak.py``: the app then traces Python
#: allocations and answers ``GET /debug/memory`` (loopback clients only). Never in production:
#: tracing slows every allocation and the endpoint describes the server's internals.
DEBUG_MEMORY_ENV = "STETHO_DEBUG_MEMORY"

#: Room for the multipart envelope around the file (boundaries, part headers, filename).
MULTIPART_SLACK_BYTES = 64 * 1024

#: Declared upload types accepted besides ``audio/*`` (generic binary, Ogg containers).
BINARY_TYPES = frozenset(
    {"application/octet-stream", "binary/octet-stream", "application/ogg", "video/ogg"}
)

#: Which status and code each audio problem gets.
AUDIO_ERRORS: dict[type[AudioError], tuple[int, str]] = {
    DecodeError: (415, "decode_error"),
    EmptyFileError: (422, "empty"),
    NonFiniteError: (422, "non_finite"),
    SilentError: (422, "silent"),
    TooShortError: (422, "too_short"),
    TooLongError: (422, "too_long"),
}

#: The page may only talk to its own origin: no CDN, no third-party anything.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' blob:; connect-src 'self'; "
        "img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


API_DESCRIPTION = """
Score heart-sound recordings (`POST /v1/predict`) or a live PCM stream (`WS /v1/stream`,
not listed below: OpenAPI does not describe WebSockets). Stream protocol: send
`{"type": "start", "sample_rate": 4000, "encoding": "pcm_s16le"}`, then binary PCM frames;
receive `ready`, then a `prediction` per hop and an `alert` (`raised`/`cleared`) when the
abnormal probability stays at or above the threshold for K windows; send `{"type": "stop"}`
to end. Malformed input closes the socket with 1003, 1007, 1008 or 1009 and a reason.
The web page is at `/`. Full reference: docs/serving.md.
"""


class ServeError(StarletteHTTPException):
    """An HTTP error with a machine code; rendered as :class:`ErrorResponse`."""

    def __init__(self, status_code: int, error: str, detail: str) -> None:
        super().__init__(status_code=status_code, detail=detail)
        self.error = error


class BodyLimit:
    """Refuse a request body over ``max_bytes`` with 413, before it is stored anywhere.

    A declared ``Content-Length`` over the limit is answered at once, unread; a body sent
    without one (chunked) is counted as it arrives and refused when it passes the limit.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self, size: str) -> ServeError:
        return ServeError(
            413, "too_large", f"request body of {size} bytes exceeds the limit of {self.max_bytes}"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            exc = self._error(declared)
            body = error_json(exc.error, str(exc.detail))
            await JSONResponse(body, status_code=413, headers={"Connection": "close"})(
                scope, receive, send
            )
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._error(f"more than {seen}")
            return message

        await self.app(scope, counted, send)


def service_acceptance(settings: ServeSettings, scorer: Scorer) -> tuple[Acceptance, list[str]]:
    """The model's acceptance rule narrowed by the service's limits, and which limits are the
    service's. A limit set explicitly (flag or environment) that is looser than the model's is
    refused (``ValueError``); a default that is looser gives way to the model's."""
    explicit = settings.model_fields_set
    limits: dict[str, float | int | None] = {}
    model = scorer.acceptance
    for name in ("min_duration_s", "max_duration_s"):
        given = float(getattr(settings, name))
        model_value = getattr(model, name)
        looser = model_value is not None and (
            given < model_value if name == "min_duration_s" else given > model_value
        )
        limits[name] = given if (name in explicit or not looser) else None
    limits["max_upload_bytes"] = settings.max_upload_bytes
    return model.narrowed(**limits)


@dataclass
class Service:
    """What every request shares: settings, the model, the worker pool and the webhook."""

    settings: ServeSettings
    scorer: Scorer
    limiter: anyio.CapacityLimiter
    webhook: Webhook | None
    #: The model's acceptance rule, with the service's stricter limits.
    acceptance: Acceptance
    #: The names of the limits that are the service's (stricter than the model's).
    stricter: list[str]

    @property
    def rule(self) -> DecisionRule:
        """The model's decision rule (with the service's threshold when it sets one)."""
        return self.scorer.rule.with_threshold(self.settings.alert_threshold)

    @property
    def threshold(self) -> float:
        """The abnormal-probability threshold: the service's, else the model's rule's."""
        return self.rule.threshold

    def key_ok(self, given: str | None) -> bool:
        expected = self.settings.api_key
        if expected is None:
            return True
        return given is not None and secrets.compare_digest(
            given.encode(), expected.get_secret_value().encode()
        )

    async def score(self, wave: np.ndarray) -> Scored:
        """Score one streaming window in the worker pool."""
        rule = self.rule
        return await anyio.to_thread.run_sync(
            lambda: score_wave(self.scorer, wave, rule=rule), limiter=self.limiter
        )

    async def score_upload(self, data: bytes, *, name: str, detail: bool) -> tuple[Audio, Scored]:
        """Decode (raising :class:`AudioError`) and score an upload, in one worker-pool turn."""

        rule = self.rule

        def work() -> tuple[Audio, Scored]:
            audio = read_audio(
                data,
                sample_rate=self.scorer.sample_rate,
                min_duration_s=self.acceptance.min_duration_s,
                max_duration_s=self.acceptance.max_duration_s,
                name=name,
            )
            scored = score_wave(self.scorer, audio.samples, name=name, rule=rule, detail=detail)
            return audio, scored

        return await anyio.to_thread.run_sync(work, limiter=self.limiter)

    def stream_config(self) -> StreamConfig:
        return StreamConfig(
            model_name=self.scorer.name,
            classes=self.scorer.classes,
            model_sample_rate=self.scorer.sample_rate,
            default_window_seconds=self.scorer.chunk_seconds,
            alert_threshold=self.threshold,
            alert_windows=self.settings.alert_windows,
            idle_timeout_s=self.settings.stream_idle_timeout_s,
        )


def get_service(connection: HTTPConnection) -> Service:
    return connection.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="Needed when the server sets an API key."
)


def require_api_key(
    service: ServiceDep, key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    if not service.key_ok(key):
        raise ServeError(401, "unauthorized", "missing or invalid API key (header X-API-Key)")


def gate_on_quality(scored: Scored) -> Scored:
    """``scored`` with outcome "re-record" when its heart-sound analysis says unusable
    (the analysis :func:`score_wave` always computes); unchanged otherwise."""
    usable = (scored.analysis or {}).get("usable", True)
    if usable or scored.decision is None:
        return scored
    return dataclasses.replace(
        scored, decision=dataclasses.replace(scored.decision, outcome="re-record")
    )


def _error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


def _build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["scoring"], dependencies=[Depends(require_api_key)])

    @router.post(
        "/predict",
        response_model=PredictionResponse,
        responses=_error_responses(401, 413, 415, 422),
    )
    async def predict(
        service: ServiceDep,
        file: Annotated[UploadFile, File(description="A heart-sound recording (WAV, FLAC, ...).")],
        detail: Annotated[
            bool, Query(description="Add a waveform envelope and a spectrogram for drawing.")
        ] = False,
        quality_gate: Annotated[
            bool,
            Query(
                description="Outcome re-record when the heart-sound analysis finds the "
                "recording unusable (as stetho predict --quality-gate)."
            ),
        ] = False,
    ) -> dict[str, Any]:
        """Score one recording: class probabilities, top label and heart-sound analysis.

        The response has one ``prob_<class>`` field per class besides those listed.
        """
        t0 = time.perf_counter()
        limits = service.settings
        if file.size is not None and file.size > limits.max_upload_bytes:
            raise ServeError(
                413, "too_large", f"upload of {file.size} bytes exceeds {limits.max_upload_bytes}"
            )
        media = (file.content_type or "").split(";")[0].strip().lower()
        if media and not media.startswith("audio/") and media not in BINARY_TYPES:
            raise ServeError(
                415, "unsupported_media_type", f"{file.filename}: {media} is not an audio type"
            )
        data = await file.read()
        try:
            audio, scored = await service.score_upload(
                data, name=file.filename or "upload", detail=detail
            )
        except AudioError as exc:
            status, code = AUDIO_ERRORS.get(type(exc), (422, "invalid_audio"))
            raise ServeError(status, code, str(exc)) from None
        if quality_gate:
            scored = gate_on_quality(scored)
        abnormal_prob = scored.abnormal_prob
        decision = scored.decision
        assert decision is not None and scored.label is not None
        classes = service.scorer.classes
        response = PredictionResponse(
            filename=file.filename,
            duration_s=round(audio.duration_s, 3),
            sample_rate=audio.original_sample_rate,
            classes=classes,
            label=scored.label,
            abnormal_prob=None if abnormal_prob is None else round(abnormal_prob, 6),
            abnormal=decision.abnormal,
            outcome=decision.outcome,
            analysis=HeartAnalysis.model_validate(scored.analysis or {}),
            detail=None if scored.detail is None else Detail.model_validate(scored.detail),
            elapsed_ms=round((time.perf_counter() - t0) * 1000, 1),
        )
        probs = {f"prob_{c}": p for c, p in scored.prob_dict(classes).items()}
        return {**response.model_dump(exclude_none=False), **probs}

    return router


def create_app(
    settings: ServeSettings,
    *,
    scorer: Scorer | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> FastAPI:
    """The service for ``settings``; the model is loaded now, once (or ``scorer`` is used).

    ``http_client`` carries webhook posts (default: a new client with the webhook timeout).
    """
    scorer = scorer or load_scorer(settings.model_path, threads=settings.torch_threads)
    acceptance, stricter = service_acceptance(settings, scorer)
    if stricter:
        logger.info(
            "the service's limits are stricter than the model's for %s: %s",
            ", ".join(stricter),
            acceptance.to_dict(),
        )
    logger.info(
        "serving %s %s: classes %s at %d Hz",
        scorer.kind,
        scorer.name,
        scorer.classes,
        scorer.sample_rate,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = None
        webhook = None
        if settings.webhook_url is not None:
            client = http_client or httpx.AsyncClient(timeout=settings.webhook_timeout_s)
            webhook = Webhook(settings.webhook_url, client=client)
        app.state.service = Service(
            settings=settings,
            scorer=scorer,
            limiter=anyio.CapacityLimiter(settings.workers),
            webhook=webhook,
            acceptance=acceptance,
            stricter=stricter,
        )
        try:
            yield
        finally:
            if webhook is not None:
                await webhook.drain(timeout_s=settings.webhook_timeout_s)
            if client is not None and http_client is None:
                await client.aclose()

    app = FastAPI(
        title="stetho",
        summary="Heart-sound (phonocardiogram) classification for remote monitoring.",
        description=API_DESCRIPTION,
        version=stetho.__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes + MULTIPART_SLACK_BYTES)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.include_router(_build_router())

    @app.get("/health", response_model=HealthResponse, tags=["service"])
    async def health(service: ServiceDep) -> HealthResponse:
        """Liveness, and what the server scores with (no API key needed)."""
        s = service.settings
        return HealthResponse(
            model=service.scorer.name,
            kind=service.scorer.kind,  # type: ignore[arg-type]
            classes=service.scorer.classes,
            sample_rate=service.scorer.sample_rate,
            auth_required=s.auth_required,
            max_upload_bytes=s.max_upload_bytes,
            min_duration_s=service.acceptance.min_duration_s,
            max_duration_s=service.acceptance.max_duration_s,
            model_acceptance={
                k: v
                for k, v in service.scorer.acceptance.to_dict().items()
                if k != "max_upload_bytes"
            },
            stricter_than_model=service.stricter,
            alert_threshold=service.threshold,
            alert_windows=s.alert_windows,
            version=stetho.__version__,
        )

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        """Live scoring; the key comes in the X-API-Key header or the ``api_key`` query."""
        service = get_service(websocket)
        await websocket.accept()
        key = websocket.headers.get("x-api-key") or websocket.query_params.get("api_key")
        if not service.key_ok(key):
            await websocket.close(CLOSE_POLICY, "missing or invalid API key")
            return
        await run_stream(
            websocket,
            config=service.stream_config(),
            score=service.score,
            webhook=service.webhook,
        )

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if os.environ.get(DEBUG_MEMORY_ENV, "") not in ("", "0"):
        _add_memory_debug(app)
    return app


def _add_memory_debug(app: FastAPI) -> None:
    """``GET /debug/memory?top=N&reset=0``: the Python heap's growth since the baseline (the
    first call, or the last one with ``reset=1``), by allocation site, for the soak benchmark.
    """
    logger.warning("%s is set: tracing allocations, GET /debug/memory is open", DEBUG_MEMORY_ENV)
    tracemalloc.start(8)
    state: dict[str, tracemalloc.Snapshot] = {}

    def work(top: int, reset: bool) -> dict[str, Any]:
        gc.collect()  # garbage in reference cycles is not growth
        snapshot = tracemalloc.take_snapshot().filter_traces(
            # The snapshots themselves (made under tracemalloc.py, stored as the baseline).
            [tracemalloc.Filter(False, tracemalloc.__file__, all_frames=True)]
        )
        baseline = state.get("baseline")
        if baseline is None or reset:
            state["baseline"] = baseline = snapshot
        stats = snapshot.compare_to(baseline, "traceback")
        current, peak = tracemalloc.get_traced_memory()
        return {
            "traced_bytes": current,
            "traced_peak_bytes": peak,
            "threads": threading.active_count(),
            "growth": [
                {
                    "size_diff": s.size_diff,
                    "count_diff": s.count_diff,
                    "size": s.size,
                    "where": [f"{f.filename}:{f.lineno}" for f in s.traceback][-4:],
                }
                for s in stats[:top]
            ],
        }

    @app.get("/debug/memory", include_in_schema=False)
    async def memory(request: Request, top: int = 15, reset: bool = False) -> dict[str, Any]:
        if request.client is None or request.client.host not in ("127.0.0.1", "::1"):
            raise ServeError(403, "forbidden", "the memory debug endpoint answers loopback only")
        # Taking a snapshot of a big heap takes a while: off the event loop.
        return await anyio.to_thread.run_sync(lambda: work(top, reset))


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if isinstance(exc, ServeError):
        code, detail = exc.error, str(exc.detail)
    else:
        code, detail = f"http_{exc.status_code}", str(exc.detail)
    return JSONResponse(error_json(code, detail), status_code=exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return JSONResponse(error_json("invalid_request", "; ".join(parts)), status_code=422)
