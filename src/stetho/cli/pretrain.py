"""``stetho pretrain``: pretrain a heart-sound backbone on public multi-device data."""

from __future__ import annotations

from pathlib import Path

import typer

from stetho.cli.common import cli_errors


def pretrain(
    source: list[str] = typer.Option(
        ...,
        "--source",
        "-s",
        help="Dataset ROOT[:layout], repeatable (e.g. ../shared/data/circor-2022-dev:circor).",
    ),
    objective: str = typer.Option(
        "ssl", "--objective", help="ssl (device views), supervised (masked labels) or both."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to create (never overwritten)."),
    minutes: float = typer.Option(None, "--minutes", help="Wall-clock budget of this invocation."),
    steps: int = typer.Option(
        None, "--steps", help="Total optimiser steps (also sets the LR decay)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of weights, excerpts and device views."),
    batch_size: int = typer.Option(64, "--batch-size", min=2, help="Excerpts per step."),
    threads: int = typer.Option(1, "--threads", min=1, help="Torch CPU threads."),
    workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue OUT.partial from its checkpoint."
    ),
    config: Path = typer.Option(
        None, "--config", "-c", help="Experiment YAML whose audio block and backbone to use."
    ),
    backbone: str = typer.Option(None, "--backbone", help="Backbone name [default: config's]."),
    width: int = typer.Option(None, "--width", help="Backbone width [default: config's]."),
    excerpt_seconds: float = typer.Option(4.0, "--excerpt-seconds", help="Excerpt length (s)."),
    learning_rate: float = typer.Option(1e-3, "--learning-rate", help="AdamW peak rate."),
    temperature: float = typer.Option(0.1, "--temperature", help="NT-Xent temperature."),
    balance_by: str = typer.Option(
        "dataset", "--balance-by", help="dataset (each --source) or source (each device)."
    ),
    crops: str = typer.Option(
        "independent",
        "--crops",
        help="independent (the two views cut at two offsets), same (one excerpt) or mixed "
        "(each pair independent or overlapping by at least half, even odds).",
    ),
    rhythm_weight: float = typer.Option(
        0.0,
        "--rhythm-weight",
        min=0.0,
        help="Weight of the beat-timing pretext task: each view spliced, one whole cardiac "
        "cycle or a fraction of one removed, and a head tells which (0: off).",
    ),
    reconstruct_weight: float = typer.Option(
        0.0,
        "--reconstruct-weight",
        min=0.0,
        help="Weight of masked-spectrogram reconstruction: 0.25-0.5 s spans (30 percent of the "
        "frames) of each view hidden and predicted from the feature map (0: off).",
    ),
    mission_audio: str = typer.Option(
        "none",
        "--mission-audio",
        help="The mission set's audio (never its labels): none, unlabelled (its recordings "
        "without a label, in no fold) or all.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    checkpoint_every: int = typer.Option(200, "--checkpoint-every", min=1, help="Steps."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Pretrain a backbone; writes OUT/backbone.safetensors (see docs/pretraining.md)."""
    from stetho.config import load_config, resolve_config
    from stetho.pretrain.data import Source
    from stetho.pretrain.loop import PretrainConfig
    from stetho.pretrain.loop import pretrain as run_pretraining

    with cli_errors():
        experiment = resolve_config(load_config(config))[0]
        cfg = PretrainConfig(
            sources=[Source.parse(s) for s in source],
            objective=objective,
            backbone=backbone or experiment.architecture.backbone,
            width=width or experiment.architecture.width,
            audio=experiment.audio,
            excerpt_seconds=excerpt_seconds,
            batch_size=batch_size,
            learning_rate=learning_rate,
            temperature=temperature,
            balance_by=balance_by,
            crops=crops,
            rhythm_weight=rhythm_weight,
            reconstruct_weight=reconstruct_weight,
            mission_audio=mission_audio,
            steps=steps,
            minutes=minutes,
            seed=seed,
            threads=threads,
            workers=workers,
            device=device,
            checkpoint_every=checkpoint_every,
            progress=progress,
        )
        result = run_pretraining(cfg, out, resume=resume)
    s = result.summary
    first, last = s["first_losses"] or {}, s["last_losses"] or {}
    typer.echo(
        f"{result.backbone_path}: {s['steps']} steps, {s['steps_per_second']} steps/s, "
        f"loss {first.get('loss')} -> {last.get('loss')}"
    )


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)
