"""``report.html``: one self-contained file that shows what a run learnt and where it fails.

The report reads only the run folder (see :mod:`stetho.runs`), so any finished run can be
re-reported (``stetho report RUN_DIR``); the audio of the worst-classified recordings is read
from the paths in ``oof_predictions.parquet`` when they still exist. Everything is embedded:
figures as PNG data URIs, audio as 16-bit PCM WAV data URIs, styles inline; the page loads
nothing from anywhere, so it can be e-mailed or archived as is.

Sections: summary, warnings, configuration, data, metrics (per fold and pooled), ROC curves,
precision-recall curves, confusion matrix, calibration, learning curves, metrics per source
(with a warning for every class that only one source has), the worst-classified validation
recordings (audio player, spectrogram, attribution maps) and the environment.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import logging
import math
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from stetho.config import Config, load_config
from stetho.data.audio import AudioError, read_audio, resample
from stetho.explain import (
    DEFAULT_METHODS,
    INTERPRETATIONS,
    explain_recording,
    explanation_title,
    read_index,
)
from stetho.explain import select_worst as _select_worst
from stetho.explain.plot import plot_explanation
from stetho.io import atomic_write_text
from stetho.report import plots
from stetho.runs import CONFIG, Run, load_run
from stetho.viz import png_bytes

logger = logging.getLogger(__name__)

REPORT = "report.html"
#: Browsers refuse to play PCM below 3 kHz (Chromium's minimum); embedded audio is
#: resampled to this rate, the lowest rate every browser plays.
AUDIO_RATE_HZ = 8000
#: Longest stretch of a recording embedded as audio, seconds.
MAX_AUDIO_S = 30.0
#: Recordings shown when the config asks for none (``logging.number_of_audios: 0``) is not
#: overridden: the worst-classified section is part of every report.
DEFAULT_WORST = 8

_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="stetho $version">
<title>$title</title>
<style>$style</style>
</head>
<body>
<header>
<div class="kicker">stetho run report</div>
<h1>$name</h1>
<div class="sub">$subtitle</div>
</header>
<nav aria-label="sections">$nav</nav>
<main>
$body
</main>
<footer>$footer</footer>
</body>
</html>
""")

_STYLE = """
:root{--fg:#1f2933;--muted:#52606d;--line:#d9e2ec;--accent:#0b5394;--head:#102a43;
--warnbg:#fff7e6;--warnline:#e8a317;--badbg:#ffe3e3;--bad:#8a041a;--okbg:#e3f9e5;--ok:#05400a}
*{box-sizing:border-box}
body{margin:0;background:#f5f7fa;color:var(--fg);
font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:var(--head);color:#fff;padding:18px 32px 16px}
header h1{margin:2px 0 4px;font-size:24px;font-weight:600}
header .kicker{text-transform:uppercase;letter-spacing:.08em;font-size:11px;opacity:.75}
header .sub{font-size:13px;opacity:.85}
nav{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid var(--line);
padding:7px 32px;font-size:13px;white-space:nowrap;overflow-x:auto}
nav a{color:var(--accent);text-decoration:none;margin-right:14px}
nav a:hover{text-decoration:underline}
main{max-width:1180px;margin:0 auto;padding:8px 24px 40px}
section{background:#fff;border:1px solid var(--line);border-radius:6px;padding:14px 24px 18px;
margin:18px 0;scroll-margin-top:44px}
h2{font-size:19px;margin:4px 0 10px;color:var(--head)}
h3{font-size:15px;margin:16px 0 6px;color:var(--head)}
p{margin:6px 0 10px}
.muted{color:var(--muted)}
.guide{color:var(--muted);font-size:13px;border-left:3px solid var(--line);padding-left:10px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 14px;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid var(--line);padding:4px 10px;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}
thead th{background:#f0f4f8;font-weight:600}
td.na{color:#9aa5b1}
.scroll{overflow-x:auto}
figure{margin:12px 0 18px}
figure img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:4px}
figcaption{color:var(--muted);font-size:12.5px;margin-top:4px;max-width:900px}
.warn{background:var(--warnbg);border-left:4px solid var(--warnline);padding:8px 12px;
margin:8px 0;border-radius:0 4px 4px 0}
.warn strong{color:#7a4100}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 10px}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 16px;min-width:150px}
.card .v{font-size:24px;font-weight:600;color:var(--head)}
.card .k{font-size:12px;color:var(--muted)}
pre{background:#f0f4f8;border-radius:4px;padding:10px 12px;overflow:auto;font-size:12px;
max-height:520px}
details summary{cursor:pointer;color:var(--accent);margin:6px 0}
.rec{border-top:1px solid var(--line);padding-top:10px;margin-top:18px}
.rec h3{margin-top:4px}
.rec audio{width:min(100%,520px);margin:4px 0 6px}
.tag{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;font-weight:600}
.tag.bad{background:var(--badbg);color:var(--bad)}
.tag.ok{background:var(--okbg);color:var(--ok)}
.kv td,.kv th{text-align:left}
.kv td:first-child{color:var(--muted);white-space:nowrap}
footer{max-width:1180px;margin:0 auto;padding:0 24px 32px;color:var(--muted);font-size:12px}
@media print{nav{display:none}section{break-inside:avoid-page}body{background:#fff}}
"""

