"""Rhythm inputs: per-recording heart-rhythm statistics fed beside the spectrogram.

Used when a run sets ``training.rhythm_features``; training, scoring and explanations all call
:func:`rhythm_extras`, so a model sees the same numbers at every stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rhythm_extras(waves: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray]:
    """``(n_extra,)`` float32 vector per recording: :func:`stetho.pcg.rhythm_features`,
    log-compressed (``sign(x) * log1p(|x|)``) so rates, intervals and ratios share one scale."""
    from stetho.pcg import rhythm_features

    out = []
    for wave in waves:
        x = np.asarray(rhythm_features(wave, sample_rate), dtype=np.float32)
        out.append(np.sign(x) * np.log1p(np.abs(x)))
    return out
