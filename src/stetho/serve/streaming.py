"""``WS /v1/stream``: scoring a live heart-sound stream, with alerts.

Protocol (JSON text messages, binary PCM frames)::

    client: {"type": "start", "sample_rate": 4000, "encoding": "pcm_s16le" | "float32_le",
             "window_seconds": 6, "hop_seconds": 2, "device_id": "bed-12"}   (all but type
             and sample_rate optional; window defaults to the model's chunk length)
    server: {"type": "ready", ...}
    client: binary frames of little-endian PCM, mono, any size up to 10 s of audio
    server: {"type": "prediction", "t_end_s", "probs", "label", "abnormal_prob",
             "heart_rate_bpm", "quality", "usable", "alert"}       once a window is full, then
             every hop
    server: {"type": "alert", "state": "raised" | "cleared", ...}  when the alert state changes
    client: {"type": "stop"}  ->  server: {"type": "end", ...}, close 1000

Malformed input closes the socket with a code and a reason (at most 123 bytes):

* 1003 unsupported data: binary before ``start``, text that is not a JSON message we know;
* 1007 invalid payload: a ``start`` with bad values (unknown encoding, sample rate out of
  range, ...), a frame whose size is not a whole number of samples, NaN/inf samples;
* 1008 policy violation: missing or wrong API key, a second ``start``, idle too long;
* 1009 too big: a frame holding more than :data:`MAX_FRAME_SECONDS` of audio;
* 1011 internal error: scoring failed.

An alert is *raised* when the abnormal probability (see :mod:`stetho.scoring.backends`) is at or
above the threshold for K consecutive windows, and *cleared* when it is below the threshold
for K consecutive windows (the same K, so one noisy window neither raises nor clears).
Raised and cleared events are also POSTed to the configured webhook, off the stream's path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import numpy as np
import soxr
from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from stetho.scoring.core import Scored
from stetho.serve.schemas import (
    StreamAlert,
    StreamEnd,
    StreamPrediction,
    StreamReady,
    StreamStart,
    StreamStop,
)

logger = logging.getLogger(__name__)

#: Largest accepted binary frame, in seconds of audio at the declared rate.
MAX_FRAME_SECONDS = 10.0

#: WebSocket close codes (RFC 6455, section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED = 1003
CLOSE_INVALID = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011

_SAMPLE_BYTES = {"pcm_s16le": 2, "float32_le": 4}


class ProtocolError(Exception):
    """The client broke the protocol: close the socket with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def decode_frame(data: bytes, encoding: str) -> np.ndarray:
    """Little-endian PCM bytes -> float32 samples in [-1, 1] (``pcm_s16le`` is scaled by 2^15).

    Raises :class:`ProtocolError` (1007) for a partial sample or NaN/inf samples.
    """
    width = _SAMPLE_BYTES[encoding]
    if len(data) % width:
        raise ProtocolError(
            CLOSE_INVALID,
            f"frame of {len(data)} bytes is not a whole number of {width}-byte {encoding} samples",
        )
    if encoding == "pcm_s16le":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    x = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if not np.isfinite(x.sum(dtype=np.float64)):
        raise ProtocolError(CLOSE_INVALID, "frame holds NaN or infinite float32 samples")
    return x


class RollingWindow:
    """The last ``window_samples`` of a stream, handed out once full and then every hop.

    :meth:`push` appends samples and returns ``(end_sample, window)`` for every window that
    became complete, in order; ``end_sample`` counts samples since the stream started, and each
    ``window`` is a copy of shape ``(window_samples,)``. A frame spanning several hops yields
    several windows, so the output does not depend on how the stream was cut into frames.
    """

    def __init__(self, *, window_samples: int, hop_samples: int) -> None:
        if window_samples <= 0 or hop_samples <= 0:
            raise ValueError(
                f"window_samples={window_samples}, hop_samples={hop_samples}: expected positive"
            )
        self.window_samples = window_samples
        self.hop_samples = hop_samples
        self._buffer = np.zeros(0, np.float32)
        self.samples_seen = 0
        self._next_end = window_samples

    def push(self, x: np.ndarray) -> list[tuple[int, np.ndarray]]:
        x = np.asarray(x, np.float32)
        out: list[tuple[int, np.ndarray]] = []
        start = 0
        while start < len(x):
            take = min(len(x) - start, self._next_end - self.samples_seen)
            self._buffer = np.concatenate([self._buffer, x[start : start + take]])[
                -self.window_samples :
            ]
            self.samples_seen += take
            start += take
            if self.samples_seen == self._next_end:
                out.append((self.samples_seen, self._buffer.copy()))
                self._next_end += self.hop_samples
        return out


AlertState = Literal["raised", "cleared"]


