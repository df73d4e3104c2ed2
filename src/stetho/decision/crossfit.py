"""Honest figures for a decision rule: cross-fitted calibration, threshold and abstain band.

A calibration, threshold or band chosen on the recordings it is then scored on reports
figures no clinic will see. :func:`cross_fit` takes the out-of-fold probabilities of a run
(each recording predicted by the fold model that did not train on it) and, for each outer fold
``k``, fits everything on the *other* folds only and applies it to fold ``k``. The pooled result
over all folds is what the rule is worth on recordings it has never seen; patients stay within
one fold (the run's patient-grouped folds), so patient-level figures are honest too.

The per-fold prior correction (``offsets``) is a property of each fold's model (its class
weights), not something fitted on labels: it is added to that fold's rows both when fitting
(for the other folds) and when applying.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.special import softmax
from sklearn.metrics import balanced_accuracy_score

from stetho.decision.abstention import abstain_band, accepted_metrics, outcomes
from stetho.decision.calibration import (
    Calibration,
    Method,
    calibration_metrics,
    fit_scaling,
    label_indices,
    log_probs,
)
from stetho.decision.operating_point import (
    NORMAL,
    OperatingPoint,
    OperatingPointConfig,
    abnormal_score,
    abnormal_truth,
    binary_metrics,
    bootstrap_ci,
    choose_threshold,
)
from stetho.decision.patients import (
    Aggregation,
    patient_decisions,
    patient_ids,
    patient_metrics,
)

CalibrationChoice = Literal["none", "prior", "temperature", "vector", "auto"]
#: What ``auto`` chooses among, by inner cross-validated log loss on the fitting folds
#: (with a single fitting fold there is nothing to validate on: ``temperature``, one parameter).
AUTO_CANDIDATES: tuple[Literal["prior", "temperature", "vector"], ...] = (
    "prior",
    "temperature",
    "vector",
)


@dataclass(frozen=True)
class DecisionSpec:
    """What to fit: a calibration method, an operating point, and optionally a coverage."""

    calibration: CalibrationChoice = "auto"
    operating_point: OperatingPointConfig = field(
        default_factory=lambda: OperatingPointConfig(target="abnormal_sensitivity", value=0.9)
    )
    coverage: float | None = None
    patient_aggregation: Aggregation = "any"


@dataclass(frozen=True)
class FittedDecision:
    """One fit: ``softmax(weight * log p + offset + bias)``, a threshold and a band."""

    method: str
    weight: tuple[float, ...]
    bias: tuple[float, ...]
    operating_point: OperatingPoint
    abstain_band: tuple[float, float] | None

    @property
    def threshold(self) -> float:
        return self.operating_point.threshold

    def calibration(self, offset: Sequence[float] | np.ndarray | None = None) -> Calibration:
        """The rule's calibration for a model whose prior correction is ``offset``."""
        b = np.asarray(self.bias) + (0.0 if offset is None else np.asarray(offset, dtype=float))
        return Calibration(self.method, self.weight, tuple(float(v) for v in b - b.mean()))

    def rule_dict(self, offset: Sequence[float] | np.ndarray | None = None) -> dict[str, Any]:
        """The decision rule's fields (``calibration``, ``threshold``, ``abstain_band``)."""
        return {
            "calibration": self.calibration(offset).to_dict(),
            "threshold": self.threshold,
            "abstain_band": list(self.abstain_band) if self.abstain_band is not None else None,
        }

    def calibrate(self, probs: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
        k = len(self.weight)
        off = np.zeros((len(probs), k)) if offsets is None else np.asarray(offsets, dtype=float)
        z = np.asarray(self.weight) * log_probs(probs) + off + np.asarray(self.bias)
        return np.asarray(softmax(z, axis=1))


def _method_name(method: str, offsets: np.ndarray | None) -> str:
    has_prior = offsets is not None and bool(np.any(offsets != 0))
    if method in {"none", "prior"}:  # nothing fitted: only the fold models' offsets apply
        return "prior" if has_prior else "none"
    return f"prior+{method}" if has_prior and method != "none" else method


def _choose_method(
    probs: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    offsets: np.ndarray,
    folds: np.ndarray,
) -> Literal["prior", "temperature", "vector"]:
    """The candidate with the lowest inner cross-fitted log loss over the given folds."""
    uniq = np.unique(folds)
    if len(uniq) < 2:
        return "temperature"
    losses = {}
    for m in AUTO_CANDIDATES:
        total = 0.0
        for j in uniq:
            fit, test = folds != j, folds == j
            w, b = fit_scaling(probs[fit], labels[fit], classes, m, offset=offsets[fit])
            p = softmax(w * log_probs(probs[test]) + offsets[test] + b, axis=1)
            total += calibration_metrics(p, labels[test], classes)["log_loss"] * test.sum()
        losses[m] = total
    return min(losses, key=lambda m: losses[m])


def fit_decision(
    probs: np.ndarray,
    labels: Sequence[str] | np.ndarray,
    classes: Sequence[str],
    spec: DecisionSpec,
    *,
    offsets: np.ndarray | None = None,
    folds: np.ndarray | None = None,
) -> FittedDecision:
    """Calibration, threshold and band fitted on (probs, labels); ``folds`` serve ``auto``."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=object)
    k = len(classes)
    off = np.zeros((len(probs), k)) if offsets is None else np.asarray(offsets, dtype=float)
    method: Method = (
        _choose_method(
            probs, labels, classes, off, np.zeros(len(probs)) if folds is None else folds
        )
        if spec.calibration == "auto"
        else spec.calibration
    )
    w, b = fit_scaling(probs, labels, classes, method, offset=off)
    fitted = FittedDecision(
        _method_name(method, offsets),
        tuple(map(float, w)),
        tuple(map(float, b)),
        OperatingPoint(0.5, "fixed", 0.5, float("nan"), float("nan")),
        None,
    )
    score = abnormal_score(fitted.calibrate(probs, off), classes)
    op = choose_threshold(score, abnormal_truth(labels), spec.operating_point)
    band = abstain_band(score, op.threshold, spec.coverage) if spec.coverage else None
    return FittedDecision(fitted.method, fitted.weight, fitted.bias, op, band)


def rule_labels(calibrated: np.ndarray, classes: Sequence[str], threshold: float) -> np.ndarray:
    """Class per recording consistent with the abnormal flag: ``normal`` below the threshold,
    else the most probable abnormal class."""
    j = list(classes).index(NORMAL)
    abn = calibrated.copy()
    abn[:, j] = -np.inf
    best_abnormal = np.asarray(classes, dtype=object)[abn.argmax(axis=1)]
    score = 1.0 - calibrated[:, j]
    return np.where(score >= threshold, best_abnormal, NORMAL).astype(object)


@dataclass(frozen=True)
class CrossFitResult:
    """Per-recording decisions, per-fold fits, and the pooled honest metrics."""

    decisions: pd.DataFrame
    fitted: dict[Any, FittedDecision]
    metrics: dict[str, Any]


def cross_fit(
    probs: np.ndarray,
    labels: Sequence[str] | np.ndarray,
    folds: Sequence[Any] | np.ndarray,
    classes: Sequence[str],
    spec: DecisionSpec,
    *,
    patients: Sequence[object] | np.ndarray | None = None,
    offsets: Mapping[Any, Sequence[float] | np.ndarray] | None = None,
    usable: Sequence[bool] | np.ndarray | None = None,
    n_boot: int = 1000,
) -> CrossFitResult:
    """For each fold ``k``: fit on the other folds, apply to fold ``k``; pool and score.

    Args:
        probs: ``(n, n_classes)`` out-of-fold probabilities.
        labels: true class per recording.
        folds: the fold that predicted each recording (at least two folds).
        classes: the columns of ``probs``.
        spec: what to fit.
        patients: patient id per recording (patient-level figures, patient bootstrap).
        offsets: fold -> that fold model's prior correction (``prior_correction_bias``).
        usable: per-recording usability; unusable recordings get "re-record".
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=object)
    folds = np.asarray(folds)
    n, k = probs.shape
    if len(labels) != n or len(folds) != n:
        raise ValueError(f"{n} rows of probabilities, {len(labels)} labels, {len(folds)} folds")
    label_indices(labels, classes)  # a clear error for unknown labels, before any fit
    uniq = np.unique(folds)
    if len(uniq) < 2:
        raise ValueError(f"cross-fitting needs at least two folds; got {uniq.tolist()}")
    off = np.zeros((n, k))
    if offsets is not None:
        missing = [f for f in uniq.tolist() if f not in offsets]
        if missing:
            raise ValueError(f"no prior correction given for folds {missing}")
        for f in uniq:
            off[folds == f] = np.asarray(offsets[f], dtype=float)
    fitted: dict[Any, FittedDecision] = {}
    calibrated = np.zeros_like(probs)
    thresholds = np.zeros(n)
    outcome = np.empty(n, dtype=object)
    usable_arr = None if usable is None else np.asarray(usable, dtype=bool)
    for f in uniq:
        fit, test = folds != f, folds == f
        fd = fit_decision(
            probs[fit], labels[fit], classes, spec, offsets=off[fit], folds=folds[fit]
        )
        fitted[f.item() if hasattr(f, "item") else f] = fd
        calibrated[test] = fd.calibrate(probs[test], off[test])
        thresholds[test] = fd.threshold
        score_k = abnormal_score(calibrated[test], classes)
        outcome[test] = outcomes(
            score_k,
            fd.threshold,
            fd.abstain_band,
            usable=None if usable_arr is None else usable_arr[test],
        )
    score = abnormal_score(calibrated, classes)
    predicted = np.empty(n, dtype=object)
    for f in uniq:
        sel = folds == f
        predicted[sel] = rule_labels(calibrated[sel], classes, thresholds[sel][0])
    decisions = pd.DataFrame(
        {
            "fold": folds,
            "label": labels,
            "patient": None if patients is None else np.asarray(patients, dtype=object),
            **{f"prob_{c}": calibrated[:, i] for i, c in enumerate(classes)},
            "abnormal_probability": score,
            "threshold": thresholds,
            "predicted": predicted,
            "outcome": outcome,
        }
    )
    metrics = pooled_metrics(
        probs, calibrated, labels, classes, decisions, spec, patients=patients, n_boot=n_boot
    )
    return CrossFitResult(decisions, fitted, metrics)


