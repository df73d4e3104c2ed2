"""Simulated recorders: a random "device" transform of a heart-sound waveform.

A stethoscope is a band-pass filter with its own slopes and resonances, a gain, a noise floor
(electronics: white; body and handling: pink; mains: hum), an ADC rate and sometimes a
saturating amplifier. :func:`device_view` draws one such device from a
``numpy.random.Generator`` and plays the excerpt through it. Two independent draws on the same
excerpt (:func:`view_pair`) are a positive pair for the self-supervised objective: the heart is
the same, only the recorder differs, so what the embeddings must agree on is the heart.

Parameter ranges (defaults of :class:`DeviceViewConfig`):

=====================  =====================================================================
high-pass              Butterworth, cut-off 20-80 Hz, order 1-4 (6-24 dB/octave)
low-pass               Butterworth, cut-off 150-1000 Hz (capped at 0.45 x sample rate),
                       order 1-6; high- and low-pass applied in random order
EQ                     tilt of +-6 dB across the band (log frequency) plus 0-2 peaks/notches
                       of +-6 dB, 0.3-1.5 octaves wide
gain                   +-12 dB
noise                  with probability 0.8: white, pink (1/f) or mains hum (50 or 60 Hz and
                       harmonics) at an SNR of 5-40 dB
resampling             with probability 0.5: down to 1-4 kHz (below the signal's rate) and back
clipping               with probability 0.2: hard clip at 50-95 % of the peak
=====================  =====================================================================

Every view has the input's length and rate and is ``float32``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.signal import butter, sosfiltfilt

from stetho.data.audio import resample

#: Mains frequencies of the world's grids (Hz).
MAINS_HZ = (50.0, 60.0)
NOISE_KINDS = ("white", "pink", "hum")


@dataclass(frozen=True)
class DeviceViewConfig:
    """Ranges the simulated recorder is drawn from; ``(low, high)`` pairs are uniform draws."""

    highpass_hz: tuple[float, float] = (20.0, 80.0)
    highpass_order: tuple[int, int] = (1, 4)
    lowpass_hz: tuple[float, float] = (150.0, 1000.0)
    lowpass_order: tuple[int, int] = (1, 6)
    #: Largest tilt (dB) between the band's lowest and highest frequency.
    eq_tilt_db: float = 6.0
    eq_peaks: tuple[int, int] = (0, 2)
    eq_peak_db: float = 6.0
    eq_peak_octaves: tuple[float, float] = (0.3, 1.5)
    gain_db: float = 12.0
    noise_probability: float = 0.8
    noise_snr_db: tuple[float, float] = (5.0, 40.0)
    resample_probability: float = 0.5
    resample_hz: tuple[int, int] = (1000, 4000)
    clip_probability: float = 0.2
    clip_fraction: tuple[float, float] = (0.5, 0.95)

    def __post_init__(self) -> None:
        for name in ("highpass_hz", "lowpass_hz", "noise_snr_db", "clip_fraction", "resample_hz"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"DeviceViewConfig.{name}={(low, high)}: expected 0 < low <= high")
        for name in ("highpass_order", "lowpass_order"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(
                    f"DeviceViewConfig.{name}={(low, high)}: expected 1 <= low <= high"
                )
        for name in ("noise_probability", "resample_probability", "clip_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"DeviceViewConfig.{name}={getattr(self, name)}: expected 0-1")
        if self.clip_fraction[1] > 1:
            raise ValueError(f"DeviceViewConfig.clip_fraction={self.clip_fraction}: at most 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _butter(x: np.ndarray, *, cutoff_hz: float, order: int, btype: str, sr: int) -> np.ndarray:
    sos = butter(order, cutoff_hz, btype=btype, fs=sr, output="sos")
    # Zero-phase, so the beat stays where it was: a positive pair must share its timing.
    return np.asarray(sosfiltfilt(sos, x), dtype=np.float64)


def band_limit(
    x: np.ndarray, rng: np.random.Generator, sample_rate: int, cfg: DeviceViewConfig
) -> np.ndarray:
    """High-pass and low-pass at random cut-offs and orders, in random order."""
    nyquist_cap = 0.45 * sample_rate
    hp = min(rng.uniform(*cfg.highpass_hz), 0.5 * nyquist_cap)
    lp = min(rng.uniform(*cfg.lowpass_hz), nyquist_cap)
    lp = max(lp, 2.0 * hp)
    stages = [
        ("highpass", hp, int(rng.integers(cfg.highpass_order[0], cfg.highpass_order[1] + 1))),
        ("lowpass", lp, int(rng.integers(cfg.lowpass_order[0], cfg.lowpass_order[1] + 1))),
    ]
    if rng.random() < 0.5:
        stages.reverse()
    y = np.asarray(x, dtype=np.float64)
    for btype, cutoff, order in stages:
        if btype == "lowpass" and cutoff >= nyquist_cap:
            continue  # at the rate's limit there is nothing left to remove
        y = _butter(y, cutoff_hz=cutoff, order=order, btype=btype, sr=sample_rate)
    return y


def random_eq(
    x: np.ndarray, rng: np.random.Generator, sample_rate: int, cfg: DeviceViewConfig
) -> np.ndarray:
    """A tilt across log frequency plus a few Gaussian peaks/notches (in octaves)."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), d=1.0 / sample_rate)
    octaves = np.log2(np.maximum(freqs, 10.0) / 10.0)  # 0 at 10 Hz
    span = max(float(octaves[-1]), 1e-6)
    gain_db = rng.uniform(-cfg.eq_tilt_db, cfg.eq_tilt_db) * (octaves / span - 0.5)
    for _ in range(int(rng.integers(cfg.eq_peaks[0], cfg.eq_peaks[1] + 1))):
        centre = rng.uniform(np.log2(20 / 10), span)
        width = rng.uniform(*cfg.eq_peak_octaves) / 2.355  # FWHM -> sigma
        gain_db += rng.uniform(-cfg.eq_peak_db, cfg.eq_peak_db) * np.exp(
            -0.5 * ((octaves - centre) / width) ** 2
        )
    return np.fft.irfft(spec * 10 ** (gain_db / 20), n=len(x))


