"""``stetho models``: the ready screening models and pretrained backbones of this install."""

from __future__ import annotations

from collections.abc import Callable

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
    from stetho.runs.zoo import PREFIX, ZOO_DIR, list_models, model_card, model_dir

    with cli_errors():
        typer.echo(f"ready models ({ZOO_DIR}):")
        for name in _listed(list_models()):
            typer.echo(f"  {PREFIX}{name}  {_summary(model_card, name)}")
            typer.echo(f"      {model_dir(name)}")
        typer.echo(f"pretrained backbones ({WEIGHTS_DIR}):")
        for name in _listed(packaged_backbones()):
            typer.echo(f"  {PACKAGED_PREFIX}{name}  {_summary(backbone_card, name)}")


def _listed(names: list[str]) -> list[str]:
    """``names``, after saying so when there are none."""
    if not names:
        typer.echo("  none shipped in this install")
    return names


def _summary(card: Callable[[str], str], name: str) -> str:
    """The first line of ``name``'s card; a model without its card is still usable."""
    from stetho.runs.zoo import card_summary

    try:
        return card_summary(card(name))
    except (ValueError, OSError) as exc:
        return f"(no model card: {exc})"


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
