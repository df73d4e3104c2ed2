import numpy as np
import pytest
import torch
from scipy.signal import welch

from stetho.config import AugmentationConfig
from stetho.training.augment import (
    augment_waveform,
    mix_batch,
    random_eq,
    random_lowpass,
    random_noise,
    spec_augment,
)

SR = 2000


def _white(seconds=4.0, seed=0):
    return np.random.default_rng(seed).standard_normal(int(SR * seconds)).astype(np.float32)


def _band_power(x, lo, hi):
    f, p = welch(x, fs=SR, nperseg=512)
    return p[(f >= lo) & (f < hi)].mean()


def test_lowpass_removes_energy_above_the_cutoff():
    x = _white()
    y = random_lowpass(x, np.random.default_rng(0), sample_rate=SR, cutoff_hz=(300.0, 300.0))
    assert _band_power(y, 600, 900) < 0.01 * _band_power(x, 600, 900)
    assert _band_power(y, 50, 200) > 0.5 * _band_power(x, 50, 200)


@pytest.mark.parametrize("snr", [10.0, 30.0])
def test_noise_is_added_at_the_requested_snr(snr):
    x = np.sin(2 * np.pi * 50 * np.arange(8000) / SR).astype(np.float32)
    y = random_noise(x, np.random.default_rng(1), snr_db=(snr, snr))
    measured = 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2))
    assert measured == pytest.approx(snr, abs=0.1)


def test_eq_stays_within_its_bound():
    x = _white()
    y = random_eq(x, np.random.default_rng(2), max_db=6.0)
    ratio_db = 10 * np.log10(_band_power(y, 100, 900) / _band_power(x, 100, 900))
    assert abs(ratio_db) < 12.0  # tilt and peak, each within 6 dB
    assert y.dtype == np.float32 and y.shape == x.shape


def test_augmentation_is_deterministic_under_a_seed():
    cfg = AugmentationConfig(
        gain_db=6, lowpass_probability=1, eq_probability=1, noise_probability=1, time_shift=True
    )
    x = _white()
    a = augment_waveform(x, np.random.default_rng(5), cfg, sample_rate=SR)
    b = augment_waveform(x, np.random.default_rng(5), cfg, sample_rate=SR)
    c = augment_waveform(x, np.random.default_rng(6), cfg, sample_rate=SR)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("target_mode", ["Ratio", "Max"])
def test_mix_batch_mixes_waves_and_targets_consistently(target_mode):
    cfg = AugmentationConfig(
        mix_audio=True, mix_probability=1.0, mix_concentration=1.0, mix_target=target_mode
    )
    wave = torch.stack([torch.full((10,), 1.0), torch.full((10,), -1.0)])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mixed, t = mix_batch(wave, target, cfg, torch.Generator().manual_seed(3))
    if target_mode == "Ratio":
        # The first target's share equals the first wave's share: wave = lam*1 + (1-lam)*(-1).
        lam = (mixed[:, 0] + 1) / 2
        torch.testing.assert_close(t[:, 0], lam)
        torch.testing.assert_close(t.sum(1), torch.ones(2))
    else:
        assert ((t == 0) | (t == 1)).all() and (t.sum(1) >= 1).all()


def test_mix_probability_zero_is_identity():
    cfg = AugmentationConfig(mix_audio=True, mix_probability=0.0)
    wave, target = torch.randn(4, 8), torch.eye(4)
    w2, t2 = mix_batch(wave, target, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(w2, wave) and torch.equal(t2, target)


def test_spec_augment_masks_bounded_regions_with_the_mean():
    cfg = AugmentationConfig(spec_masks=1, spec_time_mask_seconds=0.2, spec_freq_mask_bins=4)
    spec = torch.randn(8, 1, 64, 300)
    out = spec_augment(spec, cfg, torch.Generator().manual_seed(0), frames_per_second=50.0)
    changed = (out != spec)[:, 0]
    for b in range(8):
        cols = changed[b].all(dim=0).sum().item()  # fully masked frames
        rows = changed[b].all(dim=1).sum().item()  # fully masked bands
        assert cols <= 10 and rows <= 4
        vals = out[b, 0][changed[b]]
        if vals.numel():
            assert torch.allclose(vals, spec[b].mean().expand_as(vals))
    assert torch.equal(
        spec_augment(spec, AugmentationConfig(), torch.Generator(), frames_per_second=50.0), spec
    )
