"""The report's charts, drawn with matplotlib's object API.

No pyplot: figures are plain :class:`~matplotlib.figure.Figure` objects rendered by Agg, so
nothing touches global state or needs a display, and threads do not share figures.

Every ``plot_*`` function returns a :class:`matplotlib.figure.Figure`; :mod:`stetho.viz` turns one
into PNG bytes or an atomically written file. Classes keep one colour
everywhere (:func:`class_colours`), so a reader can follow a class from figure to figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

from stetho.decision.calibration import expected_calibration_error
from stetho.decision.figures import ECE_BINS
from stetho.viz import class_colours, style

_SOURCE_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#8172b3", "#937860", "#da8bc3")


def _source_colour(i: int) -> str:
    return _SOURCE_COLOURS[i % len(_SOURCE_COLOURS)]


# --- data ---------------------------------------------------------------------------------


def plot_class_counts(manifest: pd.DataFrame, *, unlabelled: str = "unlabelled") -> Figure:
    """Stacked bars: recordings per class (unlabelled last), one colour per source."""
    df = manifest.assign(label=manifest["label"].fillna(unlabelled))
    table = df.groupby(["label", "source"]).size().unstack(fill_value=0)
    order = sorted(i for i in table.index if i != unlabelled)
    order += [unlabelled] if unlabelled in table.index else []
    table = table.loc[order]
    fig = Figure(figsize=(7.5, 3.2))
    ax = fig.add_subplot()
    bottom = np.zeros(len(table))
    x = np.arange(len(table))
    for i, src in enumerate(table.columns):
        vals = table[src].to_numpy()
        ax.bar(x, vals, bottom=bottom, color=_source_colour(i), label=str(src), width=0.7)
        bottom += vals
    for xi, total in zip(x, bottom, strict=True):
        ax.text(float(xi), float(total), f"{int(total)}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [str(i) for i in table.index])
    ax.set_ylabel("recordings")
    ax.set_title("Recordings per class and source")
    ax.legend(title="source", fontsize=8, title_fontsize=8, frameon=False)
    ax.margins(y=0.12)
    return style(fig)


def plot_durations(manifest: pd.DataFrame) -> Figure:
    """Histogram of recording durations (s) per source, medians marked."""
    fig = Figure(figsize=(7.5, 3.0))
    ax = fig.add_subplot()
    d = manifest["duration_s"].to_numpy(dtype=float)
    bins = np.linspace(0, max(1.0, float(np.nanmax(d)) if len(d) else 1.0), 41)
    for i, (src, part) in enumerate(manifest.groupby("source")):
        vals = part["duration_s"].to_numpy(dtype=float)
        c = _source_colour(i)
        ax.hist(
            vals,
            bins=bins.tolist(),
            alpha=0.6,
            color=c,
            label=f"{src} (median {np.median(vals):.1f} s)",
        )
        ax.axvline(np.median(vals), color=c, lw=1.2, ls="--")
    ax.set_xlabel("duration (s)")
    ax.set_ylabel("recordings")
    ax.set_title("Recording durations")
    ax.legend(fontsize=8, frameon=False)
    return style(fig)


# --- metrics ------------------------------------------------------------------------------


def _onehot(y_true: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    return (np.asarray(y_true, dtype=object)[:, None] == np.asarray(classes, dtype=object)).astype(
        int
    )


def plot_roc(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> Figure:
    """One-vs-rest ROC curve per class, AUC in the legend; chance on the diagonal."""
    colours = class_colours(classes)
    y = _onehot(y_true, classes)
    fig = Figure(figsize=(5.2, 4.6))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls=":", label="chance")
    for i, c in enumerate(classes):
        if y[:, i].min() == y[:, i].max():
            continue
        fpr, tpr, _ = roc_curve(y[:, i], probs[:, i])
        auc = float(sk_auc(fpr, tpr))
        ax.plot(fpr, tpr, color=colours[c], lw=1.6, label=f"{c}  AUC {auc:.3f} (n={y[:, i].sum()})")
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_title("ROC, one class vs the rest")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.legend(fontsize=7.5, loc="lower right", frameon=False)
    return style(fig)


def plot_pr(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> Figure:
    """Precision-recall curve per class, average precision in the legend, prevalence dashed."""
    colours = class_colours(classes)
    y = _onehot(y_true, classes)
    fig = Figure(figsize=(5.2, 4.6))
    ax = fig.add_subplot()
    for i, c in enumerate(classes):
        if y[:, i].min() == y[:, i].max():
            continue
        prec, rec, _ = precision_recall_curve(y[:, i], probs[:, i])
        ap = average_precision_score(y[:, i], probs[:, i])
        prevalence = y[:, i].mean()
        ax.plot(
            rec, prec, color=colours[c], lw=1.6, label=f"{c}  AP {ap:.3f} (chance {prevalence:.2f})"
        )
        ax.axhline(prevalence, color=colours[c], lw=0.8, ls=":")
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (positive predictive value)")
    ax.set_title("Precision-recall, one class vs the rest")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7.5, loc="upper right", frameon=False)
    return style(fig)


def plot_confusion(matrix: np.ndarray, labels: Sequence[str]) -> Figure:
    """Counts and row-normalised (per true class) confusion matrices side by side."""
    cm = np.asarray(matrix, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(labels)
    size = max(3.6, 0.75 * n + 1.6)
    fig = Figure(figsize=(2 * size + 0.6, size))
    for k, (data, title, fmt) in enumerate(
        [(cm, "counts", "{:.0f}"), (norm, "share of each true class", "{:.0%}")]
    ):
        ax = fig.add_subplot(1, 2, k + 1)
        vmax = data.max() if data.max() > 0 else 1
        ax.imshow(data, cmap="Blues", vmin=0, vmax=vmax)
        for i in range(n):
            for j in range(n):
                v = data[i, j]
                ax.text(
                    j,
                    i,
                    fmt.format(v),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if v > 0.6 * vmax else "#222222",
                )
        ax.set_xticks(range(n), labels, rotation=35, ha="right")
        ax.set_yticks(range(n), labels)
        ax.set_xlabel("predicted (highest probability)")
        ax.set_ylabel("true")
        ax.set_title(f"Confusion matrix: {title}")
        for s in ax.spines.values():
            s.set_visible(False)
    fig.tight_layout()
    return style(fig)


def _bin_index(values: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins ``(lo, hi]`` (the first includes 0), as the ECE bins them."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.asarray(np.clip(np.searchsorted(edges, values, side="left") - 1, 0, bins - 1))


def plot_reliability(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    *,
    bins: int = ECE_BINS,
    title: str = "",
) -> Figure:
    """Reliability diagrams: top-label confidence vs accuracy (with the 15-bin ECE of
    :func:`stetho.decision.calibration.expected_calibration_error`), and each class's
    predicted probability vs observed frequency (one vs rest)."""
    y_true = np.asarray(y_true, dtype=object)
    norm = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    pred = np.asarray(classes, dtype=object)[norm.argmax(axis=1)]
    conf = norm.max(axis=1)
    correct = (pred == y_true).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    idx = _bin_index(conf, bins)
    acc = np.array([correct[idx == b].mean() if (idx == b).any() else np.nan for b in range(bins)])
    count = np.bincount(idx, minlength=bins)
    ece = expected_calibration_error(norm, y_true, classes, bins=bins)

    fig = Figure(figsize=(10, 4.4))
    gs = fig.add_gridspec(2, 2, height_ratios=[3, 1], hspace=0.08, wspace=0.28)
    ax = fig.add_subplot(gs[0, 0])
    ax.bar(centres, acc, width=1 / bins * 0.9, color="#4c72b0", alpha=0.8, label="accuracy")
    ax.plot([0, 1], [0, 1], color="#999999", ls=":", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xticklabels([])
    ax.set_ylabel("accuracy in bin")
    ax.set_title(f"{title}Top-label reliability (ECE {ece:.3f}, {bins} bins)")
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    axh = fig.add_subplot(gs[1, 0], sharex=ax)
    axh.bar(centres, count, width=1 / bins * 0.9, color="#999999")
    axh.set_xlabel("confidence of the predicted class")
    axh.set_ylabel("recordings")

    ax2 = fig.add_subplot(gs[:, 1])
    colours = class_colours(classes)
    y = _onehot(y_true, classes)
    ax2.plot([0, 1], [0, 1], color="#999999", ls=":", lw=1)
    for i, c in enumerate(classes):
        p = norm[:, i]
        bi = _bin_index(p, bins)
        xs, ys, ns = [], [], []
        for b in range(bins):
            sel = bi == b
            if sel.sum() >= 3:
                xs.append(p[sel].mean())
                ys.append(y[sel, i].mean())
                ns.append(sel.sum())
        if xs:
            ax2.plot(xs, ys, "-o", color=colours[c], lw=1.2, ms=3, label=c)
    ax2.set_xlim(0, 1)
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("predicted probability of the class")
    ax2.set_ylabel("observed frequency of the class")
    ax2.set_title("Per-class reliability (bins with >= 3 recordings)")
    ax2.legend(fontsize=8, frameon=False, loc="upper left")
    return style(fig)


def plot_learning_curves(history: Sequence[Mapping[str, Any]]) -> Figure:
    """Training loss, validation log loss and validation macro AUC by epoch, one line per fold."""
    df = pd.DataFrame(list(history))
    panels = [
        ("train_loss", "training loss"),
        ("valid_log_loss", "validation log loss"),
        ("valid_macro_auc", "validation macro AUC"),
    ]
    fig = Figure(figsize=(11, 3.3))
    for k, (col, title) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        if col in df.columns:
            for i, (fold, part) in enumerate(df.groupby("fold")):
                part = part.dropna(subset=[col]).sort_values("epoch")
                ax.plot(
                    part["epoch"],
                    part[col],
                    "-o",
                    ms=3,
                    lw=1.3,
                    color=colormaps["tab10"](i % 10),
                    label=f"fold {fold}",
                )
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.xaxis.set_major_locator(
            MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10], integer=True)
        )
    fig.axes[0].legend(fontsize=7.5, frameon=False)
    fig.tight_layout()
    return style(fig)


def plot_fold_spread(per_fold: Mapping[str, Mapping[str, Any]], classes: Sequence[str]) -> Figure:
    """Per-class AUC of each fold (dots) and their mean (bar): how stable the estimate is."""
    colours = class_colours(classes)
    fig = Figure(figsize=(7.5, 3.2))
    ax = fig.add_subplot()
    x = np.arange(len(classes) + 1)
    names = list(classes) + ["macro"]
    for j, c in enumerate(names):
        vals = [
            (m["macro_auc"] if c == "macro" else m["per_class"][c]["auc"])
            for m in per_fold.values()
        ]
        vals = [v for v in vals if v is not None and np.isfinite(v)]
        if not vals:
            continue
        col = colours.get(c, "#444444")
        ax.bar(x[j], np.mean(vals), color=to_rgba(col, 0.35), width=0.6)
        jitter = np.linspace(-0.15, 0.15, len(vals)) if len(vals) > 1 else [0.0]
        ax.scatter(x[j] + np.asarray(jitter), vals, color=col, s=14, zorder=3)
    ax.axhline(0.5, color="#999999", ls=":", lw=1)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("ROC AUC")
    ax.set_title(f"AUC per fold (dots) and mean over {len(per_fold)} folds (bars)")
    return style(fig)


def plot_source_auc(per_source: Mapping[str, Mapping[str, Any]], classes: Sequence[str]) -> Figure:
    """Per-class AUC within each recording source; classes a source lacks are marked n/a."""
    sources = list(per_source)
    fig = Figure(figsize=(7.5, 3.2))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(sources))
    x = np.arange(len(classes))
    for k, s in enumerate(sources):
        vals = [per_source[s]["per_class"][c]["auc"] for c in classes]
        for j, v in enumerate(vals):
            xpos = x[j] - 0.4 + width * (k + 0.5)
            if v is None or not np.isfinite(v):
                ax.text(xpos, 0.02, "n/a", ha="center", va="bottom", fontsize=7, color="#666666")
            else:
                ax.bar(xpos, v, width=width * 0.95, color=_source_colour(k))
    ax.axhline(0.5, color="#999999", ls=":", lw=1)
    ax.set_xticks(x, list(classes))
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("ROC AUC within source")
    ax.set_title("Per-class ROC AUC within each source")
    handles = [
        Patch(color=_source_colour(k), label=f"{s} (n={per_source[s]['n']})")
        for k, s in enumerate(sources)
    ]
    ax.legend(handles=handles, fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
    return style(fig)


def plot_operating_point(
    abnormal: np.ndarray, score: np.ndarray, threshold: np.ndarray, *, label: str
) -> Figure:
    """Normal-vs-abnormal ROC and precision-recall curves of the abnormal score, the chosen
    operating point marked (``threshold`` may differ per recording: cross-fitted)."""
    abnormal = np.asarray(abnormal, dtype=bool)
    margin = np.asarray(score, dtype=float) - np.asarray(threshold, dtype=float)
    pred = margin >= 0
    se = (pred & abnormal).sum() / max(abnormal.sum(), 1)
    sp = (~pred & ~abnormal).sum() / max((~abnormal).sum(), 1)
    ppv = (pred & abnormal).sum() / max(pred.sum(), 1)
    fig = Figure(figsize=(10, 4.4))
    ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    if abnormal.any() and (~abnormal).any():
        fpr, tpr, _ = roc_curve(abnormal, score)
        ax.plot(fpr, tpr, color="#c44e52", lw=1.6, label=f"AUC {sk_auc(fpr, tpr):.3f}")
        prec, rec, _ = precision_recall_curve(abnormal, score)
        ap = average_precision_score(abnormal, score)
        ax2.plot(rec, prec, color="#c44e52", lw=1.6, label=f"AP {ap:.3f}")
        ax2.axhline(abnormal.mean(), color="#999999", lw=0.8, ls=":", label="prevalence")
    ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls=":")
    ax.plot([1 - sp], [se], "o", color="#222222", ms=7, label=f"{label}: Se {se:.2f}, Sp {sp:.2f}")
    ax2.plot([se], [ppv], "o", color="#222222", ms=7, label=f"{label}: PPV {ppv:.2f}")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity (abnormal)")
    ax.set_title("ROC, abnormal vs normal")
    ax2.set_xlabel("recall (sensitivity)")
    ax2.set_ylabel("precision (PPV)")
    ax2.set_title("Precision-recall, abnormal vs normal")
    for a in (ax, ax2):
        a.set_xlim(0, 1)
        a.set_ylim(0, 1.02)
        a.legend(fontsize=7.5, frameon=False, loc="lower right" if a is ax else "lower left")
    return style(fig)


def plot_risk_coverage(curve: pd.DataFrame, *, chosen: float | None) -> Figure:
    """Accuracy and MAcc on the accepted recordings against coverage; the chosen coverage
    dashed."""
    fig = Figure(figsize=(5.6, 4.2))
    ax = fig.add_subplot()
    x = curve["coverage"].to_numpy(float)
    ax.plot(x, curve["macc"], "-o", color="#c44e52", ms=3, label="MAcc (accepted)")
    ax.plot(x, curve["accuracy"], "-o", color="#4c72b0", ms=3, label="accuracy (accepted)")
    if chosen is not None:
        ax.axvline(chosen, color="#222222", ls="--", lw=1, label=f"chosen coverage {chosen:.2f}")
    ax.set_xlabel("coverage (fraction of recordings decided)")
    ax.set_ylabel("on the accepted recordings")
    ax.set_title("Risk-coverage: re-record the least certain")
    ax.set_xlim(min(0.45, float(x.min()) - 0.05), 1.02)
    ax.legend(fontsize=8, frameon=False, loc="lower left")
    return style(fig)
