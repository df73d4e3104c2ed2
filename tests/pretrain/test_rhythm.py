"""The beat-timing pretext task (``--rhythm-weight``): splices that keep or break the rhythm,
the heart-rate cycle they are cut by, the batches and the head's loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from test_pretrain import SR, heart, pretext_alone, write_hearts

from stetho.models.pretrained import read_metadata
from stetho.pcg.synthetic import synthesize_pcg
from stetho.pretrain import Source
from stetho.pretrain.data import PretrainBatches, load_sources
from stetho.pretrain.objective import MASKED, ObjectiveConfig, PretrainObjective
from stetho.pretrain.rhythm import IRREGULAR_CYCLES, cycle_samples, splice_excerpt


def _removed(out: np.ndarray, fade: int) -> tuple[int, int]:
    """For a splice of a ramp (each sample is its offset in the recording): where the join
    is, and how many samples were cut out there."""
    steps = np.diff(out)
    jumps = np.flatnonzero(np.abs(steps - 1) > 1e-3)
    assert len(jumps) and jumps[-1] - jumps[0] <= fade, "one join, no longer than the fade"
    return int(jumps[0]), int(round(out[-1] - out[0] - (len(out) - 1)))


@pytest.mark.parametrize("irregular", [False, True])
def test_a_regular_splice_removes_one_cycle_and_an_irregular_one_a_fraction(irregular):
    ramp, length, cycle, fade = np.arange(30 * SR, dtype=np.float64), 4 * SR, 1600, 20
    rng = np.random.default_rng(0)
    for _ in range(50):
        out = splice_excerpt(ramp, length, cycle, rng, irregular=irregular, fade=fade)
        assert out is not None and out.shape == (length,) and out.dtype == np.float32
        join, gap = _removed(out, fade)
        assert length // 4 - 1 <= join <= 3 * length // 4  # in the middle half
        if irregular:
            lo, hi = IRREGULAR_CYCLES
            assert lo * cycle - 1 <= gap <= hi * cycle + 1
        else:
            assert gap == cycle  # the beats after the join stay in step


def test_a_splice_needs_room_for_the_excerpt_and_the_cut_and_a_sane_fade():
    rng = np.random.default_rng(0)
    short = np.zeros(4 * SR + 1000, dtype=np.float32)
    assert splice_excerpt(short, 4 * SR, 1600, rng, irregular=False, fade=20) is None
    assert splice_excerpt(short, 4 * SR, 900, rng, irregular=False, fade=20) is not None
    with pytest.raises(ValueError, match="fade"):
        splice_excerpt(short, 4 * SR, 900, rng, irregular=False, fade=4 * SR)


@pytest.mark.parametrize("bpm", [60.0, 95.0])
def test_the_cycle_is_the_recordings_heart_period(bpm):
    x = synthesize_pcg(bpm, duration_s=12.0, sample_rate=SR, seed=1).samples
    cycle = cycle_samples(x, SR)
    assert cycle is not None and abs(cycle - 60.0 / bpm * SR) < 0.05 * 60.0 / bpm * SR
    assert cycle_samples(np.zeros(10 * SR), SR) is None  # silent: no estimate, no splice


def test_rhythm_batches_give_both_views_one_kind_and_mask_what_cannot_be_spliced(tmp_path):
    hearts = write_hearts(tmp_path / "hearts", range(4))
    (tmp_path / "short").mkdir()
    # 1.2 s: no room for a 1 s excerpt and a whole cycle after it
    sf.write(tmp_path / "short" / "short.wav", 0.3 * heart(9, seconds=1.2), SR, subtype="PCM_16")
    frame = load_sources([Source(hearts), Source(tmp_path / "short")], use_labels=False)
    batches = PretrainBatches(
        frame, sample_rate=SR, excerpt_seconds=1.0, batch_size=32, seed=0, rhythm=True
    )
    short = batches.groups.index("short")
    r1, r2, group = [], [], []
    for step in range(6):
        batch = batches[step]
        assert batch["view1"].shape == (32, SR)
        torch.testing.assert_close(batch["rhythm1"], batches[step]["rhythm1"])  # reproducible
        r1.append(batch["rhythm1"])
        r2.append(batch["rhythm2"])
        group.append(batch["group"])
    a, b, g = torch.cat(r1), torch.cat(r2), torch.cat(group)
    both = (a != MASKED) & (b != MASKED)
    assert torch.equal(a[both], b[both])  # one kind of splice per positive pair
    spliced = a[g != short]
    assert (spliced != MASKED).all()  # 8 s hearts: a cycle estimate and room for every splice
    assert 0.3 < float(spliced.float().mean()) < 0.7  # even odds of either kind
    assert (a[g == short] == MASKED).any()
    with pytest.raises(ValueError, match="crops='independent'"):
        PretrainBatches(
            frame, sample_rate=SR, excerpt_seconds=1.0, batch_size=8, seed=0, rhythm=True,
            crops="mixed",
        )  # fmt: skip


def test_the_rhythm_head_adds_its_masked_loss_and_needs_its_targets():
    torch.manual_seed(0)
    objective = PretrainObjective(8, ObjectiveConfig(rhythm_weight=0.5))
    e1, e2 = torch.randn(4, 8), torch.randn(4, 8)
    losses = objective(e1, e2, {"rhythm": torch.tensor([0, 1, MASKED, 1, 0, 0, 1, MASKED])})
    torch.testing.assert_close(losses["loss"], losses["ssl"] + 0.5 * losses["rhythm"])
    all_masked = objective(e1, e2, {"rhythm": torch.full((8,), MASKED)})
    assert float(all_masked["rhythm"].detach()) == 0.0
    with pytest.raises(ValueError, match="rhythm"):
        objective(e1, e2, {})
    with pytest.raises(ValueError, match="rhythm_weight"):
        ObjectiveConfig(rhythm_weight=-1.0)
    assert PretrainObjective(8, ObjectiveConfig()).rhythm is None  # off by default


def test_the_backbone_learns_the_rhythm_task(tmp_path: Path):
    """The pretext task is learnable from spectrograms by the backbone: on its own (NT-Xent at
    weight 0, so the gain is the rhythm head's) its loss falls well below chance, ln 2. Clean
    recorders (only filters and gain) keep this to a few hundred steps; with noise it takes
    longer (benchmarks/results/backbone.md, sixth measurement)."""
    _, result, rhythm = pretext_alone(tmp_path, "rhythm", steps=200)
    assert np.mean(rhythm[:20]) > 0.65 and np.mean(rhythm[-30:]) < 0.55, rhythm[::25]
    assert read_metadata(result.backbone_path)["rhythm_weight"] == "1.0"
