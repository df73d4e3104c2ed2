"""Scoring benchmarks: the ONNX pipeline on one core against its targets, torch ``predict``
beside it, Dask with two workers against serial, and the physical floor.

    .venv/bin/python benchmarks/bench_scoring.py --run runs/try1 [--data DIR] [--out FILE]

Every measurement runs in a fresh subprocess (``--worker KIND``), so its peak resident memory
(``VmHWM``) is its own and the ONNX one never has torch imported. Targets (issue #scoring):
the ONNX pipeline on one core scores the mission set at >= 1,000x real time, a 30-second
recording in <= 30 ms, with a peak RSS <= 500 MB. The results are written as a markdown table
appended to ``benchmarks/results/scoring.md`` (or ``--out``); a missed target says so, with
its figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "heartbeat-sounds"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "scoring.md"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")

TARGET_SPEED = 1000.0  # x real time, one core
TARGET_LATENCY_MS = 30.0  # one 30 s recording
TARGET_RSS_MB = 500.0
LATENCY_REPEATS = 30


def _peak_rss_mb() -> float:
    """This process's peak resident memory, MB. ``VmHWM`` belongs to the address space, so it
    starts afresh at ``exec``; ``ru_maxrss`` would carry over the parent's peak (torch)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _one_thread() -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def _load_score_module(pipe: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("score", pipe / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- workers (each runs in its own process) -----------------------------------------------


def worker_onnx(args: argparse.Namespace) -> dict[str, Any]:
    """The exported pipeline over the file list, onnxruntime on one thread."""
    t0 = time.perf_counter()
    score = _load_score_module(Path(args.pipe))
    pipe = score.Pipeline(Path(args.pipe), threads=1)
    items = score.collect_inputs(json.loads(Path(args.files).read_text()))
    t1 = time.perf_counter()
    rows = score.score(pipe, items, progress=False)
    t2 = time.perf_counter()
    audio_s = sum(r.get("duration_s") or 0.0 for r in rows)
    return {
        "startup_s": t1 - t0,
        "wall_s": t2 - t1,
        "audio_s": audio_s,
        "files": len(rows),
        "failed": sum(1 for r in rows if r["error"]),
        "peak_rss_mb": _peak_rss_mb(),
        "torch_loaded": "torch" in sys.modules,
    }


def worker_latency(args: argparse.Namespace) -> dict[str, Any]:
    """Scoring one recording end to end (decode, resample, chunk, infer), repeated."""
    score = _load_score_module(Path(args.pipe))
    pipe = score.Pipeline(Path(args.pipe), threads=1)
    item = [(args.file, args.file)]
    score.score(pipe, item, progress=False)  # warm-up: first-call allocations
    times = []
    for _ in range(LATENCY_REPEATS):
        t = time.perf_counter()
        rows = score.score(pipe, item, progress=False)
        times.append(time.perf_counter() - t)
    assert not rows[0]["error"], rows[0]["error"]
    return {
        "median_ms": 1000 * statistics.median(times),
        "p90_ms": 1000 * sorted(times)[int(0.9 * len(times)) - 1],
        "duration_s": rows[0]["duration_s"],
        "peak_rss_mb": _peak_rss_mb(),
    }


def worker_torch(args: argparse.Namespace) -> dict[str, Any]:
    """``stetho predict``'s library call, torch on one thread."""
    import torch

    torch.set_num_threads(1)
    from stetho.runs import load_run
    from stetho.scoring.batch import collect_inputs, predict_files

    t0 = time.perf_counter()
    run = load_run(args.run)
    items = collect_inputs(json.loads(Path(args.files).read_text()))
    t1 = time.perf_counter()
    df = predict_files(run, items, progress=False)
    t2 = time.perf_counter()
    return {
        "startup_s": t1 - t0,
        "wall_s": t2 - t1,
        "audio_s": float(df["duration_s"].sum()),
        "files": len(df),
        "peak_rss_mb": _peak_rss_mb(),
    }


