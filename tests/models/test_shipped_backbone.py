"""The heart-sound backbone stetho ships (src/stetho/models/weights/, DEFAULT_BACKBONE)."""

from __future__ import annotations

import fnmatch
import tomllib

import pytest
import torch
from conftest import REPO
from safetensors import safe_open
from typer.testing import CliRunner

from stetho.cli import app
from stetho.config import load_config, resolve_config
from stetho.models import create_model
from stetho.models.pretrained import (
    DEFAULT_BACKBONE,
    WEIGHTS_DIR,
    FrontEndMismatchError,
    packaged_backbones,
)
from stetho.training.plan import check_config

runner = CliRunner()
FILE = WEIGHTS_DIR / f"{DEFAULT_BACKBONE}.safetensors"


def test_the_shipped_backbones_are_small_carded_and_never_heard_a_mission_label() -> None:
    assert DEFAULT_BACKBONE in packaged_backbones()
    for name in packaged_backbones():
        file = WEIGHTS_DIR / f"{name}.safetensors"
        assert file.stat().st_size <= 10 * 2**20
        card = (WEIGHTS_DIR / f"{name}.md").read_text()
        for needed in ("stetho pretrain", "ODC-By", "CC0", "PhysioNet", "CirCor"):
            assert needed in card, (name, needed)
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata()
        assert meta["objective"] == "ssl", name  # no labels of any dataset
        if "heartbeat-sounds" in meta["sources"]:
            # mission audio only of the recordings that no fold holds, as the command says
            command = card.split("## Reproduce", 1)[1]
            assert "--mission-audio unlabelled" in command, name


def test_the_default_config_fine_tunes_from_it_offline() -> None:
    # README command 1 as written: configs/heartbeat.yaml with no override.
    config_path = REPO / "configs" / "heartbeat.yaml"
    config = load_config(config_path)
    assert check_config(config) == []  # no fall-back warning: the file is there
    state = create_model(resolve_config(config)[0], 5).backbone.state_dict()
    with safe_open(str(FILE), framework="pt") as f:
        keys = list(f.keys())
        for key in keys:
            assert torch.equal(state[key], f.get_tensor(key)), key
        # and one override trains from random initialisation instead
        scratch = load_config(config_path, ["architecture.pretrained=false"])
        random_state = create_model(resolve_config(scratch)[0], 5).backbone.state_dict()
        weights = [k for k in keys if k.endswith("weight") and f.get_tensor(k).ndim > 1]
        assert weights and not any(torch.equal(random_state[k], f.get_tensor(k)) for k in weights)


def test_another_front_end_is_refused_before_any_work() -> None:
    config = load_config(
        REPO / "configs" / "heartbeat.yaml",
        ["architecture.pretrained=true", "audio.mel_frequency_bins=32"],
    )
    with pytest.raises(FrontEndMismatchError, match="mel"):
        create_model(resolve_config(config)[0], 5)
    with pytest.raises(ValueError, match="mel"):
        check_config(config)


def test_models_lists_and_shows_its_card() -> None:
    listing = runner.invoke(app, ["models"])
    assert listing.exit_code == 0 and f"stetho:{DEFAULT_BACKBONE}" in listing.output
    shown = runner.invoke(app, ["models", "show", DEFAULT_BACKBONE])
    assert shown.exit_code == 0, shown.output
    assert shown.output.strip() == (WEIGHTS_DIR / f"{DEFAULT_BACKBONE}.md").read_text().strip()


def test_package_data_ships_the_backbone_and_its_card() -> None:
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["stetho"]
    package = WEIGHTS_DIR.parents[1]
    for path in (FILE, FILE.with_suffix(".md")):
        relative = str(path.relative_to(package))
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative
