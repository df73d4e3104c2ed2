"""The decision rule: a run's fold-mean probabilities in, one decision per recording out.

Every consumer (``stetho predict``, the service, Dask scoring, the report's metrics, and, as
its own copy, the exported ``score.py``) decides with a :class:`DecisionRule`:

1. **probabilities** (:meth:`DecisionRule.probabilities`): under BCE (``multilabel``, sigmoid
   outputs) each row is divided by its sum so that it is a distribution over the classes;
   then an optional calibration ``p' = softmax(weight * log(clip(p, 1e-12)) + bias)``
   (per-class ``weight`` and ``bias``; identity at weight 1, bias 0);
2. **abnormal probability** (:meth:`DecisionRule.abnormal_probability`): ``1 - p'(normal)``
   when the rule has a normal class; undefined (NaN) otherwise;
3. **decision** (:meth:`DecisionRule.decide`): abnormal when the abnormal probability is at or
   above ``threshold``; the label is the most probable non-normal class when abnormal, the
   normal class when not (so the label never contradicts the flag); the outcome is
   ``"re-record"`` when the abnormal probability falls in ``abstain_band`` ``[lo, hi)`` or the
   recording is flagged unusable, else ``"abnormal"`` / ``"normal"``. Without a normal class
   the label is the most probable class, the flag and the outcome are ``None`` (except
   ``"re-record"`` for an unusable recording).

Pure numpy and JSON: the rule is stored as ``decision.json`` in a run and inside an exported
pipeline's ``preprocess.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

#: The class the PhysioNet/CinC 2016 normal-vs-abnormal view calls normal.
NORMAL = "normal"
#: Probabilities are clipped to this before the calibration's log.
LOG_CLIP = 1e-12

Outcome = Literal["normal", "abnormal", "re-record"]
OUTCOMES: tuple[str, ...] = ("normal", "abnormal", "re-record")


def default_normal_class(classes: Sequence[str]) -> str | None:
    """``normal`` when the classes have it; the first of two classes otherwise (so that the
    abnormal probability of a two-class run is that of the second, sorted, class); else
    ``None``: no normal-vs-abnormal decision."""
    if NORMAL in classes:
        return NORMAL
    if len(classes) == 2:
        return str(classes[0])
    return None


@dataclass(frozen=True)
class Calibration:
    """``p' = softmax(weight * log(clip(p, 1e-12)) + bias)``, one weight and bias per class."""

    method: str
    weight: tuple[float, ...]
    bias: tuple[float, ...]

    def apply(self, probs: np.ndarray) -> np.ndarray:
        z = np.asarray(self.weight) * np.log(np.clip(probs, LOG_CLIP, None)) + np.asarray(self.bias)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        out: np.ndarray = e / e.sum(axis=1, keepdims=True)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "weight": list(self.weight), "bias": list(self.bias)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        return cls(
            method=str(data["method"]),
            weight=tuple(float(w) for w in data["weight"]),
            bias=tuple(float(b) for b in data["bias"]),
        )


@dataclass(frozen=True)
class Decision:
    """One recording's decision (see the module docstring)."""

    label: str
    #: ``1 - p'(normal)``; NaN when the rule has no normal class.
    abnormal_probability: float
    #: ``None`` when the rule has no normal class.
    abnormal: bool | None
    #: ``"normal"``, ``"abnormal"`` or ``"re-record"``; ``None`` without a normal class
    #: (unless the recording is unusable).
    outcome: Outcome | None


@dataclass(frozen=True)
class Decisions:
    """The vectorised form of a list of :class:`Decision` (one entry per recording)."""

    labels: list[str]
    abnormal_probability: np.ndarray
    abnormal: list[bool | None]
    outcomes: list[Outcome | None]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Decision:
        return Decision(
            label=self.labels[i],
            abnormal_probability=float(self.abnormal_probability[i]),
            abnormal=self.abnormal[i],
            outcome=self.outcomes[i],
        )

    def to_list(self) -> list[Decision]:
        return [self[i] for i in range(len(self))]


