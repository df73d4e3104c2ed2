"""The decision rule the run ships (issue #13): calibration before/after, the operating point
on the ROC and precision-recall curves, its confusion matrix and confidence intervals, the
risk-coverage curve, and patient-level beside recording-level figures.

Everything shown is cross-fitted (``summary.json``'s ``decision`` block and the per-recording
``decision_oof`` table): each fold decided by the rule fitted on the other folds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stetho.decision.abstention import risk_coverage
from stetho.decision.operating_point import abnormal_truth
from stetho.report import plots
from stetho.report.context import Context
from stetho.report.markup import esc, table


def _ci(values: Any) -> str:
    return f"[{values[0]:.3f}, {values[1]:.3f}]" if values else "n/a"


def decisions(ctx: Context) -> str:
    """The shipped rule and its cross-fitted figures; a note for a run without one."""
    rf = ctx.data
    block = rf.summary.get("decision")
    if not block or "skipped" in block:
        reason = (block or {}).get("skipped", "this run was trained before decision rules")
        return (
            f'<p class="na">No decision rule was fitted: {esc(reason)}. '
            "The default rule applies.</p>"
        )
    rule = block["rule"]
    rec = block["recording"]
    cal = block["calibration"]
    parts = [
        f'<p id="decision-rule">Calibration <b>{esc(rule["calibration"] or "none")}</b> '
        f"(asked: {esc(rule['calibration_choice'])}); abnormal when 1 - p(normal) &ge; "
        f"<b>{rule['threshold']:.3f}</b>: {esc(rule['threshold_chosen'])}."
        + (
            f" Re-record when it lies in [{rule['abstain_band'][0]:.3f}, "
            f"{rule['abstain_band'][1]:.3f}) (coverage {rule['abstain_coverage']})."
            if rule.get("abstain_band")
            else " No abstain band."
        )
        + f"</p><p>{esc(block['note'])}</p>"
    ]
    rows = [
        ["ECE (15 bins)", cal["before"]["ece"], cal["after"]["ece"]],
        ["log loss", cal["before"]["log_loss"], cal["after"]["log_loss"]],
    ]
    parts.append(table(["", "before calibration", "after"], rows, cls="decision-calibration"))
    fig_rows = [
        ["sensitivity", rec["sensitivity"], _ci(rec["sensitivity_ci"])],
        ["specificity", rec["specificity"], _ci(rec["specificity_ci"])],
        ["MAcc", rec["macc"], ""],
        ["accuracy (labels consistent with the flag)", rec["accuracy"], ""],
        ["balanced accuracy", rec["balanced_accuracy"], ""],
    ]
    parts.append(
        table(
            ["recording level", "value", f"95 % CI ({rec['ci_resamples']} resampled)"],
            fig_rows,
            cls="decision-ci",
        )
    )
    pat = block.get("patients")
    acc = block.get("abstention")
    level = [["recordings", rec["n"], rec["sensitivity"], rec["specificity"], rec["macc"]]]
    if pat:
        level.append(
            [
                f"patients ({pat['aggregation']})",
                pat["patients"],
                pat["sensitivity"],
                pat["specificity"],
                pat["macc"],
            ]
        )
    if acc:
        level.append(
            [
                f"accepted recordings (coverage {acc['coverage']:.2f})",
                acc["n_accepted"],
                acc["sensitivity"],
                acc["specificity"],
                acc["macc"],
            ]
        )
    parts.append(
        table(["level", "n", "sensitivity", "specificity", "MAcc"], level, cls="decision-levels")
    )
    figs = ctx.figs
    y = rf.oof["label"].to_numpy(dtype=object)
    raw = rf.oof[[f"prob_{c}" for c in rf.classes]].to_numpy(dtype=np.float64)
    cf = _cross_fitted(ctx)
    if cf is not None:
        calibrated = cf[[f"prob_{c}" for c in rf.classes]].to_numpy(dtype=np.float64)
        parts.append(
            figs.plot(
                plots.plot_reliability(y, raw, rf.classes, title="Before: "),
                alt="reliability before calibration",
                caption="Before calibration: the fold models' raw probabilities.",
                fig_id="fig-reliability-before",
            )
        )
        parts.append(
            figs.plot(
                plots.plot_reliability(
                    cf["label"].to_numpy(dtype=object), calibrated, rf.classes, title="After: "
                ),
                alt="reliability after calibration",
                caption="After: the cross-fitted calibration (each fold calibrated on the others).",
                fig_id="fig-reliability-after",
            )
        )
        abnormal = abnormal_truth(cf["label"].to_numpy(dtype=object))
        score = cf["abnormal_probability"].to_numpy(float)
        thr = cf["threshold"].to_numpy(float)
        parts.append(
            figs.plot(
                plots.plot_operating_point(
                    abnormal, score, thr, label=block["rule"]["operating_point"]["target"]
                ),
                alt="operating point on the ROC and precision-recall curves",
                caption="The chosen operating point (each fold at its own cross-fitted "
                "threshold) on the normal-vs-abnormal curves of the calibrated score.",
                fig_id="fig-operating-point",
            )
        )
        parts.append(
            figs.plot(
                plots.plot_confusion(
                    np.asarray(rec["confusion"]["matrix"]), rec["confusion"]["labels"]
                ),
                alt="confusion matrix at the operating point",
                caption="Normal vs abnormal at the operating point (rows: truth).",
                fig_id="fig-decision-confusion",
            )
        )
        curve = risk_coverage(score, abnormal, thr)
        parts.append(
            figs.plot(
                plots.plot_risk_coverage(curve, chosen=rule.get("abstain_coverage")),
                alt="risk-coverage curve",
                caption="Recordings nearest their fold's threshold are set aside first "
                '("re-record"); MAcc and accuracy on the rest.',
                fig_id="fig-risk-coverage",
            )
        )
    return "\n".join(parts)


def _cross_fitted(ctx: Context) -> pd.DataFrame | None:
    path = ctx.data.folder.decision_oof
    return pd.read_parquet(path) if path.is_file() else None
