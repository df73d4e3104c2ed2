"""Benchmark of ``stetho.decision``: what calibration, an operating point and abstention give.

    .venv/bin/python benchmarks/bench_decisions.py RUN_DIR [--out FILE] [--boot N]

Reads a finished run's out-of-fold predictions (every recording scored by the fold model that
did not train on it) and reports, **cross-fitted by fold**: for each outer fold ``k`` the
calibration (method chosen by inner cross-validated log loss among prior / prior+temperature /
prior+vector), the abnormal threshold and the abstain band are fitted on the other folds only,
then applied to fold ``k``; the figures pool the five folds. Nothing is chosen by looking at a
fold that is reported.

Before: the run's raw probabilities, arg-max class, abnormal at ``1 − p(normal) >= 0.5``.
After, two operating points (each a target fixed before looking at any result):

- ``Se>=0.90``: the highest threshold whose sensitivity on the other folds is >= 0.90;
- ``MAcc-opt``: the threshold maximising MAcc on the other folds.

The prior correction of each fold model is derived from the run's config (its
``training.class_weights`` applied to that fold's training labels, i.e. the other folds'
labels) with :func:`stetho.training.optim.class_weight_vector`, the function training uses.
Abstention: a band holding 10 % of the other folds' recordings around the threshold.
Patient level: one decision per patient (set_b's several takes), aggregations ``any``, ``max``,
``mean`` of the cross-fitted abnormal probabilities at that fold's threshold. Intervals: 95 %
percentile bootstrap over patients. Default output: ``benchmarks/results/decisions.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve

from stetho.config import load_config
from stetho.decision.abstention import risk_coverage
from stetho.decision.calibration import prior_correction_bias
from stetho.decision.crossfit import CrossFitResult, DecisionSpec, cross_fit
from stetho.decision.fitting import fit_run_decision
from stetho.decision.operating_point import OperatingPointConfig, abnormal_score, abnormal_truth
from stetho.decision.patients import Aggregation, patient_decisions, patient_metrics
from stetho.io import atomic_write_text
from stetho.runs.folder import RunFolder
from stetho.training.experiment import fold_prior_offsets
from stetho.training.optim import class_weight_vector

TARGETS = {
    "ece": ("<=", 0.05),
    "log_loss": ("<=", 0.50),
    "accuracy": (">=", 0.80),
    "balanced_accuracy": (">=", 0.759),
    "macc": (">=", 0.88),
}


def prior_offsets(
    run: RunFolder, oof: pd.DataFrame, classes: list[str], loss_function: str
) -> dict[int, np.ndarray] | None:
    """Each fold model's prior correction, from its training labels and the run's weights."""
    cfg = load_config(run.config)
    if cfg.training.class_weights is None:
        return None
    offsets = {}
    for k in sorted(oof["fold"].unique()):
        train = oof.loc[oof["fold"] != k, "label"].to_numpy()
        onehot = (train[:, None] == np.asarray(classes, dtype=object)[None]).astype(np.float32)
        weights = class_weight_vector(cfg.training, onehot)
        assert weights is not None
        counts = onehot.sum(axis=0) + 1.0  # as the Auto weights count: no class at zero
        offsets[int(k)] = prior_correction_bias(
            counts, class_weights=weights.numpy(), loss_function=loss_function
        )
    return offsets


def fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return f"[{v[0]:.3f}, {v[1]:.3f}]"
    if isinstance(v, float):
        return "–" if np.isnan(v) else f"{v:.3f}"
    return str(v)


def verdict(name: str, value: float) -> str:
    if name not in TARGETS:
        return ""
    op, bound = TARGETS[name]
    ok = value <= bound if op == "<=" else value >= bound
    return f"{op} {bound} {'yes' if ok else '**no**'}"


def patient_rows(res: CrossFitResult, patients: np.ndarray) -> dict[str, dict[str, float]]:
    d = res.decisions
    out: dict[str, dict[str, float]] = {}
    methods: tuple[Aggregation, ...] = ("any", "max", "mean")
    for method in methods:
        tables = []
        for f in np.unique(d["fold"]):
            sel = (d["fold"] == f).to_numpy()
            tables.append(
                patient_decisions(
                    patients[sel],
                    d.loc[sel, "abnormal_probability"].to_numpy(),
                    float(d.loc[sel, "threshold"].iloc[0]),
                    method=method,
                    abnormal=abnormal_truth(d.loc[sel, "label"].to_numpy()),
                )
            )
        out[method] = patient_metrics(pd.concat(tables, ignore_index=True))
    return out


def argmax_bacc(res: CrossFitResult, classes: list[str]) -> float:
    d = res.decisions
    p = d[[f"prob_{c}" for c in classes]].to_numpy()
    pred = np.asarray(classes, dtype=object)[p.argmax(axis=1)]
    return float(balanced_accuracy_score(d["label"].to_numpy(dtype=object), pred))


def roc_ceiling(res: CrossFitResult, labels: np.ndarray, raw: np.ndarray) -> dict[str, float]:
    d = res.decisions
    y = abnormal_truth(labels).astype(int)
    fpr, tpr, _ = roc_curve(y, d["abnormal_probability"].to_numpy())
    return {
        "auc": float(roc_auc_score(y, d["abnormal_probability"].to_numpy())),
        "raw_auc": float(roc_auc_score(y, raw)),
        "best_macc": float(((tpr + 1 - fpr) / 2).max()),
        "spec_at_se90": float((1 - fpr[tpr >= 0.9]).max()),
    }


def training_step(
    run: RunFolder, oof: pd.DataFrame, classes: list[str], n_boot: int
) -> tuple[str, dict[str, dict[str, Any]]]:
    """The after-folds step as training runs it (``fit_decision_step``'s fit), with the run's
    config (the default: ``macc``, ``auto``, no band) and two variants named before looking:
    a 10 % band, and ``abnormal_sensitivity`` 0.90. Returns where the default came from and the
    ``summary.json``-format blocks."""
    cfg = load_config(run.config)
    summary = json.loads(run.summary.read_text())
    offsets = fold_prior_offsets(cfg, oof, classes)  # type: ignore[arg-type]
    loss = cfg.training.loss_function
    blocks: dict[str, dict[str, Any]] = {}
    origin = "computed here with training's fit (the run predates it)"
    if "decision" in summary and "recording" in summary["decision"]:
        blocks["config (summary.json)"] = summary["decision"]
        origin = "read from the run's summary.json"
    # A run trained before decision rules has no operating_point in its config (which then
    # reads as fixed at probability_threshold): use today's default, macc.
    default = {"operating_point": {"target": "macc", "value": None}}
    variants = {
        "config (summary.json)": default,
        "+ abstain_coverage 0.9": {**default, "abstain_coverage": 0.9},
        "Se>=0.90 + 0.9": {
            "abstain_coverage": 0.9,
            "operating_point": {"target": "abnormal_sensitivity", "value": 0.9},
        },
    }
    for name, change in variants.items():
        if name in blocks:
            continue
        pred = cfg.prediction.model_validate({**cfg.prediction.model_dump(), **change})
        blocks[name] = fit_run_decision(
            oof, classes, pred, loss_function=loss, offsets=offsets, n_boot=n_boot
        ).summary
    return origin, blocks


def training_lines(origin: str, blocks: dict[str, dict[str, Any]]) -> list[str]:
    names = list(blocks)
    rows: list[tuple[str, Any, str]] = [
        ("calibration (chosen on all folds)", lambda b: b["rule"]["calibration"], ""),
        ("threshold (shipped)", lambda b: f"{b['rule']['threshold']:.3f}", ""),
        (
            "ECE before → after (15 bins)",
            lambda b: (
                f"{b['calibration']['before']['ece']:.3f} → {b['calibration']['after']['ece']:.3f}"
            ),
            "<= 0.05",
        ),
        (
            "log loss before → after",
            lambda b: (
                f"{b['calibration']['before']['log_loss']:.3f} → "
                f"{b['calibration']['after']['log_loss']:.3f}"
            ),
            "<= 0.50",
        ),
        ("accuracy", lambda b: f"{b['recording']['accuracy']:.3f}", ">= 0.80"),
        ("balanced accuracy", lambda b: f"{b['recording']['balanced_accuracy']:.3f}", ">= 0.759"),
        (
            "sensitivity [95 % CI, patients]",
            lambda b: (
                f"{b['recording']['sensitivity']:.3f} "
                f"{fmt(tuple(b['recording']['sensitivity_ci']))}"
            ),
            "",
        ),
        (
            "specificity [95 % CI, patients]",
            lambda b: (
                f"{b['recording']['specificity']:.3f} "
                f"{fmt(tuple(b['recording']['specificity_ci']))}"
            ),
            ">= 0.80 at Se >= 0.90",
        ),
        ("MAcc", lambda b: f"{b['recording']['macc']:.3f}", ">= 0.88"),
        (
            "coverage / accepted MAcc (gain)",
            lambda b: (
                "–"
                if not b["abstention"]
                else f"{b['abstention']['coverage']:.3f} / {b['abstention']['macc']:.3f} "
                f"({b['abstention']['macc_gain']:+.3f})"
            ),
            "gain >= 0.03 at 10 %",
        ),
        (
            "patient-level MAcc (`any`)",
            lambda b: f"{b['patients']['macc']:.3f} ({b['patients']['patients']} patients)",
            "beside recording-level",
        ),
    ]
    out = [
        "",
        "## As training writes it (`summary.json` → `decision`)",
        "",
        f"The default config's after-folds step ({origin}): `prediction.calibration: auto`, "
        "`operating_point: {target: macc}`, no band; then two variants fixed in advance. All "
        "cross-fitted by fold; bootstrap over patients.",
        "",
        "| metric | " + " | ".join(names) + " | target |",
        "| --- | " + " | ".join("---" for _ in names) + " | --- |",
    ]
    for title, get, target in rows:
        out.append(
            f"| {title} | " + " | ".join(str(get(blocks[n])) for n in names) + f" | {target} |"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a finished run folder")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/decisions.md"))
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    args = ap.parse_args()
    run = RunFolder(args.run)
    if not run.oof_predictions.is_file():
        raise SystemExit(f"{run.oof_predictions} not found: is {args.run} a finished run?")
    labels_info = json.loads(run.labels.read_text())
    classes: list[str] = labels_info["classes"]
    loss_function = labels_info.get("loss_function", "CrossEntropy")
    oof = pd.read_parquet(run.oof_predictions)
    oof = oof[oof["label"].isin(classes)].reset_index(drop=True)
    probs = oof[[f"prob_{c}" for c in classes]].to_numpy(np.float64)
    labels = oof["label"].to_numpy(dtype=object)
    folds = oof["fold"].to_numpy()
    patients = oof["patient"].to_numpy(dtype=object)
    offsets = prior_offsets(run, oof, classes, loss_function)

    t0 = time.perf_counter()
    specs = {
        "Se>=0.90": OperatingPointConfig(target="abnormal_sensitivity", value=0.9),
        "MAcc-opt": OperatingPointConfig(target="macc", value=None),
    }
    results = {
        name: cross_fit(
            probs,
            labels,
            folds,
            classes,
            DecisionSpec(calibration="auto", operating_point=op, coverage=0.9),
            patients=patients,
            offsets=offsets,
            n_boot=args.boot,
        )
        for name, op in specs.items()
    }
    seconds = time.perf_counter() - t0

    first = next(iter(results.values()))
    before = first.metrics["before"]
    lines = [
        "# Decisions a clinic can act on (issue #13)",
        "",
        f"Run `{run.name}`: {len(oof)} labelled out-of-fold recordings, "
        f"{len(np.unique(folds))} folds, {len(np.unique(patients.astype(str)))} patient ids, "
        f"classes {classes}. Produced by `benchmarks/bench_decisions.py` in {seconds:.1f} s.",
        "",
        "**Everything is cross-fitted by fold**: for each outer fold, calibration (method "
        "chosen by inner cross-validated log loss), threshold and abstain band are fitted on "
        "the other folds only and applied to that fold; the figures pool all folds. Nothing "
        "was chosen by looking at a fold that is reported. Abnormal = every class but "
        "`normal` (PhysioNet 2016), score `1 − p(normal)`.",
        "",
        "Prior correction: "
        + ("from the run's class weights, per fold model." if offsets else "none (no weights)."),
        "",
        "| metric | before (raw, arg-max, 0.5) | after, Se>=0.90 | after, MAcc-opt | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    after = {k: r.metrics["after"] for k, r in results.items()}
    rows = [
        ("ECE (15 bins)", "ece"),
        ("log loss", "log_loss"),
        ("accuracy (labels consistent with the flag)", "accuracy"),
        ("balanced accuracy", "balanced_accuracy"),
        ("sensitivity (abnormal)", "sensitivity"),
        ("specificity", "specificity"),
        ("MAcc", "macc"),
    ]
    for title, key in rows:
        cells = [fmt(before[key])] + [fmt(a[key]) for a in after.values()]
        target = verdict(key, after["MAcc-opt"][key]) if key in TARGETS else ""
        if key == "specificity":
            target = f">= 0.80 at Se>=0.90: {'yes' if after['Se>=0.90'][key] >= 0.8 else '**no**'}"
        lines.append(f"| {title} | " + " | ".join(cells) + f" | {target} |")
    lines.append(
        "| sensitivity 95 % CI (patients) | – | "
        + " | ".join(fmt(a["sensitivity_ci"]) for a in after.values())
        + " | |"
    )
    lines.append(
        "| specificity 95 % CI (patients) | – | "
        + " | ".join(fmt(a["specificity_ci"]) for a in after.values())
        + " | |"
    )
    lines.append(
        "| arg-max accuracy of calibrated probabilities | "
        + fmt(before["accuracy"])
        + " | "
        + " | ".join(fmt(a["argmax_accuracy"]) for a in after.values())
        + " | |"
    )
    lines.append(
        "| arg-max balanced accuracy of calibrated probabilities | "
        + fmt(before["balanced_accuracy"])
        + " | "
        + " | ".join(fmt(argmax_bacc(r, classes)) for r in results.values())
        + " | |"
    )
    acc = {k: r.metrics["accepted"] for k, r in results.items()}
    lines.append(
        "| coverage with the 10 % band | 1.000 | "
        + " | ".join(fmt(a["coverage"]) for a in acc.values())
        + " | |"
    )
    gains = {k: acc[k]["macc"] - after[k]["macc"] for k in results}
    lines.append(
        "| MAcc on accepted recordings | – | "
        + " | ".join(f"{acc[k]['macc']:.3f} ({gains[k]:+.3f})" for k in results)
        + f" | gain >= 0.03: {'yes' if gains['MAcc-opt'] >= 0.03 else '**no**'} |"
    )
    lines.append(
        "| accuracy on accepted recordings | – | "
        + " | ".join(fmt(a["accuracy"]) for a in acc.values())
        + " | |"
    )
    pat = {k: patient_rows(r, patients) for k, r in results.items()}
    for method in ("any", "max", "mean"):
        lines.append(
            f"| patient-level MAcc (`{method}`) | – | "
            + " | ".join(fmt(pat[k][method]["macc"]) for k in results)
            + " | |"
        )
    n_pat = pat["MAcc-opt"]["any"]["patients"]
    ceiling = roc_ceiling(first, labels, abnormal_score(probs, classes))
    lines += [
        "",
        "**What the scores allow**, for scale (chosen in hindsight on the pooled cross-fitted "
        "abnormal probability, so *not* an honest figure): normal-vs-abnormal ROC AUC "
        f"{ceiling['auc']:.3f} (raw scores {ceiling['raw_auc']:.3f}); the best MAcc of any "
        f"single threshold {ceiling['best_macc']:.3f}; the best specificity with sensitivity "
        f">= 0.90 {ceiling['spec_at_se90']:.3f}. A threshold, a calibration and a band move "
        "a rule along the model's ROC curve; they cannot lift the curve.",
        "",
        f"Patient level: {n_pat} patients (a missing id counts as its own patient); a patient is "
        "abnormal when any recording is. Targets are read on the MAcc-optimal column except "
        "specificity (read at Se >= 0.90).",
        "",
        "## Fitted per fold (each on the other folds)",
        "",
        "| operating point | fold | calibration | weight | threshold | band |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        for f, fd in r.fitted.items():
            w = ", ".join(f"{v:.2f}" for v in fd.weight)
            band = fmt(fd.abstain_band) if fd.abstain_band else "–"
            lines.append(f"| {name} | {f} | {fd.method} | {w} | {fd.threshold:.3f} | {band} |")
    d = results["MAcc-opt"].decisions
    curve = risk_coverage(
        d["abnormal_probability"].to_numpy(),
        abnormal_truth(d["label"].to_numpy()),
        d["threshold"].to_numpy(),
        correct=(d["predicted"] == d["label"]).to_numpy(),
    )
    lines += [
        "",
        "## Risk–coverage (MAcc-optimal threshold of each fold)",
        "",
        "Recordings ranked by distance from their fold's threshold (no labels used); accepted "
        "= the given fraction farthest from it. Accuracy is the multi-class label's.",
        "",
        "| coverage | accepted | accuracy | sensitivity | specificity | MAcc |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in curve.itertuples():
        lines.append(
            f"| {row.coverage:.2f} | {row.n_accepted} | {row.accuracy:.3f} | "
            f"{row.sensitivity:.3f} | {row.specificity:.3f} | {row.macc:.3f} |"
        )
    origin, blocks = training_step(run, oof, classes, args.boot)
    lines += training_lines(origin, blocks)
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
