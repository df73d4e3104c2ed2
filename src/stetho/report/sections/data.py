"""The data: recordings per class, source and fold; durations; skipped files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stetho.report import plots
from stetho.report.context import Context
from stetho.report.markup import table


def data(ctx: Context) -> str:
    """Recordings per class, source and fold; durations; skipped files; two charts."""
    rf = ctx.data
    figs = ctx.figs
    m = rf.manifest
    if m is None:
        return f'<p class="muted">{rf.folder.manifest.name} is missing: no data overview.</p>'
    out = []
    labelled = m[m["label"].notna()]
    sources = sorted(m["source"].astype(str).unique())
    counts = m.assign(label=m["label"].fillna("(unlabelled)")).pivot_table(
        index="label", columns="source", values="path", aggfunc="count", fill_value=0
    )
    order = sorted(i for i in counts.index if i != "(unlabelled)")
    order += ["(unlabelled)"] if "(unlabelled)" in counts.index else []
    counts = counts.loc[order]
    patients = labelled.pivot_table(
        index="label", columns="source", values="patient", aggfunc="nunique", fill_value=0
    )
    rows = []
    for lab in counts.index:
        row: list[Any] = [lab]
        for s in sources:
            n = int(counts.loc[lab, s]) if s in counts.columns else 0
            p = (
                int(patients.loc[lab, s])
                if lab in patients.index and s in patients.columns
                else None
            )
            row.append(f"{n} ({p})" if p is not None and n else str(n))
        row.append(int(counts.loc[lab].sum()))
        rows.append(row)
    rows.append(["total", *[int(counts[s].sum()) for s in sources], int(counts.values.sum())])
    out.append(
        f"<p>{len(m):,} recordings from {len(sources)} source(s); {len(labelled):,} labelled, "
        f"{int(m['label'].isna().sum()):,} unlabelled; "
        f"{labelled['patient'].nunique():,} patients among the labelled.</p>"
    )
    out.append("<h3>Recordings per class and source (patients in brackets)</h3>")
    out.append(table(["class", *sources, "total"], rows))
    durations = []
    for s, part in m.groupby("source"):
        d = part["duration_s"].astype(float)
        durations.append(
            [s, len(part), d.min(), d.median(), d.max(), d.sum() / 60, part["sample_rate"].iloc[0]]
        )
    out.append("<h3>Durations per source</h3>")
    out.append(
        table(
            ["source", "recordings", "min s", "median s", "max s", "total min", "file rate Hz"],
            durations,
            digits=1,
        )
    )
    folds = labelled[labelled["fold"] >= 0]
    if len(folds):
        ft = folds.pivot_table(
            index="fold", columns="label", values="path", aggfunc="count", fill_value=0
        )
        fold_rows = [
            [
                f"fold {k}",
                *[int(ft.loc[k, c]) if c in ft.columns else 0 for c in rf.classes],
                folds.loc[folds["fold"] == k, "patient"].nunique(),
            ]
            for k in ft.index
        ]
        out.append("<h3>Validation folds (recordings per class; patients)</h3>")
        out.append(table(["fold", *rf.classes, "patients"], fold_rows))
    if rf.skipped is not None and len(rf.skipped):
        out.append(f"<h3>Skipped recordings ({len(rf.skipped)})</h3>")
        shown = rf.skipped.head(20)
        out.append(
            table(
                ["file", "reason"],
                [
                    [Path(str(p)).name, r]
                    for p, r in zip(shown["path"], shown["reason"], strict=True)
                ],
            )
        )
        if len(rf.skipped) > 20:
            out.append(
                f'<p class="muted">... and {len(rf.skipped) - 20} more in '
                f"{rf.folder.skipped.name}.</p>"
            )
    out.append(
        figs.plot(
            plots.plot_class_counts(m),
            alt="bar chart of recordings per class, stacked by source",
            caption="Recordings per class, coloured by source. A class drawn in one colour only "
            "exists in one source.",
            fig_id="fig-class-counts",
        )
    )
    out.append(
        figs.plot(
            plots.plot_durations(m),
            alt="histogram of recording durations per source",
            caption="Recording durations per source (dashed: median). Recordings shorter than "
            f"the {rf.config.prediction.inference_chunk_seconds:g} s inference chunk are "
            "wrap-padded.",
            fig_id="fig-durations",
        )
    )
    return "".join(out)
