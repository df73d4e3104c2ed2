"""The beat-timing pretext task (``stetho pretrain --rhythm-weight``): spliced excerpts whose
rhythm is kept or broken.

Contrastive positives cut at independent offsets teach a backbone what stays the same across
a recording (a murmur's timbre) and nothing about where beats fall, and a premature beat is
only an event in time (benchmarks/results/backbone.md, fourth and fifth measurements). Here
each excerpt is cut with one splice, a short cross-faded join at a random point of its middle
half:

- ``regular`` (target 0): the stretch removed is exactly one cardiac cycle, so the beats after
  the join stay in step with those before it;
- ``irregular`` (target 1): it is 0.3–0.7 of a cycle, so the next beat comes early or late.

Both kinds have a join at the same places, so the join itself gives nothing away: telling
them apart needs the spacing of the beats around it. The cycle comes from the recording's
heart rate (:func:`stetho.pcg.analyze`, envelope method); a recording without a usable
estimate gets no splice and no target. The two views of a contrastive pair share their kind
(:class:`stetho.pretrain.data.PretrainBatches`), or NT-Xent would teach the embedding to
ignore it.
"""

from __future__ import annotations

import math

import numpy as np

from stetho.pcg import analyze

#: Target of a splice that removed one whole cycle / a fraction of one.
REGULAR, IRREGULAR = 0, 1
#: The fraction of a cycle an irregular splice removes (uniform draw).
IRREGULAR_CYCLES = (0.3, 0.7)
#: Cross-fade at the join (s): long enough that it does not click, far shorter than S1.
FADE_S = 0.01


def cycle_samples(audio: np.ndarray, sample_rate: int) -> int | None:
    """The cardiac cycle of ``audio`` in samples, or ``None`` where the envelope analysis finds
    no usable heart rate (too short, noisy or not periodic)."""
    result = analyze(audio, sample_rate, method="envelope")
    bpm = result.heart_rate_bpm
    if not result.quality.usable or not math.isfinite(bpm) or bpm <= 0:
        return None
    return int(round(60.0 / bpm * sample_rate))


def splice_excerpt(
    audio: np.ndarray,
    length: int,
    cycle: int,
    rng: np.random.Generator,
    *,
    irregular: bool,
    fade: int,
) -> np.ndarray | None:
    """``length`` samples of ``audio`` with one stretch cut out at a random point of the middle
    half and the two sides cross-faded over ``fade`` samples: ``cycle`` samples removed when
    regular, 0.3–0.7 of that when ``irregular``. ``None`` if ``audio`` is too short to hold
    the excerpt and the stretch."""
    if length < 4 or cycle < 1 or fade < 1 or fade > length // 4:
        raise ValueError(
            f"splice_excerpt: length={length}, cycle={cycle}, fade={fade}: expected length >= 4, "
            "cycle >= 1 and 1 <= fade <= length / 4"
        )
    gap = int(round(rng.uniform(*IRREGULAR_CYCLES) * cycle)) if irregular else cycle
    need = length + gap
    if len(audio) < need:
        return None
    start = int(rng.integers(0, len(audio) - need + 1))
    cut = int(rng.integers(length // 4, 3 * length // 4 - fade + 1))
    x = np.asarray(audio, dtype=np.float32)
    head = x[start : start + cut + fade]
    tail = x[start + cut + gap : start + gap + length]
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    joined = head[cut:] * (1.0 - ramp) + tail[:fade] * ramp
    return np.concatenate([head[:cut], joined, tail[fade:]])