def worker_dask(args: argparse.Namespace) -> dict[str, Any]:
    """The same call over a local Dask cluster of two one-thread worker processes. The
    cluster is started first (not timed); the timed part includes each worker's first load
    of the run, as a real job would."""
    from distributed import Client, LocalCluster

    from stetho.scoring.batch import collect_inputs
    from stetho.scoring.dask import predict_files_dask

    items = collect_inputs(json.loads(Path(args.files).read_text()))
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: __import__("torch"))  # interpreter and torch import: not timed
        t1 = time.perf_counter()
        df = predict_files_dask(args.run, items, scheduler=client, progress=False)
        t2 = time.perf_counter()
    return {"wall_s": t2 - t1, "audio_s": float(df["duration_s"].sum()), "files": len(df)}


def worker_floor(args: argparse.Namespace) -> dict[str, Any]:
    """Decoding + resampling alone, then with the log-mel front end (ONNX, one thread)."""
    import numpy as np
    import onnxruntime as ort

    score = _load_score_module(Path(args.pipe))
    prep = json.loads((Path(args.pipe) / "preprocess.json").read_text())
    sr = int(prep["sample_rate"])
    items = score.collect_inputs(json.loads(Path(args.files).read_text()))
    t = time.perf_counter()
    waves = []
    for given, full in items:
        try:
            waves.append(
                score.read_audio(
                    full,
                    sample_rate=sr,
                    min_duration_s=prep["min_duration_s"],
                    max_duration_s=prep["max_duration_s"],
                    name=given,
                )
            )
        except score.AudioError:
            pass
    decode_s = time.perf_counter() - t
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(args.frontend, sess_options=options)
    t = time.perf_counter()
    for w in waves:
        chunks = score.recording_chunks(w, sample_rate=sr, prep=prep)
        session.run(None, {"wave": np.ascontiguousarray(chunks)})
    frontend_s = time.perf_counter() - t
    return {
        "decode_s": decode_s,
        "frontend_s": frontend_s,
        "audio_s": sum(len(w) for w in waves) / sr,
        "peak_rss_mb": _peak_rss_mb(),
    }


WORKERS = {
    "onnx": worker_onnx,
    "latency": worker_latency,
    "torch": worker_torch,
    "dask": worker_dask,
    "floor": worker_floor,
}


# --- orchestration ------------------------------------------------------------------------


