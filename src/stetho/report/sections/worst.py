"""The worst-classified validation recordings: facts, audio, attribution maps.

Maps come from the interpretations hook's folder when it has them; the others are computed
here, within the report's own time budget (:class:`stetho.explain.Budget`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from stetho.data.audio import AudioError, read_audio
from stetho.explain import (
    DEFAULT_METHODS,
    Budget,
    MethodSettings,
    default_settings,
    explain_with_run,
    explanation_title,
    plot_explanation,
    select_worst,
)
from stetho.report.audio import AUDIO_RATE_HZ, wav_data_uri
from stetho.report.context import Context
from stetho.report.markup import esc, table, warn

logger = logging.getLogger(__name__)


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


def _settings(ctx: Context, pending: bool) -> MethodSettings:
    """The method settings the maps were (or will be) computed with."""
    saved = (ctx.data.interpretations or {}).get("settings")
    if saved:
        return MethodSettings(
            occlusion_window=(int(saved["occlusion_window"][0]), saved["occlusion_window"][1]),
            ig_steps=int(saved["ig_steps"]),
        )
    return default_settings(ctx.data.run().models) if pending else MethodSettings()


def worst(ctx: Context) -> str:
    """The section: one block per recording of :func:`stetho.explain.select_worst`."""
    rf = ctx.data
    chosen = select_worst(rf.oof, rf.classes, ctx.n_worst)
    if chosen.empty:
        return '<p class="muted">No labelled validation recordings to show.</p>'
    index = rf.interpretations or {}
    explanations = rf.folder.explanations
    by_path = {e["path"]: e for e in index.get("recordings", [])}
    budget_left = set(index.get("not_explained", []))
    records = [{str(k): v for k, v in r.items()} for r in chosen.to_dict("records")]
    pending = [
        r
        for r in records
        if not (
            str(r["path"]) in by_path
            and explanations.figure(by_path[str(r["path"])]["stem"]).is_file()
        )
        and str(r["path"]) not in budget_left
    ]
    settings = _settings(ctx, bool(pending))
    if pending:
        ctx.budget = Budget(len(pending), ctx.explain_budget_s, what="recordings for the report")
    window = settings.occlusion_window
    out = [
        f"<p>The {len(chosen)} validation recordings the model got most wrong, measured by the "
        "probability it gave the true class, taking the classes in turn so that every class "
        "is represented. Each is explained by the model of its own fold, for the class the "
        "model chose: the maps show which seconds and frequency bands raised (red) or lowered "
        "(blue) that class's score.</p>",
        f'<p class="guide">Occlusion hides one patch of the spectrogram at a time ({window[0]} '
        f"mel bands x {window[1]:g} s) and measures how much the class's score drops; "
        "integrated gradients trace the score's sensitivity to each time-frequency cell. Where "
        "the two agree, the evidence is robust. Audio is the model's input (after resampling), "
        f"played at {AUDIO_RATE_HZ} Hz and peak-normalised, so loudness is not comparable "
        "between recordings.</p>",
    ]
    for rank, r in enumerate(records, start=1):
        path = str(r["path"])
        out.append(
            _worst_block(
                ctx, r, rank=rank, entry=by_path.get(path), over_budget=path in budget_left
            )
        )
    if ctx.budget is not None:
        ctx.budget.close()
    return "".join(out)


def _worst_block(
    ctx: Context, r: dict[str, Any], *, rank: int, entry: dict[str, Any] | None, over_budget: bool
) -> str:
    """One worst-classified recording: facts, audio player, explanation figure."""
    rf, figs = ctx.data, ctx.figs
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
    block = [f'<div class="rec" id="rec-{rank}"><h3>{rank}. {esc(name)} {tag}</h3>']
    if wave is not None:
        info.append(("duration", f"{len(wave) / sr:.1f} s"))
        info += _pcg_summary(wave, sr)
        uri, secs = wav_data_uri(wave, sr)
        block.append(
            f'<audio controls preload="metadata" src="{uri}" '
            f'aria-label="recording {esc(name)}"></audio>'
        )
        if secs < len(wave) / sr - 1e-6:
            block.append(f'<div class="muted">Audio: the first {secs:.0f} s.</div>')
    block.append(table([], info, cls="kv"))
    caption = (
        f"{esc(name)}: waveform, log-mel spectrogram and attribution maps for the class "
        f"'{esc(r['predicted'])}'. Right: share of the evidence per frequency band; bottom: "
        "share per time frame."
    )
    png = rf.folder.explanations.figure(entry["stem"]) if entry else None
    fig_id = f"fig-rec-{rank}"
    if png is not None and png.is_file():
        block.append(
            figs.embed(
                png.read_bytes(), alt=f"explanation of {name}", caption=caption, fig_id=fig_id
            )
        )
    elif over_budget:
        block.append(
            '<p class="muted">Not explained: the interpretations time budget '
            "(training.interpretation_budget_s) ran out first.</p>"
        )
    elif wave is not None:
        block.append(_explain_here(ctx, r, wave, name, oof_probs, caption, fig_id))
    else:
        block.append(f'<p class="muted">{esc(path)} could not be read: no audio or maps.</p>')
    block.append("</div>")
    return "".join(block)


def _explain_here(
    ctx: Context,
    r: dict[str, Any],
    wave: np.ndarray,
    name: str,
    oof_probs: dict[str, float],
    caption: str,
    fig_id: str,
) -> str:
    """The explanation figure of a recording the interpretations hook did not cover."""
    budget = ctx.budget
    if budget is not None and not budget.allows_next():
        return (
            '<p class="muted">Not explained: the report\'s time budget for explanations '
            f"({budget.seconds:.0f} s) ran out first; see <code>stetho explain</code>.</p>"
        )
    try:
        run = ctx.data.run()
        fold = int(r["fold"])
        atts = explain_with_run(
            run,
            wave,
            fold=fold if fold in run.folds else None,
            methods=DEFAULT_METHODS,
            target=str(r["predicted"]),
        )
        title = explanation_title(name, oof_probs, str(r["predicted"]), str(r["label"]))
        fig = plot_explanation(wave, run.sample_rate, atts, title=title)
        html = ctx.figs.plot(fig, alt=f"explanation of {name}", caption=caption, fig_id=fig_id)
    except Exception as exc:  # noqa: BLE001 - the report must be written regardless
        logger.exception("report: cannot explain %s", r["path"])
        html = warn(f"The attribution maps could not be computed: {exc}")
    if budget is not None:
        budget.done(name)
    return html
