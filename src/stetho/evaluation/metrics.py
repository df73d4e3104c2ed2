"""The numbers of an evaluation, from scored recordings and their mapped targets.

:func:`evaluation_metrics` is the one place they are computed (another module of
``stetho.decision`` may take its place later): normal vs abnormal at the run's operating point
(the threshold of its :class:`~stetho.decision.DecisionRule`), with percentile-bootstrap
intervals that resample whole patients; calibration (top-label ECE, 15 bins); the confusion
matrix of the rule's decisions; multi-class metrics when the targets are the run's classes; and
:func:`group_table` per source and per dataset.

Input: a frame with ``target`` (run class or :data:`~stetho.evaluation.labels.ABNORMAL`),
``prob_<class>`` (the rule's calibrated probabilities), ``abnormal_prob``, ``predicted`` (the
rule's label) and ``patient``; only scored recordings with a target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, roc_auc_score

from stetho.decision import DecisionRule
from stetho.decision.calibration import expected_calibration_error
from stetho.decision.operating_point import binary_metrics, bootstrap_ci
from stetho.decision.patients import patient_decisions, patient_metrics
from stetho.evaluation.labels import ABNORMAL, Mode
from stetho.metrics import classification_metrics

#: Bins of the expected calibration error (as netcal and Guo et al. 2017).
ECE_BINS = 15
#: Bootstrap resamples and interval level.
N_BOOT = 2000
LEVEL = 0.95


def abnormal_truth(frame: pd.DataFrame, rule: DecisionRule) -> np.ndarray:
    """True where a recording's target is anything but the run's normal class."""
    return (frame["target"] != rule.normal_class).to_numpy(bool)


def auc_or_nan(truth: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC; NaN when one of the two classes is absent."""
    truth = np.asarray(truth, dtype=bool)
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth.astype(int), score))


