"""``stetho models``: the ready screening models and pretrained backbones of this install."""

from __future__ import annotations

import typer

from stetho.cli.common import cli_errors

models_app = typer.Typer(
    name="models",
    help="The ready models (stetho:NAME) and pretrained backbones shipped with this install.",
    invoke_without_command=True,
    add_completion=False,
)


@models_app.callback()
def list_all(ctx: typer.Context) -> None:
    """List the ready screening models (stetho:NAME: predict, serve and evaluate take them
    where they take a folder) and the packaged pretrained backbones
    (architecture.pretrained_weights=stetho:NAME)."""
    if ctx.invoked_subcommand is not None:
        return
    from stetho.models.pretrained import (
        PACKAGED_PREFIX,
        WEIGHTS_DIR,
        backbone_card,
        packaged_backbones,
    )
    from stetho.runs.zoo import PREFIX, ZOO_DIR, card_summary, list_models, model_card, model_dir

    with cli_errors():
        names = list_models()
        typer.echo(f"ready models ({ZOO_DIR}):")
        if not names:
            typer.echo("  none shipped in this install")
        for name in names:
            try:
                summary = card_summary(model_card(name))
            except ValueError as exc:  # a model without its card is still usable
                summary = f"(no model card: {exc})"
            typer.echo(f"  {PREFIX}{name}  {summary}")
            typer.echo(f"      {model_dir(name)}")
        backbones = packaged_backbones()
        typer.echo(f"pretrained backbones ({WEIGHTS_DIR}):")
        if not backbones:
            typer.echo("  none shipped in this install")
        for name in backbones:
            try:
                summary = card_summary(backbone_card(name))
            except (ValueError, OSError) as exc:
                summary = f"(no model card: {exc})"
            typer.echo(f"  {PACKAGED_PREFIX}{name}  {summary}")


@models_app.command("show")
def show(
    name: str = typer.Argument(..., metavar="NAME", help="A ready model: NAME or stetho:NAME."),
) -> None:
    """Print a ready model's or a packaged backbone's card (what it was trained on, how well
    it does, its limits)."""
    from stetho.models.pretrained import PACKAGED_PREFIX, backbone_card, packaged_backbones
    from stetho.runs.zoo import list_models, model_card

    with cli_errors():
        bare = name.removeprefix(PACKAGED_PREFIX)
        is_backbone = bare in packaged_backbones() and bare not in list_models()
        card = backbone_card(bare) if is_backbone else model_card(name)
    typer.echo(card, nl=not card.endswith("\n"))


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
