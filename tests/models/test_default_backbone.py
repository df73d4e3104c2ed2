"""``architecture.backbone: heartnet`` with ``pretrained: true`` loads stetho's packaged
heart-sound backbone (``stetho.models.pretrained.DEFAULT_BACKBONE``), front end checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stetho.config import ConfigError, ResolvedConfig, load_config, resolve_config
from stetho.models import create_model, starting_weights
from stetho.models.pretrained import (
    DEFAULT_BACKBONE,
    FrontEndMismatchError,
    PretrainedMismatchError,
    save_pretrained_backbone,
    transfer_layers,
)
from stetho.models.registry import get_backbone_fn


def _config(*overrides: str) -> ResolvedConfig:
    cfg, _ = resolve_config(
        load_config(None, ["architecture.backbone=heartnet", "architecture.width=8", *overrides])
    )
    return cfg


def packaged_heartnet(weights_dir: Path, *, width: int = 8, seed: int = 1) -> Path:
    """A width-``width`` heartnet saved as the packaged default backbone in ``weights_dir``, with
    random weights *and* BatchNorm statistics (none equal a fresh model's)."""
    torch.manual_seed(seed)
    backbone = get_backbone_fn("heartnet")(width=width)
    with torch.no_grad():
        for name, tensor in backbone.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(
                    torch.rand_like(tensor) + 0.5
                    if name.endswith("running_var")
                    else torch.randn_like(tensor)
                )
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / f"{DEFAULT_BACKBONE}.safetensors"
    save_pretrained_backbone(
        backbone, path, name="heartnet", width=width, audio=_config().audio, extra={"test": 1}
    )
    return path


@pytest.fixture
def weights_dir(tmp_path, monkeypatch) -> Path:
    """An empty packaged-weights folder in place of stetho's own."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr("stetho.models.pretrained.WEIGHTS_DIR", folder)
    return folder


def test_pretrained_true_loads_the_packaged_heart_sound_backbone(weights_dir):
    path = packaged_heartnet(weights_dir)
    model = create_model(_config("architecture.pretrained=true"), n_classes=2)
    stored = load_file(str(path))
    got = model.backbone.state_dict()
    assert set(got) == set(stored)
    for name, tensor in stored.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0, msg=name)
    # Without pretrained the same config starts from random weights.
    fresh = create_model(_config(), n_classes=2).backbone.state_dict()
    assert not torch.equal(fresh["stem.0.0.weight"], stored["stem.0.0.weight"])


def test_front_end_mismatch_names_the_keys_and_the_ways_out(weights_dir):
    packaged_heartnet(weights_dir)
    cfg = _config("architecture.pretrained=true", "audio.mel_frequency_bins=32")
    with pytest.raises(FrontEndMismatchError) as err:
        create_model(cfg, n_classes=2)
    msg = str(err.value)
    assert "audio.mel_frequency_bins: pretrained 64, config 32" in msg
    assert "audio.sample_rate" not in msg  # only the keys that differ
    assert f"stetho:{DEFAULT_BACKBONE}" in msg
    assert "set the config's audio block to the pretrained values" in msg
    assert "architecture.pretrained: false" in msg


def test_width_mismatch_names_both_widths(weights_dir):
    packaged_heartnet(weights_dir, width=8)
    cfg = _config("architecture.pretrained=true", "architecture.width=16")
    with pytest.raises(PretrainedMismatchError) as err:
        create_model(cfg, n_classes=2)
    msg = str(err.value)
    assert "pretrained width is 8, the config asks for 16" in msg
    assert "architecture.pretrained: false" in msg


def test_absent_packaged_file_is_a_clear_error(weights_dir):
    cfg = _config("architecture.pretrained=true")
    with pytest.raises(ValueError) as err:
        create_model(cfg, n_classes=2)
    msg = str(err.value)
    assert str(weights_dir / f"{DEFAULT_BACKBONE}.safetensors") in msg
    assert "architecture.pretrained: false" in msg
    assert "stetho pretrain" in msg and "architecture.pretrained_weights" in msg


def test_an_explicit_file_wins_over_the_packaged_default(weights_dir, tmp_path):
    packaged_heartnet(weights_dir, seed=1)
    own = packaged_heartnet(tmp_path / "own", seed=2)
    cfg = _config("architecture.pretrained=true", f"architecture.pretrained_weights={own}")
    got = create_model(cfg, n_classes=2).backbone.state_dict()
    torch.testing.assert_close(got["stem.0.0.weight"], load_file(str(own))["stem.0.0.weight"])


def test_the_builder_alone_does_not_skip_the_front_end_check():
    with pytest.raises(ValueError, match="create_backbone"):
        get_backbone_fn("heartnet")(pretrained=True, width=8)


def test_pretrained_layers_transfer_only_the_named_layers(weights_dir):
    """Partial transfer: the named layers (weights *and* BatchNorm statistics) come from the
    file, every other tensor is a fresh random initialisation, not the file's."""
    stored = load_file(str(packaged_heartnet(weights_dir)))
    model = create_model(
        _config("architecture.pretrained=true", "architecture.pretrained_layers=[stem,stages.0]"),
        n_classes=2,
    )
    got = model.backbone.state_dict()
    assert set(got) == set(stored)
    transferred = {k for k in stored if k.startswith(("stem.", "stages.0."))}
    assert any(k.endswith("running_var") for k in transferred)
    for name, tensor in stored.items():
        if not tensor.is_floating_point():
            continue
        if name in transferred:
            torch.testing.assert_close(got[name], tensor, rtol=0, atol=0, msg=name)
        else:
            assert not torch.equal(got[name], tensor), name
    # The layers left out start as a fresh model does (BatchNorm statistics reset too).
    fresh = create_model(_config(), n_classes=2).backbone.state_dict()
    assert torch.equal(fresh["stages.3.pw.1.running_var"], got["stages.3.pw.1.running_var"])


def test_pretrained_layers_are_module_paths_not_string_prefixes():
    """``1`` names layer 1 only, not layer 10 (whose name also starts with "1")."""
    torch.manual_seed(0)
    source = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(11)])
    fresh = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(11)])
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    out = transfer_layers(source, fresh, ["1"]).state_dict()
    assert torch.equal(out["1.weight"], source[1].weight)
    assert torch.equal(out["10.weight"], before["10.weight"])
    assert not torch.equal(out["10.weight"], source[10].weight)


