"""Summary, warnings, configuration and environment: the run at a glance."""

from __future__ import annotations

from stetho.report.context import Context
from stetho.report.markup import esc, fmt, isnan, table, warn
from stetho.report.sections.sources import single_source_classes


def summary(ctx: Context) -> str:
    """Headline cards, best and hardest class, the out-of-fold caveat."""
    rf = ctx.data
    pooled = rf.summary["pooled"]
    cards = [
        ("macro ROC AUC", fmt(pooled.get("macro_auc"))),
        ("balanced accuracy", fmt(pooled.get("balanced_accuracy"))),
    ]
    if "physionet2016" in pooled:
        cards.append(("MAcc normal vs abnormal", fmt(pooled["physionet2016"].get("macc"))))
    cards += [
        ("validated recordings", fmt(int(pooled.get("n", len(rf.oof))))),
        ("folds", esc(", ".join(str(f) for f in rf.summary.get("folds", [])) or "n/a")),
    ]
    if rf.summary.get("seconds") is not None:
        cards.append(("training time", f"{float(rf.summary['seconds']) / 60:.1f} min"))
    html_cards = "".join(
        f'<div class="card"><div class="v">{v}</div><div class="k">{esc(k)}</div></div>'
        for k, v in cards
    )
    cfg = rf.config
    best = max(
        ((c, v["auc"]) for c, v in pooled["per_class"].items() if not isnan(v["auc"])),
        key=lambda kv: kv[1],
        default=None,
    )
    worst = min(
        ((c, v["auc"]) for c, v in pooled["per_class"].items() if not isnan(v["auc"])),
        key=lambda kv: kv[1],
        default=None,
    )
    lines = []
    if best and worst:
        lines.append(
            f"Best separated class: <strong>{esc(best[0])}</strong> (AUC {best[1]:.3f}); "
            f"hardest: <strong>{esc(worst[0])}</strong> (AUC {worst[1]:.3f})."
        )
    only = single_source_classes(rf.manifest if rf.manifest is not None else rf.oof)
    caveat = ""
    if only:
        names = ", ".join(f"{c} ({s})" for c, s in sorted(only.items()))
        caveat = warn(
            f"{len(only)} class(es) occur in one recording source only: {names}. Their AUC can "
            "reflect the recording device rather than the heart sound; see Per source."
        )
    guide = (
        '<p class="guide">Every number and curve below is <em>out-of-fold</em>: each recording '
        "is scored by the model of the fold that did not train on it, so the figures estimate "
        "performance on new recordings of the same kind (same devices, same population). "
        f"Folds are grouped by {esc(cfg.dataset.group_fold_column or 'patient')}, so no patient "
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


def warnings(ctx: Context) -> str:
    """What the resolver, the data checks and the after-training steps warned about."""
    rf = ctx.data
    if not rf.warnings:
        return (
            '<p class="muted">No warnings from the config resolver, the data checks or the '
            "after-training steps.</p>"
        )
    items = "".join(f"<li>{esc(w)}</li>" for w in rf.warnings)
    return (
        "<p>What the config resolver, the data checks and the after-training steps warned "
        f"about ({len(rf.warnings)}):</p>"
        f'<div class="warn" role="note"><ul style="margin:0;padding-left:18px">{items}</ul></div>'
    )


def configuration(ctx: Context) -> str:
    """Key settings, and the whole resolved config folded away."""
    rf = ctx.data
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
            f"{fmt(c.audio.minimum_frequency, 0)}-{fmt(c.audio.maximum_frequency, 0)} Hz; "
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
        table(["setting", "value"], rows, cls="kv")
        + f"<details><summary>Resolved configuration: {rf.folder.config.name} ({n_lines} lines, "
        "every "
        "<code>Auto</code> filled in)</summary>"
        f"<pre>{esc(rf.config_text)}</pre></details>"
    )


def environment(ctx: Context) -> str:
    """Python, platform, device, seed, commit, command and package versions."""
    rf = ctx.data
    env = rf.environment
    if not env:
        return f'<p class="muted">{esc(rf.folder.environment.name)} is missing.</p>'
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
        table([], [(k, "n/a" if v is None else str(v)) for k, v in rows], cls="kv")
        + "<h3>Package versions</h3>"
        + table(["package", "version"], pk_rows)
    )
