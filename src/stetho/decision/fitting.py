"""A run's decision rule from its out-of-fold predictions: the step after the folds.

:func:`fit_run_decision` does two things with the pooled out-of-fold predictions (each
recording scored by the fold model that did not train on it):

- **reported figures, cross-fitted** (:func:`stetho.decision.crossfit.cross_fit`): for each
  fold, calibration, threshold and band are fitted on the other folds only and applied to it;
  the figures (:func:`stetho.decision.figures.decision_figures`) pool all folds;
- **the shipped rule, fitted on all folds**: what ``decision.json`` holds and every scorer
  applies to the fold *ensemble*. Each fold model has its own prior correction (its class
  weights on its training folds); the ensemble gets their mean.

The config (``prediction.calibration``, ``.operating_point``, ``.abstain_coverage``,
``.patient_aggregation``) says what to fit. :func:`refit_rule` is the same fit on a few
labelled recordings of a new device (``stetho calibrate``): no folds, in-sample figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stetho.config import PredictionConfig
from stetho.decision.crossfit import DecisionSpec, FittedDecision, cross_fit, fit_decision
from stetho.decision.figures import decision_figures, decision_report
from stetho.decision.operating_point import NORMAL
from stetho.decision.rule import Calibration, DecisionRule

CROSS_FIT_NOTE = (
    "cross-fitted by fold: for each fold, calibration, threshold and abstain band were fitted "
    "on the other folds only and applied to it; the figures pool all folds. The shipped rule "
    "(decision.json) is fitted on all folds, so these figures estimate it on unseen recordings."
)


@dataclass(frozen=True)
class RunDecision:
    """The shipped rule and the ``summary.json`` block that reports it."""

    rule: DecisionRule
    summary: dict[str, Any]
    #: per-recording cross-fitted decisions (for the report); ``None`` when not cross-fitted
    decisions: pd.DataFrame | None


def spec_from_config(prediction: PredictionConfig) -> DecisionSpec:
    """What to fit, from a config's ``prediction`` section."""
    return DecisionSpec(
        calibration=prediction.calibration,
        operating_point=prediction.operating_point,
        coverage=prediction.abstain_coverage,
        patient_aggregation=prediction.patient_aggregation,
    )


def decision_skip_reason(classes: Sequence[str]) -> str | None:
    """Why no rule can be fitted for these classes (``None``: one can)."""
    if NORMAL not in classes:
        return (
            f"no class named {NORMAL!r}: no normal-vs-abnormal decision to fit; the default "
            "rule (arg-max label) applies"
        )
    return None


