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
    noise = rng.standard_normal(x.shape[0]).astype(np.float32)
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


def _beta_icdf(beta: torch.distributions.Beta, u: torch.Tensor) -> torch.Tensor:
    """Inverse CDF of a Beta from a 512-point table (torch has none; mixing needs no more)."""
    grid = torch.linspace(1e-4, 1 - 1e-4, 512)
    cdf = torch.cumsum(beta.log_prob(grid).exp(), 0)
    cdf = cdf / cdf[-1]
    idx = torch.searchsorted(cdf, u).clamp(max=grid.numel() - 1)
    return grid[idx]
