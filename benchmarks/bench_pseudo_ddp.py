"""Pseudo-labelling gain on the mission set, and 2-process DDP wall time beside one process.

    .venv/bin/python benchmarks/bench_pseudo_ddp.py [--part pseudo|ddp|both] [--epochs N]
        [--ddp-epochs N] [--data DIR] [--out FILE]

1. **Pseudo-labelling** -- ``configs/heartbeat.yaml`` on the mission set (5 patient-grouped
   folds), with ``pseudo_labeling.enabled=true, rounds=1`` (threshold 0.8, weight 0.5, the
   config defaults). One run: round 0 is the supervised run (the same seeds, bit for bit: see
   ``tests/test_pseudo.py``), round 1 retrains every fold with the pseudo-labelled unlabelled
   recordings its teacher may see. So "without" and "with" are scored on the same folds and
   the same validation recordings; the table shows pooled out-of-fold AUCs of both, per class
   and per fold, and how many pseudo-labels each fold used.
2. **DDP** -- ``stetho train --nproc 2`` (torchrun, gloo, 1 thread per process) against one
   process with 1 and with 2 threads, fold 0 of the same config, each in a fresh process; wall
   time of the whole command (start-up included) and the run's own time. The two-process run
   uses ``batch_size=16`` per process, so every step sees the same 32 recordings as one
   process with ``batch_size=32``.

Results are written as markdown (default ``benchmarks/results/pseudo_ddp.md``) and printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from stetho.config import load_config
from stetho.training.experiment import run_experiment, summarize_oof
from stetho.training.pseudo import round_dir

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "heartbeat-sounds"
CONFIG = ROOT / "configs" / "heartbeat.yaml"
QUIET = ["training.build_scoring_pipelines=false", "training.run_interpretations=false"]


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.4f}"


def bench_pseudo(data: Path, epochs: int, work: Path) -> list[str]:
    overrides = QUIET + [
        f"training.epochs={epochs}",
        "pseudo_labeling.enabled=true",
        "pseudo_labeling.rounds=1",
        "environment.threads=1",
    ]
    cfg = load_config(CONFIG, overrides)
    t0 = time.perf_counter()
    result = run_experiment(cfg, out_dir=work / "pseudo", data=data, progress=False)
    seconds = time.perf_counter() - t0
    run = result.run_dir
    classes = result.summary["classes"]
    folds = result.summary["folds"]
    r0 = pd.concat(
        pd.read_parquet(round_dir(run, 0) / f"fold-{k}" / "valid_predictions.parquet")
        for k in folds
    )
    without, with_pl = summarize_oof(r0, classes), result.summary
    pl = cfg.pseudo_labeling
    manifest = pd.read_parquet(run / "manifest.parquet")
    n_unlabelled = int(manifest["label"].isna().sum())
    lines = [
        "## Pseudo-labelling on the mission set",
        "",
        f"`configs/heartbeat.yaml` with `training.epochs={epochs}` (the config says 30; "
        "reduced because the 2-core machine is shared) and `environment.threads=1`, "
        "5 patient-grouped folds, "
        f"`pseudo_labeling: rounds={pl.rounds}, confidence_threshold={pl.confidence_threshold}, "
        f"weight={pl.weight}`; {n_unlabelled} unlabelled recordings. Without = round 0 (the "
        "supervised run, identical to one with pseudo-labelling off), with = round 1; same "
        f"folds, same {len(r0)} validation recordings. One run, {seconds / 60:.1f} min.",
        "",
        "| pooled out-of-fold | without | with | change |",
        "|---|---:|---:|---:|",
    ]

    def row(name: str, a: float, b: float) -> str:
        return f"| {name} | {_fmt(a)} | {_fmt(b)} | {b - a:+.4f} |"

    pa, pb = without["pooled"], with_pl["pooled"]
    lines.append(row("**macro AUC**", pa["macro_auc"], pb["macro_auc"]))
    for c in classes:
        lines.append(row(f"AUC {c}", pa["per_class"][c]["auc"], pb["per_class"][c]["auc"]))
    lines.append(row("balanced accuracy", pa["balanced_accuracy"], pb["balanced_accuracy"]))
    lines += ["", "| fold | macro AUC without | with | pseudo-labels used / candidates |"]
    lines.append("|---|---:|---:|---:|")
    for k in folds:
        table = pd.read_parquet(run / f"pseudo_labels_fold{k}_round1.parquet")
        a = without["per_fold"][str(k)]["macro_auc"]
        b = with_pl["per_fold"][str(k)]["macro_auc"]
        lines.append(f"| {k} | {_fmt(a)} | {_fmt(b)} | {int(table['used'].sum())} / {len(table)} |")
    return lines


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def bench_ddp(data: Path, epochs: int, work: Path) -> list[str]:
    base = QUIET + [f"training.epochs={epochs}", "dataset.folds=[0]"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cases = [
        ("1 process, 1 thread", ["environment.threads=1"], 1),
        ("1 process, 2 threads", ["environment.threads=2"], 1),
        (
            "2 processes (DDP, gloo), 1 thread each",
            ["environment.threads=1", "training.batch_size=16"],
            2,
        ),
    ]
    rows = []
    for name, extra, nproc in cases:
        out = work / f"ddp-{nproc}-{len(rows)}"
        cmd = [
            sys.executable,
            "-m",
            "stetho",
            "train",
            str(CONFIG),
            *base,
            *extra,
            "--data",
            str(data),
            "--out",
            str(out),
            "--no-progress",
            "--nproc",
            str(nproc),
        ]
        wall = _timed(cmd, env, work)
        summary = json.loads((out / "summary.json").read_text())
        records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        train_s = sum(r["seconds"] for r in records)
        rows.append((name, wall, summary["seconds"], train_s, summary["pooled"]["macro_auc"]))
    lines = [
        "## Distributed data-parallel training, 2 processes beside 1",
        "",
        f"Fold 0 of `configs/heartbeat.yaml` on the mission set, {epochs} epochs, CPU "
        f"({os.cpu_count()} cores, shared with other work). Wall = the whole `stetho train` "
        "command (interpreter and imports included, twice for two processes); run = "
        "`summary.json` seconds (decode, train, validate, write); epochs = the sum of the "
        "epoch times in `metrics.jsonl` (training plus rank 0's validation).",
        "",
        "| setup | wall s | run s | epochs s | fold-0 macro AUC |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, wall, run_s, train_s, auc in rows:
        lines.append(f"| {name} | {wall:.1f} | {run_s:.1f} | {train_s:.1f} | {_fmt(auc)} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["pseudo", "ddp", "both"], default="both")
    ap.add_argument("--epochs", type=int, default=15, help="epochs of the pseudo-label runs")
    ap.add_argument("--ddp-epochs", type=int, default=3, help="epochs of the DDP timing runs")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pseudo_ddp.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work = Path(tempfile.mkdtemp(prefix="bench_pseudo_ddp_"))
    lines = [
        "# Pseudo-labelling and distributed training",
        "",
        f"`benchmarks/bench_pseudo_ddp.py --part {args.part} --epochs {args.epochs} "
        f"--ddp-epochs {args.ddp_epochs}`; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
    ]
    try:
        if args.part in ("pseudo", "both"):
            lines += bench_pseudo(args.data, args.epochs, work) + [""]
        if args.part in ("ddp", "both"):
            lines += bench_ddp(args.data, args.ddp_epochs, work) + [""]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
