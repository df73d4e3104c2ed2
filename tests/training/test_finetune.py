"""Fine-tuning: ``training.freeze_backbone_epochs`` and ``training.linear_probe`` hold the
backbone (weights and BatchNorm statistics) still, through a resume too; the packaged
heart-sound backbone is checked before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_runs import TINY_BASE, beats

from stetho.config import ConfigError, ResolvedConfig, load_config, resolve_config
from stetho.models import create_model
from stetho.models.pretrained import DEFAULT_BACKBONE, save_pretrained_backbone
from stetho.models.registry import get_backbone_fn
from stetho.training.callbacks import TrainingCallback
from stetho.training.checkpoint import load_checkpoint
from stetho.training.loop import FoldData, train_fold
from stetho.training.optim import create_optimizer, set_lr
from stetho.training.plan import check_config

CLASSES = ["murmur", "normal"]
TINY = [
    *TINY_BASE,
    "training.batch_size=4",
    "training.warmup_epochs=0",
    "training.learning_rate=0.01",
    "architecture.pretrained=true",
]

State = dict[str, torch.Tensor]


def _config(*overrides: str) -> ResolvedConfig:
    cfg, _ = resolve_config(load_config(None, [*TINY, *overrides]))
    return cfg


@pytest.fixture
def packaged(tmp_path, monkeypatch) -> Path:
    """A random width-8 heartnet as the packaged default backbone (for the default audio)."""
    folder = tmp_path / "weights"
    monkeypatch.setattr("stetho.models.pretrained.WEIGHTS_DIR", folder)
    torch.manual_seed(7)
    backbone = get_backbone_fn("heartnet")(width=8)
    folder.mkdir()
    path = folder / f"{DEFAULT_BACKBONE}.safetensors"
    save_pretrained_backbone(backbone, path, name="heartnet", width=8, audio=_config().audio)
    return path


@pytest.fixture(scope="module")
def fold_data() -> FoldData:
    """8 training recordings (60 vs 400 Hz bursts) and 4 validation ones, 3 s at 2 kHz."""
    rng = np.random.default_rng(0)
    waves, labels = [], []
    for i in range(12):
        label = CLASSES[i % 2]
        waves.append(beats(rng, 2000, 3.0, tone_hz=400.0 if label == "murmur" else 60.0))
        labels.append(label)
    targets = np.eye(2, dtype=np.float32)[[CLASSES.index(c) for c in labels[:8]]]
    return FoldData(
        train_waves=waves[:8], train_targets=targets, valid_waves=waves[8:], valid_labels=labels[8:]
    )


class StopAfter(TrainingCallback):
    """A kill after ``epoch`` (1-based): the checkpoint then holds that epoch's state."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, record: dict) -> None:
        if record["epoch"] >= self.epoch:
            raise KeyboardInterrupt(f"stopped after epoch {record['epoch']}")


def _train(cfg: ResolvedConfig, data: FoldData, checkpoint: Path, **kw) -> State:
    result = train_fold(cfg, classes=CLASSES, data=data, fold=0, checkpoint=checkpoint, **kw)
    return {k: v.detach().clone() for k, v in result.model.state_dict().items()}


def _initial(data: FoldData, tmp_path: Path) -> State:
    """The fold's model before its first step (same seed, zero epochs)."""
    return _train(_config("training.epochs=0"), data, tmp_path / "init.pt")


def _part(state: State, prefix: str) -> State:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def _same(a: State, b: State) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_epochs_keep_the_backbone_and_its_statistics_then_it_trains(
    packaged, fold_data, tmp_path
):
    cfg = _config("training.epochs=2", "training.freeze_backbone_epochs=1")
    init = _initial(fold_data, tmp_path)
    ckpt = tmp_path / "frozen.pt"
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, fold_data, ckpt, callbacks=[StopAfter(1)])
    after_1 = load_checkpoint(ckpt, config=cfg, classes=CLASSES, fold=0)
    epoch_1: State = after_1["model"]
    backbone_1 = _part(epoch_1, "backbone.")
    assert any("running_mean" in k for k in backbone_1)  # BatchNorm statistics are compared
    assert _same(backbone_1, _part(init, "backbone."))
    assert not torch.equal(epoch_1["head.weight"], init["head.weight"])
    assert after_1["history"][0]["backbone_frozen"] is True

    # Resumed mid-run: epoch 2 trains everything, and ends where an uninterrupted run ends.
    resumed = _train(cfg, fold_data, ckpt)
    straight = _train(cfg, fold_data, tmp_path / "straight.pt")
    assert _same(resumed, straight)
    assert not torch.equal(resumed["backbone.stem.0.0.weight"], init["backbone.stem.0.0.weight"])
    bn = "backbone.stem.0.1.running_mean"
    assert not torch.equal(resumed[bn], init[bn])


