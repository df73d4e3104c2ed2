"""Fitting the calibration that a decision rule applies to a model's probabilities.

The rule (``stetho.decision.rule``) applies ``p' = softmax(weight * log(clip(p, 1e-12)) + bias)``
to probabilities whose rows were renormalised to sum to 1 (BCE sigmoid outputs do not). This
module fits ``weight`` and ``bias`` from (probabilities, labels) and measures the result:

- ``temperature``: one shared ``weight = 1/T`` (Guo et al. 2017), bias left at the prior offset.
- ``vector``: one weight and one bias per class (vector scaling, Guo et al. 2017).
- ``prior``: no fit; only the prior correction below.

Prior correction. A model trained with class weights ``w`` (``training.class_weights: Auto``) or
class-balanced sampling minimises a loss whose optimum is ``q(c|x) ∝ w_c p(c|x)``: it learned
the *effective* prior ``π_eff ∝ w π`` instead of the training prior ``π``. Adding
``log π − log π_eff`` to the logits undoes that shift exactly (Saerens et al. 2002, eq. 2.4);
:func:`prior_correction_bias` gives that offset, and the fits start from it and keep it as the
reference their bias is fitted around. With BCE the weight multiplies a class's whole binary
loss, so it does not move that class's optimum: no correction applies there.

Both fits minimise the log loss with :func:`scipy.optimize.minimize` (L-BFGS-B with the exact
gradient; the objective is convex in ``(weight, bias)``). ``netcal`` 1.4 was read and not used:
it needs pyro-ppl, gpytorch and tensorboard, its scalers return their own model rather than this
parametric form, and they take no fixed offset for the prior correction.

:func:`expected_calibration_error` is the top-label ECE with equal-width bins (15 by default),
the definition netcal's ``ECE`` uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax
from sklearn.metrics import log_loss

from stetho.decision.rule import Calibration as RuleCalibration

Method = Literal["none", "prior", "temperature", "vector"]
METHODS: tuple[str, ...] = ("none", "prior", "temperature", "vector")

#: Probabilities are clipped here before the log, as the rule does.
EPS = 1e-12


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration in the rule's format (see :meth:`to_dict`)."""

    method: str
    weight: tuple[float, ...]
    bias: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """``{"method": str, "weight": [n_classes], "bias": [n_classes]}`` for the rule."""
        return {"method": self.method, "weight": list(self.weight), "bias": list(self.bias)}

    def apply(self, probs: np.ndarray) -> np.ndarray:
        return apply_calibration(probs, self.weight, self.bias)

    @classmethod
    def identity(cls, n_classes: int) -> Calibration:
        return cls("none", (1.0,) * n_classes, (0.0,) * n_classes)


def normalise(probs: np.ndarray) -> np.ndarray:
    """Rows renormalised to sum to 1 (BCE sigmoid outputs), as float64."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(
            f"probabilities must be a 2-D (recordings, classes) array; got {probs.shape}"
        )
    return probs / np.clip(probs.sum(axis=1, keepdims=True), EPS, None)


def log_probs(probs: np.ndarray) -> np.ndarray:
    """``log(clip(p, 1e-12))`` of the renormalised rows: the rule's calibration input."""
    return np.log(np.clip(normalise(probs), EPS, None))


def apply_calibration(
    probs: np.ndarray, weight: Sequence[float] | np.ndarray, bias: Sequence[float] | np.ndarray
) -> np.ndarray:
    """``softmax(weight * log(clip(p, 1e-12)) + bias)`` on renormalised rows.

    The decision rule's own formula (:meth:`stetho.decision.rule.Calibration.apply`), so that
    a fit is evaluated exactly as it is deployed.
    """
    p = normalise(probs)
    w = np.asarray(weight, dtype=np.float64)
    b = np.asarray(bias, dtype=np.float64)
    if w.shape not in {(1,), (p.shape[1],)} or b.shape != (p.shape[1],):
        raise ValueError(
            f"calibration weight {w.shape} / bias {b.shape} do not fit {p.shape[1]} classes"
        )
    w = np.broadcast_to(w, b.shape)
    rule = RuleCalibration("fit", tuple(map(float, w)), tuple(map(float, b)))
    return rule.apply(p)


