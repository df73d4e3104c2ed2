"""Choosing the abnormal threshold: where on the ROC curve a clinic wants to work.

The abnormal score is ``1 − p(normal)`` of renormalised (and, usually, calibrated)
probabilities; a recording is abnormal when its score is ``>= threshold`` (PhysioNet 2016's
normal-vs-abnormal task). The config block ``prediction.operating_point`` names the target:

- ``abnormal_sensitivity`` (``value`` e.g. 0.90): the highest threshold whose sensitivity is at
  least ``value`` (so the best specificity that keeps that sensitivity);
- ``specificity``: the lowest threshold whose specificity is at least ``value``;
- ``macc``: PhysioNet MAcc = (Se + Sp) / 2 at its maximum; ``youden``: Se + Sp − 1 at its
  maximum (the same point: Youden's J = 2 MAcc − 1; both names are accepted);
- ``fixed``: ``value`` itself (0.5, the default, is today's behaviour).

Candidates come from :func:`sklearn.metrics.roc_curve`. Every threshold between two adjacent
distinct scores gives the same counts on the fitting data; the one returned is the midpoint of
that interval, so a new recording a hair below the boundary score is not flipped by chance.
``TunedThresholdClassifierCV`` was looked at and not used: it fits an estimator under its own
cross-validation, while here the scores are fixed out-of-fold predictions whose folds
:mod:`stetho.decision.crossfit` handles, and a constrained target (Se >= 0.90) would need a
custom scorer on its threshold grid instead of the exact ROC points.

:func:`bootstrap_ci` gives percentile confidence intervals for sensitivity and specificity at a
threshold, resampling patients (all of a patient's recordings together) when patient ids are
given: recordings of one patient are not independent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve

# The config block lives in stetho.config (the bottom layer), re-exported here.
from stetho.config import OperatingPointConfig
from stetho.config import OperatingTarget as Target
from stetho.decision.calibration import normalise

NORMAL = "normal"
__all__ = [
    "NORMAL",
    "OperatingPoint",
    "OperatingPointConfig",
    "Target",
    "abnormal_score",
    "abnormal_truth",
    "binary_metrics",
    "bootstrap_ci",
    "choose_threshold",
]


@dataclass(frozen=True)
class OperatingPoint:
    """A chosen threshold and what it gave on the data it was chosen on."""

    threshold: float
    target: str
    value: float | None
    sensitivity: float
    specificity: float

    @property
    def macc(self) -> float:
        return (self.sensitivity + self.specificity) / 2


def abnormal_score(probs: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """``1 − p(normal)`` of renormalised rows."""
    if NORMAL not in classes:
        raise ValueError(
            f"normal-vs-abnormal decisions need a class named {NORMAL!r}; classes are "
            f"{list(classes)}"
        )
    return 1.0 - normalise(probs)[:, list(classes).index(NORMAL)]


def abnormal_truth(labels: Sequence[str] | np.ndarray) -> np.ndarray:
    """True where the label is anything but ``normal``."""
    return np.asarray(labels, dtype=object) != NORMAL


def binary_metrics(score: np.ndarray, abnormal: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity and MAcc of ``score >= threshold`` (NaN for an absent class)."""
    score = np.asarray(score, dtype=np.float64)
    abnormal = np.asarray(abnormal, dtype=bool)
    pred = score >= threshold
    pos, neg = abnormal.sum(), (~abnormal).sum()
    se = float((pred & abnormal).sum() / pos) if pos else float("nan")
    sp = float((~pred & ~abnormal).sum() / neg) if neg else float("nan")
    return {"sensitivity": se, "specificity": sp, "macc": (se + sp) / 2, "n": int(len(score))}


