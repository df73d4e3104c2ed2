"""What a decision rule is worth on labelled recordings, in one format for every caller.

:func:`decision_report` measures a :class:`~stetho.decision.rule.DecisionRule` on labelled
recordings (``stetho evaluate``, ``stetho calibrate``); :func:`decision_figures` is the same
measurement on per-recording arrays, which is how training reports its *cross-fitted* rule
(each fold decided by the rule fitted on the other folds: one threshold per recording).

The returned dict (JSON-able; ``summary.json``'s ``decision`` block holds one)::

    bins                     ECE bins (15, equal width, top-label; netcal's definition)
    calibration.before/after {"ece", "log_loss"}: raw (renormalised) vs the rule's
    recording                n, sensitivity, specificity, macc, their 95 % bootstrap CIs
                             (patients resampled when patient ids are given), accuracy and
                             balanced accuracy of the labels consistent with the flag,
                             abnormal ROC AUC, confusion {labels: [normal, abnormal], matrix}
    abstention               (a band or unusable recordings) coverage, n_accepted, Se/Sp/MAcc
                             and accuracy on the accepted ones, macc_gain over all recordings
    patients                 (with patient ids) aggregation, patients, Se/Sp/MAcc, coverage

Abnormal is every class but ``normal`` (PhysioNet 2016); its score is ``1 − p(normal)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score

from stetho.decision.abstention import RERECORD, accepted_metrics
from stetho.decision.calibration import calibration_metrics, label_indices
from stetho.decision.operating_point import NORMAL, abnormal_truth, binary_metrics, bootstrap_ci
from stetho.decision.patients import Aggregation, patient_decisions, patient_ids, patient_metrics
from stetho.decision.rule import DecisionRule

#: ECE bins of every reported figure (the report's reliability diagrams use the same).
ECE_BINS = 15


def decision_report(
    probs: np.ndarray,
    labels: Sequence[str] | np.ndarray,
    classes: Sequence[str],
    rule: DecisionRule,
    patients: Sequence[object] | np.ndarray | None = None,
    *,
    aggregation: Aggregation = "any",
    usable: Sequence[bool] | np.ndarray | None = None,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """The figures of the module docstring for ``rule`` applied to raw ``probs``.

    Args:
        probs: ``(n, C)`` raw fold-mean model outputs (what a scorer's ``predict`` returns).
        labels: true class per recording.
        classes: the columns of ``probs`` (the rule's classes).
        rule: the decision rule to measure; it needs the normal class ``normal``.
        patients: patient id per recording (patient bootstrap and patient-level figures).
        aggregation: how a patient's recordings make one decision.
        usable: per recording; ``False`` counts as "re-record".
    """
    if list(classes) != list(rule.classes):
        raise ValueError(f"classes {list(classes)} are not the rule's {list(rule.classes)}")
    if rule.normal_class != NORMAL:
        raise ValueError(
            f"decision figures need the normal class {NORMAL!r}; the rule has {rule.normal_class!r}"
        )
    raw = np.asarray(probs, dtype=np.float64)
    calibrated = rule.probabilities(raw)
    decisions = rule.decide_all(calibrated, None if usable is None else [bool(u) for u in usable])
    return decision_figures(
        raw,
        calibrated,
        labels,
        classes,
        predicted=np.asarray(decisions.labels, dtype=object),
        score=decisions.abnormal_probability,
        threshold=np.full(len(raw), rule.threshold),
        outcome=np.asarray(decisions.outcomes, dtype=object),
        patients=patients,
        aggregation=aggregation,
        n_boot=n_boot,
    )


def decision_figures(
    raw: np.ndarray,
    calibrated: np.ndarray,
    labels: Sequence[str] | np.ndarray,
    classes: Sequence[str],
    *,
    predicted: np.ndarray,
    score: np.ndarray,
    threshold: np.ndarray,
    outcome: np.ndarray,
    patients: Sequence[object] | np.ndarray | None = None,
    aggregation: Aggregation = "any",
    n_boot: int = 1000,
) -> dict[str, Any]:
    """The module docstring's figures from per-recording arrays (``threshold`` may differ
    per recording: cross-fitted, each fold's own)."""
    labels = np.asarray(labels, dtype=object)
    label_indices(labels, classes)
    n = len(labels)
    if n == 0:
        raise ValueError("decision figures need at least one labelled recording")
    abnormal = abnormal_truth(labels)
    score = np.asarray(score, dtype=np.float64)
    thr = np.asarray(threshold, dtype=np.float64)
    outcome = np.asarray(outcome, dtype=object)
    margin = score - thr  # >= 0: flagged abnormal, whatever each recording's threshold
    m = binary_metrics(margin, abnormal, 0.0)
    groups = None if patients is None else patient_ids(patients, n)
    ci = bootstrap_ci(margin, abnormal, 0.0, groups=groups, n_boot=n_boot)
    both = bool(abnormal.any() and (~abnormal).any())
    pred_abn = margin >= 0
    recording: dict[str, Any] = {
        "n": int(n),
        "sensitivity": m["sensitivity"],
        "specificity": m["specificity"],
        "macc": m["macc"],
        "sensitivity_ci": list(ci["sensitivity"]),
        "specificity_ci": list(ci["specificity"]),
        "ci_level": 0.95,
        "ci_resamples": "patients" if groups is not None else "recordings",
        "accuracy": float((predicted == labels).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "abnormal_auc": float(roc_auc_score(abnormal, score)) if both else float("nan"),
        "confusion": {
            "labels": ["normal", "abnormal"],
            "matrix": confusion_matrix(abnormal, pred_abn, labels=[False, True]).tolist(),
        },
    }
    out: dict[str, Any] = {
        "bins": ECE_BINS,
        "calibration": {
            "before": calibration_metrics(raw, labels, classes, bins=ECE_BINS),
            "after": calibration_metrics(calibrated, labels, classes, bins=ECE_BINS),
        },
        "recording": recording,
        "abstention": None,
        "patients": None,
    }
    if (outcome == RERECORD).any():
        acc = accepted_metrics(outcome, abnormal, correct=predicted == labels)
        acc["macc_gain"] = acc["macc"] - m["macc"]
        out["abstention"] = acc
    if groups is not None:
        table = patient_decisions(
            groups, margin, 0.0, method=aggregation, abnormal=abnormal, outcome=outcome
        )
        out["patients"] = {"aggregation": aggregation, **patient_metrics(table)}
    return out
