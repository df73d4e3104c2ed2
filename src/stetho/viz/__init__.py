"""Figure basics shared by every chart stetho draws: one style, PNG bytes, class colours."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from matplotlib import colormaps
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from stetho.io import atomic_write_bytes

#: Resolution of embedded figures: sharp on screen, small in the file.
DPI = 96


def style(fig: Figure) -> Figure:
    for ax in fig.axes:
        ax.spines["top"].set_visible(False)
        ax.spines["right"].set_visible(False)
        ax.tick_params(labelsize=8)
        ax.title.set_fontsize(10)
        ax.xaxis.label.set_fontsize(9)
        ax.yaxis.label.set_fontsize(9)
    return fig


def png_bytes(fig: Figure, *, dpi: int = DPI) -> bytes:
    """Render ``fig`` to PNG bytes (tight bounding box) and release it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    fig.clear()
    return buf.getvalue()


def save_png(fig: Figure, path: str | Path, *, dpi: int = DPI) -> None:
    """Write ``fig`` as a PNG file, atomically."""
    atomic_write_bytes(path, png_bytes(fig, dpi=dpi))


def class_colours(classes: Sequence[str]) -> dict[str, str]:
    """One fixed colour per class, in class order (matplotlib's ``tab10``)."""
    cmap = colormaps["tab10"]
    return {c: to_hex(cmap(i % 10)) for i, c in enumerate(classes)}
