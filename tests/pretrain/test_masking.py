"""Masked-spectrogram reconstruction (``--reconstruct-weight``): the masks, the head, its loss,
and that a backbone learns to fill in hidden heartbeats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_pretrain import interrupt, pretext_alone, tiny_config

from stetho.features import LogMel
from stetho.models.heartnet import HeartNet
from stetho.models.pretrained import read_metadata
from stetho.pretrain import pretrain
from stetho.pretrain.data import PretrainBatches, load_sources
from stetho.pretrain.masking import (
    MASK_FRACTION,
    ReconstructionHead,
    apply_masks,
    mask_generator,
    masked_mse,
    time_masks,
)
from stetho.pretrain.objective import ObjectiveConfig, PretrainObjective

FPS = 62.5


def spans(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in ``row``."""
    edges = np.diff(np.concatenate([[0], row.numpy().astype(int), [0]]))
    return list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))


def test_masks_hide_the_fraction_in_beat_long_spans_and_follow_seed_and_step():
    masks = time_masks(64, 250, frames_per_second=FPS, generator=mask_generator(0, 3))
    assert masks.shape == (64, 250) and masks.dtype == torch.bool
    hidden = masks.float().mean(dim=1)
    assert (hidden >= MASK_FRACTION).all() and (hidden < MASK_FRACTION + 0.2).all()
    lengths = [n for row in masks for n in spans(row)]
    # 0.25 s = 16 frames; overlapping spans merge into longer runs
    assert min(lengths) >= 16 and np.median(lengths) <= 40
    again = time_masks(64, 250, frames_per_second=FPS, generator=mask_generator(0, 3))
    assert torch.equal(masks, again)  # a resumed run masks as an uninterrupted one
    other = time_masks(64, 250, frames_per_second=FPS, generator=mask_generator(0, 4))
    assert not torch.equal(masks, other)
    assert not torch.equal(masks, time_masks(64, 250, frames_per_second=FPS,
                                             generator=mask_generator(1, 3)))  # fmt: skip
    with pytest.raises(ValueError, match="fraction"):
        time_masks(2, 250, frames_per_second=FPS, generator=mask_generator(0, 0), fraction=1.0)


def test_apply_masks_blanks_only_the_hidden_frames():
    spec = torch.randn(3, 1, 16, 40)
    masks = time_masks(3, 40, frames_per_second=FPS, generator=mask_generator(0, 0))
    out = apply_masks(spec, masks)
    assert (out[..., masks[:, None, None, :].expand_as(spec)] == 0).all()
    keep = ~masks[:, None, None, :].expand_as(spec)
    torch.testing.assert_close(out[keep], spec[keep])
    with pytest.raises(ValueError, match="do not fit"):
        apply_masks(spec, masks[:, :-1])


def test_the_head_predicts_every_frame_and_the_loss_counts_only_hidden_ones():
    torch.manual_seed(0)
    backbone = HeartNet(width=8)
    head = ReconstructionHead.for_backbone(backbone, 64)
    assert head.stride == 8  # HeartNet's time stride
    for frames in (248, 250, 256):  # 250 and 248 are not multiples of it
        spec = torch.randn(2, 1, 64, frames)
        prediction = head(backbone(spec), frames)
        assert prediction.shape == (2, 64, frames)
    target = torch.randn(2, 64, 30)
    masks = torch.zeros(2, 30, dtype=torch.bool)
    masks[:, 10:20] = True
    prediction = torch.randn(2, 64, 30)
    loss = masked_mse(prediction, target, masks)
    torch.testing.assert_close(loss, ((prediction - target)[..., 10:20] ** 2).mean())
    changed = prediction.clone()
    changed[..., :10] += 5.0  # visible frames: no effect
    torch.testing.assert_close(masked_mse(changed, target, masks), loss)
    assert float(masked_mse(prediction, target, torch.zeros(2, 30, dtype=torch.bool))) == 0.0


def test_the_objective_adds_the_weighted_reconstruction_and_checks_its_inputs():
    torch.manual_seed(0)
    backbone = HeartNet(width=8)
    head = ReconstructionHead.for_backbone(backbone, 32)
    objective = PretrainObjective(
        backbone.num_features, ObjectiveConfig(reconstruct_weight=2.0), reconstruction=head
    )
    spec = torch.randn(8, 1, 32, 64)
    masks = time_masks(8, 64, frames_per_second=FPS, generator=mask_generator(0, 0))
    fmap = backbone(apply_masks(spec, masks))
    e1, e2 = fmap.mean(dim=(2, 3)).chunk(2)
    losses = objective(e1, e2, {}, (fmap, spec, masks))
    torch.testing.assert_close(losses["loss"], losses["ssl"] + 2.0 * losses["reconstruct"])
    with pytest.raises(ValueError, match="feature map"):
        objective(e1, e2, {})
    with pytest.raises(ValueError, match="exactly when"):
        PretrainObjective(backbone.num_features, ObjectiveConfig(reconstruct_weight=1.0))
    with pytest.raises(ValueError, match="reconstruct_weight"):
        ObjectiveConfig(reconstruct_weight=float("nan"))


def mean_spectrum_error(cfg, steps: range) -> float:
    """The reconstruction loss of a predictor that knows no timing: each hidden frame is the
    mean spectrum of its excerpt's visible frames (the same batches and masks as the run)."""
    batches = PretrainBatches(
        load_sources(cfg.sources, use_labels=False),
        sample_rate=cfg.audio.sample_rate,
        excerpt_seconds=cfg.excerpt_seconds,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        views=cfg.views,
    )
    frontend = LogMel.from_config(cfg.audio)
    errors = []
    for step in steps:
        batch = batches[step]
        spec = frontend(torch.cat([batch["view1"], batch["view2"]]))[:, 0]
        masks = time_masks(
            spec.shape[0], spec.shape[-1],
            frames_per_second=cfg.audio.sample_rate / cfg.audio.hop_size,
            generator=mask_generator(cfg.seed, step),
        )  # fmt: skip
        visible = (~masks)[:, None, :].float()
        mean = (spec * visible).sum(-1, keepdim=True) / visible.sum(-1, keepdim=True)
        errors.append(float(masked_mse(mean.expand_as(spec), spec, masks)))
    return float(np.mean(errors))


def test_the_backbone_learns_to_fill_in_hidden_heartbeats(tmp_path: Path):
    """Alone (NT-Xent at weight 0), reconstruction ends well below a predictor that knows each
    excerpt's spectrum but not when its beats fall, so the hidden beats are predicted from
    their neighbours; and the run resumes exactly, masks included."""
    cfg, result, losses = pretext_alone(tmp_path, "reconstruct", steps=150)
    baseline = mean_spectrum_error(cfg, range(130, 150))
    assert np.mean(losses[:5]) > baseline, losses[:5]
    assert np.mean(losses[-20:]) < 0.8 * baseline, (baseline, losses[::15])
    assert read_metadata(result.backbone_path)["reconstruct_weight"] == "1.0"

    short = tiny_config(cfg.sources, steps=4, reconstruct_weight=1.0)
    whole = pretrain(short, tmp_path / "whole")
    interrupt(short, tmp_path / "split", at=2)
    resumed = pretrain(short, tmp_path / "split", resume=True)
    a, b = load_file(whole.backbone_path), load_file(resumed.backbone_path)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