def test_linear_probe_trains_only_pooling_and_head(packaged, fold_data, tmp_path):
    init = _initial(fold_data, tmp_path)
    probe = _train(
        _config("training.epochs=2", "training.linear_probe=true"), fold_data, tmp_path / "p.pt"
    )
    assert _same(_part(probe, "backbone."), _part(init, "backbone."))
    assert not torch.equal(probe["head.weight"], init["head.weight"])
    assert not torch.equal(probe["pool.p"], init["pool.p"])  # GeM's exponent learns


@pytest.mark.parametrize("optimizer", ["AdamW", "Adam", "SGD"])
def test_a_frozen_step_leaves_the_backbone_and_builds_no_state_for_it(optimizer):
    cfg = _config(
        "architecture.pretrained=false",
        f"training.optimizer={optimizer}",
        "training.freeze_backbone_epochs=1",
        "training.differential_learning_rate_layers=[backbone]",
    )
    model = create_model(cfg, n_classes=2)
    opt = create_optimizer(model, cfg.training)
    for g in opt.param_groups:  # the backbone's groups are its own, at their own rate
        names = {n for n, p in model.named_parameters() if any(p is q for q in g["params"])}
        assert all(n.startswith("backbone.") == g["backbone"] for n in names)
        assert g["initial_lr"] == (0.001 if g["backbone"] else 0.01)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    model(torch.randn(2, 4000)).sum().backward()
    set_lr(opt, 1.0, frozen=True)
    opt.step()
    after = dict(model.named_parameters())
    assert _same(_part(after, "backbone."), _part(before, "backbone."))
    assert not torch.equal(after["head.weight"], before["head.weight"])
    backbone_params = {id(p) for n, p in model.named_parameters() if n.startswith("backbone.")}
    assert not any(id(p) in backbone_params for p in opt.state)
    # After the freeze every group is back on the schedule, weight decay included.
    assert any(g["initial_weight_decay"] > 0 for g in opt.param_groups if g["backbone"])
    set_lr(opt, 0.5, frozen=False)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(0.5 * g["initial_lr"])
        assert g["weight_decay"] == g["initial_weight_decay"]


def test_without_a_freeze_the_param_groups_are_unchanged():
    model = create_model(_config("architecture.pretrained=false"), n_classes=2)
    groups = create_optimizer(model, _config().training).param_groups
    assert len(groups) == 2  # with and without weight decay, backbone and head together
    assert not any(g["backbone"] for g in groups)


def test_freeze_longer_than_the_run_is_refused():
    with pytest.raises(ConfigError, match="linear_probe") as err:
        resolve_config(
            load_config(None, ["training.epochs=2", "training.freeze_backbone_epochs=3"])
        )
    assert "freeze_backbone_epochs=3" in str(err.value) and "epochs=2" in str(err.value)
    # As long as the run is allowed (the backbone then never trains: a probe).
    resolve_config(load_config(None, ["training.epochs=2", "training.freeze_backbone_epochs=2"]))


def test_linear_probe_on_random_features_warns():
    _, warned = resolve_config(load_config(None, ["training.linear_probe=true"]))
    assert any("linear_probe" in w and "random" in w for w in warned)
    _, quiet = resolve_config(
        load_config(None, ["training.linear_probe=true", "architecture.pretrained=true"])
    )
    assert not any("linear_probe" in w for w in quiet)


def test_absent_packaged_backbone_fails_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr("stetho.models.pretrained.WEIGHTS_DIR", tmp_path / "none")
    with pytest.raises(ConfigError, match="pretrained: false"):
        check_config(load_config(None, TINY))