def noise(kind: str, n: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Unit-power noise of ``kind`` (``white``, ``pink`` or ``hum``), ``n`` samples."""
    if kind == "white":
        out = rng.standard_normal(n)
    elif kind == "pink":
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, d=1.0 / sample_rate)
        spec /= np.sqrt(np.maximum(f, f[1] if n > 1 else 1.0))
        spec[0] = 0.0
        out = np.fft.irfft(spec, n=n)
    elif kind == "hum":
        mains = MAINS_HZ[int(rng.integers(len(MAINS_HZ)))]
        t = np.arange(n) / sample_rate
        out = np.zeros(n, dtype=np.float64)
        for harmonic in range(1, 6):
            freq = mains * harmonic
            if freq >= 0.5 * sample_rate:
                break
            phase = rng.uniform(0, 2 * np.pi)
            out += rng.uniform(0.1, 1.0) / harmonic * np.sin(2 * np.pi * freq * t + phase)
    else:
        raise ValueError(f"noise kind {kind!r}: expected one of {', '.join(NOISE_KINDS)}")
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def device_view(
    x: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    config: DeviceViewConfig | None = None,
) -> np.ndarray:
    """``x`` (1-D, at ``sample_rate`` Hz) as heard through one random recorder (module doc)."""
    cfg = config or DeviceViewConfig()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or len(x) < 16:
        raise ValueError(f"device_view: expected a 1-D signal of >= 16 samples, got {x.shape}")
    y = band_limit(x, rng, sample_rate, cfg)
    y = random_eq(y, rng, sample_rate, cfg)
    if rng.random() < cfg.resample_probability:
        low = min(cfg.resample_hz[0], sample_rate)
        rate = int(rng.integers(low, min(cfg.resample_hz[1], sample_rate) + 1))
        if rate < sample_rate:
            down = resample(y.astype(np.float32), sample_rate, rate)
            y = resample(down, rate, sample_rate).astype(np.float64)
            y = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]
    if rng.random() < cfg.noise_probability:
        kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
        power = float(np.mean(y**2)) + 1e-12
        snr_db = rng.uniform(*cfg.noise_snr_db)
        y = y + noise(kind, len(y), rng, sample_rate) * np.sqrt(power / 10 ** (snr_db / 10))
    if rng.random() < cfg.clip_probability:
        limit = rng.uniform(*cfg.clip_fraction) * (float(np.max(np.abs(y))) + 1e-12)
        y = np.clip(y, -limit, limit)
    y = y * 10 ** (rng.uniform(-cfg.gain_db, cfg.gain_db) / 20)
    return y.astype(np.float32)


def view_pair(
    x: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    config: DeviceViewConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Two independent device views of one excerpt: a positive pair."""
    return device_view(x, sample_rate, rng, config), device_view(x, sample_rate, rng, config)