def class_prior(labels: Sequence[str] | np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Label frequencies, each class counted at least once (a prior must be positive)."""
    labels = np.asarray(labels, dtype=object)
    counts = np.array([(labels == c).sum() for c in classes], dtype=np.float64) + 1.0
    return counts / counts.sum()


def fit_run_decision(
    oof: pd.DataFrame,
    classes: Sequence[str],
    prediction: PredictionConfig,
    *,
    loss_function: str = "CrossEntropy",
    offsets: Mapping[int, np.ndarray] | None = None,
    n_boot: int = 1000,
) -> RunDecision:
    """Shipped rule and cross-fitted figures from a run's out-of-fold table.

    Args:
        oof: ``label``, ``fold``, ``patient`` (optional) and ``prob_<class>`` per recording.
        classes: the run's classes (must include ``normal``: :func:`decision_skip_reason`).
        prediction: the config's ``prediction`` section.
        loss_function: the run's (BCE outputs are renormalised by the rule).
        offsets: fold -> that fold model's prior correction (class weights); ``None``: none.
    """
    reason = decision_skip_reason(classes)
    if reason:
        raise ValueError(reason)
    spec = spec_from_config(prediction)
    if spec.calibration == "none":  # no calibration at all: not even the prior correction
        offsets = None
    probs = oof[[f"prob_{c}" for c in classes]].to_numpy(np.float64)
    labels = oof["label"].to_numpy(dtype=object)
    folds = oof["fold"].to_numpy()
    patients = oof["patient"].to_numpy(dtype=object) if "patient" in oof else None
    multilabel = loss_function == "BCE"
    if multilabel:  # the rule renormalises first; the fits see what it sees
        probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    k = len(classes)
    row_off = np.zeros((len(probs), k))
    if offsets is not None:
        for f in np.unique(folds):
            row_off[folds == f] = np.asarray(offsets[int(f)], dtype=float)
    ensemble_off = (
        np.mean([np.asarray(v, dtype=float) for v in offsets.values()], axis=0)
        if offsets
        else np.zeros(k)
    )
    fitted = fit_decision(probs, labels, classes, spec, offsets=row_off, folds=folds)
    rule = _rule(classes, multilabel, fitted, ensemble_off, spec, labels, folds)
    summary: dict[str, Any] = {
        "rule": _rule_summary(rule, fitted, spec),
        "cross_fitted": False,
        "note": "",
    }
    decisions = None
    if len(np.unique(folds)) >= 2:
        res = cross_fit(
            probs,
            labels,
            folds,
            classes,
            spec,
            patients=patients,
            offsets=offsets,
            n_boot=n_boot,
        )
        decisions = res.decisions
        figures = decision_figures(
            probs,
            decisions[[f"prob_{c}" for c in classes]].to_numpy(),
            labels,
            classes,
            predicted=decisions["predicted"].to_numpy(dtype=object),
            score=decisions["abnormal_probability"].to_numpy(),
            threshold=decisions["threshold"].to_numpy(),
            outcome=decisions["outcome"].to_numpy(dtype=object),
            patients=patients,
            aggregation=spec.patient_aggregation,
            n_boot=n_boot,
        )
        summary["cross_fitted"] = True
        summary["note"] = CROSS_FIT_NOTE
        summary["per_fold"] = {
            str(f): {
                "calibration": fd.method,
                "threshold": fd.threshold,
                "abstain_band": None if fd.abstain_band is None else list(fd.abstain_band),
            }
            for f, fd in res.fitted.items()
        }
    else:
        figures = decision_report(
            oof[[f"prob_{c}" for c in classes]].to_numpy(np.float64),
            labels,
            classes,
            rule,
            patients,
            aggregation=spec.patient_aggregation,
            n_boot=n_boot,
        )
        summary["note"] = (
            "one fold only: the rule was fitted and measured on the same recordings (in-sample, "
            "optimistic)"
        )
    summary.update(figures)
    return RunDecision(rule=rule, summary=summary, decisions=decisions)


def refit_rule(
    rule: DecisionRule,
    raw: np.ndarray,
    labels: Sequence[str] | np.ndarray,
    spec: DecisionSpec,
    *,
    patients: Sequence[object] | np.ndarray | None = None,
    source: str = "",
    n_boot: int = 1000,
) -> tuple[DecisionRule, dict[str, Any]]:
    """``rule`` recalibrated on labelled recordings of a new device: calibration, threshold
    and band fitted on ``raw`` (the run's fold-mean outputs on them), and the figures of old
    and new rule there (in-sample for the new one)."""
    classes = list(rule.classes)
    reason = decision_skip_reason(classes)
    if reason:
        raise ValueError(reason)
    raw = np.asarray(raw, dtype=np.float64)
    labels = np.asarray(labels, dtype=object)
    probs = DecisionRule(rule.classes, rule.normal_class, multilabel=rule.multilabel).probabilities(
        raw
    )
    offset = np.asarray(rule.meta.get("prior_offset") or np.zeros(len(classes)), dtype=float)
    if spec.calibration == "none":
        offset = np.zeros(len(classes))
    row_off = np.broadcast_to(offset, probs.shape).copy()
    fitted = fit_decision(probs, labels, classes, spec, offsets=row_off)
    train_prior = rule.meta.get("train_prior")
    new = DecisionRule(
        classes=rule.classes,
        normal_class=rule.normal_class,
        multilabel=rule.multilabel,
        calibration=_calibration(fitted, offset),
        threshold=fitted.threshold,
        abstain_band=fitted.abstain_band,
        meta={
            **_meta(fitted, spec, offset, train_prior),
            "fitted_on": f"{len(labels)} labelled recordings of {source or 'a new device'}",
            "recalibrated_from": rule.to_dict(),
        },
    )
    figures = {
        "before": decision_report(raw, labels, classes, rule, patients, n_boot=n_boot),
        "after": decision_report(raw, labels, classes, new, patients, n_boot=n_boot),
        "note": "after: fitted and measured on the same recordings (in-sample, optimistic)",
    }
    return new, figures


def _calibration(fitted: FittedDecision, offset: np.ndarray) -> Calibration | None:
    if fitted.method == "none":
        return None
    c = fitted.calibration(offset)
    return Calibration(c.method, tuple(c.weight), tuple(c.bias))


def _meta(
    fitted: FittedDecision,
    spec: DecisionSpec,
    offset: np.ndarray,
    train_prior: Sequence[float] | None,
) -> dict[str, Any]:
    op = fitted.operating_point
    return {
        "calibration_choice": spec.calibration,
        "operating_point": {
            "target": op.target,
            "value": op.value,
            "sensitivity_on_fit": op.sensitivity,
            "specificity_on_fit": op.specificity,
        },
        "abstain_coverage": spec.coverage,
        "patient_aggregation": spec.patient_aggregation,
        "prior_offset": [float(v) for v in offset],
        "train_prior": None if train_prior is None else [float(v) for v in train_prior],
    }


def _rule(
    classes: Sequence[str],
    multilabel: bool,
    fitted: FittedDecision,
    offset: np.ndarray,
    spec: DecisionSpec,
    labels: np.ndarray,
    folds: np.ndarray,
) -> DecisionRule:
    return DecisionRule(
        classes=tuple(classes),
        normal_class=NORMAL,
        multilabel=multilabel,
        calibration=_calibration(fitted, offset),
        threshold=fitted.threshold,
        abstain_band=fitted.abstain_band,
        meta={
            **_meta(fitted, spec, offset, class_prior(labels, classes).tolist()),
            "fitted_on": (
                f"pooled out-of-fold predictions of {len(labels)} recordings, folds "
                f"{sorted(int(f) for f in np.unique(folds))}"
            ),
        },
    )


def _rule_summary(rule: DecisionRule, fitted: FittedDecision, spec: DecisionSpec) -> dict[str, Any]:
    op = fitted.operating_point
    how = {
        "abnormal_sensitivity": f"the highest threshold keeping sensitivity >= {op.value}",
        "specificity": f"the lowest threshold keeping specificity >= {op.value}",
        "macc": "the threshold of the largest MAcc",
        "youden": "the threshold of the largest Youden index (= largest MAcc)",
        "fixed": f"fixed at {op.value}",
    }[op.target]
    return {
        "calibration": None if rule.calibration is None else rule.calibration.method,
        "calibration_choice": spec.calibration,
        "threshold": rule.threshold,
        "operating_point": {"target": op.target, "value": op.value},
        "threshold_chosen": f"{how}, on the pooled out-of-fold predictions of all folds",
        "abstain_coverage": spec.coverage,
        "abstain_band": None if rule.abstain_band is None else list(rule.abstain_band),
        "patient_aggregation": spec.patient_aggregation,
    }