def choose_threshold(
    score: np.ndarray, abnormal: np.ndarray, config: OperatingPointConfig
) -> OperatingPoint:
    """The threshold that meets ``config`` on (score, abnormal); see the module docstring."""
    score = np.asarray(score, dtype=np.float64)
    abnormal = np.asarray(abnormal, dtype=bool)
    value = 0.5 if config.value is None else float(config.value)  # validated for targets
    if config.target == "fixed":
        m = binary_metrics(score, abnormal, value)
        return OperatingPoint(value, "fixed", value, m["sensitivity"], m["specificity"])
    if abnormal.all() or not abnormal.any():
        raise ValueError(
            f"choosing a {config.target!r} threshold needs both normal and abnormal recordings; "
            f"got {int(abnormal.sum())} abnormal of {len(abnormal)}"
        )
    fpr, tpr, thr = roc_curve(abnormal.astype(int), score, drop_intermediate=False)
    spec = 1.0 - fpr
    # thr is decreasing; thr[0] = inf (nothing abnormal). Skip it as a candidate except for
    # a specificity of 1 that nothing else reaches.
    if config.target == "abnormal_sensitivity":
        ok = np.flatnonzero(tpr >= value)
        i = int(ok[0])  # highest threshold: first index that reaches the value
    elif config.target == "specificity":
        ok = np.flatnonzero(spec >= value)
        i = int(ok[-1])  # lowest threshold that keeps the specificity
    else:  # macc / youden: the same point
        i = int(np.argmax(tpr + spec))
    t = _midpoint(thr, i)
    return OperatingPoint(
        threshold=t,
        target=config.target,
        value=config.value if config.target in {"abnormal_sensitivity", "specificity"} else None,
        sensitivity=float(tpr[i]),
        specificity=float(spec[i]),
    )


def _midpoint(thr: np.ndarray, i: int) -> float:
    """Midpoint between ROC threshold ``i`` and the next lower score (same counts on both)."""
    upper = float(thr[i])
    if not np.isfinite(upper):  # nothing abnormal: just above the highest score
        return float(min(1.0, np.nextafter(thr[1], np.inf))) if len(thr) > 1 else 1.0
    lower = float(thr[i + 1]) if i + 1 < len(thr) else max(0.0, upper - 1e-6)
    return (upper + lower) / 2


def bootstrap_ci(
    score: np.ndarray,
    abnormal: np.ndarray,
    threshold: float,
    *,
    groups: Sequence[object] | np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals for sensitivity and specificity at ``threshold``.

    With ``groups`` (patient ids) whole patients are resampled, each bringing all its
    recordings; without, recordings are. Resamples with no abnormal (or no normal) recording
    are left out of that interval.
    """
    score = np.asarray(score, dtype=np.float64)
    abnormal = np.asarray(abnormal, dtype=bool)
    pred = score >= threshold
    if groups is None:
        gid = np.arange(len(score))
    else:
        _, gid = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_groups = int(gid.max()) + 1 if len(gid) else 0
    if n_groups == 0:
        raise ValueError("cannot bootstrap zero recordings")
    # per-group counts: true positives, positives, true negatives, negatives
    per = np.stack(
        [
            np.bincount(gid, weights=pred & abnormal, minlength=n_groups),
            np.bincount(gid, weights=abnormal, minlength=n_groups),
            np.bincount(gid, weights=~pred & ~abnormal, minlength=n_groups),
            np.bincount(gid, weights=~abnormal, minlength=n_groups),
        ],
        axis=1,
    )
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    times = np.zeros((n_boot, n_groups))
    np.add.at(times, (np.repeat(np.arange(n_boot), n_groups), draws.ravel()), 1.0)
    tot = times @ per
    alpha = (1 - level) / 2
    out = {}
    for name, num, den in (("sensitivity", 0, 1), ("specificity", 2, 3)):
        ok = tot[:, den] > 0
        vals = tot[ok, num] / tot[ok, den]
        out[name] = (
            (float(np.quantile(vals, alpha)), float(np.quantile(vals, 1 - alpha)))
            if ok.any()
            else (float("nan"), float("nan"))
        )
    return out
