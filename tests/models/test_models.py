import warnings

import numpy as np
import pytest
import torch

from stetho.config import load_config, resolve_config
from stetho.models import create_model, list_backbones
from stetho.models.timm_backbones import PretrainedWeightsUnavailable

# The big ImageNet backbones are slow on CI's two cores; their shared code path is covered
# by resnet18 and efficientnet_b0, and resnet50 by the reference-config training test.
FAST = [b for b in list_backbones() if b in {"heartnet", "resnet18", "efficientnet_b0"}]


def _config(backbone: str):
    cfg, _ = resolve_config(
        load_config(None, [f"architecture.backbone={backbone}", "architecture.width=8"])
    )
    return cfg


def test_registry_lists_hydrogen_torch_names():
    names = list_backbones()
    for name in ("heartnet", "resnet18", "resnet34", "resnet50", "efficientnet_b0"):
        assert name in names


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ValueError, match="resnet18"):
        create_model(
            _config("heartnet").model_copy(
                update={
                    "architecture": _config("heartnet").architecture.model_copy(
                        update={"backbone": "resnet9000"}
                    )
                }
            ),
            3,
        )


@pytest.mark.parametrize("backbone", FAST)
@pytest.mark.parametrize("pool", ["Average", "Max", "GeM", "Attention"])
def test_forward_backward_shapes_no_nans(backbone, pool):
    cfg = _config(backbone)
    cfg.architecture.pool = pool
    torch.manual_seed(0)
    model = create_model(cfg, n_classes=4)
    x = torch.randn(2, 2000 * 3)
    out = model(x)
    assert out.shape == (2, 4)
    assert torch.isfinite(out).all()
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_extra_features_are_used():
    cfg = _config("heartnet")
    model = create_model(cfg, n_classes=2, n_extra_features=3).eval()
    x = torch.randn(1, 4000)
    a = model(x, torch.zeros(1, 3))
    b = model(x, torch.ones(1, 3) * 5)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="extra features"):
        model(x)


def test_pretrained_unavailable_warns_and_starts_from_random_init(timm_offline, monkeypatch):
    import timm

    real = timm_offline
    cfg = _config("resnet18")
    cfg.architecture.pretrained = True
    with pytest.warns(PretrainedWeightsUnavailable, match="RANDOM") as caught:
        model = create_model(cfg, 3)
    assert model(torch.randn(1, 4000)).shape == (1, 3)
    # The way to a pretrained start without network: stetho's own heart-sound backbone.
    message = str(caught[0].message)
    assert "heart-sound backbone" in message
    assert "architecture.backbone: heartnet with pretrained: true" in message
    # A second fold does not wait for the network again, and still warns.
    calls = []
    monkeypatch.setattr(
        timm,
        "create_model",
        lambda *a, **kw: calls.append(kw) or real(*a, **{**kw, "pretrained": False}),
    )
    with pytest.warns(PretrainedWeightsUnavailable):
        create_model(cfg, 3)
    assert all(not kw.get("pretrained") for kw in calls)


def test_local_pretrained_weights_file_is_loaded(tmp_path):
    import timm
    from safetensors.torch import save_file

    ref = timm.create_model("resnet18", pretrained=False, num_classes=0, global_pool="", in_chans=1)
    with torch.no_grad():
        ref.conv1.weight.fill_(0.25)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    cfg = _config("resnet18")
    cfg.architecture.pretrained = True
    cfg.architecture.pretrained_weights = str(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PretrainedWeightsUnavailable)
        model = create_model(cfg, 3)
    np.testing.assert_allclose(model.backbone.body.conv1.weight.detach().numpy(), 0.25)


def test_heartnet_onnx_round_trip(tmp_path):
    import onnx
    import onnxruntime as ort

    cfg = _config("heartnet")
    model = create_model(cfg, n_classes=3).eval()
    x = torch.randn(2, 6000)
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        model,
        (x,),
        str(path),
        input_names=["wave"],
        output_names=["logits"],
        dynamic_axes={"wave": {0: "batch", 1: "samples"}},
        dynamo=False,
    )
    onnx.checker.check_model(onnx.load(str(path)))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (6000, 9000):
        xx = torch.randn(3, n)
        got = sess.run(None, {"wave": xx.numpy()})[0]
        np.testing.assert_allclose(got, model(xx).detach().numpy(), atol=1e-4)


def _heartnet_config(*overrides: str):
    base = ["architecture.backbone=heartnet", "architecture.width=8", *overrides]
    return resolve_config(load_config(None, base))[0]


def test_stetho_pretrained_backbone_is_loaded_with_its_front_end(tmp_path):
    from stetho.models.pretrained import save_pretrained_backbone
    from stetho.training.plan import check_config

    cfg = _heartnet_config()
    torch.manual_seed(3)
    donor = create_model(cfg, 2).backbone
    path = tmp_path / "backbone.safetensors"
    save_pretrained_backbone(donor, path, name="heartnet", width=8, audio=cfg.audio)

    tuned = _heartnet_config(f"architecture.pretrained_weights={path}")
    torch.manual_seed(4)  # another initialisation: only the file can make them equal
    model = create_model(tuned, 2)
    for key, value in donor.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value)
    assert check_config(tuned) == []

    other_front_end = _heartnet_config(
        f"architecture.pretrained_weights={path}", "audio.mel_frequency_bins=32"
    )
    with pytest.raises(ValueError, match="mel_frequency_bins: pretrained 64, config 32"):
        create_model(other_front_end, 2)
    with pytest.raises(ValueError, match="another front end"):
        check_config(other_front_end)


def test_heartnet_refuses_a_foreign_weights_file(tmp_path):
    foreign = tmp_path / "weights.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not a stetho pretrained backbone"):
        create_model(_heartnet_config(f"architecture.pretrained_weights={foreign}"), 2)
