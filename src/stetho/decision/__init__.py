"""Probabilities -> decisions (issue #13): the rule every scoring path applies.

:class:`DecisionRule` (:mod:`stetho.decision.rule`) is pure numpy and JSON; the modules that
fit its parameters (calibration, operating point, abstention) build on it.
"""

from stetho.decision.rule import (
    NORMAL,
    OUTCOMES,
    Calibration,
    Decision,
    DecisionRule,
    Decisions,
    default_normal_class,
)

__all__ = [
    "NORMAL",
    "OUTCOMES",
    "Calibration",
    "Decision",
    "DecisionRule",
    "Decisions",
    "default_normal_class",
]
