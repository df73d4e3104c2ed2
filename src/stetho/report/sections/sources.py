"""Metrics per recording source, and the classes only one source has."""

from __future__ import annotations

import pandas as pd

from stetho.report import plots
from stetho.report.context import Context
from stetho.report.markup import table, warn


def single_source_classes(manifest: pd.DataFrame) -> dict[str, str]:
    """Labelled classes present in exactly one source, when there are several sources."""
    labelled = manifest[manifest["label"].notna()]
    if labelled["source"].nunique() < 2:
        return {}
    out = {}
    for label, part in labelled.groupby("label"):
        sources = sorted(part["source"].astype(str).unique())
        if len(sources) == 1:
            out[str(label)] = sources[0]
    return out


def sources(ctx: Context) -> str:
    """Per-source metrics, with a warning for every class only one source has."""
    rf = ctx.data
    figs = ctx.figs
    per_source = rf.summary.get("per_source", {})
    out = []
    only = single_source_classes(rf.manifest if rf.manifest is not None else rf.oof)
    for cls, src in sorted(only.items()):
        out.append(
            warn(
                f"Class '{cls}' occurs only in source '{src}'. A model can recognise it by the "
                "recording device and its sample rate alone, so its pooled AUC can be high "
                "without any heart-sound evidence. Read its within-source AUC below, and do not "
                "expect it to transfer to another device."
            )
        )
    if len(per_source) < 2:
        out.append('<p class="muted">One recording source: no per-source comparison.</p>')
    rows = [
        [
            s,
            m["n"],
            m["macro_auc"],
            m["balanced_accuracy"],
            *[m["per_class"][c]["auc"] for c in rf.classes],
        ]
        for s, m in per_source.items()
    ]
    out.append(
        table(["source", "n", "macro AUC", "bal. acc.", *[f"AUC {c}" for c in rf.classes]], rows)
    )
    out.append(
        '<p class="guide">Within-source AUC compares a class only with recordings from the same '
        "device; n/a: the class is absent from that source (or is its only class).</p>"
    )
    if per_source:
        out.append(
            figs.plot(
                plots.plot_source_auc(per_source, rf.classes),
                alt="per-class AUC within each source",
                caption="Per-class ROC AUC within each source. A class that is only separable "
                "across sources (high pooled AUC, n/a or low within its source) is being "
                "recognised by its device.",
                fig_id="fig-sources",
            )
        )
    return "".join(out)
