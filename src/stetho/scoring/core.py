"""What every scoring path shares: the acceptance rule, the decision rule of a run, and the one
result type :class:`Scored`.

* :class:`Acceptance`: which recordings a model accepts (duration limits; an upload size
  where a service sets one). A run's is its ``dataset.min/max_duration_seconds``; an exported
  pipeline records the same numbers in ``preprocess.json``. ``stetho predict``, the service
  and ``score.py`` apply it; the service may only be stricter (:meth:`Acceptance.narrowed`).
* :func:`run_rule`: the run's :class:`~stetho.decision.DecisionRule`, from its
  ``decision.json`` when present, else the default rule of its classes, loss function and
  ``prediction.probability_threshold``.
* :func:`decide`: raw fold-mean probabilities -> :class:`Scored` results, by the rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stetho.decision import Calibration, Decision, DecisionRule
from stetho.io import ArtifactError
from stetho.runs import Run


@dataclass(frozen=True)
class Acceptance:
    """Limits a recording must meet to be scored (seconds; bytes of the file)."""

    min_duration_s: float
    max_duration_s: float | None
    max_upload_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_duration_s": self.min_duration_s,
            "max_duration_s": self.max_duration_s,
            "max_upload_bytes": self.max_upload_bytes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Acceptance:
        top = data.get("max_duration_s")
        size = data.get("max_upload_bytes")
        return cls(
            min_duration_s=float(data.get("min_duration_s", 0.0)),
            max_duration_s=None if top is None else float(top),
            max_upload_bytes=None if size is None else int(size),
        )

    def narrowed(self, **limits: float | int | None) -> tuple[Acceptance, list[str]]:
        """This acceptance with a service's own ``limits`` applied where they are stricter.

        ``limits`` holds ``min_duration_s``, ``max_duration_s``, ``max_upload_bytes`` (``None``:
        not set). Returns the result and the names of the limits that are the service's.
        ``ValueError`` when a limit is looser than the model's: one model, one acceptance.
        """
        values = self.to_dict()
        stricter: list[str] = []
        for name, given in limits.items():
            if given is None:
                continue
            model = values[name]
            looser = model is not None and (
                given < model if name == "min_duration_s" else given > model
            )
            if looser:
                raise ValueError(
                    f"{name}={given:g} is looser than the model's {model:g}: the service may "
                    "only be stricter than the acceptance rule recorded with the model"
                )
            if given != model:
                stricter.append(name)
                values[name] = given
        return Acceptance.from_dict(values), stricter


def run_acceptance(run: Run) -> Acceptance:
    """The acceptance rule recorded in a run: its dataset duration limits."""
    ds = run.config.dataset
    return Acceptance(
        min_duration_s=float(ds.min_duration_seconds),
        max_duration_s=float(ds.max_duration_seconds),
    )


def with_prior_shift(rule: DecisionRule, bias: Sequence[float], *, note: str) -> DecisionRule:
    """``rule`` with ``bias`` added to its calibration bias (a label-shift update,
    :func:`stetho.decision.shift.estimate_priors`); threshold and band unchanged."""
    b = np.asarray(bias, dtype=np.float64)
    if b.shape != (len(rule.classes),):
        raise ValueError(f"prior-shift bias has {b.size} values for {len(rule.classes)} classes")
    cal = rule.calibration
    weight = (1.0,) * len(rule.classes) if cal is None else cal.weight
    old = np.zeros(len(b)) if cal is None else np.asarray(cal.bias)
    method = "prior-shift" if cal is None else f"{cal.method}+prior-shift"
    new = Calibration(method, tuple(weight), tuple(float(v) for v in old + b))
    return DecisionRule(
        classes=rule.classes,
        normal_class=rule.normal_class,
        multilabel=rule.multilabel,
        calibration=new,
        threshold=rule.threshold,
        abstain_band=rule.abstain_band,
        meta={**rule.meta, "prior_shift": note},
    )


def run_rule(run: Run) -> DecisionRule:
    """The run's decision rule: its ``decision.json``, else the default for its classes."""
    if run.decision is None:
        return DecisionRule.default(
            run.classes,
            loss_function=run.loss_function,
            threshold=float(run.config.prediction.probability_threshold),
        )
    where = run.folder.decision
    try:
        rule = DecisionRule.from_dict(run.decision)
    except ValueError as exc:
        raise ArtifactError(
            where, str(exc), "fix or delete it (the default rule is used)"
        ) from None
    if list(rule.classes) != list(run.classes):
        raise ArtifactError(
            where,
            f"its classes {list(rule.classes)} are not the run's {run.classes}",
            "refit the decision rule for this run or delete the file",
        )
    if rule.multilabel != (run.loss_function == "BCE"):
        raise ArtifactError(
            where,
            f"multilabel={rule.multilabel} does not match the run's {run.loss_function} loss",
            "refit the decision rule for this run or delete the file",
        )
    return rule


@dataclass(frozen=True)
class Scored:
    """One scored recording or streaming window, or why it could not be scored.

    ``probs`` are the rule's calibrated probabilities (:meth:`DecisionRule.probabilities`),
    ``decision`` its decision; both ``None`` with an ``error``.
    """

    path: str
    probs: np.ndarray | None
    decision: Decision | None
    duration_s: float | None
    error: str = ""
    analysis: dict[str, Any] | None = None
    detail: dict[str, Any] | None = field(default=None)

    @property
    def label(self) -> str | None:
        return None if self.decision is None else self.decision.label

    @property
    def abnormal_prob(self) -> float | None:
        """The abnormal probability; ``None`` when failed or the rule has no normal class."""
        if self.decision is None or math.isnan(self.decision.abnormal_probability):
            return None
        return self.decision.abnormal_probability

    def prob_dict(self, classes: Sequence[str]) -> dict[str, float]:
        if self.probs is None:
            return {}
        return {c: round(float(p), 6) for c, p in zip(classes, self.probs, strict=True)}


def decide(
    rule: DecisionRule,
    raw: np.ndarray,
    *,
    paths: Sequence[str],
    durations: Sequence[float],
    usable: Sequence[bool] | None = None,
) -> list[Scored]:
    """:class:`Scored` results for raw fold-mean probabilities ``(n, C)`` of ``paths``.

    Every scoring path calls this, so that one recording gets one decision everywhere. The
    heart-sound analysis is reported beside the decision; it enters it only through
    ``usable`` (the quality gate: ``False`` -> "re-record"), which ``stetho predict
    --quality-gate`` and the service's ``quality_gate`` query give; the exported ``score.py``
    has no heart-sound analysis and never gates.
    """
    probs = rule.probabilities(raw)
    decisions = rule.decide_all(probs, usable)
    return [
        Scored(
            path=paths[i],
            probs=probs[i],
            decision=decisions[i],
            duration_s=float(durations[i]),
        )
        for i in range(len(paths))
    ]