def bootstrap_auc(
    truth: np.ndarray,
    score: np.ndarray,
    groups: Sequence[object] | np.ndarray,
    *,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the ROC AUC, resampling whole ``groups`` (patients).

    Resamples holding only one class are left out; ``(nan, nan)`` when none holds both.
    """
    truth = np.asarray(truth, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    _, gid = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    members = [np.flatnonzero(gid == g) for g in range(int(gid.max()) + 1)] if len(gid) else []
    if not members or truth.all() or not truth.any():
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(members), size=len(members))
        idx = np.concatenate([members[g] for g in pick])
        t = truth[idx]
        if t.all() or not t.any():
            continue
        values.append(roc_auc_score(t.astype(int), score[idx]))
    if not values:
        return (float("nan"), float("nan"))
    alpha = (1 - level) / 2
    return (float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha)))


def normal_vs_abnormal(
    frame: pd.DataFrame, rule: DecisionRule, *, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, Any]:
    """Normal vs the rule's abnormal decision, at the rule's threshold (see module doc)."""
    truth = abnormal_truth(frame, rule)
    score = frame["abnormal_prob"].to_numpy(np.float64)
    patients = frame["patient"].astype(str).to_numpy()
    at = binary_metrics(score, truth, rule.threshold)
    ci = bootstrap_ci(score, truth, rule.threshold, groups=patients, n_boot=n_boot, seed=seed)
    flagged = score >= rule.threshold
    matrix = confusion_matrix(truth, flagged, labels=[False, True])
    two = np.column_stack([1.0 - score, score])
    names = np.where(truth, ABNORMAL, "normal")
    outcome = frame["outcome"].to_numpy(object) if "outcome" in frame else None
    per_patient = patient_decisions(
        patients, score, rule.threshold, method="any", abnormal=truth, outcome=outcome
    )
    return {
        "n": int(len(frame)),
        "n_abnormal": int(truth.sum()),
        "n_normal": int((~truth).sum()),
        "threshold": float(rule.threshold),
        "auc": auc_or_nan(truth, score),
        "auc_ci": list(bootstrap_auc(truth, score, patients, n_boot=n_boot, seed=seed)),
        "sensitivity": at["sensitivity"],
        "sensitivity_ci": list(ci["sensitivity"]),
        "specificity": at["specificity"],
        "specificity_ci": list(ci["specificity"]),
        "macc": at["macc"],
        "ece": expected_calibration_error(two, names, ["normal", ABNORMAL], bins=ECE_BINS),
        "re_record": int((outcome == "re-record").sum()) if outcome is not None else 0,
        "confusion_matrix": {
            "labels": ["normal", ABNORMAL],
            "matrix": matrix.tolist(),
            "rows": "truth",
            "columns": "decision",
        },
        "patients": patient_metrics(per_patient),
    }


def multiclass(frame: pd.DataFrame, rule: DecisionRule) -> dict[str, Any]:
    """The training report's metrics on the run's classes, plus the ECE and the confusion
    matrix of the rule's decisions (the highest-probability one is in ``confusion_matrix``)."""
    classes = list(rule.classes)
    y = frame["target"].to_numpy(object)
    probs = frame[[f"prob_{c}" for c in classes]].to_numpy(np.float64)
    out = classification_metrics(y, probs, classes)
    out.pop("physionet2016", None)  # normal_vs_abnormal() has these, at the rule's threshold
    out["ece"] = expected_calibration_error(probs, y, classes, bins=ECE_BINS)
    decided = frame["predicted"].to_numpy(object)
    out["decision_confusion_matrix"] = {
        "labels": classes,
        "matrix": confusion_matrix(y, decided, labels=classes).tolist(),
    }
    return out


def evaluation_metrics(
    frame: pd.DataFrame,
    rule: DecisionRule,
    mode: Mode,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """Every number of an evaluation (see module doc), as a JSON-able dict.

    ``normal_vs_abnormal`` whenever the rule has a normal class, ``multiclass`` when ``mode``
    is ``multiclass``; ``per_source`` and ``per_dataset`` tables (:func:`group_table`).
    """
    if frame.empty:
        raise ValueError("no scored recording with a label to evaluate")
    out: dict[str, Any] = {"mode": mode, "n": int(len(frame)), "patients": _patients(frame)}
    if rule.normal_class is not None:
        out["normal_vs_abnormal"] = normal_vs_abnormal(frame, rule, n_boot=n_boot, seed=seed)
    if mode == "multiclass":
        out["multiclass"] = multiclass(frame, rule)
    out["per_source"] = group_table(frame, rule, mode, "source")
    out["per_dataset"] = group_table(frame, rule, mode, "dataset")
    return out


def _patients(frame: pd.DataFrame) -> dict[str, int]:
    n = frame["patient"].nunique()
    return {"patients": int(n), "recordings": int(len(frame))}


def group_table(
    frame: pd.DataFrame, rule: DecisionRule, mode: Mode, column: str
) -> dict[str, dict[str, Any]]:
    """One row per value of ``column``: n, patients, and AUC / Se / Sp / MAcc of normal vs
    abnormal (with a normal class), macro AUC and balanced accuracy (multi-class)."""
    out: dict[str, dict[str, Any]] = {}
    for key, part in frame.groupby(column, sort=True):
        row: dict[str, Any] = {"n": int(len(part)), "patients": int(part["patient"].nunique())}
        if rule.normal_class is not None:
            truth = abnormal_truth(part, rule)
            score = part["abnormal_prob"].to_numpy(np.float64)
            at = binary_metrics(score, truth, rule.threshold)
            row |= {
                "n_abnormal": int(truth.sum()),
                "auc": auc_or_nan(truth, score),
                "sensitivity": at["sensitivity"],
                "specificity": at["specificity"],
                "macc": at["macc"],
            }
        if mode == "multiclass":
            m = multiclass(part, rule)
            row |= {
                "macro_auc": m["macro_auc"],
                "balanced_accuracy": m["balanced_accuracy"],
                "per_class": m["per_class"],
            }
        out[str(key)] = row
    return out
