"""The metrics the field reports, on top of scikit-learn.

- ROC AUC, macro and per class (one-vs-rest): Hydrogen Torch's metric.
- Balanced accuracy, per-class sensitivity / specificity, confusion matrix, log loss.
- PASCAL Classifying Heart Sounds Challenge 2011 (Bentley et al.): per-class precision,
  Youden's index (Se + Sp - 1) and discriminant power
  DP = sqrt(3)/pi * (ln(Se/(1-Se)) + ln(Sp/(1-Sp))).
- PhysioNet/CinC Challenge 2016 (Clifford et al.): MAcc = (Se + Sp) / 2 for abnormal vs normal,
  where "abnormal" is every class but ``normal`` and its score is ``1 - p(normal)``, by the
  run's decision rule when one is given (the rule ``stetho predict`` and the service apply).

All functions take string labels and a probability matrix whose columns follow ``classes``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    log_loss,
    roc_auc_score,
)

NORMAL = "normal"


def _clip01(p: float) -> float:
    return min(max(p, 1e-6), 1 - 1e-6)


def discriminant_power(sensitivity: float, specificity: float) -> float:
    se, sp = _clip01(sensitivity), _clip01(specificity)
    return math.sqrt(3) / math.pi * (math.log(se / (1 - se)) + math.log(sp / (1 - sp)))


def per_class_auc(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, float]:
    """One-vs-rest ROC AUC per class; NaN where a class has no positive or no negative."""
    out: dict[str, float] = {}
    for i, c in enumerate(classes):
        pos = y_true == c
        if pos.all() or not pos.any():
            out[c] = float("nan")
        else:
            out[c] = float(roc_auc_score(pos.astype(int), probs[:, i]))
    return out


def classification_metrics(
    y_true: np.ndarray | list[str],
    probs: np.ndarray,
    classes: list[str],
    *,
    rule: AbnormalRule | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Everything in the module docstring, as a JSON-able dict.

    Args:
        y_true: ``(n,)`` true class names.
        probs: ``(n, len(classes))`` scores; rows need not sum to 1 (multi-label sigmoid).
        classes: column names of ``probs``.
        rule: the run's decision rule, for the normal-vs-abnormal figures
            (:func:`normal_vs_abnormal`).
        groups: ``dataset.label_groups``: labels naming a set of classes. Their recordings
            are left out of the multi-class figures (``n_set_labelled`` counts them) and kept
            in normal vs abnormal when the set does not include ``normal``.
    """
    y_true = np.asarray(y_true, dtype=object)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(y_true), len(classes)):
        raise ValueError(
            f"probs has shape {probs.shape}; expected ({len(y_true)}, {len(classes)}) for "
            f"{len(y_true)} recordings and classes {classes}"
        )
    groups = groups or {}
    set_labelled = np.isin(y_true, list(groups))
    if set_labelled.any():
        fine = classification_metrics(
            y_true[~set_labelled], probs[~set_labelled], classes, rule=rule
        )
        fine["n_set_labelled"] = int(set_labelled.sum())
        if NORMAL in classes and len(classes) > 1:
            usable = np.array([not (g in groups and NORMAL in groups[g]) for g in y_true])
            fine["physionet2016"] = normal_vs_abnormal(
                y_true[usable], probs[usable], classes, rule=rule
            )
        return fine
    unknown = sorted(set(y_true) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the model's classes {classes}")
    aucs = per_class_auc(y_true, probs, classes)
    finite = [v for v in aucs.values() if not math.isnan(v)]
    pred = np.asarray(classes, dtype=object)[probs.argmax(axis=1)]
    present = [c for c in classes if (y_true == c).any()]
    # a fold of set labels alone leaves no single-class recording to count
    k = len(classes)
    cm = confusion_matrix(y_true, pred, labels=classes) if len(y_true) else np.zeros((k, k), int)
    per_class: dict[str, dict[str, float]] = {}
    n = len(y_true)
    for i, c in enumerate(classes):
        tp = cm[i, i]
        fn = cm[i].sum() - tp
        fp = cm[:, i].sum() - tp
        tn = n - tp - fn - fp
        se = tp / (tp + fn) if tp + fn else float("nan")
        sp = tn / (tn + fp) if tn + fp else float("nan")
        prec = tp / (tp + fp) if tp + fp else float("nan")
        per_class[c] = {
            "auc": aucs[c],
            "sensitivity": float(se),
            "specificity": float(sp),
            "precision": float(prec),
            "youden": float(se + sp - 1),
            "discriminant_power": (
                discriminant_power(se, sp)
                if not (math.isnan(se) or math.isnan(sp))
                else float("nan")
            ),
            "support": int(cm[i].sum()),
        }
    norm = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ll = float(log_loss(y_true, np.clip(norm, 1e-7, 1), labels=classes)) if n else float("nan")
        bacc = float(balanced_accuracy_score(y_true, pred)) if n else float("nan")
    out: dict[str, Any] = {
        "n": int(n),
        "macro_auc": float(np.mean(finite)) if finite else float("nan"),
        "balanced_accuracy": bacc,
        "accuracy": float((pred == y_true).mean()) if n else float("nan"),
        "log_loss": ll,
        "per_class": per_class,
        "confusion_matrix": {"labels": classes, "matrix": cm.tolist()},
        "classes_present": present,
    }
    if NORMAL in classes and len(classes) > 1:
        out["physionet2016"] = normal_vs_abnormal(y_true, probs, classes, rule=rule)
    return out


class AbnormalRule(Protocol):
    """What :func:`normal_vs_abnormal` needs of a decision rule
    (:class:`stetho.decision.DecisionRule` has it; this module sits below that package)."""

    @property
    def threshold(self) -> float: ...

    def probabilities(self, raw: np.ndarray) -> np.ndarray: ...

    def abnormal_probability(self, probs: np.ndarray) -> np.ndarray: ...


def normal_vs_abnormal(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    *,
    threshold: float = 0.5,
    rule: AbnormalRule | None = None,
) -> dict[str, float]:
    """PhysioNet/CinC 2016 scoring: abnormal = not ``normal``; score = 1 - p(normal).

    With ``rule`` (the run's :class:`~stetho.decision.DecisionRule`), the score and the
    decision are the deployed ones: the rule's probabilities (BCE renormalisation,
    calibration), its abnormal probability and its threshold (``threshold`` is then unused).
    Without, the default rule: rows renormalised to sum to 1 (a no-op for softmax outputs),
    ``1 - p(normal) >= threshold``.
    """
    y_true = np.asarray(y_true, dtype=object)
    probs = np.asarray(probs, dtype=np.float64)
    if rule is None:
        j = classes.index(NORMAL)
        norm = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
        score = np.clip(1.0 - norm[:, j], 0.0, 1.0)
    else:
        score = rule.abnormal_probability(rule.probabilities(probs))
        threshold = rule.threshold
    abnormal = y_true != NORMAL
    pred = score >= threshold
    se = float((pred & abnormal).sum() / abnormal.sum()) if abnormal.any() else float("nan")
    sp = float((~pred & ~abnormal).sum() / (~abnormal).sum()) if (~abnormal).any() else float("nan")
    auc = (
        float(roc_auc_score(abnormal.astype(int), score))
        if abnormal.any() and (~abnormal).any()
        else float("nan")
    )
    return {"sensitivity": se, "specificity": sp, "macc": (se + sp) / 2, "auc": auc}


def metrics_by_group(
    df: pd.DataFrame,
    classes: list[str],
    *,
    group: str,
    label_column: str = "label",
    groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """:func:`classification_metrics` for each value of ``group`` (fold, source, dataset)."""
    prob_cols = [f"prob_{c}" for c in classes]
    out = {}
    for key, part in df.groupby(group, sort=True):
        out[str(key)] = classification_metrics(
            part[label_column].to_numpy(), part[prob_cols].to_numpy(), classes, groups=groups
        )
    return out


def score_for_selection(metrics: dict[str, Any], metric: str) -> float:
    """The config's ``prediction.metric`` as a number where larger is better."""
    if metric in ("ROC_AUC", "AUC"):
        return metrics["macro_auc"]
    if metric == "BalancedAccuracy":
        return metrics["balanced_accuracy"]
    if metric == "LogLoss":
        return -metrics["log_loss"]
    raise ValueError(f"unknown metric {metric!r}")