def pooled_metrics(
    raw: np.ndarray,
    calibrated: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    decisions: pd.DataFrame,
    spec: DecisionSpec,
    *,
    patients: Sequence[object] | np.ndarray | None = None,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Before (raw argmax, threshold 0.5) and after (the cross-fitted rule) on all recordings."""
    abnormal = abnormal_truth(labels)
    cls = np.asarray(classes, dtype=object)
    raw_pred = cls[raw.argmax(axis=1)]
    score = decisions["abnormal_probability"].to_numpy()
    thr = decisions["threshold"].to_numpy()
    pred_abn = score >= thr
    se_sp = {
        "sensitivity": float(pred_abn[abnormal].mean()) if abnormal.any() else float("nan"),
        "specificity": float((~pred_abn[~abnormal]).mean()) if (~abnormal).any() else float("nan"),
    }
    se_sp["macc"] = (se_sp["sensitivity"] + se_sp["specificity"]) / 2
    predicted = decisions["predicted"].to_numpy()
    outcome = decisions["outcome"].to_numpy()
    # bootstrap at each fold's own threshold: score - threshold >= 0 is the decision
    ci = bootstrap_ci(
        score - thr, abnormal, 0.0, groups=_groups(patients, len(score)), n_boot=n_boot
    )
    before = {
        **calibration_metrics(raw, labels, classes),
        "accuracy": float((raw_pred == labels).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(labels, raw_pred)),
        **binary_metrics(abnormal_score(raw, classes), abnormal, 0.5),
    }
    after = {
        **calibration_metrics(calibrated, labels, classes),
        "accuracy": float((predicted == labels).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "argmax_accuracy": float((cls[calibrated.argmax(axis=1)] == labels).mean()),
        **se_sp,
        "n": int(len(labels)),
        "sensitivity_ci": ci["sensitivity"],
        "specificity_ci": ci["specificity"],
    }
    out: dict[str, Any] = {"before": before, "after": after}
    if spec.coverage is not None:
        out["accepted"] = accepted_metrics(outcome, abnormal, correct=predicted == labels)
    if patients is not None:
        tables = []
        for f in np.unique(decisions["fold"]):
            sel = (decisions["fold"] == f).to_numpy()
            tables.append(
                patient_decisions(
                    np.asarray(patients, dtype=object)[sel],
                    score[sel],
                    float(thr[sel][0]),
                    method=spec.patient_aggregation,
                    abnormal=abnormal[sel],
                    outcome=outcome[sel] if spec.coverage is not None else None,
                )
            )
        out["patients"] = patient_metrics(pd.concat(tables, ignore_index=True))
    return out


def _groups(patients: Sequence[object] | np.ndarray | None, n: int) -> np.ndarray | None:
    return None if patients is None else patient_ids(patients, n)