_SECTIONS = (
    ("summary", "Summary"),
    ("warnings", "Warnings"),
    ("config", "Configuration"),
    ("data", "Data"),
    ("metrics", "Metrics"),
    ("roc", "ROC curves"),
    ("pr", "Precision-recall"),
    ("confusion", "Confusion matrix"),
    ("calibration", "Calibration"),
    ("learning", "Learning curves"),
    ("sources", "Per source"),
    ("worst", "Worst-classified"),
    ("environment", "Environment"),
)


# --- small html helpers -------------------------------------------------------------------


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _isnan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _fmt(x: Any, digits: int = 3) -> str:
    if _isnan(x):
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    if isinstance(x, float | np.floating):
        return f"{float(x):.{digits}f}"
    return str(x)


def _table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "", digits: int = 3
) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header) if any(header) else ""
    body = []
    for row in rows:
        cells = []
        for v in row:
            text = _fmt(v, digits)
            na = ' class="na"' if text == "n/a" else ""
            cells.append(f"<td{na}>{_e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<div class="scroll"><table{klass}>'
        + (f"<thead><tr>{head}</tr></thead>" if head else "")
        + f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class _Figures:
    """Renders figures into ``<figure>`` blocks and counts them."""

    def __init__(self) -> None:
        self.count = 0

    def embed(self, png: bytes, *, alt: str, caption: str, fig_id: str) -> str:
        self.count += 1
        return (
            f'<figure id="{_e(fig_id)}"><img src="{_png_uri(png)}" alt="{_e(alt)}">'
            f"<figcaption><strong>Figure {self.count}.</strong> {caption}</figcaption></figure>"
        )

    def plot(self, fig: Any, *, alt: str, caption: str, fig_id: str) -> str:
        return self.embed(png_bytes(fig), alt=alt, caption=caption, fig_id=fig_id)


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{_e(title)}</h2>{body}</section>'


def _warn(text: str) -> str:
    return f'<div class="warn" role="note"><strong>Warning.</strong> {_e(text)}</div>'


def wav_data_uri(
    wave: np.ndarray, sample_rate: int, *, max_s: float = MAX_AUDIO_S
) -> tuple[str, float]:
    """``(samples,)`` float waveform -> ``data:audio/wav`` URI and the seconds embedded.

    The clip is cut to ``max_s``, resampled to :data:`AUDIO_RATE_HZ` when slower (browsers do
    not play 2 kHz audio), peak-normalised to -1 dBFS so quiet recordings are audible, and
    written as 16-bit PCM WAV.
    """
    x = np.asarray(wave, dtype=np.float32)[: int(max_s * sample_rate)]
    rate = sample_rate
    if rate < AUDIO_RATE_HZ:
        x, rate = resample(x, sample_rate, AUDIO_RATE_HZ), AUDIO_RATE_HZ
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0:
        x = x * (0.89 / peak)
    buf = io.BytesIO()
    sf.write(buf, x, rate, subtype="PCM_16", format="WAV")
    uri = "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return uri, len(x) / rate


# --- the run folder -----------------------------------------------------------------------


class _RunFolder:
    """The files of a run folder, read once, tolerant of optional ones being absent."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        if not (run_dir / CONFIG).is_file():
            raise FileNotFoundError(f"{run_dir}: not a stetho run folder, no {CONFIG}")
        for required in ("summary.json", "oof_predictions.parquet"):
            if not (run_dir / required).is_file():
                raise FileNotFoundError(f"{run_dir}: no {required}; has training finished?")
        self.config_text = (run_dir / CONFIG).read_text()
        self.config: Config = load_config(run_dir / CONFIG)
        self.summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
        self.classes: list[str] = list(self.summary["classes"])
        self.warnings: list[str] = list(self._json("warnings.json") or [])
        self.environment: dict[str, Any] = self._json("environment.json") or {}
        self.oof = pd.read_parquet(run_dir / "oof_predictions.parquet")
        manifest = run_dir / "manifest.parquet"
        self.manifest = pd.read_parquet(manifest) if manifest.is_file() else None
        skipped = run_dir / "skipped.csv"
        self.skipped = pd.read_csv(skipped) if skipped.is_file() else None
        self.history = self._history()
        self.interpretations = read_index(run_dir / INTERPRETATIONS)
        self._run: Run | None = None

    def _json(self, name: str) -> Any:
        path = self.dir / name
        return json.loads(path.read_text()) if path.is_file() else None

    def _history(self) -> list[dict[str, Any]]:
        path = self.dir / "metrics.jsonl"
        if path.is_file():
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out: list[dict[str, Any]] = []
        for h in sorted(self.dir.glob("fold-*/history.json")):
            out += json.loads(h.read_text())
        return out

    def run(self) -> Run:
        """The run's fold models, loaded on first use (only when maps must be computed)."""
        if self._run is None:
            self._run = load_run(self.dir)
        return self._run

    @property
    def name(self) -> str:
        name = self.dir.name
        return name[: -len(".partial")] if name.endswith(".partial") else name


# --- sections -----------------------------------------------------------------------------


def _summary_section(rf: _RunFolder) -> str:
    pooled = rf.summary["pooled"]
    cards = [
        ("macro ROC AUC", _fmt(pooled.get("macro_auc"))),
        ("balanced accuracy", _fmt(pooled.get("balanced_accuracy"))),
    ]
    if "physionet2016" in pooled:
        cards.append(("MAcc normal vs abnormal", _fmt(pooled["physionet2016"].get("macc"))))
    cards += [
        ("validated recordings", _fmt(int(pooled.get("n", len(rf.oof))))),
        ("folds", _e(", ".join(str(f) for f in rf.summary.get("folds", [])) or "n/a")),
    ]
    if rf.summary.get("seconds") is not None:
        cards.append(("training time", f"{float(rf.summary['seconds']) / 60:.1f} min"))
    html_cards = "".join(
        f'<div class="card"><div class="v">{v}</div><div class="k">{_e(k)}</div></div>'
        for k, v in cards
    )
    cfg = rf.config
    best = max(
        ((c, v["auc"]) for c, v in pooled["per_class"].items() if not _isnan(v["auc"])),
        key=lambda kv: kv[1],
        default=None,
    )
    worst = min(
        ((c, v["auc"]) for c, v in pooled["per_class"].items() if not _isnan(v["auc"])),
        key=lambda kv: kv[1],
        default=None,
    )
    lines = []
    if best and worst:
        lines.append(
            f"Best separated class: <strong>{_e(best[0])}</strong> (AUC {best[1]:.3f}); "
            f"hardest: <strong>{_e(worst[0])}</strong> (AUC {worst[1]:.3f})."
        )
    only = single_source_classes(rf.manifest if rf.manifest is not None else rf.oof)
    caveat = ""
    if only:
        names = ", ".join(f"{c} ({s})" for c, s in sorted(only.items()))
        caveat = _warn(
            f"{len(only)} class(es) occur in one recording source only: {names}. Their AUC can "
            "reflect the recording device rather than the heart sound; see Per source."
        )
    guide = (
        '<p class="guide">Every number and curve below is <em>out-of-fold</em>: each recording '
        "is scored by the model of the fold that did not train on it, so the figures estimate "
        "performance on new recordings of the same kind (same devices, same population). "
        f"Folds are grouped by {_e(cfg.dataset.group_fold_column or 'patient')}, so no patient "
        "is in training and validation at once. ROC AUC: 0.5 is chance, 1 is perfect. "
        "A class's sensitivity and specificity use the class with the highest probability as the "
        "call.</p>"
    )
    return (
        f'<div class="cards">{html_cards}</div>'
        + (f"<p>{' '.join(lines)}</p>" if lines else "")
        + caveat
        + guide
    )


def _warnings_section(rf: _RunFolder) -> str:
    if not rf.warnings:
        return (
            '<p class="muted">No warnings from the config resolver, the data checks or the '
            "after-training steps.</p>"
        )
    items = "".join(f"<li>{_e(w)}</li>" for w in rf.warnings)
    return (
        "<p>What the config resolver, the data checks and the after-training steps warned "
        f"about ({len(rf.warnings)}):</p>"
        f'<div class="warn" role="note"><ul style="margin:0;padding-left:18px">{items}</ul></div>'
    )


def _config_section(rf: _RunFolder) -> str:
    c = rf.config
    rows = [
        ("experiment", c.experiment_name),
        (
            "backbone",
            f"{c.architecture.backbone} (width {c.architecture.width}, "
            f"{c.architecture.pool} pooling)",
        ),
        (
            "audio",
            f"{c.audio.sample_rate} Hz; {c.audio.mel_frequency_bins} mel bands "
            f"{_fmt(c.audio.minimum_frequency, 0)}-{_fmt(c.audio.maximum_frequency, 0)} Hz; "
            f"window {c.audio.stft_window_size}, hop {c.audio.hop_size} samples",
        ),
        (
            "chunks",
            f"training {c.audio.training_chunk_seconds:g} s; inference "
            f"{c.prediction.inference_chunk_method} {c.prediction.inference_chunk_seconds:g} s",
        ),
        (
            "validation",
            f"{c.dataset.validation_strategy}, {c.dataset.number_of_folds} folds, "
            f"grouped by {c.dataset.group_fold_column}",
        ),
        (
            "training",
            f"{c.training.epochs} epochs, batch {c.training.batch_size}, "
            f"{c.training.optimizer} lr {c.training.learning_rate:g}, {c.training.schedule}, "
            f"{c.training.loss_function}",
        ),
        ("seed", c.environment.seed),
    ]
    n_lines = rf.config_text.count("\n")
    return (
        _table(["setting", "value"], rows, cls="kv")
        + f"<details><summary>Resolved configuration: config.yaml ({n_lines} lines, every "
        "<code>Auto</code> filled in)</summary>"
        f"<pre>{_e(rf.config_text)}</pre></details>"
    )


def _data_section(rf: _RunFolder, figs: _Figures) -> str:
    m = rf.manifest
    if m is None:
        return '<p class="muted">manifest.parquet is missing: no data overview.</p>'
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
    out.append(_table(["class", *sources, "total"], rows))
    durations = []
    for s, part in m.groupby("source"):
        d = part["duration_s"].astype(float)
        durations.append(
            [s, len(part), d.min(), d.median(), d.max(), d.sum() / 60, part["sample_rate"].iloc[0]]
        )
    out.append("<h3>Durations per source</h3>")
    out.append(
        _table(
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
        out.append(_table(["fold", *rf.classes, "patients"], fold_rows))
    if rf.skipped is not None and len(rf.skipped):
        out.append(f"<h3>Skipped recordings ({len(rf.skipped)})</h3>")
        shown = rf.skipped.head(20)
        out.append(
            _table(
                ["file", "reason"],
                [
                    [Path(str(p)).name, r]
                    for p, r in zip(shown["path"], shown["reason"], strict=True)
                ],
            )
        )
        if len(rf.skipped) > 20:
            out.append(f'<p class="muted">... and {len(rf.skipped) - 20} more in skipped.csv.</p>')
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


def _oof_arrays(rf: _RunFolder) -> tuple[np.ndarray, np.ndarray]:
    y = rf.oof["label"].to_numpy(dtype=object)
    p = rf.oof[[f"prob_{c}" for c in rf.classes]].to_numpy(dtype=np.float64)
    return y, p


def _metrics_section(rf: _RunFolder, figs: _Figures) -> str:
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
        _table(
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
    out.append(_table(["pooled", "value"], overall, cls="kv"))
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
        macro = [m["macro_auc"] for m in per_fold.values() if not _isnan(m["macro_auc"])]
        out.append("<h3>Per fold</h3>")
        out.append(
            _table(
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


def _curve_sections(rf: _RunFolder, figs: _Figures) -> dict[str, str]:
    y, p = _oof_arrays(rf)
    cm = rf.summary["pooled"]["confusion_matrix"]
    return {
        "roc": figs.plot(
            plots.plot_roc(y, p, rf.classes),
            alt="ROC curves per class",
            caption="ROC curve of each class against all others, pooled over folds. Each point "
            "is one threshold on that class's probability: up is more of the class found "
            "(sensitivity), right is more false alarms (1 - specificity).",
            fig_id="fig-roc",
        ),
        "pr": figs.plot(
            plots.plot_pr(y, p, rf.classes),
            alt="precision-recall curves per class",
            caption="Precision-recall per class. Precision is the share of recordings called the "
            "class that are the class; the dotted line at the class's prevalence is what a "
            "random call achieves. Rare classes read better here than on the ROC curve.",
            fig_id="fig-pr",
        ),
        "confusion": figs.plot(
            plots.plot_confusion(np.asarray(cm["matrix"]), cm["labels"]),
            alt="confusion matrix",
            caption="Rows: true class; columns: the class with the highest probability. Left: "
            "counts; right: share of each true class (the diagonal is each class's "
            "sensitivity).",
            fig_id="fig-confusion",
        ),
        "calibration": figs.plot(
            plots.plot_reliability(y, p, rf.classes),
            alt="reliability diagrams",
            caption="Calibration: do the probabilities mean what they say? Left: recordings "
            "binned by the probability of the predicted class; bars at the diagonal mean "
            "that of the recordings called with 80 % confidence, 80 % are right. ECE is the "
            "mean gap. Right: the same per class, one vs rest.",
            fig_id="fig-calibration",
        ),
    }


def _learning_section(rf: _RunFolder, figs: _Figures) -> str:
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


def _sources_section(rf: _RunFolder, figs: _Figures) -> str:
    per_source = rf.summary.get("per_source", {})
    out = []
    only = single_source_classes(rf.manifest if rf.manifest is not None else rf.oof)
    for cls, src in sorted(only.items()):
        out.append(
            _warn(
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
        _table(["source", "n", "macro AUC", "bal. acc.", *[f"AUC {c}" for c in rf.classes]], rows)
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


def _pcg_summary(wave: np.ndarray, sr: int) -> list[tuple[str, str]]:
    """Heart rate, systole/diastole and signal quality from :func:`stetho.pcg.analyze`.

    Optional: an empty list when the module is absent or its analysis fails.
    """
    try:
        from stetho.pcg import analyze

        a = analyze(wave, sr)
        rows = []
        hr, conf = float(a.heart_rate_bpm), float(a.heart_rate_confidence)
        if math.isfinite(hr):
            rows.append(("heart rate", f"{hr:.0f} bpm (confidence {conf:.2f})"))
        sys_ms, dia_ms = float(a.systole_ms), float(a.diastole_ms)
        if math.isfinite(sys_ms) and math.isfinite(dia_ms):
            rows.append(("systole / diastole", f"{sys_ms:.0f} / {dia_ms:.0f} ms (median)"))
        q = a.quality
        verdict = "usable" if q.usable else "poor: " + "; ".join(q.reasons)
        rows.append(("signal quality", f"{float(q.index):.2f} ({verdict})"))
    except Exception as exc:  # noqa: BLE001 - an optional extra must not stop the report
        logger.debug("pcg analysis unavailable: %s", exc)
        return []
    return [(f"{k} (stetho.pcg)", v) for k, v in rows]


def _worst_section(rf: _RunFolder, figs: _Figures, n: int) -> str:
    worst = _select_worst(rf.oof, rf.classes, n)
    if worst.empty:
        return '<p class="muted">No labelled validation recordings to show.</p>'
    index = rf.interpretations or {}
    by_path = {e["path"]: e for e in index.get("recordings", [])}
    out = [
        f"<p>The {len(worst)} validation recordings the model got most wrong, measured by the "
        "probability it gave the true class, taking the classes in turn so that every class "
        "is represented. Each is explained by the model of its own fold, for the class the "
        "model chose: the maps show which seconds and frequency bands raised (red) or lowered "
        "(blue) that class's score.</p>",
        '<p class="guide">Occlusion hides one patch of the spectrogram at a time (8 mel bands x '
        "0.25 s) and measures how much the class's score drops; integrated gradients trace the "
        "score's sensitivity to each time-frequency cell. Where the two agree, the evidence is "
        "robust. Audio is the model's input (after resampling), played at "
        f"{AUDIO_RATE_HZ} Hz and peak-normalised, so loudness is not comparable between "
        "recordings.</p>",
    ]
    for rank, r in enumerate(worst.to_dict("records"), start=1):
        out.append(_worst_block(rf, figs, r, rank=rank, entry=by_path.get(str(r["path"]))))
    return "".join(out)


def _worst_block(
    rf: _RunFolder, figs: _Figures, r: dict[str, Any], *, rank: int, entry: dict | None
) -> str:
    """One worst-classified recording: facts, audio player, explanation figure."""
    sr = int(rf.config.audio.sample_rate)
    path = str(r["path"])
    name = Path(path).name
    wave = None
    try:
        wave = read_audio(path, sample_rate=sr, min_duration_s=0.0, max_duration_s=None).samples
    except AudioError as exc:
        logger.warning("report: cannot read %s", exc)
    oof_probs = {c: float(r[f"prob_{c}"]) for c in rf.classes}
    tag = (
        '<span class="tag ok">correct</span>'
        if r["predicted"] == r["label"]
        else '<span class="tag bad">misclassified</span>'
    )
    info: list[tuple[str, Any]] = [
        ("true class", r["label"]),
        ("called", f"{r['predicted']} (p={r['p_predicted']:.2f})"),
        ("p(true class)", f"{r['p_true']:.3f}"),
        ("all probabilities", ", ".join(f"{c} {p:.2f}" for c, p in oof_probs.items())),
        ("fold", r["fold"]),
        ("source / patient", f"{r.get('source', 'n/a')} / {r.get('patient', 'n/a')}"),
    ]
    block = [f'<div class="rec" id="rec-{rank}"><h3>{rank}. {_e(name)} {tag}</h3>']
    if wave is not None:
        info.append(("duration", f"{len(wave) / sr:.1f} s"))
        info += _pcg_summary(wave, sr)
        uri, secs = wav_data_uri(wave, sr)
        block.append(
            f'<audio controls preload="metadata" src="{uri}" '
            f'aria-label="recording {_e(name)}"></audio>'
        )
        if secs < len(wave) / sr - 1e-6:
            block.append(f'<div class="muted">Audio: the first {secs:.0f} s.</div>')
    block.append(_table([], info, cls="kv"))
    caption = (
        f"{_e(name)}: waveform, log-mel spectrogram and attribution maps for the class "
        f"'{_e(r['predicted'])}'. Right: share of the evidence per frequency band; bottom: "
        "share per time frame."
    )
    png = rf.dir / INTERPRETATIONS / entry["png"] if entry else None
    if png is not None and png.is_file():
        block.append(
            figs.embed(
                png.read_bytes(),
                alt=f"explanation of {name}",
                caption=caption,
                fig_id=f"fig-rec-{rank}",
            )
        )
    elif wave is not None:
        try:
            fig = _explain_on_the_fly(
                rf,
                path,
                wave,
                fold=int(r["fold"]),
                target=str(r["predicted"]),
                title=explanation_title(name, oof_probs, str(r["predicted"]), str(r["label"])),
            )
            block.append(
                figs.plot(
                    fig, alt=f"explanation of {name}", caption=caption, fig_id=f"fig-rec-{rank}"
                )
            )
        except Exception as exc:  # noqa: BLE001 - the report must be written regardless
            logger.exception("report: cannot explain %s", path)
            block.append(_warn(f"The attribution maps could not be computed: {exc}"))
    else:
        block.append(f'<p class="muted">{_e(path)} could not be read: no audio or maps.</p>')
    block.append("</div>")
    return "".join(block)


def _explain_on_the_fly(
    rf: _RunFolder, path: str, wave: np.ndarray, *, fold: int, target: str, title: str
) -> Any:
    """The explanation figure of a recording the interpretations hook did not cover."""
    from stetho.explain import _run_extras

    run = rf.run()
    models = [run.models[run.folds.index(fold)]] if fold in run.folds else run.models
    atts = explain_recording(
        models,
        wave,
        methods=DEFAULT_METHODS,
        target=target,
        classes=run.classes,
        loss_function=run.config.training.loss_function,
        prediction=run.config.prediction,
        extra=_run_extras(run, path, wave),
    )
    return plot_explanation(wave, run.sample_rate, atts, title=title)


def _environment_section(rf: _RunFolder) -> str:
    env = rf.environment
    if not env:
        return '<p class="muted">environment.json is missing.</p>'
    rows = [
        ("python", env.get("python")),
        ("platform", env.get("platform")),
        ("device", env.get("device")),
        ("CUDA", env.get("cuda") or "none"),
        ("torch threads", env.get("torch_threads")),
        ("seed", env.get("seed")),
        ("git commit", env.get("git_commit") or "unknown"),
        ("command", " ".join(str(a) for a in env.get("command", []))),
    ]
    pk = env.get("packages", {})
    pk_rows = [(k, v or "not installed") for k, v in pk.items()]
    return (
        _table([], [(k, "n/a" if v is None else str(v)) for k, v in rows], cls="kv")
        + "<h3>Package versions</h3>"
        + _table(["package", "version"], pk_rows)
    )


# --- the page -----------------------------------------------------------------------------


def render_report(run_dir: str | Path, *, n_worst: int | None = None) -> tuple[str, int]:
    """The report of ``run_dir`` as an html string, and the number of embedded figures.

    ``n_worst`` recordings are shown in the worst-classified section (default: the config's
    ``logging.number_of_audios``, or :data:`DEFAULT_WORST` when that is 0).
    """
    rf = _RunFolder(Path(run_dir))
    if n_worst is None:
        n_worst = rf.config.logging.number_of_audios or DEFAULT_WORST
    if n_worst < 0:
        raise ValueError(f"n_worst={n_worst}: expected a non-negative count")
    figs = _Figures()
    body = {
        "summary": _summary_section(rf),
        "warnings": _warnings_section(rf),
        "config": _config_section(rf),
        "data": _data_section(rf, figs),
        "metrics": _metrics_section(rf, figs),
    }
    body.update(_curve_sections(rf, figs))
    body["learning"] = _learning_section(rf, figs)
    body["sources"] = _sources_section(rf, figs)
    body["worst"] = _worst_section(rf, figs, n_worst)
    body["environment"] = _environment_section(rf)
    sections = "\n".join(_section(sid, title, body[sid]) for sid, title in _SECTIONS)
    nav = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title in _SECTIONS)
    try:
        version = metadata.version("stetho")
    except metadata.PackageNotFoundError:
        version = "unknown"
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    n = int(rf.summary["pooled"].get("n", len(rf.oof)))
    subtitle = (
        f"{_e(rf.config.experiment_name)} · {n:,} validated recordings · classes: "
        f"{_e(', '.join(rf.classes))} · generated {now}"
    )
    footer = (
        f"Generated by stetho {_e(version)} on {now} from the run folder "
        f"<code>{_e(rf.name)}</code>. This file is self-contained: it loads no scripts, fonts, "
        f"styles or images from anywhere. {figs.count} figures."
    )
    page = _PAGE.substitute(
        version=_e(version),
        title=_e(f"stetho report: {rf.name}"),
        style=_STYLE,
        name=_e(rf.name),
        subtitle=subtitle,
        nav=nav,
        body=sections,
        footer=footer,
    )
    return page, figs.count


def write_report(
    run_dir: str | Path, *, out: str | Path | None = None, n_worst: int | None = None
) -> Path:
    """Write ``report.html`` (or ``out``) for a finished run; returns its path."""
    run_dir = Path(run_dir)
    page, n_figs = render_report(run_dir, n_worst=n_worst)
    target = Path(out) if out is not None else run_dir / REPORT
    atomic_write_text(target, page)
    logger.info("report: %s (%d figures, %.1f MB)", target, n_figs, len(page) / 1e6)
    return target


def report_hook(run_dir: Path) -> None:
    """After training: always write ``report.html`` into the run folder."""
    write_report(run_dir)
