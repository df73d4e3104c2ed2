"""Heart-sound signal analysis: heart rate, S1/S2 segmentation, rhythm and signal quality.

The public entry points live in :mod:`stetho.pcg.analysis` and are re-exported here:
:func:`analyze` (a signal -> :class:`PCGAnalysis`), :func:`analyze_file` (a file -> a JSON-able
dict) and :func:`rhythm_features` (a fixed-length feature vector for classifiers).
"""

from __future__ import annotations

from stetho.pcg.analysis import (
    DEFAULT_METHOD,
    METHODS,
    RHYTHM_FEATURE_NAMES,
    PCGAnalysis,
    analyze,
    analyze_file,
    rhythm_features,
)

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "RHYTHM_FEATURE_NAMES",
    "PCGAnalysis",
    "analyze",
    "analyze_file",
    "rhythm_features",
]
