"""The explanation figure: waveform, spectrogram and one attribution overlay per method."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from stetho.explain.methods import method_label
from stetho.viz import style


def _band_ticks(ax: Any, freqs_hz: np.ndarray, n: int = 5) -> None:
    idx = np.linspace(0, len(freqs_hz) - 1, n).round().astype(int)
    ax.set_yticks(idx, [f"{freqs_hz[i]:.0f}" for i in idx])


def _overlay_rgba(amap: np.ndarray) -> tuple[np.ndarray, float]:
    """Signed map -> RGBA: red raises the score, blue lowers it, opacity grows with |value|."""
    vmax = float(np.percentile(np.abs(amap), 99.5)) or float(np.abs(amap).max()) or 1.0
    v = np.clip(amap / vmax, -1, 1)
    rgba = colormaps["RdBu_r"]((v + 1) / 2)
    rgba[..., 3] = np.clip(np.abs(v), 0, 1) ** 0.7 * 0.9
    return rgba, vmax


def plot_explanation(
    wave: np.ndarray,
    sample_rate: int,
    attributions: Sequence[Any],
    *,
    title: str = "",
) -> Figure:
    """Waveform, model input spectrogram and one attribution overlay per method.

    ``attributions`` are :class:`stetho.explain.Attribution` objects of the same recording and
    class. Each overlay row has, to its right, the share of positive attribution per frequency
    band; the last row shows the share per time frame, one line per method. A tail the scorer
    did not score (shorter than half a chunk) is hatched.
    """
    if not attributions:
        raise ValueError("attributions: expected at least one Attribution")
    a0 = attributions[0]
    times, freqs = a0.times_s, a0.freqs_hz
    dt = (times[1] - times[0]) if len(times) > 1 else 1.0 / sample_rate
    t_end = max(len(wave) / sample_rate, times[-1] + dt / 2)
    extent = (times[0] - dt / 2, times[-1] + dt / 2, -0.5, len(freqs) - 0.5)
    n_rows = 3 + len(attributions)
    heights = [0.8] + [1.35] * (1 + len(attributions)) + [0.8]
    top_in = 0.75 if title else 0.35
    height = sum(heights) * 1.3 + top_in
    fig = Figure(figsize=(10.5, height))
    gs = fig.add_gridspec(
        n_rows,
        2,
        height_ratios=heights,
        width_ratios=[7, 1],
        hspace=0.55,
        wspace=0.03,
        top=1 - top_in / height,
        bottom=0.45 / height,
    )
    unscored = a0.scored_s < len(wave) / sample_rate - dt

    def shade(ax: Any, label: bool = False) -> None:
        if unscored:
            ax.axvspan(a0.scored_s, t_end, facecolor="#f2f2f2", edgecolor="#bbbbbb", hatch="//")
            if label:
                ax.text(
                    (a0.scored_s + t_end) / 2,
                    len(freqs) / 2,
                    "not scored",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="#555555",
                    rotation=90,
                )

    ax_w = fig.add_subplot(gs[0, 0])
    t = np.arange(len(wave)) / sample_rate
    ax_w.plot(t, wave, color="#333333", lw=0.4)
    ax_w.set_xlim(0, t_end)
    ax_w.set_ylabel("amplitude")
    ax_w.set_title("Waveform (model input, before level normalisation)", loc="left")

    ax_s = fig.add_subplot(gs[1, 0], sharex=ax_w)
    ax_s.imshow(a0.spectrogram, origin="lower", aspect="auto", extent=extent, cmap="magma")
    shade(ax_s, label=True)
    ax_s.set_ylabel("Hz")
    _band_ticks(ax_s, freqs)
    ax_s.set_title("Log-mel spectrogram (what the network sees)", loc="left")

    ax_t = fig.add_subplot(gs[n_rows - 1, 0], sharex=ax_w)
    method_colours = ("#c44e52", "#4c72b0", "#55a868")
    for k, a in enumerate(attributions):
        ax = fig.add_subplot(gs[2 + k, 0], sharex=ax_w)
        ax.imshow(a.spectrogram, origin="lower", aspect="auto", extent=extent, cmap="gray")
        rgba, _ = _overlay_rgba(a.map)
        ax.imshow(rgba, origin="lower", aspect="auto", extent=extent, interpolation="nearest")
        shade(ax)
        _band_ticks(ax, freqs)
        ax.set_ylabel("Hz")
        label = method_label(a.method)
        ax.set_title(
            f"{label}: evidence for '{a.class_name}' (p={a.probability:.2f}); "
            "red raises, blue lowers it",
            loc="left",
        )
        tprof, fprof = a.profiles()
        axf = fig.add_subplot(gs[2 + k, 1], sharey=ax)
        axf.barh(np.arange(len(freqs)), fprof, height=1.0, color=method_colours[k % 3])
        axf.set_ylim(-0.5, len(freqs) - 0.5)
        axf.tick_params(labelleft=False, labelbottom=False, bottom=False)
        if k == 0:
            axf.set_title("per band", fontsize=8)
        ax_t.plot(times, tprof, color=method_colours[k % 3], lw=1.0, label=label)
    shade(ax_t)
    ax_t.set_xlabel("time (s)")
    ax_t.set_ylabel("share")
    ax_t.set_title("Where in time the evidence lies (positive attribution per frame)", loc="left")
    ax_t.legend(fontsize=7, frameon=False, loc="upper right")
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if ax is not ax_t and spec is not None and spec.colspan.start == 0:
            ax.tick_params(labelbottom=False)
    if title:
        fig.suptitle(title, fontsize=10, x=0.01, ha="left", y=1 - 0.1 / height)
    return style(fig)
