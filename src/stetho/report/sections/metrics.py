"""Metrics, ROC, precision-recall, confusion, calibration and learning curves."""

from __future__ import annotations

import numpy as np

from stetho.report import plots
from stetho.report.context import Context
from stetho.report.inputs import RunData
from stetho.report.markup import isnan, table


def oof_arrays(rf: RunData) -> tuple[np.ndarray, np.ndarray]:
    y = rf.oof["label"].to_numpy(dtype=object)
    p = rf.oof[[f"prob_{c}" for c in rf.classes]].to_numpy(dtype=np.float64)
    return y, p


def metrics(ctx: Context) -> str:
    """Pooled per-class and overall metrics, per-fold metrics and their spread."""
    rf = ctx.data
    figs = ctx.figs
    pooled = rf.summary["pooled"]
    rows = [
        [
            c,
            v["support"],
            v["auc"],
            v["sensitivity"],
            v["specificity"],
            v["precision"],
            v["youden"],
            v["discriminant_power"],
        ]
        for c, v in pooled["per_class"].items()
    ]
    out = [
        "<h3>Pooled out-of-fold, per class (one vs rest)</h3>",
        table(
            [
                "class",
                "n",
                "ROC AUC",
                "sensitivity",
                "specificity",
                "precision",
                "Youden J",
                "disc. power",
            ],
            rows,
        ),
    ]
    if rf.n_set_labelled:
        out.append(
            f"<p>{rf.n_set_labelled} recordings labelled only by a group "
            "(<code>dataset.label_groups</code>, e.g. PhysioNet's abnormal) have no single class: "
            "they are left out of the per-class figures and curves, and counted in normal vs "
            "abnormal.</p>"
        )
    overall = [
        ["macro ROC AUC", pooled.get("macro_auc")],
        ["balanced accuracy", pooled.get("balanced_accuracy")],
        ["accuracy", pooled.get("accuracy")],
        ["log loss", pooled.get("log_loss")],
    ]
    if "physionet2016" in pooled:
        pn = pooled["physionet2016"]
        overall += [
            ["normal vs abnormal: sensitivity", pn.get("sensitivity")],
            ["normal vs abnormal: specificity", pn.get("specificity")],
            ["normal vs abnormal: MAcc (PhysioNet 2016)", pn.get("macc")],
            ["normal vs abnormal: ROC AUC", pn.get("auc")],
        ]
    out.append(table(["pooled", "value"], overall, cls="kv"))
    out.append(
        '<p class="guide">Youden J = sensitivity + specificity - 1; discriminant power '
        "(PASCAL 2011 challenge) above 1 is limited, above 2 fair, above 3 good. "
        "MAcc is the PhysioNet/CinC 2016 score: mean of sensitivity and specificity for "
        "abnormal (every class but normal) vs normal.</p>"
    )
    per_fold = rf.summary.get("per_fold", {})
    if per_fold:
        fold_rows = [
            [
                f"fold {k}",
                m["n"],
                m["macro_auc"],
                m["balanced_accuracy"],
                m["accuracy"],
                m["log_loss"],
                *[m["per_class"][c]["auc"] for c in rf.classes],
            ]
            for k, m in per_fold.items()
        ]
        macro = [m["macro_auc"] for m in per_fold.values() if not isnan(m["macro_auc"])]
        out.append("<h3>Per fold</h3>")
        out.append(
            table(
                [
                    "fold",
                    "n",
                    "macro AUC",
                    "bal. acc.",
                    "accuracy",
                    "log loss",
                    *[f"AUC {c}" for c in rf.classes],
                ],
                fold_rows,
            )
        )
        if len(macro) > 1:
            out.append(
                f"<p>Macro AUC over folds: mean {np.mean(macro):.3f}, standard deviation "
                f"{np.std(macro, ddof=1):.3f}, range {min(macro):.3f}-{max(macro):.3f}.</p>"
            )
        out.append(
            figs.plot(
                plots.plot_fold_spread(per_fold, rf.classes),
                alt="per-class AUC of each fold",
                caption="ROC AUC of each fold (dots) and their mean (bars). A wide spread "
                "means the estimate rests on few recordings; dotted line: chance.",
                fig_id="fig-fold-spread",
            )
        )
    return "".join(out)


def roc(ctx: Context) -> str:
    """One-vs-rest ROC curves."""
    rf = ctx.data
    y, p = oof_arrays(rf)
    figs = ctx.figs
    return figs.plot(
        plots.plot_roc(y, p, rf.classes),
        alt="ROC curves per class",
        caption="ROC curve of each class against all others, pooled over folds. Each point "
        "is one threshold on that class's probability: up is more of the class found "
        "(sensitivity), right is more false alarms (1 - specificity).",
        fig_id="fig-roc",
    )


def precision_recall(ctx: Context) -> str:
    """Precision-recall curves."""
    rf = ctx.data
    y, p = oof_arrays(rf)
    figs = ctx.figs
    return figs.plot(
        plots.plot_pr(y, p, rf.classes),
        alt="precision-recall curves per class",
        caption="Precision-recall per class. Precision is the share of recordings called the "
        "class that are the class; the dotted line at the class's prevalence is what a "
        "random call achieves. Rare classes read better here than on the ROC curve.",
        fig_id="fig-pr",
    )


def confusion(ctx: Context) -> str:
    """Confusion matrix, counts and per true class."""
    rf = ctx.data
    cm = rf.summary["pooled"]["confusion_matrix"]
    figs = ctx.figs
    return figs.plot(
        plots.plot_confusion(np.asarray(cm["matrix"]), cm["labels"]),
        alt="confusion matrix",
        caption="Rows: true class; columns: the class with the highest probability. Left: "
        "counts; right: share of each true class (the diagonal is each class's "
        "sensitivity).",
        fig_id="fig-confusion",
    )


def calibration(ctx: Context) -> str:
    """Reliability diagrams."""
    rf = ctx.data
    y, p = oof_arrays(rf)
    figs = ctx.figs
    return figs.plot(
        plots.plot_reliability(y, p, rf.classes),
        alt="reliability diagrams",
        caption="Calibration: do the probabilities mean what they say? Left: recordings "
        "binned by the probability of the predicted class; bars at the diagonal mean "
        "that of the recordings called with 80 % confidence, 80 % are right. ECE is the "
        "mean gap. Right: the same per class, one vs rest.",
        fig_id="fig-calibration",
    )


def learning_curves(ctx: Context) -> str:
    """Training and validation curves per fold."""
    rf = ctx.data
    figs = ctx.figs
    if not rf.history:
        return '<p class="muted">No per-epoch history in the run folder.</p>'
    every = rf.config.training.evaluation_epochs
    return figs.plot(
        plots.plot_learning_curves(rf.history),
        alt="learning curves per fold",
        caption="Per fold: training loss, and validation log loss and macro AUC at the epochs "
        f"where validation ran (every {every:g} epoch(s) and the last). Training loss falling "
        "while validation loss rises is over-fitting.",
        fig_id="fig-learning",
    )
