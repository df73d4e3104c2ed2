"""A new device or clinic, no labels: re-estimating the class priors, and noticing a shift.

:func:`estimate_priors` is the EM of Saerens, Latinne & Decaestecker (2002, "Adjusting the
outputs of a classifier to new a priori probabilities"): with calibrated posteriors ``p(c|x)``
learned under the prior ``π_tr``, iterate

    p_new(c|x) ∝ (π_new_c / π_tr_c) p(c|x),    π_new_c = mean over recordings of p_new(c|x)

until ``π_new`` settles. The bias update ``log π_new − log π_tr`` is added to the rule's
calibration bias (the same slot as the training prior correction). It assumes the change is in
the class mix only (label shift) and that the posteriors are calibrated on the training data.

:func:`shift_indicator` is the warning for the report: the mean top-class probability of the new
batch against training (a model on unfamiliar data is usually less confident, sometimes more),
and the Kolmogorov–Smirnov and Wasserstein distances between the abnormal-score distributions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import ks_2samp, wasserstein_distance

from stetho.decision.calibration import normalise
from stetho.decision.operating_point import abnormal_score


@dataclass(frozen=True)
class PriorShift:
    """Result of :func:`estimate_priors`."""

    prior: tuple[float, ...]
    train_prior: tuple[float, ...]
    bias: tuple[float, ...]
    iterations: int
    converged: bool


def estimate_priors(
    posteriors: np.ndarray,
    train_prior: Sequence[float] | np.ndarray,
    *,
    max_iter: int = 200,
    tol: float = 1e-6,
    floor: float = 1e-6,
) -> PriorShift:
    """EM estimate of the new batch's class prior; see the module docstring.

    Args:
        posteriors: ``(n, n_classes)`` calibrated probabilities on the new recordings.
        train_prior: the prior the posteriors were calibrated under (counts or proportions).
        floor: smallest prior kept, so a class absent from the batch keeps a finite bias.
    """
    p = normalise(posteriors)
    if len(p) == 0:
        raise ValueError("estimating priors needs at least one recording")
    pi_tr = np.asarray(train_prior, dtype=np.float64)
    if pi_tr.shape != (p.shape[1],) or (pi_tr <= 0).any():
        raise ValueError(
            f"train_prior {pi_tr.tolist()} must be {p.shape[1]} positive values, one per class"
        )
    pi_tr = pi_tr / pi_tr.sum()
    pi = pi_tr.copy()
    converged = False
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        w = p * (pi / pi_tr)
        w /= w.sum(axis=1, keepdims=True)
        new = np.clip(w.mean(axis=0), floor, None)
        new /= new.sum()
        delta = float(np.abs(new - pi).max())
        pi = new
        if delta < tol:
            converged = True
            break
    bias = np.log(pi) - np.log(pi_tr)
    return PriorShift(
        prior=tuple(float(v) for v in pi),
        train_prior=tuple(float(v) for v in pi_tr),
        bias=tuple(float(v) for v in bias - bias.mean()),
        iterations=iterations,
        converged=converged,
    )


@dataclass(frozen=True)
class ShiftIndicator:
    """How unlike the training predictions a new batch looks."""

    train_confidence: float
    new_confidence: float
    ks_statistic: float
    ks_pvalue: float
    wasserstein: float
    looks_shifted: bool
    message: str


def shift_indicator(
    train_probs: np.ndarray,
    new_probs: np.ndarray,
    classes: Sequence[str],
    *,
    confidence_gap: float = 0.1,
    alpha: float = 0.01,
) -> ShiftIndicator:
    """Compare a new batch's predictions with the training (out-of-fold) predictions.

    ``looks_shifted`` when the mean top-class probability moved by more than
    ``confidence_gap`` or the abnormal-score distributions differ (KS test, p < ``alpha``).
    """
    tr, new = normalise(train_probs), normalise(new_probs)
    if len(tr) == 0 or len(new) == 0:
        raise ValueError("the shift indicator needs training and new predictions")
    c_tr, c_new = float(tr.max(axis=1).mean()), float(new.max(axis=1).mean())
    s_tr, s_new = abnormal_score(tr, classes), abnormal_score(new, classes)
    ks = ks_2samp(s_tr, s_new)
    wd = float(wasserstein_distance(s_tr, s_new))
    reasons = []
    if abs(c_new - c_tr) > confidence_gap:
        reasons.append(f"mean confidence {c_new:.2f} against {c_tr:.2f} in training")
    if ks.pvalue < alpha:
        reasons.append(
            f"abnormal-score distribution differs (KS {ks.statistic:.2f}, p={ks.pvalue:.1g}, "
            f"Wasserstein {wd:.3f})"
        )
    shifted = bool(reasons)
    message = (
        "this batch looks unlike the training data: " + "; ".join(reasons)
        if shifted
        else "this batch looks like the training data"
    )
    return ShiftIndicator(
        train_confidence=c_tr,
        new_confidence=c_new,
        ks_statistic=float(ks.statistic),
        ks_pvalue=float(ks.pvalue),
        wasserstein=wd,
        looks_shifted=shifted,
        message=message,
    )