class AlertMonitor:
    """Raise after ``windows`` consecutive probabilities at or above ``threshold``; clear after
    as many below it. Pure state: feed it numbers, read back events."""

    def __init__(self, *, threshold: float, windows: int) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold={threshold}: expected a probability in [0, 1]")
        if windows < 1:
            raise ValueError(f"windows={windows}: expected at least 1")
        self.threshold = threshold
        self.windows = windows
        self.raised = False
        self._run = 0  # consecutive windows pointing away from the current state

    def update(self, abnormal_prob: float) -> AlertState | None:
        """Take one window's abnormal probability; return the event it causes, if any."""
        above = abnormal_prob >= self.threshold
        self._run = self._run + 1 if above != self.raised else 0
        if self._run >= self.windows:
            self.raised = not self.raised
            self._run = 0
            return "raised" if self.raised else "cleared"
        return None


class Webhook:
    """POST alert events as JSON to ``url``, in the background: a slow or failing receiver is
    logged and never delays the stream."""

    def __init__(self, url: str, *, client: httpx.AsyncClient) -> None:
        self.url = url
        self._client = client
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, payload: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._post(payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, payload: dict[str, Any]) -> None:
        try:
            response = await self._client.post(self.url, json=payload)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            logger.warning("webhook %s failed: %s", self.url, exc)

    async def drain(self, *, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for pending posts (at shutdown); cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()


@dataclass
class StreamConfig:
    """Server-side parameters of every stream."""

    model_name: str
    classes: list[str]
    model_sample_rate: int
    default_window_seconds: float
    alert_threshold: float
    alert_windows: int
    idle_timeout_s: float


class StreamSession:
    """One connection's state: its resampler, rolling window and alert monitor."""

    def __init__(self, start: StreamStart, *, config: StreamConfig) -> None:
        self.start = start
        self.config = config
        rate = config.model_sample_rate
        self.window_seconds = start.window_seconds or config.default_window_seconds
        self.hop_seconds = min(start.hop_seconds, self.window_seconds)
        self.window = RollingWindow(
            window_samples=round(self.window_seconds * rate),
            hop_samples=max(1, round(self.hop_seconds * rate)),
        )
        self.monitor = AlertMonitor(threshold=config.alert_threshold, windows=config.alert_windows)
        self._resampler = (
            None
            if start.sample_rate == rate
            else soxr.ResampleStream(start.sample_rate, rate, 1, dtype="float32", quality="HQ")
        )
        self._max_frame_bytes = math.ceil(
            MAX_FRAME_SECONDS * start.sample_rate * _SAMPLE_BYTES[start.encoding]
        )
        self.seconds_received = 0.0
        self.windows_scored = 0

    def ready(self) -> StreamReady:
        return StreamReady(
            sample_rate=self.start.sample_rate,
            encoding=self.start.encoding,
            model_sample_rate=self.config.model_sample_rate,
            window_seconds=self.window_seconds,
            hop_seconds=self.hop_seconds,
            classes=self.config.classes,
            alert_threshold=self.monitor.threshold,
            alert_windows=self.monitor.windows,
        )

    def feed(self, data: bytes) -> list[tuple[float, np.ndarray]]:
        """A binary frame in; ``(t_end_s, window)`` for each window it completes out."""
        if len(data) > self._max_frame_bytes:
            raise ProtocolError(
                CLOSE_TOO_BIG,
                f"frame of {len(data)} bytes holds more than {MAX_FRAME_SECONDS:g} s of audio",
            )
        x = decode_frame(data, self.start.encoding)
        self.seconds_received += len(x) / self.start.sample_rate
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        rate = self.config.model_sample_rate
        return [(end / rate, w) for end, w in self.window.push(x)]

    def flush(self) -> list[tuple[float, np.ndarray]]:
        """At ``stop``: the samples the resampler still holds (its filter delay) in, and
        ``(t_end_s, window)`` for each window they complete out, so that the window ending
        exactly at the stream's end is scored like every other."""
        if self._resampler is None:
            return []
        x = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        rate = self.config.model_sample_rate
        return [(end / rate, w) for end, w in self.window.push(x)]

    def observe(
        self, t_end_s: float, scored: Scored
    ) -> tuple[StreamPrediction, StreamAlert | None]:
        """The messages one scored window gives: its prediction, and an alert if the state
        changed."""
        self.windows_scored += 1
        # The window's decision is the model's rule (the one stetho predict applies); a run
        # without a normal class has no abnormal probability and raises no alert.
        p = scored.abnormal_prob
        analysis = scored.analysis or {}
        decision = scored.decision
        assert decision is not None and scored.label is not None
        # A "re-record" window (abstain band or unusable signal) says nothing about the heart:
        # it neither raises nor clears an alert, and does not count towards the run of windows.
        rerecord = decision.outcome == "re-record"
        event = None if p is None or rerecord else self.monitor.update(p)
        prediction = StreamPrediction(
            t_end_s=round(t_end_s, 3),
            probs=scored.prob_dict(self.config.classes),
            label=scored.label,
            abnormal_prob=None if p is None else round(p, 6),
            abnormal=decision.abnormal,
            outcome=decision.outcome,
            heart_rate_bpm=analysis.get("heart_rate_bpm"),
            quality=analysis.get("quality"),
            usable=analysis.get("usable"),
            alert=self.monitor.raised,
        )
        alert = None
        if event is not None and p is not None:
            alert = StreamAlert(
                state=event,
                t_end_s=round(t_end_s, 3),
                abnormal_prob=round(p, 6),
                threshold=self.monitor.threshold,
                windows=self.monitor.windows,
                label=scored.label,
                device_id=self.start.device_id,
                model=self.config.model_name,
            )
        return prediction, alert

    def end(self) -> StreamEnd:
        return StreamEnd(
            seconds_received=round(self.seconds_received, 3),
            windows=self.windows_scored,
            alert=self.monitor.raised,
        )


def _short(reason: str) -> str:
    """A close reason fits in 123 UTF-8 bytes (RFC 6455, section 5.5)."""
    data = reason.encode()
    return reason if len(data) <= 123 else data[:120].decode(errors="ignore") + "..."


def parse_text(text: str) -> StreamStart | StreamStop:
    """A client text message -> :class:`StreamStart` or :class:`StreamStop`, or ProtocolError."""
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        raise ProtocolError(CLOSE_UNSUPPORTED, "text message is not JSON") from None
    kind = message.get("type") if isinstance(message, dict) else None
    if kind not in ("start", "stop"):
        raise ProtocolError(
            CLOSE_UNSUPPORTED, f"unknown message type {kind!r}: expected 'start' or 'stop'"
        )
    try:
        return StreamStart.model_validate(message) if kind == "start" else StreamStop(type="stop")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or kind
        raise ProtocolError(CLOSE_INVALID, f"{kind}: {where}: {first['msg']}") from None


ScoreWindow = Callable[[np.ndarray], Awaitable[Scored]]


async def run_stream(
    websocket: WebSocket,
    *,
    config: StreamConfig,
    score: ScoreWindow,
    webhook: Webhook | None,
) -> None:
    """Drive one accepted WebSocket through the protocol until it ends or breaks it."""
    try:
        session = await _start(websocket, config=config)
        await websocket.send_json(session.ready().model_dump())
        while True:
            message = await _receive(websocket, config.idle_timeout_s)
            if message.get("bytes") is not None:
                windows = session.feed(message["bytes"])
            elif isinstance(parse_text(message.get("text") or ""), StreamStart):
                raise ProtocolError(CLOSE_POLICY, "stream already started")
            else:
                windows = session.flush()
            for t_end_s, window in windows:
                prediction, alert = session.observe(t_end_s, await score(window))
                await websocket.send_json(prediction.model_dump())
                if alert is not None:
                    payload = alert.model_dump()
                    await websocket.send_json(payload)
                    logger.info("alert %s: %s", alert.state, payload)
                    if webhook is not None:
                        webhook.send(payload)
            if message.get("bytes") is None:  # a stop: every window is out, end
                await websocket.send_json(session.end().model_dump())
                await websocket.close(CLOSE_NORMAL, "stopped")
                return
    except ProtocolError as exc:
        logger.info("closing stream: %s %s", exc.code, exc.reason)
        if websocket.application_state != WebSocketState.DISCONNECTED:
            await websocket.close(exc.code, _short(exc.reason))
    except WebSocketDisconnect:
        logger.debug("stream client went away")
    except Exception:  # the socket's last resort: say so to the client, keep the server up
        logger.exception("stream failed")
        if websocket.application_state != WebSocketState.DISCONNECTED:
            await websocket.close(CLOSE_INTERNAL, "internal error while scoring")


async def _receive(websocket: WebSocket, timeout_s: float) -> MutableMapping[str, Any]:
    try:
        message = await asyncio.wait_for(websocket.receive(), timeout=timeout_s)
    except TimeoutError:
        raise ProtocolError(CLOSE_POLICY, f"no data for {timeout_s:g} s") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    return message


async def _start(websocket: WebSocket, *, config: StreamConfig) -> StreamSession:
    message = await _receive(websocket, config.idle_timeout_s)
    if message.get("bytes") is not None:
        raise ProtocolError(CLOSE_UNSUPPORTED, "binary frame before the start message")
    parsed = parse_text(message.get("text") or "")
    if not isinstance(parsed, StreamStart):
        raise ProtocolError(CLOSE_UNSUPPORTED, "expected a start message first")
    return StreamSession(parsed, config=config)
