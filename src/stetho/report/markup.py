"""Small HTML pieces of the report: escaping, numbers, tables, figures, sections, warnings."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from stetho.viz import png_bytes


def esc(x: Any) -> str:
    """``x`` as text safe inside HTML and attribute values."""
    return html.escape(str(x), quote=True)


def isnan(x: Any) -> bool:
    """``None`` or a float NaN: a value the report shows as n/a."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt(x: Any, digits: int = 3) -> str:
    """A number for a table cell: thousands separators, ``digits`` decimals, n/a for NaN."""
    if isnan(x):
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    if isinstance(x, float | np.floating):
        return f"{float(x):.{digits}f}"
    return str(x)


def table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "", digits: int = 3
) -> str:
    """An HTML table (wrapped to scroll sideways); an empty ``header`` gives no head row."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header) if any(header) else ""
    body = []
    for row in rows:
        cells = []
        for v in row:
            text = fmt(v, digits)
            na = ' class="na"' if text == "n/a" else ""
            cells.append(f"<td{na}>{esc(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<div class="scroll"><table{klass}>'
        + (f"<thead><tr>{head}</tr></thead>" if head else "")
        + f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def png_uri(png: bytes) -> str:
    """PNG bytes as a ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class Figures:
    """Renders figures into ``<figure>`` blocks and counts them."""

    def __init__(self) -> None:
        self.count = 0

    def embed(self, png: bytes, *, alt: str, caption: str, fig_id: str) -> str:
        self.count += 1
        return (
            f'<figure id="{esc(fig_id)}"><img src="{png_uri(png)}" alt="{esc(alt)}">'
            f"<figcaption><strong>Figure {self.count}.</strong> {caption}</figcaption></figure>"
        )

    def plot(self, fig: Figure, *, alt: str, caption: str, fig_id: str) -> str:
        return self.embed(png_bytes(fig), alt=alt, caption=caption, fig_id=fig_id)


def section(sid: str, title: str, body: str) -> str:
    """One ``<section>`` with its heading."""
    return f'<section id="{sid}"><h2>{esc(title)}</h2>{body}</section>'


def warn(text: str) -> str:
    """A highlighted warning box."""
    return f'<div class="warn" role="note"><strong>Warning.</strong> {esc(text)}</div>'
