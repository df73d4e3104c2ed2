"""Load benchmark of ``stetho serve``: concurrent clients posting a 10 s recording on loopback.

Starts ``stetho serve MODEL`` in a subprocess on 127.0.0.1 (a free port), waits for
``/health``, warms up, then runs each ``--scenario CLIENTS:INTERVAL``: that many concurrent
clients, each posting the recording to ``/v1/predict`` for ``--duration`` seconds, either back
to back (interval 0, "closed loop": the saturation test) or one request every INTERVAL seconds
per client (a paced fleet of devices). Every loop is bounded in time and in count, and only
loopback is ever contacted. Results (latency percentiles measured by the client, the server's
own ``elapsed_ms``, throughput, errors) are written as a Markdown table.

    python benchmarks/bench_serve.py runs/try1 --pipeline \
        --scenario 1:0 --scenario 16:0 --scenario 16:1 --out benchmarks/results/serve.md
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

logger = logging.getLogger("bench_serve")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECORDING = (
    ROOT.parent / "shared/data/heartbeat-sounds/set_b/murmur__122_1306325762831_C.wav"
)
#: Stop a scenario after this many requests per client per second of duration, whatever happens.
MAX_REQUESTS_PER_CLIENT_S = 50
TARGET_P99_MS = 250.0


@dataclass
class Outcome:
    """What one scenario measured."""

    model: str
    kind: str
    interval_s: float
    clients: int
    duration_s: float
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0

    def row(self) -> list[str]:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        srv = np.array(self.server_ms) if self.server_ms else np.array([np.nan])
        n_err = sum(self.errors.values())
        p99 = float(np.percentile(lat, 99))
        ok = n_err == 0 and p99 <= TARGET_P99_MS
        mode = "closed loop" if self.interval_s == 0 else f"1 per {self.interval_s:g} s"
        return [
            f"{self.model} ({self.kind})",
            mode,
            str(self.clients),
            f"{self.wall_s:.0f}",
            str(len(self.latencies_ms) + n_err),
            str(n_err),
            f"{len(self.latencies_ms) / self.wall_s:.1f}",
            *(f"{np.percentile(lat, q):.0f}" for q in (50, 90, 99)),
            f"{lat.max():.0f}",
            f"{np.percentile(srv, 50):.0f} / {np.percentile(srv, 99):.0f}",
            "yes" if ok else "**no**",
        ]


HEADER = [
    "model",
    "load",
    "clients",
    "s",
    "requests",
    "errors",
    "req/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "server p50 / p99 ms",
    f"p99 ≤ {TARGET_P99_MS:g} ms, 0 errors",
]


def recording_bytes(path: Path, seconds: float) -> tuple[bytes, int]:
    """The recording wrapped (repeated end to end) to ``seconds``, as 16-bit WAV bytes."""
    x, sr = sf.read(path, dtype="float32", always_2d=False)
    buf = io.BytesIO()
    sf.write(buf, np.resize(x, round(seconds * sr)), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue(), sr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: Path, port: int, *, workers: int, log: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("stetho")
    cmd = [
        str(exe),
        "serve",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    logger.info("starting %s", " ".join(cmd))
    with log.open("wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def wait_healthy(base: str, proc: subprocess.Popen[bytes], *, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            r = httpx.get(base + "/health", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{base}/health did not answer within {timeout_s:g} s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


async def run_scenario(
    base: str, data: bytes, outcome: Outcome, *, rng: np.random.Generator
) -> None:
    """``outcome.clients`` clients for ``outcome.duration_s`` seconds (bounded in count too)."""
    max_per_client = int(MAX_REQUESTS_PER_CLIENT_S * outcome.duration_s)
    t_start = time.perf_counter()
    t_end = t_start + outcome.duration_s
    limits = httpx.Limits(
        max_connections=outcome.clients, max_keepalive_connections=outcome.clients
    )

    async def client(http: httpx.AsyncClient, offset_s: float) -> None:
        next_at = t_start + offset_s
        for _ in range(max_per_client):
            if outcome.interval_s:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += outcome.interval_s
            t0 = time.perf_counter()
            if t0 >= t_end:
                return
            try:
                r = await http.post(
                    base + "/v1/predict", files={"file": ("rec.wav", data, "audio/wav")}
                )
            except httpx.HTTPError as exc:
                outcome.errors[type(exc).__name__] = outcome.errors.get(type(exc).__name__, 0) + 1
                continue
            ms = (time.perf_counter() - t0) * 1000
            if r.status_code == 200:
                outcome.latencies_ms.append(ms)
                outcome.server_ms.append(float(r.json()["elapsed_ms"]))
            else:
                key = f"HTTP {r.status_code}"
                outcome.errors[key] = outcome.errors.get(key, 0) + 1

    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        offsets = (
            rng.uniform(0, outcome.interval_s, outcome.clients)
            if outcome.interval_s
            else (np.zeros(outcome.clients))
        )
        await asyncio.gather(*(client(http, float(o)) for o in offsets))
    outcome.wall_s = time.perf_counter() - t_start


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"{os.cpu_count()} logical CPUs ({cpu}), Python {platform.python_version()}, "
        f"load average before the run {load} (1/5/15 min)"
    )


def write_report(
    path: Path, outcomes: list[Outcome], *, args: argparse.Namespace, machine: str, recording: str
) -> None:
    lines = [
        "# `stetho serve` load benchmark",
        "",
        f"Generated by `benchmarks/bench_serve.py` on {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"- Machine: {machine}. The server and the load generator share these CPUs.",
        f"- Request: `POST /v1/predict` with {recording}, 16-bit WAV "
        "(classification + heart-sound analysis, no `detail`).",
        f"- Server: `stetho serve MODEL --workers {args.workers}` (scoring threads, 1 torch / "
        "onnxruntime thread each), one uvicorn process, loopback only.",
        f"- Concurrent clients (httpx, keep-alive) for {args.duration:g} s per row; "
        "latency is measured by the client (queueing included); *server* is the "
        "response's own `elapsed_ms` (wait for a worker + decode + score + analysis).",
        "- *closed loop*: each client sends its next request as soon as the last one returns "
        "(saturation); *1 per N s*: each client sends one request every N s (a paced fleet).",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(o.row()) + " |" for o in outcomes]
    errs = [f"{o.model} {o.interval_s:g}: {o.errors}" for o in outcomes if o.errors]
    if errs:
        lines += ["", "Errors: " + "; ".join(errs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.info("wrote %s", path)


def parse_scenario(parser: argparse.ArgumentParser, text: str) -> tuple[int, float]:
    """``"16:1"`` -> ``(16, 1.0)``: clients and the seconds between a client's requests."""
    try:
        clients, interval = text.split(":")
        parsed = int(clients), float(interval)
    except ValueError:
        parser.error(f"--scenario {text!r}: expected CLIENTS:INTERVAL, e.g. 16:0 or 16:1")
    if not 1 <= parsed[0] <= 256 or parsed[1] < 0:
        parser.error(f"--scenario {text!r}: clients must be 1..256 and the interval >= 0 s")
    return parsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="run folder or scoring pipeline folder")
    p.add_argument(
        "--pipeline",
        action="store_true",
        help="also export the run to an ONNX pipeline (temporary) and benchmark it",
    )
    p.add_argument("--recording", type=Path, default=DEFAULT_RECORDING)
    p.add_argument("--seconds", type=float, default=10.0, help="recording length to send")
    p.add_argument(
        "--scenario",
        action="append",
        metavar="CLIENTS:INTERVAL",
        help="concurrent clients and seconds between a client's requests (0 = closed loop); "
        "repeatable; default 16:0",
    )
    p.add_argument("--duration", type=float, default=60.0, help="seconds per scenario")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serve.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    scenarios = [parse_scenario(p, text) for text in args.scenario or ["16:0"]]
    if not 0 < args.duration <= 600:
        p.error("--duration must be in (0, 600] s")
    data, sr = recording_bytes(args.recording, args.seconds)
    recording = (
        f"`{args.recording.name}` wrapped to {args.seconds:g} s at {sr} Hz ({len(data) // 1000} kB)"
    )
    machine = machine_line()
    rng = np.random.default_rng(0)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        models = [args.model]
        if args.pipeline:
            from stetho.export import export_pipeline

            models.append(export_pipeline(args.model, Path(tmp) / f"{args.model.name}-onnx"))
        for model in models:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            proc = start_server(model, port, workers=args.workers, log=Path(tmp) / "server.log")
            try:
                health = wait_healthy(base, proc)
                with httpx.Client(timeout=30) as http:
                    for _ in range(5):  # warm-up
                        http.post(
                            base + "/v1/predict", files={"file": ("w.wav", data, "audio/wav")}
                        ).raise_for_status()
                for clients, interval in scenarios:
                    outcome = Outcome(
                        model=health["model"],
                        kind=health["kind"],
                        interval_s=interval,
                        clients=clients,
                        duration_s=args.duration,
                    )
                    logger.info("scenario: %s, %d clients, interval %g s", model, clients, interval)
                    asyncio.run(run_scenario(base, data, outcome, rng=rng))
                    logger.info("  %s", dict(zip(HEADER, outcome.row(), strict=True)))
                    outcomes.append(outcome)
            finally:
                stop_server(proc)
    write_report(args.out, outcomes, args=args, machine=machine, recording=recording)
    return 0 if all(not o.errors for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
