r"""Memory soak of ``stetho serve``: 16 closed-loop clients on loopback for ``--minutes``.

Starts ``stetho serve MODEL`` in a subprocess on 127.0.0.1 (a free port) with
``STETHO_DEBUG_MEMORY=1`` (:data:`stetho.serve.app.DEBUG_MEMORY_ENV`: the server traces its
Python allocations and answers ``GET /debug/memory``), warms up, then keeps ``--clients``
clients posting a 10 s recording to ``/v1/predict`` back to back. Every minute it samples the
server process's resident memory (``VmRSS`` of ``/proc/<pid>/status``), its traced Python heap
and thread count; at the end it asks the server for the allocation sites that grew most since
the first sample. Every loop is bounded in time and in count, and only loopback is contacted.

Without ``MODEL`` a tiny run is trained on synthetic recordings and exported as an ONNX
pipeline (a few seconds; ``--tiny run`` serves the run itself, with torch). Several
``--seconds`` post recordings of those lengths in turn, so the model sees varied input shapes
(onnxruntime's and torch's buffers are sized by shape). The verdict: growth of RSS over the
second half of the soak (after warm-up effects: allocator arenas, onnxruntime's buffers,
first-use imports) in MB per minute, and whether the traced Python heap grows with the number
of requests.

    python benchmarks/bench_serve_soak.py [MODEL] --minutes 10 \
        --out benchmarks/results/serve_soak.md
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import (  # noqa: E402  (the sibling benchmark's server helpers)
    DEFAULT_RECORDING,
    free_port,
    recording_bytes,
    start_server,
    stop_server,
    wait_healthy,
)

logger = logging.getLogger("bench_serve_soak")

#: Stop a client after this many requests per second of soak, whatever happens.
MAX_REQUESTS_PER_CLIENT_S = 50
#: RSS growth per minute over the second half below which the soak counts as flat.
FLAT_MB_PER_MIN = 2.0
#: Seconds to wait after the clients stop before the idle reading.
IDLE_S = 15.0


@dataclass
class Sample:
    """One minute's reading of the server."""

    t_min: float
    requests: int
    errors: int
    rss_mb: float
    traced_mb: float
    threads: int
    #: Taken with no request in flight (the start, and after the clients stopped).
    idle: bool = False


@dataclass
class Soak:
    samples: list[Sample] = field(default_factory=list)
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS")


def tiny_model(base: Path, *, pipeline: bool) -> Path:
    """Train a tiny run on synthetic recordings; return it, or its exported ONNX pipeline."""
    from stetho.config import load_config
    from stetho.export import export_pipeline
    from stetho.training.experiment import run_experiment

    rng = np.random.default_rng(0)
    sr = 4000
    for label, hz in (("normal", 60.0), ("murmur", 400.0)):
        (base / "data" / label).mkdir(parents=True)
        for i in range(6):
            n = 3 * sr
            x = 0.01 * rng.standard_normal(n)
            t = np.arange(int(0.06 * sr)) / sr
            burst = 0.5 * np.sin(2 * np.pi * hz * t) * np.hanning(t.size)
            for start in range(0, n - burst.size, int(0.8 * sr)):
                x[start : start + burst.size] += burst
            sf.write(base / "data" / label / f"{label}_{i:02d}.wav", x.astype(np.float32), sr)
    overrides = [
        "training.epochs=1",
        "training.warmup_epochs=0",
        "architecture.width=8",
        "dataset.number_of_folds=2",
        "audio.training_chunk_seconds=2",
        "prediction.inference_chunk_seconds=2",
        "training.batch_size=4",
        "training.build_scoring_pipelines=false",
        "training.run_interpretations=false",
    ]
    run = base / "run"
    run_experiment(load_config(None, overrides), out_dir=run, data=base / "data", progress=False)
    return export_pipeline(run, base / "pipeline") if pipeline else run