def label_indices(labels: Sequence[str] | np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Column index of each label; a clear error for labels the model does not know."""
    labels = np.asarray(labels, dtype=object)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in labels if v not in index})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the model's classes {list(classes)}")
    return np.array([index[v] for v in labels], dtype=np.int64)


# --- prior correction ---------------------------------------------------------------------
def effective_prior(
    train_prior: Sequence[float] | np.ndarray, class_weights: Sequence[float] | np.ndarray
) -> np.ndarray:
    """The prior a class-weighted loss effectively trains on: ``∝ w_c π_c``."""
    pi = _prior(train_prior)
    w = np.asarray(class_weights, dtype=np.float64)
    if w.shape != pi.shape or (w <= 0).any():
        raise ValueError(
            f"class weights {w.tolist()} must be {pi.size} positive values, one per class"
        )
    eff = w * pi
    return eff / eff.sum()


def prior_correction_bias(
    train_prior: Sequence[float] | np.ndarray,
    *,
    class_weights: Sequence[float] | np.ndarray | None = None,
    trained_prior: Sequence[float] | np.ndarray | None = None,
    loss_function: str = "CrossEntropy",
) -> np.ndarray:
    """``log π − log π_eff``: the logit offset that undoes class weights or balanced sampling.

    Args:
        train_prior: class frequencies of the training data (counts or proportions).
        class_weights: the loss's class weights (``π_eff ∝ w π``), or
        trained_prior: the prior the model saw directly (balanced sampling: uniform).
        loss_function: ``BCE`` weights a class's whole binary loss, which leaves its optimum
            where it was: the offset is zero.
    """
    pi = _prior(train_prior)
    if (class_weights is None) == (trained_prior is None):
        raise ValueError("give exactly one of class_weights and trained_prior")
    if loss_function == "BCE":
        return np.zeros_like(pi)
    eff = (
        effective_prior(pi, class_weights)
        if class_weights is not None
        else _prior(np.asarray(trained_prior, dtype=np.float64))
    )
    if eff.shape != pi.shape:
        raise ValueError(f"trained prior has {eff.size} classes; the training prior {pi.size}")
    bias = np.log(pi) - np.log(eff)
    return bias - bias.mean()


def _prior(values: Sequence[float] | np.ndarray) -> np.ndarray:
    pi = np.asarray(values, dtype=np.float64)
    if pi.ndim != 1 or pi.size < 2 or (pi <= 0).any():
        raise ValueError(
            f"a class prior must be >= 2 positive counts or proportions; got {pi.tolist()} "
            "(a class absent from the training data has no prior: drop it or add a count of 1)"
        )
    return pi / pi.sum()


# --- fitting ------------------------------------------------------------------------------
def fit_calibration(
    probs: np.ndarray,
    labels: Sequence[str] | np.ndarray,
    classes: Sequence[str],
    method: Method = "vector",
    *,
    prior_bias: Sequence[float] | np.ndarray | None = None,
    l2: float = 1e-3,
) -> Calibration:
    """Fit the rule's ``weight``/``bias`` by minimising the log loss on (probs, labels).

    Args:
        probs: ``(n, n_classes)`` model probabilities (rows need not sum to 1).
        labels: ``(n,)`` true class names.
        classes: the columns of ``probs``.
        method: ``none``, ``prior``, ``temperature`` or ``vector`` (module docstring).
        prior_bias: a fixed offset, e.g. :func:`prior_correction_bias`, added after the weight:
            the model is ``softmax(weight * log p + prior_bias + fitted bias)`` (calibrate the
            posterior the model learned, then move it to the true prior).
        l2: ridge penalty pulling ``vector``'s parameters towards (1, 0), so a class with a
            handful of recordings cannot send its weight to infinity.
    """
    k = len(classes)
    b0 = np.zeros(k) if prior_bias is None else np.asarray(prior_bias, dtype=np.float64)
    if b0.shape != (k,):
        raise ValueError(f"prior_bias has shape {b0.shape}; expected ({k},)")
    w, b = fit_scaling(probs, labels, classes, method, offset=b0, l2=l2)
    name = method if prior_bias is None or method in {"none", "prior"} else f"prior+{method}"
    if method == "none":
        return Calibration.identity(k)
    bias = b0 + b
    bias = bias - bias.mean()  # softmax ignores a shared shift: keep the stored bias centred
    return Calibration(name, tuple(float(v) for v in w), tuple(float(v) for v in bias))


def fit_scaling(
    probs: np.ndarray,
    labels: Sequence[str] | np.ndarray,
    classes: Sequence[str],
    method: Method,
    *,
    offset: np.ndarray | None = None,
    l2: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """``(weight, bias)`` of ``softmax(weight * log p + offset + bias)`` at minimal log loss.

    ``offset`` is ``(n_classes,)`` or one row per recording (recordings predicted by different
    fold models, each with its own prior correction). ``none``/``prior`` fit nothing.
    """
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r}: expected one of {list(METHODS)}")
    k = len(classes)
    logp = log_probs(probs)
    if logp.shape[1] != k:
        raise ValueError(f"probabilities have {logp.shape[1]} columns; classes are {list(classes)}")
    y = label_indices(labels, classes)
    if len(y) != len(logp):
        raise ValueError(f"{len(y)} labels for {len(logp)} rows of probabilities")
    off = np.zeros(k) if offset is None else np.asarray(offset, dtype=np.float64)
    if off.shape not in {(k,), logp.shape}:
        raise ValueError(f"offset has shape {off.shape}; expected ({k},) or {logp.shape}")
    if method in {"none", "prior"}:
        return np.ones(k), np.zeros(k)
    if len(y) == 0:
        raise ValueError("cannot fit a calibration on zero labelled recordings")
    onehot = np.eye(k)[y]
    n = len(y)
    base = logp, off

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if method == "temperature":
            return np.full(k, theta[0]), np.zeros(k)
        return theta[:k], theta[k:]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = unpack(theta)
        z = w * base[0] + base[1] + b
        logs = log_softmax(z, axis=1)
        loss = -float((onehot * logs).sum()) / n
        g = (np.exp(logs) - onehot) / n  # d loss / d z
        gw = (g * base[0]).sum(axis=0)
        if method == "temperature":
            return loss, np.array([gw.sum()])
        reg = theta - np.concatenate([np.ones(k), np.zeros(k)])
        return loss + l2 * float(reg @ reg), np.concatenate([gw, g.sum(axis=0)]) + 2 * l2 * reg

    if method == "temperature":
        theta0 = np.array([1.0])
        bounds: list[tuple[float | None, float | None]] = [(1e-3, 1e3)]
    else:
        theta0 = np.concatenate([np.ones(k), np.zeros(k)])
        bounds = [(1e-3, 1e3)] * k + [(None, None)] * k
    res = minimize(objective, theta0, jac=True, method="L-BFGS-B", bounds=bounds)
    w, b = unpack(res.x)
    return w, b


def compose(first: Calibration, then: Calibration) -> Calibration:
    """One calibration equal to applying ``first`` and then ``then`` (clipping aside).

    ``softmax(w2 * log softmax(w1 L + b1) + b2) = softmax(w2 w1 L + w2 b1 + b2)`` when ``w2`` is
    shared by all classes: the inner log-normaliser is then a shared shift, which the outer
    softmax ignores. With per-class ``w2`` (vector scaling) it is not, and no single
    calibration of this form equals the two.
    """
    w1, b1 = np.asarray(first.weight), np.asarray(first.bias)
    w2, b2 = np.asarray(then.weight), np.asarray(then.bias)
    if not np.allclose(w2, w2.flat[0]):
        raise ValueError(
            f"cannot compose with {then.method!r}: its per-class weights {w2.tolist()} do not "
            "commute with the first calibration; fit it on the first one's output instead"
        )
    w = np.broadcast_to(w2 * w1, b1.shape)
    b = w2 * b1 + b2
    methods = [m for m in (first.method, then.method) if m != "none"]
    return Calibration(
        "+".join(methods) or "none",
        tuple(float(v) for v in w),
        tuple(float(v) for v in b - b.mean()),
    )


# --- measuring ----------------------------------------------------------------------------
def expected_calibration_error(
    probs: np.ndarray, labels: Sequence[str] | np.ndarray, classes: Sequence[str], *, bins: int = 15
) -> float:
    """Top-label ECE: the recording-weighted mean |accuracy − confidence| over equal bins.

    Confidence is the largest renormalised probability; a bin is ``(lo, hi]`` (the first one
    includes 0), as in netcal and Guo et al. 2017.
    """
    p = normalise(probs)
    y = label_indices(labels, classes)
    if len(y) == 0:
        return float("nan")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    gap = np.abs(
        np.bincount(idx, weights=correct, minlength=bins) - np.bincount(idx, conf, minlength=bins)
    )
    return float(gap.sum() / count.sum())


def calibration_metrics(
    probs: np.ndarray, labels: Sequence[str] | np.ndarray, classes: Sequence[str], *, bins: int = 15
) -> dict[str, float]:
    """``{"ece": ..., "log_loss": ...}`` of renormalised probabilities."""
    p = normalise(np.clip(normalise(probs), 1e-7, 1.0))
    y = label_indices(labels, classes)
    ll = float(log_loss(y, p, labels=list(range(len(classes))))) if len(y) else float("nan")
    return {"ece": expected_calibration_error(p, labels, classes, bins=bins), "log_loss": ll}
