"""Training benchmark on the mission set: our default vs Hydrogen Torch's reference config.

Runs, each on the 585 labelled recordings with patient-grouped folds (seed 0):
- ``default``: configs/heartbeat.yaml, 5 folds;
- ``reference``: ../shared/reference/hydrogen_torch_heartbeat.yaml unchanged (its ``folds: ['0']``
  trains fold 0 only; ``--reference-epochs`` may shorten it on CPU, said in the table);
- ``loso``: the default config with leave-one-source-out validation on the shared classes;
- ``rhythm``: the default config plus the heart-rhythm features (issue: do they help extrastole?).

Each run folder lands in ``--out``; a markdown table goes to ``benchmarks/results/training.md``.
Usage: ``python benchmarks/bench_training.py --out benchmarks/out [--only default,reference]``
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import torch

from stetho.config import load_config
from stetho.training.experiment import run_experiment

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "heartbeat-sounds"
REFERENCE = REPO.parent / "shared" / "reference" / "hydrogen_torch_heartbeat.yaml"
DEFAULT = REPO / "configs" / "heartbeat.yaml"
NO_EXTRAS = ["training.run_interpretations=false", "training.build_scoring_pipelines=false"]


def _run(name: str, config_path: Path, overrides: list[str], out: Path) -> dict:
    target = out / name
    for p in (target, target.with_name(name + ".partial")):
        shutil.rmtree(p, ignore_errors=True)
    cfg = load_config(config_path, overrides + NO_EXTRAS)
    t0 = time.time()
    res = run_experiment(cfg, out_dir=target, data=DATA, progress=False)
    pooled = res.summary["pooled"]
    fold0 = res.summary["per_fold"].get("0", {})
    return {
        "name": name,
        "overrides": overrides,
        "folds": res.summary["folds"],
        "n": pooled["n"],
        "macro_auc": pooled["macro_auc"],
        "balanced_accuracy": pooled["balanced_accuracy"],
        "auc": {c: v["auc"] for c, v in pooled["per_class"].items()},
        "fold0_macro_auc": fold0.get("macro_auc"),
        "per_source": {s: m["macro_auc"] for s, m in res.summary["per_source"].items()},
        "seconds": time.time() - t0,
    }


def _f(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def table(rows: list[dict]) -> str:
    classes = sorted({c for r in rows for c in r["auc"]})
    head = (
        ["run", "folds", "n", "macro AUC", "fold-0 macro AUC", "bal. acc."]
        + [f"AUC {c}" for c in classes]
        + ["wall time"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (
            [
                r["name"],
                ",".join(map(str, r["folds"])),
                str(r["n"]),
                _f(r["macro_auc"]),
                _f(r["fold0_macro_auc"]),
                _f(r["balanced_accuracy"]),
            ]
            + [_f(r["auc"].get(c)) for c in classes]
            + [f"{r['seconds'] / 60:.1f} min"]
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    ap.add_argument("--only", default="default,reference,loso,rhythm")
    ap.add_argument("--reference-epochs", type=int, default=None, help="shorten the reference run")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "training.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    plans = {
        "default": (DEFAULT, []),
        "reference": (
            REFERENCE,
            [f"training.epochs={args.reference_epochs}"] if args.reference_epochs else [],
        ),
        "loso": (DEFAULT, ["dataset.validation_strategy=leave_source_out"]),
        "rhythm": (DEFAULT, ["training.rhythm_features=true"]),
    }
    rows = []
    raw = args.results.with_suffix(".json")
    if raw.exists():
        rows = [r for r in json.loads(raw.read_text()) if r["name"] not in args.only.split(",")]
    for name in args.only.split(","):
        path, overrides = plans[name]
        print(f"== {name}", flush=True)
        rows.append(_run(name, path, overrides, args.out))
        print(table(rows[-1:]), flush=True)
    order = list(plans)
    rows.sort(key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(rows, indent=2))
    args.results.write_text(table(rows) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