@dataclass(frozen=True)
class DecisionRule:
    """How a run's probabilities become decisions; see the module docstring."""

    classes: tuple[str, ...]
    normal_class: str | None
    #: BCE (sigmoid) outputs: rows are renormalised to sum to 1 before anything else.
    multilabel: bool = False
    calibration: Calibration | None = None
    threshold: float = 0.5
    #: Abnormal probability in ``[lo, hi)`` -> outcome ``"re-record"``.
    abstain_band: tuple[float, float] | None = None
    #: Free-form provenance (who fitted the parameters, on what); kept through JSON.
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if not self.classes:
            raise ValueError("DecisionRule: expected at least one class")
        if self.normal_class is not None and self.normal_class not in self.classes:
            raise ValueError(
                f"DecisionRule: normal class {self.normal_class!r} is not among "
                f"{list(self.classes)}"
            )
        if not (math.isfinite(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise ValueError(f"DecisionRule: threshold={self.threshold}: expected [0, 1]")
        if self.calibration is not None:
            n = len(self.classes)
            if len(self.calibration.weight) != n or len(self.calibration.bias) != n:
                raise ValueError(
                    f"DecisionRule: calibration has {len(self.calibration.weight)} weights and "
                    f"{len(self.calibration.bias)} biases; expected {n} (one per class)"
                )
        if self.abstain_band is not None:
            lo, hi = (float(v) for v in self.abstain_band)
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(
                    f"DecisionRule: abstain_band=({lo}, {hi}): expected 0 <= lo <= hi <= 1"
                )
            if self.normal_class is None:
                raise ValueError("DecisionRule: an abstain band needs a normal class")
            object.__setattr__(self, "abstain_band", (lo, hi))

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def default(
        cls, classes: Sequence[str], *, loss_function: str = "CrossEntropy", threshold: float = 0.5
    ) -> DecisionRule:
        """Today's rule for a run: :func:`default_normal_class`, no calibration, no band."""
        return cls(
            classes=tuple(classes),
            normal_class=default_normal_class(classes),
            multilabel=loss_function == "BCE",
            threshold=float(threshold),
        )

    def with_threshold(self, threshold: float | None) -> DecisionRule:
        """This rule with another threshold (``None``: unchanged)."""
        if threshold is None:
            return self
        return DecisionRule(
            classes=self.classes,
            normal_class=self.normal_class,
            multilabel=self.multilabel,
            calibration=self.calibration,
            threshold=float(threshold),
            abstain_band=self.abstain_band,
            meta=self.meta,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; :meth:`from_dict` gives the rule back."""
        return {
            "classes": list(self.classes),
            "normal_class": self.normal_class,
            "multilabel": self.multilabel,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "threshold": self.threshold,
            "abstain_band": None if self.abstain_band is None else list(self.abstain_band),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecisionRule:
        """The rule of :meth:`to_dict`; ``ValueError`` naming the problem otherwise."""
        if not isinstance(data, Mapping):
            raise ValueError(f"decision rule: expected a JSON object, got {type(data).__name__}")
        try:
            calibration = data.get("calibration")
            band = data.get("abstain_band")
            return cls(
                classes=tuple(data["classes"]),
                normal_class=data.get("normal_class"),
                multilabel=bool(data.get("multilabel", False)),
                calibration=None if calibration is None else Calibration.from_dict(calibration),
                threshold=float(data.get("threshold", 0.5)),
                abstain_band=None if band is None else (float(band[0]), float(band[1])),
                meta=dict(data.get("meta") or {}),
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"decision rule: missing or malformed field {exc}") from None

    # --- applying -------------------------------------------------------------------------

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        """``(n, C)`` fold-mean model outputs -> ``(n, C)`` calibrated class probabilities."""
        p = np.asarray(raw, dtype=np.float64)
        if p.ndim == 1:
            p = p[None, :]
        if p.ndim != 2 or p.shape[1] != len(self.classes):
            raise ValueError(
                f"probabilities of shape {p.shape}; expected (n, {len(self.classes)}) for "
                f"classes {list(self.classes)}"
            )
        if self.multilabel:
            p = p / np.clip(p.sum(axis=1, keepdims=True), LOG_CLIP, None)
        if self.calibration is not None:
            p = self.calibration.apply(p)
        return p

    def abnormal_probability(self, probs: np.ndarray) -> np.ndarray:
        """``(n,)`` ``1 - p(normal)`` of calibrated ``probs``; NaN without a normal class."""
        p = np.asarray(probs, dtype=np.float64).reshape(-1, len(self.classes))
        if self.normal_class is None:
            return np.full(len(p), np.nan)
        out: np.ndarray = np.clip(1.0 - p[:, self.classes.index(self.normal_class)], 0.0, 1.0)
        return out

    def decide_all(self, probs: np.ndarray, usable: Sequence[bool] | None = None) -> Decisions:
        """Decisions for calibrated ``probs`` ``(n, C)`` (from :meth:`probabilities`).

        ``usable`` (``(n,)``, optional): ``False`` makes the outcome ``"re-record"``.
        """
        p = np.asarray(probs, dtype=np.float64).reshape(-1, len(self.classes))
        n = len(p)
        if usable is not None and len(usable) != n:
            raise ValueError(f"usable has {len(usable)} entries for {n} recordings")
        q = self.abnormal_probability(p)
        labels: list[str] = []
        flags: list[bool | None] = []
        outcomes: list[Outcome | None] = []
        if self.normal_class is None:
            labels = [self.classes[int(i)] for i in p.argmax(axis=1)]
            flags = [None] * n
            outcomes = [None] * n
        else:
            j = self.classes.index(self.normal_class)
            others = p.copy()
            others[:, j] = -np.inf
            top_other = others.argmax(axis=1)
            for i in range(n):
                flag = bool(q[i] >= self.threshold)
                flags.append(flag)
                labels.append(self.classes[int(top_other[i])] if flag else self.normal_class)
                in_band = self.abstain_band is not None and (
                    self.abstain_band[0] <= q[i] < self.abstain_band[1]
                )
                outcomes.append("re-record" if in_band else ("abnormal" if flag else "normal"))
        if usable is not None:
            outcomes = [o if ok else "re-record" for o, ok in zip(outcomes, usable, strict=True)]
        return Decisions(labels=labels, abnormal_probability=q, abnormal=flags, outcomes=outcomes)

    def decide(self, probs: np.ndarray, usable: Sequence[bool] | None = None) -> list[Decision]:
        """:meth:`decide_all` as a list of :class:`Decision`."""
        return self.decide_all(probs, usable).to_list()