async def soak(
    base: str, recordings: list[bytes], pid: int, *, clients: int, minutes: float, result: Soak
) -> dict[str, Any]:
    """Run the clients for ``minutes``, sampling the server every minute; returns the server's
    final ``/debug/memory`` answer (growth since the first sample)."""
    duration_s = minutes * 60
    max_per_client = int(MAX_REQUESTS_PER_CLIENT_S * duration_s)
    t_start = t_end = 0.0  # set once the baseline is taken
    limits = httpx.Limits(max_connections=clients + 1, max_keepalive_connections=clients + 1)

    async def client(http: httpx.AsyncClient, k: int) -> None:
        for i in range(max_per_client):
            t0 = time.perf_counter()
            if t0 >= t_end:
                return
            data = recordings[(k + i) % len(recordings)]
            try:
                r = await http.post(
                    base + "/v1/predict", files={"file": ("rec.wav", data, "audio/wav")}
                )
            except httpx.HTTPError as exc:
                name = type(exc).__name__
                result.errors[name] = result.errors.get(name, 0) + 1
                continue
            if r.status_code == 200:
                result.requests += 1
                result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            else:
                key = f"HTTP {r.status_code}"
                result.errors[key] = result.errors.get(key, 0) + 1

    async def sample(
        http: httpx.AsyncClient, t_min: float, *, reset: bool, idle: bool = False
    ) -> dict[str, Any]:
        r = await http.get(base + "/debug/memory", params={"top": 200, "reset": reset})
        r.raise_for_status()
        info = r.json()
        s = Sample(
            t_min=t_min,
            requests=result.requests,
            errors=sum(result.errors.values()),
            rss_mb=rss_mb(pid),
            traced_mb=info["traced_bytes"] / 1e6,
            threads=info["threads"],
            idle=idle,
        )
        result.samples.append(s)
        logger.info(
            "t=%4.1f min: %d requests, RSS %.0f MB, traced %.1f MB, %d threads",
            s.t_min,
            s.requests,
            s.rss_mb,
            s.traced_mb,
            s.threads,
        )
        return info

    async def sampler(http: httpx.AsyncClient) -> dict[str, Any]:
        info: dict[str, Any] = {}
        for minute in range(1, int(np.ceil(minutes)) + 1):
            await asyncio.sleep(max(0.0, t_start + minute * 60 - time.perf_counter()))
            info = await sample(http, (time.perf_counter() - t_start) / 60, reset=False)
        return info

    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        # The baseline: idle, before any client starts (uploads in flight would count).
        await sample(http, 0.0, reset=True, idle=True)
        t_start = time.perf_counter()
        t_end = t_start + duration_s
        await asyncio.gather(*(client(http, k) for k in range(clients)), sampler(http))
        # What stays once the load is gone (requests in flight hold their uploads and
        # arrays): the growth table compares this idle state with the idle start.
        await asyncio.sleep(IDLE_S)
        return await sample(http, (time.perf_counter() - t_start) / 60, reset=False, idle=True)


