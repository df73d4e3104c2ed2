"""Tables of issue #12: from scratch vs the pretrained backbone, on the mission set and across
recorders, read from finished runs (the runs are made by the commands in
benchmarks/results/backbone.md).

    .venv/bin/python benchmarks/bench_backbone.py loso NAME=RUN [NAME=RUN ...]
    .venv/bin/python benchmarks/bench_backbone.py mission NAME=RUN [NAME=RUN ...]
    .venv/bin/python benchmarks/bench_backbone.py splits SCRATCH:PRETRAINED [...]

``loso``: leave-one-source-out runs (``configs/heart-v1.yaml``), a column each: every
source scored by the fold model that never heard it. Normal vs abnormal, as the issue defines
it: abnormal = murmur, extrasystole, extra sound, PhysioNet ``abnormal``, CirCor ``Present``;
normal = normal, CirCor ``Absent``; artifacts, unlabelled recordings and CirCor ``Unknown``
left out. The score is ``1 - p(normal)`` of the raw fold model (no decision rule: AUC does
not depend on it).
Intervals: 95 % percentile bootstrap over patients (PhysioNet names none: one per recording).

``splits``: ``A:B`` pairs of 5-fold runs, one pair per patient split; the mean over splits
of B - A for macro AUC and balanced accuracy, with a patient bootstrap drawn jointly.

``mission``: pooled out-of-fold figures of 5-fold mission-set runs (macro AUC, extrastole AUC,
pooled and within set_b, balanced accuracy, the training seconds), one row per run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from stetho.evaluation.metrics import bootstrap_auc
from stetho.metrics import per_class_auc

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


def loso_table(runs: dict[str, Path]) -> str:
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
            lo, hi = bootstrap_auc(part["y"].to_numpy(), part["score"].to_numpy(), part["patient"])
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


def rule_table(run: Path) -> str:
    """Sensitivity and specificity per held-out source at the run's shipped decision rule.

    The rule (calibration + threshold, ``decision.json``) is fitted on the out-of-fold rows of
    the datasets without set labels (pascal, circor): their sources are scored by the
    cross-fitted rule (``decision_oof``: fitted on the other folds); PhysioNet's, which the
    fit never saw, by the shipped rule itself.
    """
    from stetho.decision import DecisionRule
    from stetho.decision.operating_point import abnormal_truth, binary_metrics

    oof = pd.read_parquet(run / "oof_predictions.parquet")
    classes = json.loads((run / "summary.json").read_text())["classes"]
    rule = DecisionRule.from_dict(json.loads((run / "decision.json").read_text()))
    crossfit = pd.read_parquet(run / "decision_oof.parquet")
    fold_source = oof.groupby("fold")["source"].first().to_dict()
    crossfit["source"] = crossfit["fold"].map(fold_source)
    lines = [
        "| held-out source | sensitivity | specificity | MAcc | scored by |",
        "|---|---|---|---|---|",
    ]
    for source in SOURCES:
        fitted = crossfit[crossfit["source"] == source]
        if len(fitted):
            # one fold per held-out source, so one cross-fitted threshold
            (threshold,) = fitted["threshold"].unique()
            part, how = fitted, "cross-fitted rule"
            score = part["abnormal_probability"].to_numpy()
        else:
            part, how = oof[oof["source"] == source], "shipped rule (never fitted on it)"
            probs = rule.probabilities(part[[f"prob_{c}" for c in classes]].to_numpy())
            score, threshold = rule.abnormal_probability(probs), rule.threshold
        keep = ~part["label"].isin(LEFT_OUT).to_numpy()
        m = binary_metrics(score[keep], abnormal_truth(part["label"].to_numpy()[keep]), threshold)
        lines.append(
            f"| {source} | {m['sensitivity']:.3f} | {m['specificity']:.3f} | {m['macc']:.3f} "
            f"| {how} |"
        )
    return "\n".join(lines)


def mission_table(runs: dict[str, Path]) -> str:
    """One row per run. ``extrastole in set_b``: its AUC among set_b's recordings only (the
    run's ``summary.json → per_source``). Every extrasystole is a set_b recording, so the
    pooled AUC also rewards telling the two recorders apart; this column does not."""
    lines = [
        "| run | macro AUC | AUC extrastole | extrastole in set_b | AUC murmur | AUC normal | "
        "balanced accuracy | training time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        s = json.loads((run / "summary.json").read_text())
        p = s["pooled"]
        auc = {c: v["auc"] for c, v in p["per_class"].items()}
        within = s["per_source"]["set_b"]["per_class"]["extrastole"]["auc"]
        lines.append(
            f"| {name} | {p['macro_auc']:.3f} | {auc['extrastole']:.3f} | {within:.3f} | "
            f"{auc['murmur']:.3f} | {auc['normal']:.3f} | {p['balanced_accuracy']:.3f} | "
            f"{s['seconds']:.0f} s |"
        )
    return "\n".join(lines)


def macro_auc(frame: pd.DataFrame, classes: list[str]) -> float:
    """Mean one-vs-rest AUC over the classes present (as ``summary.json``'s macro AUC)."""
    aucs = per_class_auc(
        frame["label"].to_numpy(), frame[[f"prob_{c}" for c in classes]].to_numpy(), classes
    )
    return float(np.nanmean(list(aucs.values())))


def paired_difference(a: Path, b: Path, n_boot: int = 1000, seed: int = 0) -> str:
    """Macro AUC of run ``b`` minus run ``a`` on the same recordings, with a 95 % patient
    bootstrap interval (both runs resampled by the same patients)."""
    classes = json.loads((a / "summary.json").read_text())["classes"]
    fa = pd.read_parquet(a / "oof_predictions.parquet").set_index("path")
    fb = pd.read_parquet(b / "oof_predictions.parquet").set_index("path").loc[fa.index]
    diff = macro_auc(fb, classes) - macro_auc(fa, classes)
    rng = np.random.default_rng(seed)
    patients = fa["patient"].to_numpy()
    groups = [np.flatnonzero(patients == p) for p in np.unique(patients)]
    boots = []
    for _ in range(n_boot):
        rows = np.concatenate([groups[i] for i in rng.integers(len(groups), size=len(groups))])
        boots.append(macro_auc(fb.iloc[rows], classes) - macro_auc(fa.iloc[rows], classes))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return (
        f"macro AUC {b.name} - {a.name}: {diff:+.3f}, 95 % patient bootstrap [{lo:+.3f}, {hi:+.3f}]"
    )


def balanced_accuracy(frame: pd.DataFrame, classes: list[str]) -> float:
    """Balanced accuracy of the arg-max class (as ``summary.json``'s)."""
    pred = np.asarray(classes, dtype=object)[
        frame[[f"prob_{c}" for c in classes]].to_numpy().argmax(1)
    ]
    return float(balanced_accuracy_score(frame["label"].to_numpy(), pred))


def split_differences(pairs: list[tuple[Path, Path]], n_boot: int = 1000, seed: int = 0) -> str:
    """Mean over patient splits of run ``b`` minus run ``a`` (one ``(a, b)`` pair per split, all
    on the same recordings), for macro AUC and balanced accuracy, with a 95 % patient bootstrap
    interval: each resample draws the same patients in every split, so the interval is that of
    the mean difference, not of one split's."""
    classes = json.loads((pairs[0][0] / "summary.json").read_text())["classes"]
    frames = []
    for a, b in pairs:
        fa = pd.read_parquet(a / "oof_predictions.parquet").set_index("path").sort_index()
        fb = pd.read_parquet(b / "oof_predictions.parquet").set_index("path").loc[fa.index]
        frames.append((fa, fb))
    index = frames[0][0].index
    if any(not fa.index.equals(index) for fa, _ in frames):
        raise SystemExit("splits: every pair must score the same recordings")
    patients = frames[0][0]["patient"].to_numpy()
    groups = [np.flatnonzero(patients == p) for p in np.unique(patients)]
    metrics = {"macro AUC": macro_auc, "balanced accuracy": balanced_accuracy}

    def differences(rows: np.ndarray | None) -> dict[str, list[float]]:
        """Per metric, B - A of each split, on ``rows`` (all rows if None)."""
        out: dict[str, list[float]] = {name: [] for name in metrics}
        for fa, fb in frames:
            ra, rb = (fa, fb) if rows is None else (fa.iloc[rows], fb.iloc[rows])
            for name, metric in metrics.items():
                out[name].append(metric(rb, classes) - metric(ra, classes))
        return out

    point = differences(None)
    rng = np.random.default_rng(seed)
    boots: dict[str, list[float]] = {name: [] for name in metrics}
    for _ in range(n_boot):
        rows = np.concatenate([groups[i] for i in rng.integers(len(groups), size=len(groups))])
        for name, values in differences(rows).items():
            boots[name].append(float(np.mean(values)))
    lines = [
        f"| mean over {len(pairs)} splits | difference | 95 % patient bootstrap |",
        "|---|---|---|",
    ]
    for name in metrics:
        lo, hi = np.percentile(boots[name], [2.5, 97.5])
        lines.append(f"| {name} | {np.mean(point[name]):+.3f} | [{lo:+.3f}, {hi:+.3f}] |")
    for k, (a, b) in enumerate(pairs):
        lines.append(
            f"| {b.name} - {a.name} | {point['macro AUC'][k]:+.3f} AUC, "
            f"{point['balanced accuracy'][k]:+.3f} BA | |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    loso = sub.add_parser("loso")
    loso.add_argument("runs", nargs="+", help="NAME=RUN")
    mission = sub.add_parser("mission")
    mission.add_argument("runs", nargs="+", help="NAME=RUN")
    rule = sub.add_parser("rule")
    rule.add_argument("run", type=Path)
    paired = sub.add_parser("paired")
    paired.add_argument("a", type=Path)
    paired.add_argument("b", type=Path)
    splits = sub.add_parser("splits")
    splits.add_argument("pairs", nargs="+", help="A:B, one per patient split (B - A)")
    args = parser.parse_args()
    if args.what == "rule":
        print(rule_table(args.run))
    elif args.what == "paired":
        print(paired_difference(args.a, args.b))
    elif args.what == "splits":
        pairs = [tuple(Path(p) for p in item.split(":", 1)) for item in args.pairs]
        print(split_differences(pairs))  # type: ignore[arg-type]
    else:
        runs = {k: Path(v) for k, v in (item.split("=", 1) for item in args.runs)}
        print(loso_table(runs) if args.what == "loso" else mission_table(runs))


if __name__ == "__main__":
    main()
