"""``evaluation.html``: one self-contained page of an evaluation, in the report's style.

The figures are the training report's (:mod:`stetho.report.plots`), the markup its helpers
(:mod:`stetho.report.markup`) and the styles its stylesheet; :func:`evaluation_sections` is
the body, usable as a section of another page.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from stetho.evaluation.labels import ABNORMAL, LEFT_OUT
from stetho.report import plots
from stetho.report.markup import Figures, esc, fmt, section, table, warn


def _ci(value: Any, ci: Any) -> str:
    if ci is None or any(v is None or not np.isfinite(v) for v in ci):
        return fmt(value)
    return f"{fmt(value)} ({fmt(ci[0])}–{fmt(ci[1])})"


def _headline(result: dict[str, Any]) -> str:
    m = result["metrics"]
    rec = result["recordings"]
    rows: list[list[Any]] = [
        ["recordings evaluated", rec["scored"]],
        ["patients", m["patients"]["patients"]],
    ]
    nva = m.get("normal_vs_abnormal")
    if nva is not None:
        rows += [
            ["abnormal / normal", f"{nva['n_abnormal']:,} / {nva['n_normal']:,}"],
            ["ROC AUC, abnormal (95% CI)", _ci(nva["auc"], nva["auc_ci"])],
            ["sensitivity at the run's threshold", _ci(nva["sensitivity"], nva["sensitivity_ci"])],
            ["specificity at the run's threshold", _ci(nva["specificity"], nva["specificity_ci"])],
            ["MAcc (Se + Sp) / 2", nva["macc"]],
            ["threshold (abnormal probability)", nva["threshold"]],
            ["expected calibration error (15 bins)", nva["ece"]],
        ]
    mc = m.get("multiclass")
    if mc is not None:
        rows += [
            ["macro ROC AUC (classes)", mc["macro_auc"]],
            ["balanced accuracy (classes)", mc["balanced_accuracy"]],
            ["expected calibration error, classes (15 bins)", mc["ece"]],
        ]
    return table(["", "value"], rows)


def _labels(result: dict[str, Any]) -> str:
    def shown(target: str) -> str:
        if target == LEFT_OUT:
            return "left out"
        if target == ABNORMAL and result["label_map"]["mode"] == "binary":
            return "abnormal (any class but normal)"
        return target

    rows = [[r["label"], shown(r["target"]), r["recordings"]] for r in result["labels"]]
    mode = result["label_map"]["mode"]
    what = (
        "normal vs abnormal: the run's abnormal decision is judged against the dataset's labels"
        if mode == "binary"
        else f"the run's classes ({', '.join(result['classes'])})"
    )
    return table(["dataset label", "evaluated as", "recordings"], rows) + (
        f'<p class="guide">Measured: {esc(what)}.</p>'
    )


def _group_rows(groups: dict[str, Any], multi: bool) -> tuple[list[str], list[list[Any]]]:
    header = ["", "n", "patients", "abnormal", "AUC", "Se", "Sp", "MAcc"]
    if multi:
        header += ["macro AUC", "bal. acc."]
    rows = []
    for key, g in groups.items():
        row = [key, g["n"], g["patients"], g.get("n_abnormal"), g.get("auc")]
        row += [g.get("sensitivity"), g.get("specificity"), g.get("macc")]
        if multi:
            row += [g.get("macro_auc"), g.get("balanced_accuracy")]
        rows.append(row)
    return header, rows


def evaluation_sections(result: dict[str, Any], predictions: pd.DataFrame) -> str:
    """The evaluation's sections as HTML (summary, labels, warnings, figures, tables)."""
    figs = Figures()
    m = result["metrics"]
    classes = list(result["classes"])
    usable = predictions[predictions["error"] == ""]
    normal = result["rule"]["normal_class"]
    parts = [
        section("ev-summary", "Summary", _headline(result)),
        section("ev-labels", "Labels", _labels(result)),
    ]
    warns = "".join(warn(w) for w in result["warnings"]) or '<p class="muted">None.</p>'
    parts.append(section("ev-warnings", "Warnings", warns))

    nva = m.get("normal_vs_abnormal")
    if nva is not None:
        truth = (usable["target"] != normal).to_numpy()
        score = usable["abnormal_prob"].to_numpy(np.float64)
        y = np.where(truth, ABNORMAL, "normal").astype(object)
        body = [
            figs.plot(
                plots.plot_roc(y, score[:, None], [ABNORMAL]),
                alt="ROC curve, abnormal vs normal",
                caption="ROC curve of the abnormal probability against the dataset's labels.",
                fig_id="ev-fig-roc",
            ),
            figs.plot(
                plots.plot_confusion(
                    np.asarray(nva["confusion_matrix"]["matrix"]), ["normal", ABNORMAL]
                ),
                alt="confusion matrix of the run's decisions",
                caption=f"Decisions at the run's threshold ({fmt(nva['threshold'])}), by true "
                "label. (The axis says highest probability; here it is the rule's decision.)",
                fig_id="ev-fig-confusion",
            ),
            figs.plot(
                plots.plot_reliability(
                    y, np.column_stack([1 - score, score]), ["normal", ABNORMAL], bins=15
                ),
                alt="reliability diagram",
                caption="Calibration of the abnormal probability (15 bins).",
                fig_id="ev-fig-calibration",
            ),
        ]
        p = nva["patients"]
        body.append(
            "<p>Patient level (a patient is abnormal when any of their recordings is): "
            f"{fmt(p['patients'])} patients, sensitivity {fmt(p['sensitivity'])}, specificity "
            f"{fmt(p['specificity'])}.</p>"
        )
        parts.append(section("ev-binary", "Normal vs abnormal", "".join(body)))

    mc = m.get("multiclass")
    if mc is not None:
        rows = [
            [c, v["support"], v["auc"], v["sensitivity"], v["specificity"], v["precision"]]
            for c, v in mc["per_class"].items()
        ]
        y = usable["target"].to_numpy(object)
        probs = usable[[f"prob_{c}" for c in classes]].to_numpy(np.float64)
        body = [
            table(["class", "n", "AUC", "Se", "Sp", "precision"], rows),
            figs.plot(
                plots.plot_roc(y, probs, classes),
                alt="ROC curves per class",
                caption="One-vs-rest ROC curve of each class.",
                fig_id="ev-fig-roc-classes",
            ),
            figs.plot(
                plots.plot_confusion(
                    np.asarray(mc["confusion_matrix"]["matrix"]), mc["confusion_matrix"]["labels"]
                ),
                alt="confusion matrix of the classes",
                caption="Confusion matrix of the highest-probability class.",
                fig_id="ev-fig-confusion-classes",
            ),
        ]
        parts.append(section("ev-classes", "Classes", "".join(body)))

    multi = mc is not None
    for sid, title, key in (
        ("ev-datasets", "Per dataset", "per_dataset"),
        ("ev-sources", "Per source", "per_source"),
    ):
        header, rows = _group_rows(m[key], multi)
        parts.append(section(sid, title, table(header, rows)))
    return "\n".join(parts)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<header>
<div class="kicker">stetho evaluation</div>
<h1>{name}</h1>
<div class="sub">{subtitle}</div>
</header>
<main>
{body}
</main>
<footer>Generated by stetho from the run <code>{run}</code>. This file is self-contained: it
loads no scripts, fonts, styles or images from anywhere.</footer>
</body>
</html>
"""


def render_page(result: dict[str, Any], predictions: pd.DataFrame) -> str:
    """The whole self-contained ``evaluation.html``."""
    style = resources.files("stetho.report").joinpath("templates", "report.css")
    datasets = ", ".join(dict.fromkeys(predictions["dataset"].astype(str)))
    name = f"{datasets} scored with {result['run']}"
    return _PAGE.format(
        title=esc(f"stetho evaluation: {name}"),
        style=style.read_text("utf-8"),
        name=esc(name),
        subtitle=esc(f"{result['recordings']['scored']:,} recordings · {result['created']}"),
        body=evaluation_sections(result, predictions),
        run=esc(result["run"]),
    )
