"""When to say "re-record" instead of a diagnosis.

Two reasons: the heart-sound analysis found the recording unusable (a boolean ``usable``
array from it), or the calibrated abnormal probability lies too close to the threshold to be
trusted. The uncertain band ``[lo, hi)`` is chosen for a target *coverage* (the fraction of
recordings that get a decision): on the fitting data, the ``1 − coverage`` fraction nearest the
threshold falls inside it. Nearness is measured in log-odds, so the band stays inside (0, 1)
and is wider in probability where the threshold is near 0.5 and narrower near the ends.

``crepes`` and ``mapie`` were looked at and not used: their conformal classifiers control the
rate at which a prediction *set* misses the true label (α), not the fraction of recordings that
are accepted; an "ambiguous set" rule gives whatever coverage α implies, and the clinic's
requirement here is the coverage.

:func:`risk_coverage` is the risk–coverage curve (Geifman & El-Yaniv 2017): accuracy and MAcc
on the accepted recordings as the band widens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import logit

from stetho.decision.operating_point import binary_metrics

ABNORMAL, NORMAL_OUTCOME, RERECORD = "abnormal", "normal", "re-record"
_LOGIT_CLIP = 1e-6


def _distance(score: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """|logit(score) − logit(threshold)|: how far a recording is from flipping."""
    s = np.clip(np.asarray(score, dtype=np.float64), _LOGIT_CLIP, 1 - _LOGIT_CLIP)
    t = np.clip(np.asarray(threshold, dtype=np.float64), _LOGIT_CLIP, 1 - _LOGIT_CLIP)
    return np.asarray(np.abs(logit(s) - logit(t)))


def abstain_band(score: np.ndarray, threshold: float, coverage: float) -> tuple[float, float]:
    """``(lo, hi)`` such that about ``1 − coverage`` of ``score`` lies in ``[lo, hi)``.

    The band is symmetric around ``threshold`` in log-odds. ``coverage=1`` gives an empty
    band ``(threshold, threshold)``.
    """
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage={coverage}: expected a fraction in (0, 1]")
    score = np.asarray(score, dtype=np.float64)
    if coverage == 1.0 or len(score) == 0:
        return (float(threshold), float(threshold))
    d = float(np.quantile(_distance(score, threshold), 1.0 - coverage))
    t = float(logit(np.clip(threshold, _LOGIT_CLIP, 1 - _LOGIT_CLIP)))
    lo, hi = 1 / (1 + np.exp(-(t - d))), 1 / (1 + np.exp(-(t + d)))
    return (float(lo), float(hi))


def outcomes(
    score: np.ndarray,
    threshold: float,
    band: tuple[float, float] | None = None,
    *,
    usable: Sequence[bool] | np.ndarray | None = None,
) -> np.ndarray:
    """Per recording ``"abnormal"``, ``"normal"`` or ``"re-record"``.

    Re-record when the recording is not ``usable`` or its score is in ``[lo, hi)``.
    """
    score = np.asarray(score, dtype=np.float64)
    out = np.where(score >= threshold, ABNORMAL, NORMAL_OUTCOME).astype(object)
    if band is not None:
        lo, hi = band
        if lo > hi:
            raise ValueError(f"abstain band ({lo}, {hi}): lo must not exceed hi")
        out[(score >= lo) & (score < hi)] = RERECORD
    if usable is not None:
        ok = np.asarray(usable, dtype=bool)
        if ok.shape != score.shape:
            raise ValueError(f"usable has {ok.shape} values for {score.shape} recordings")
        out[~ok] = RERECORD
    return out


def accepted_metrics(
    outcome: np.ndarray, abnormal: np.ndarray, *, correct: np.ndarray | None = None
) -> dict[str, float]:
    """Coverage, and Se / Sp / MAcc (and accuracy, given ``correct``) on accepted recordings."""
    outcome = np.asarray(outcome, dtype=object)
    abnormal = np.asarray(abnormal, dtype=bool)
    keep = outcome != RERECORD
    m = binary_metrics((outcome[keep] == ABNORMAL).astype(float), abnormal[keep], 0.5)
    m["coverage"] = float(keep.mean()) if len(keep) else float("nan")
    m["n_accepted"] = int(keep.sum())
    if correct is not None:
        c = np.asarray(correct, dtype=bool)[keep]
        m["accuracy"] = float(c.mean()) if len(c) else float("nan")
    return m


def risk_coverage(
    score: np.ndarray,
    abnormal: np.ndarray,
    threshold: float | np.ndarray,
    *,
    correct: np.ndarray | None = None,
    coverages: Sequence[float] = (1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5),
) -> pd.DataFrame:
    """Accepted-recording metrics when the ``1 − coverage`` nearest the threshold abstain.

    ``threshold`` may be one per recording (cross-fitted: each fold's own).
    ``correct`` (per recording, e.g. the multi-class label is right) adds an accuracy column;
    without it accuracy is that of the normal-vs-abnormal decision.
    """
    score = np.asarray(score, dtype=np.float64)
    abnormal = np.asarray(abnormal, dtype=bool)
    if correct is None:
        correct = (score >= threshold) == abnormal
    order = np.argsort(-_distance(score, threshold), kind="stable")
    rows = []
    for cov in coverages:
        n_keep = int(round(cov * len(score)))
        keep = np.zeros(len(score), dtype=bool)
        keep[order[:n_keep]] = True
        out = np.where(score >= threshold, ABNORMAL, NORMAL_OUTCOME).astype(object)
        out[~keep] = RERECORD
        m = accepted_metrics(out, abnormal, correct=correct)
        rows.append({"target_coverage": float(cov), **m})
    return pd.DataFrame(rows)
