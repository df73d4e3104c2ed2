"""Waveform augmentations that make a model robust to the recording device.

A model trained on one stethoscope learns its gain, frequency response and noise floor along
with the heart. Each transform below imitates one way devices differ; all take a float32
waveform, its sample rate and a ``numpy.random.Generator`` and return a new array.
``mix_batch`` is Hydrogen Torch's ``mix_audio`` (mixup on waveforms), applied per batch.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.signal import butter, sosfilt

from stetho.config import AugmentationConfig


def random_gain(x: np.ndarray, rng: np.random.Generator, *, max_db: float) -> np.ndarray:
    return x * np.float32(10 ** (rng.uniform(-max_db, max_db) / 20))


def random_lowpass(
    x: np.ndarray, rng: np.random.Generator, *, sample_rate: int, cutoff_hz: tuple[float, float]
) -> np.ndarray:
    """4th-order Butterworth low-pass at a random cut-off: a duller stethoscope."""
    hi = min(cutoff_hz[1], 0.45 * sample_rate)
    lo = min(cutoff_hz[0], hi)
    sos = butter(4, rng.uniform(lo, hi), btype="lowpass", fs=sample_rate, output="sos")
    return sosfilt(sos, x).astype(np.float32)


def random_eq(x: np.ndarray, rng: np.random.Generator, *, max_db: float) -> np.ndarray:
    """A random spectral tilt plus one random peak/notch, both within +-``max_db``."""
    spec = np.fft.rfft(x)
    pos = np.linspace(-1.0, 1.0, spec.shape[0])
    gain_db = rng.uniform(-max_db, max_db) * pos
    centre, width = rng.uniform(-1, 1), rng.uniform(0.1, 0.5)
    gain_db = gain_db + rng.uniform(-max_db, max_db) * np.exp(-0.5 * ((pos - centre) / width) ** 2)
    return np.fft.irfft(spec * 10 ** (gain_db / 20), n=x.shape[0]).astype(np.float32)


def random_noise(
    x: np.ndarray, rng: np.random.Generator, *, snr_db: tuple[float, float]
) -> np.ndarray:
    """Additive white or brown-ish noise at a random signal-to-noise ratio."""
    power = float(np.mean(x**2)) + 1e-12
    noise = np.asarray(rng.standard_normal(x.shape[0]), dtype=np.float32)
    if rng.random() < 0.5:  # body and handling noise is mostly low-frequency
        noise = np.cumsum(noise)
        noise -= np.linspace(noise[0], noise[-1], noise.shape[0], dtype=np.float32)
    noise *= np.sqrt(power / (np.mean(noise**2) + 1e-12) / 10 ** (rng.uniform(*snr_db) / 10))
    return (x + noise).astype(np.float32)


def augment_waveform(
    x: np.ndarray, rng: np.random.Generator, cfg: AugmentationConfig, *, sample_rate: int
) -> np.ndarray:
    """Apply the configured device augmentations in a fixed order."""
    if cfg.time_shift:
        x = np.roll(x, int(rng.integers(0, x.shape[0])))
    if cfg.lowpass_probability and rng.random() < cfg.lowpass_probability:
        x = random_lowpass(x, rng, sample_rate=sample_rate, cutoff_hz=cfg.lowpass_hz)
    if cfg.eq_probability and rng.random() < cfg.eq_probability:
        x = random_eq(x, rng, max_db=cfg.eq_db)
    if cfg.noise_probability and rng.random() < cfg.noise_probability:
        x = random_noise(x, rng, snr_db=cfg.noise_snr_db)
    if cfg.gain_db:
        x = random_gain(x, rng, max_db=cfg.gain_db)
    return x


def mix_batch(
    wave: torch.Tensor,
    target: torch.Tensor,
    cfg: AugmentationConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hydrogen Torch's ``mix_audio``: mix each recording with another of the batch.

    The weight is drawn from Beta(concentration, concentration); the target is the same
    mixture (``Ratio``) or the element-wise maximum of both targets (``Max``). Repeated
    ``mix_iterations`` times, each with probability ``mix_probability``.
    """
    beta = torch.distributions.Beta(cfg.mix_concentration, cfg.mix_concentration)
    for _ in range(cfg.mix_iterations):
        if torch.rand((), generator=generator).item() >= cfg.mix_probability:
            continue
        perm = torch.randperm(wave.shape[0], generator=generator)
        # Beta has no generator argument: draw through the inverse of a seeded uniform.
        u = torch.rand(wave.shape[0], generator=generator).clamp(1e-4, 1 - 1e-4)
        lam = _beta_icdf(beta, u).to(wave.dtype)
        wave = lam[:, None] * wave + (1 - lam[:, None]) * wave[perm]
        if cfg.mix_target == "Ratio":
            target = lam[:, None] * target + (1 - lam[:, None]) * target[perm]
        else:
            target = torch.maximum(target, target[perm])
    return wave, target


def spec_augment(
    spec: torch.Tensor,
    cfg: AugmentationConfig,
    generator: torch.Generator,
    *,
    frames_per_second: float,
) -> torch.Tensor:
    """SpecAugment time and frequency masking (Park et al., 2019) on ``(B, 1, n_mels, frames)``.

    Masked cells take the spectrogram's mean, so a mask looks like "no information" after
    per-recording standardisation rather than like a loud or silent band.
    """
    if not cfg.spec_masks:
        return spec
    b, _, n_mels, n_frames = spec.shape
    out = spec.clone()
    fill = spec.mean(dim=(1, 2, 3))
    max_t = max(1, int(cfg.spec_time_mask_seconds * frames_per_second))
    max_f = max(1, min(cfg.spec_freq_mask_bins, n_mels - 1))
    for _ in range(cfg.spec_masks):
        t_len = torch.randint(0, max_t + 1, (b,), generator=generator)
        t0 = (torch.rand(b, generator=generator) * (n_frames - t_len).clamp(min=1)).long()
        f_len = torch.randint(0, max_f + 1, (b,), generator=generator)
        f0 = (torch.rand(b, generator=generator) * (n_mels - f_len).clamp(min=1)).long()
        t_idx = torch.arange(n_frames)
        f_idx = torch.arange(n_mels)
        t_mask = (t_idx[None] >= t0[:, None]) & (t_idx[None] < (t0 + t_len)[:, None])
        f_mask = (f_idx[None] >= f0[:, None]) & (f_idx[None] < (f0 + f_len)[:, None])
        mask = (t_mask[:, None, :] | f_mask[:, :, None]).to(spec.device)
        out = torch.where(mask[:, None], fill.view(b, 1, 1, 1), out)
    return out


def _beta_icdf(beta: torch.distributions.Beta, u: torch.Tensor) -> torch.Tensor:
    """Inverse CDF of a Beta from a 512-point table (torch has none; mixing needs no more)."""
    grid = torch.linspace(1e-4, 1 - 1e-4, 512)
    cdf = torch.cumsum(beta.log_prob(grid).exp(), 0)
    cdf = cdf / cdf[-1]
    idx = torch.searchsorted(cdf, u).clamp(max=grid.numel() - 1)
    return grid[idx]
