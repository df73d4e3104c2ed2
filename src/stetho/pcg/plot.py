"""A picture of one analysis: waveform, envelope, and the S1/S2 sounds found.

Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global state), so it
is safe in worker processes and servers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stetho.io import atomic_path
from stetho.pcg.segmentation import STATES

if TYPE_CHECKING:
    from stetho.pcg import PCGAnalysis

#: Colours of the S1 and S2 spans.
_S1_COLOUR = "tab:red"
_S2_COLOUR = "tab:blue"
#: At most this many waveform points are drawn (a min/max envelope of the samples beyond it).
_MAX_POINTS = 20000


def _decimate_for_drawing(x: np.ndarray, sample_rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """(times_s, values): the signal, or the min and max of blocks of it when it is long."""
    if len(x) <= _MAX_POINTS:
        return np.arange(len(x)) / sample_rate_hz, x
    block = int(np.ceil(2 * len(x) / _MAX_POINTS))
    n_blocks = len(x) // block
    blocks = x[: n_blocks * block].reshape(n_blocks, block)
    values = np.column_stack([blocks.min(axis=1), blocks.max(axis=1)]).ravel()
    times_s = np.repeat(np.arange(n_blocks) * block / sample_rate_hz, 2)
    return times_s, values


def plot_analysis(
    x: np.ndarray,
    sample_rate_hz: float,
    analysis: PCGAnalysis,
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """Write a PNG of the waveform, envelope, S1/S2 spans and decoded states; returns the path.

    ``x`` (samples,) at ``sample_rate_hz`` is the recording :func:`stetho.pcg.analyze` was given.
    """
    fig = Figure(figsize=(12, 6), dpi=100)
    FigureCanvasAgg(fig)
    wave_ax, env_ax, state_ax = fig.subplots(3, 1, sharex=True, height_ratios=(2, 1, 0.8))
    times_s, values = _decimate_for_drawing(np.asarray(x, dtype=np.float64), sample_rate_hz)
    wave_ax.plot(times_s, values, color="0.3", linewidth=0.4)
    env_times_s = np.arange(len(analysis.envelope)) / analysis.envelope_hz
    env_ax.plot(env_times_s, analysis.envelope, color="black", linewidth=0.8)
    for ax in (wave_ax, env_ax):
        for label, spans, colour in (
            ("S1", analysis.s1_s, _S1_COLOUR),
            ("S2", analysis.s2_s, _S2_COLOUR),
        ):
            for i, (onset_s, offset_s) in enumerate(spans):
                ax.axvspan(
                    onset_s,
                    offset_s,
                    color=colour,
                    alpha=0.25,
                    linewidth=0,
                    label=label if i == 0 and ax is wave_ax else None,
                )
    hr = analysis.heart_rate_bpm
    summary = (
        f"HR {hr:.0f} bpm (confidence {analysis.heart_rate_confidence:.2f})"
        if np.isfinite(hr)
        else "HR unknown"
    )
    verdict = "usable" if analysis.quality.usable else "NOT usable"
    wave_ax.set_title(
        f"{title}  {summary}, quality {analysis.quality.index:.2f} ({verdict})", fontsize=10
    )
    # Decoded state per frame, and the stretches the quality check calls usable.
    state_times_s = np.arange(len(analysis.states)) / analysis.envelope_hz
    state_ax.step(state_times_s, analysis.states, where="post", color="black", linewidth=0.8)
    state_ax.set_yticks(range(len(STATES)), STATES, fontsize=7)
    state_ax.invert_yaxis()
    for i, (start_s, end_s) in enumerate(analysis.usable_segments_s):
        state_ax.axvspan(
            start_s,
            end_s,
            color="tab:green",
            alpha=0.15,
            linewidth=0,
            label="usable" if i == 0 else None,
        )
    if len(analysis.usable_segments_s):
        state_ax.legend(loc="upper right", fontsize=7)
    state_ax.set_xlabel("time (s)")
    wave_ax.set_ylabel("amplitude")
    env_ax.set_ylabel("envelope")
    if len(analysis.s1_s) or len(analysis.s2_s):
        wave_ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