def slope_mb_per_min(samples: list[Sample]) -> float:
    """Least-squares RSS slope over the second half of the samples (MB per minute)."""
    loaded = [s for s in samples if not s.idle]
    half = loaded[len(loaded) // 2 :]
    if len(half) < 2:
        return float("nan")
    t = np.array([s.t_min for s in half])
    y = np.array([s.rss_mb for s in half])
    return float(np.polyfit(t, y, 1)[0])


def write_report(
    out: Path, result: Soak, final: dict[str, Any], *, model: str, args: argparse.Namespace
) -> str:
    s = result.samples
    slope = slope_mb_per_min(s)
    first, last = s[0], s[-1]
    per_1k = (last.traced_mb - first.traced_mb) / max(1, last.requests - first.requests) * 1000
    lat = np.array(result.latencies_ms or [np.nan])
    lines = [
        "# Serve memory soak",
        "",
        f"`python benchmarks/bench_serve_soak.py{' ' + model if args.model else ''} "
        f"--minutes {args.minutes:g} --clients {args.clients} --workers {args.workers} "
        f"--seconds {' '.join(f'{x:g}' for x in args.seconds)}"
        f"{' --tiny ' + args.tiny if not args.model else ''}`",
        "",
        f"- model: {model}; {args.clients} closed-loop clients posting WAVs of "
        f"{', '.join(f'{x:g}' for x in args.seconds)} s (in turn) to `/v1/predict` on "
        f"127.0.0.1, `--workers {args.workers}`",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        "**shared with other engineers' jobs** (figures of speed are not comparable across "
        "runs; memory is what is measured), Python "
        f"{platform.python_version()}",
        "- the server traces its Python allocations (`STETHO_DEBUG_MEMORY=1`), which itself "
        "costs memory and speed",
        f"- {result.requests} requests, {sum(result.errors.values())} errors "
        f"({result.errors or 'none'}), latency p50 {np.percentile(lat, 50):.0f} ms, "
        f"p99 {np.percentile(lat, 99):.0f} ms",
        "",
        "| minute | requests | RSS MB | traced Python heap MB | threads | |",
        "|-------:|---------:|-------:|----------------------:|--------:|-|",
    ]
    lines += [
        f"| {x.t_min:.1f} | {x.requests} | {x.rss_mb:.0f} | {x.traced_mb:.1f} | {x.threads} "
        f"| {'idle' if x.idle else 'under load'} |"
        for x in s
    ]
    lines += [
        "",
        f"RSS idle {first.rss_mb:.0f} → {last.rss_mb:.0f} MB; under load over the second "
        f"half {slope:+.2f} MB/min (flat below {FLAT_MB_PER_MIN:g}). Traced Python heap, idle "
        f"start to idle end: {last.traced_mb - first.traced_mb:+.2f} MB "
        f"({per_1k:+.3f} MB per 1,000 requests).",
        "",
        "Allocation sites that grew most (Python heap), idle start to idle end:",
        "",
        "| size diff KB | count diff | where (most recent frame last) |",
        "|-------------:|-----------:|--------------------------------|",
    ]
    grown = sorted(final.get("growth", []), key=lambda g: -g["size_diff"])
    for g in [g for g in grown if g["size_diff"] > 0][:10]:
        where = " ← ".join(reversed(g["where"]))
        lines.append(f"| {g['size_diff'] / 1024:+.1f} | {g['count_diff']:+d} | `{where}` |")
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, help="run or pipeline (default: tiny)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--seconds",
        type=float,
        nargs="+",
        default=[10.0],
        help="recording lengths, posted in turn (several: varied input shapes)",
    )
    parser.add_argument(
        "--tiny",
        choices=["pipeline", "run"],
        default="pipeline",
        help="without MODEL: serve the tiny run's ONNX pipeline, or the run itself (torch)",
    )
    parser.add_argument("--recording", type=Path, default=DEFAULT_RECORDING)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_soak.md"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        model = args.model or tiny_model(Path(tmp), pipeline=args.tiny == "pipeline")
        recordings = [recording_bytes(args.recording, x)[0] for x in args.seconds]
        data = recordings[0]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        os.environ["STETHO_DEBUG_MEMORY"] = "1"
        proc = start_server(model, port, workers=args.workers, log=Path(tmp) / "server.log")
        try:
            health = wait_healthy(base, proc)
            for _ in range(5):  # warm-up: first-use imports and buffers
                httpx.post(
                    base + "/v1/predict", files={"file": ("rec.wav", data, "audio/wav")}, timeout=60
                ).raise_for_status()
            result = Soak()
            final = asyncio.run(
                soak(
                    base,
                    recordings,
                    proc.pid,
                    clients=args.clients,
                    minutes=args.minutes,
                    result=result,
                )
            )
        finally:
            stop_server(proc)
        name = f"{health['model']} ({health['kind']})"
        if not args.model:
            name = f"tiny run, 2 folds (served as {health['kind']})"
        print(write_report(args.out, result, final, model=name, args=args))


if __name__ == "__main__":
    main()
