"""Tables of issue #12: from scratch vs the pretrained backbone, on the mission set and across
recorders, read from finished runs (the runs are made by the commands in
benchmarks/results/backbone.md).

    .venv/bin/python benchmarks/bench_backbone.py loso SCRATCH_RUN PRETRAINED_RUN
    .venv/bin/python benchmarks/bench_backbone.py mission NAME=RUN [NAME=RUN ...]

``loso``: two leave-one-source-out runs (``configs/heart-v1.yaml``): every source scored by
the fold model that never heard it. Normal vs abnormal, as the issue defines it: abnormal =
murmur, extrasystole, extra sound, PhysioNet ``abnormal``, CirCor ``Present``; normal = normal,
CirCor ``Absent``; artifacts, unlabelled recordings and CirCor ``Unknown`` left out. The score
is ``1 - p(normal)`` of the raw fold model (no decision rule: AUC does not depend on it).
Intervals: 95 % percentile bootstrap over patients (PhysioNet names none: one per recording).

``mission``: pooled out-of-fold figures of 5-fold mission-set runs (macro AUC, extrastole AUC,
balanced accuracy, the training seconds), one row per run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

LEFT_OUT = {"artifact"}
SOURCES = (
    "set_a",
    "set_b",
    "training-a",
    "training-b",
    "training-c",
    "training-d",
    "training-f",
    "circor",
)


def abnormal_frame(run: Path) -> pd.DataFrame:
    """The run's out-of-fold rows that are normal or abnormal, with ``y`` and ``score``."""
    oof = pd.read_parquet(run / "oof_predictions.parquet")
    oof = oof[~oof["label"].isin(LEFT_OUT) & oof["label"].notna()].copy()
    oof["y"] = (oof["label"] != "normal").astype(int)
    oof["score"] = 1.0 - oof["prob_normal"]
    return oof


def patient_bootstrap_auc(
    part: pd.DataFrame, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    groups = [g for _, g in part.groupby("patient")]
    aucs = []
    for _ in range(n_boot):
        sample = pd.concat([groups[i] for i in rng.integers(len(groups), size=len(groups))])
        if sample["y"].nunique() == 2:
            aucs.append(roc_auc_score(sample["y"], sample["score"]))
    lo, hi = np.percentile(aucs, [2.5, 97.5])
    return float(lo), float(hi)


def loso_table(scratch: Path, pretrained: Path | None) -> str:
    runs = {"from scratch": scratch} | ({"pretrained": pretrained} if pretrained else {})
    frames = {name: abnormal_frame(path) for name, path in runs.items()}
    head = (
        "| held-out source | n (abnormal) | "
        + " | ".join(f"AUC {name} (95 % CI)" for name in runs)
        + " |"
    )
    lines = [head, "|---|---|" + "---|" * len(runs)]
    means: dict[str, list[float]] = {name: [] for name in runs}
    for source in SOURCES:
        cells = []
        n = ""
        for name, frame in frames.items():
            part = frame[frame["source"] == source]
            if part.empty or part["y"].nunique() < 2:
                cells.append("n/a")
                continue
            n = f"{len(part)} ({int(part['y'].sum())})"
            auc = float(roc_auc_score(part["y"], part["score"]))
            lo, hi = patient_bootstrap_auc(part)
            means[name].append(auc)
            cells.append(f"{auc:.3f} ({lo:.2f}–{hi:.2f})")
        lines.append(f"| {source} | {n} | " + " | ".join(cells) + " |")
    lines.append(
        "| **mean over sources** | | "
        + " | ".join(f"**{np.mean(v):.3f}**" for v in means.values())
        + " |"
    )
    lines.append(
        "| lowest source | | " + " | ".join(f"{np.min(v):.3f}" for v in means.values()) + " |"
    )
    seconds = [json.loads((p / "summary.json").read_text())["seconds"] for p in runs.values()]
    lines.append(
        "| training time (8 folds) | | " + " | ".join(f"{s:.0f} s" for s in seconds) + " |"
    )
    return "\n".join(lines)


def mission_table(runs: dict[str, Path]) -> str:
    lines = [
        "| run | macro AUC | AUC extrastole | AUC murmur | AUC normal | balanced accuracy | "
        "training time |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        s = json.loads((run / "summary.json").read_text())
        p = s["pooled"]
        auc = {c: v["auc"] for c, v in p["per_class"].items()}
        lines.append(
            f"| {name} | {p['macro_auc']:.3f} | {auc['extrastole']:.3f} | {auc['murmur']:.3f} | "
            f"{auc['normal']:.3f} | {p['balanced_accuracy']:.3f} | {s['seconds']:.0f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    loso = sub.add_parser("loso")
    loso.add_argument("scratch", type=Path)
    loso.add_argument("pretrained", type=Path, nargs="?")
    mission = sub.add_parser("mission")
    mission.add_argument("runs", nargs="+", help="NAME=RUN")
    args = parser.parse_args()
    if args.what == "loso":
        print(loso_table(args.scratch, args.pretrained))
    else:
        runs = dict(item.split("=", 1) for item in args.runs)
        print(mission_table({k: Path(v) for k, v in runs.items()}))


if __name__ == "__main__":
    main()