def _spawn(kind: str, **kwargs: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", kind]
    for key, value in kwargs.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if res.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _export(run: Path, work: Path) -> tuple[Path, Path]:
    """The run's pipeline, and its front end alone as ONNX (for the floor)."""
    import torch

    from stetho.export import ONNX_OPSET, export_pipeline
    from stetho.runs import load_run

    pipe = export_pipeline(run, work / "pipe")
    frontend = work / "frontend.onnx"
    model = load_run(run).models[0].frontend.eval()
    x = torch.zeros(2, 12000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's notices (see stetho.export)
        torch.onnx.export(
            model,
            (x,),
            str(frontend),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["wave"],
            dynamic_axes={"wave": {0: "batch", 1: "samples"}},
        )
    return pipe, frontend


def _thirty_second_files(data: Path, work: Path) -> dict[str, Path]:
    """30 s recordings made by repeating a real one: a 44.1 kHz iStethoscope file (set_a,
    the costliest to resample) and a 4 kHz DigiScope file (set_b)."""
    import numpy as np
    import soundfile as sf

    out = {}
    for sub in ("set_a", "set_b"):
        src = sorted((data / sub).glob("*.wav"))[0]
        x, sr = sf.read(src, dtype="int16")
        y = np.resize(x, 30 * sr)
        path = work / f"{sub}_30s.wav"
        sf.write(path, y, sr, subtype="PCM_16")
        out[f"{sub} ({sr} Hz)"] = path
    return out


def _verdict(ok: bool, figure: str) -> str:
    return "met" if ok else f"**missed** ({figure})"


def _machine() -> str:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores, load average at start {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a finished run folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the mission set")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown table to write")
    parser.add_argument(
        "--onnx-only",
        action="store_true",
        help="only the exported pipeline's rows (seconds, not minutes: no torch, no Dask)",
    )
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    for hidden in ("pipe", "files", "file", "frontend"):
        parser.add_argument(f"--{hidden}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _one_thread()
        print(json.dumps(WORKERS[args.worker](args)))
        return
    if args.run is None:
        parser.error("--run RUN_DIR is required")

    machine = _machine()
    files = sorted(
        str(p)
        for p in args.data.rglob("*")
        if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        parser.error(f"no audio files under {args.data}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        file_list = work / "files.json"
        file_list.write_text(json.dumps(files))
        pipe, frontend = _export(args.run, work)
        print(f"scoring {len(files)} files of {args.data} with {args.run} ...", file=sys.stderr)
        onnx = _spawn("onnx", pipe=pipe, files=file_list)
        latency = {
            name: _spawn("latency", pipe=pipe, file=path)
            for name, path in _thirty_second_files(args.data, work).items()
        }
        floor = _spawn("floor", pipe=pipe, files=file_list, frontend=frontend)
        torch_ = None if args.onnx_only else _spawn("torch", run=args.run, files=file_list)
        dask = None if args.onnx_only else _spawn("dask", run=args.run, files=file_list)

    speed = onnx["audio_s"] / onnx["wall_s"]
    rss = max([onnx["peak_rss_mb"], *(v["peak_rss_mb"] for v in latency.values())])
    rows = [
        (
            "ONNX pipeline, 1 core: mission set",
            f"{speed:,.0f}x real time ({onnx['audio_s']:.0f} s of audio in "
            f"{onnx['wall_s']:.2f} s; {onnx['files']} files, {onnx['failed']} failed; "
            f"start-up {onnx['startup_s']:.2f} s)",
            ">= 1,000x",
            _verdict(speed >= TARGET_SPEED, f"{speed:,.0f}x"),
        ),
        *(
            (
                f"ONNX pipeline, 1 core: one 30 s recording, {name}",
                f"{v['median_ms']:.1f} ms median, {v['p90_ms']:.1f} ms p90 "
                f"({LATENCY_REPEATS} runs)",
                "<= 30 ms",
                _verdict(v["median_ms"] <= TARGET_LATENCY_MS, f"{v['median_ms']:.1f} ms"),
            )
            for name, v in latency.items()
        ),
        (
            "ONNX pipeline: peak RSS",
            f"{rss:.0f} MB (torch imported: {onnx['torch_loaded']})",
            "<= 500 MB",
            _verdict(rss <= TARGET_RSS_MB, f"{rss:.0f} MB"),
        ),
    ]
    if torch_ is not None:
        rows.append(
            (
                "torch `predict`, 1 thread: mission set",
                f"{torch_['audio_s'] / torch_['wall_s']:,.0f}x real time "
                f"({torch_['wall_s']:.1f} s; start-up {torch_['startup_s']:.1f} s; "
                f"peak RSS {torch_['peak_rss_mb']:.0f} MB)",
                "(reference)",
                "",
            )
        )
    if dask is not None and torch_ is not None:
        rows.append(
            (
                "torch `predict --dask`, 2 workers x 1 thread vs serial",
                f"{dask['wall_s']:.1f} s vs {torch_['wall_s']:.1f} s serial "
                f"(x{torch_['wall_s'] / dask['wall_s']:.2f}; includes loading the run "
                "on each worker)",
                "(reference)",
                "",
            )
        )
    rows += [
        (
            "floor: decode + resample (soundfile, soxr HQ)",
            f"{floor['audio_s'] / floor['decode_s']:,.0f}x real time ({floor['decode_s']:.2f} s)",
            "(floor)",
            "",
        ),
        (
            "floor: decode + resample + log-mel front end (ONNX, 1 thread)",
            f"{floor['audio_s'] / (floor['decode_s'] + floor['frontend_s']):,.0f}x real time "
            f"({floor['decode_s'] + floor['frontend_s']:.2f} s)",
            "(floor)",
            "",
        ),
    ]
    lines = [
        "## Scoring",
        "",
        f"Run `{args.run}`, {len(files)} files of `{args.data.name}`; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine}. "
        "One run each; the machine was shared with other jobs, so figures are pessimistic.",
        "",
        "| measurement | figure | target | verdict |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = args.out.read_text() + "\n" if args.out.exists() else ""
    args.out.write_text(previous + "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