def test_pretrained_layers_naming_no_layer_is_refused_with_the_layers(weights_dir):
    packaged_heartnet(weights_dir)
    cfg = _config("architecture.pretrained=true", "architecture.pretrained_layers=[stem,stage.0]")
    with pytest.raises(PretrainedMismatchError, match=r"'stage\.0' names no layer") as err:
        create_model(cfg, n_classes=2)
    assert "stages.0" in str(err.value) and "'stem'" not in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["architecture.pretrained_layers=[stem]"], "architecture.pretrained is false"),
        (["architecture.pretrained=true", "architecture.pretrained_layers=[]"], "transfers no"),
        (
            [
                "architecture.pretrained=true",
                "architecture.pretrained_layers=[stem]",
                "training.freeze_backbone_epochs=2",
            ],
            "would hold them",
        ),
    ],
)
def test_pretrained_layers_that_cannot_mean_anything_are_config_errors(overrides, reason):
    with pytest.raises(ConfigError, match=reason):
        _config(*overrides)


def test_run_folders_record_which_weights_the_backbone_started_from(tmp_path, monkeypatch):
    # pretrained: true means whatever DEFAULT_BACKBONE is in this install, so a run records
    # the name it resolved to, not the switch.
    packaged_heartnet(tmp_path)
    monkeypatch.setattr("stetho.models.pretrained.WEIGHTS_DIR", tmp_path)
    assert starting_weights(_config("architecture.pretrained=true").architecture) == (
        f"stetho:{DEFAULT_BACKBONE}"
    )
    named = _config("architecture.pretrained_weights=stetho:heartnet-pcg-v1").architecture
    assert starting_weights(named) == "stetho:heartnet-pcg-v1"
    assert starting_weights(_config("architecture.pretrained=false").architecture) is None
    timm = resolve_config(
        load_config(None, ["architecture.backbone=resnet18", "architecture.pretrained=true"])
    )[0]
    assert starting_weights(timm.architecture) == "imagenet"
