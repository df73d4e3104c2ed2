"""Synthetic phonocardiograms with known truth, for tests and for tuning on known answers.

Each heart sound is a sum of two damped tone bursts, as the valve closures that make it
(S1: mitral then tricuspid, ~50-80 Hz, ~120 ms; S2: aortic then pulmonary, ~80-150 Hz, ~90 ms;
durations as measured by Schmidt et al. 2010).  The S1-to-S2 interval scales with the cycle
length like electromechanical systole does, ``0.35 s * sqrt(RR / 1 s)`` (a Bazett-type scaling
that matches Weissler et al. 1968's resting regression ``QS2 = 546 - 2.1 HR`` ms at 50-100 bpm).
Optional: beat-to-beat variability, premature beats followed by a compensatory pause, a
crescendo-decrescendo systolic murmur, and white noise at a given signal-to-noise ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal

from stetho.pcg.physiology import systole_interval_s

__all__ = ["S1_DURATION_S", "S2_DURATION_S", "SyntheticPCG", "synthesize_pcg", "systole_interval_s"]

#: Nominal sound durations (s): Schmidt et al. 2010 report 122 ms for S1 and 92 ms for S2.
S1_DURATION_S = 0.12
S2_DURATION_S = 0.09


@dataclass(frozen=True)
class SyntheticPCG:
    """A synthetic recording and its truth; all times are seconds from the start."""

    samples: np.ndarray
    sample_rate: int
    heart_rate_bpm: float
    s1_onsets_s: np.ndarray
    s1_offsets_s: np.ndarray
    s2_onsets_s: np.ndarray
    s2_offsets_s: np.ndarray
    premature_beats: tuple[int, ...]

    @property
    def rr_intervals_s(self) -> np.ndarray:
        """S1-to-S1 intervals (cycles - 1,)."""
        return np.diff(self.s1_onsets_s)


def _add_sound(
    out: np.ndarray,
    onset_s: float,
    *,
    sample_rate: int,
    gain: float,
    frequencies_hz: tuple[float, float],
    delay_s: float,
    decay_s: float,
    second_gain: float,
) -> None:
    """Add (in place) two damped tones, the second ``delay_s`` later, each with a 5 ms attack."""
    attack_s = 0.005
    first = int(np.ceil(onset_s * sample_rate))
    last = min(len(out), first + int(np.ceil((delay_s + 8 * decay_s) * sample_rate)))
    if last <= first:
        return
    t = np.arange(first, last) / sample_rate - onset_s
    for start_s, freq_hz, g in (
        (0.0, frequencies_hz[0], 1.0),
        (delay_s, frequencies_hz[1], second_gain),
    ):
        tau = np.maximum(t - start_s, 0.0)
        ramp = np.where(tau < attack_s, 0.5 - 0.5 * np.cos(np.pi * tau / attack_s), 1.0)
        tone = ramp * np.exp(-tau / decay_s) * np.sin(2 * np.pi * freq_hz * tau)
        out[first:last] += gain * g * tone


def synthesize_pcg(
    heart_rate_bpm: float = 72.0,
    *,
    duration_s: float = 10.0,
    sample_rate: int = 2000,
    variability: float = 0.03,
    respiratory_modulation: float = 0.0,
    amplitude_variability: float = 0.2,
    s2_gain: float = 0.7,
    premature_beats: Sequence[int] = (),
    premature_fraction: float = 0.65,
    murmur_gain: float = 0.0,
    s3_gain: float = 0.0,
    systole_scale: float = 1.0,
    snr_db: float | None = None,
    bursts: int = 0,
    burst_gain: float = 3.0,
    seed: int = 0,
) -> SyntheticPCG:
    """Synthesise a PCG of ``duration_s`` seconds at ``heart_rate_bpm``.

    Parameters
    ----------
    variability:
        Standard deviation of each cycle length relative to the mean (random variability).
    respiratory_modulation:
        Amplitude, relative to the mean, of a 0.25 Hz sinusoidal modulation of the cycle length
        (respiratory sinus arrhythmia), random phase.
    amplitude_variability:
        Standard deviation of the log of each beat's loudness (breathing, chest-piece contact);
        S1 and S2 of a beat share it.
    s2_gain:
        Peak amplitude of S2 relative to S1.
    premature_beats:
        Indices of cycles whose S1 comes early: the interval before it is
        ``premature_fraction`` of the normal one and the interval after it is lengthened so the
        two sum to two normal cycles (a full compensatory pause).
    murmur_gain:
        Peak amplitude, relative to S1, of a crescendo-decrescendo 100-400 Hz noise filling
        systole between S1 and S2 (0 for none).
    s3_gain:
        Amplitude, relative to S1, of a low-pitched (35 Hz) third sound 150 ms after S2 (0 for
        none).  S3 is not part of the truth: a segmenter should not call it S1 or S2.
    systole_scale:
        Factor on the S1-to-S2 interval (1 for :func:`systole_interval_s`): subjects differ,
        and at fast rates systole can outlast diastole (e.g. 1.15 at 140 bpm).
    snr_db:
        Ratio of the heart-sound power to added pink (1/f) noise power, None for no noise; body
        and room noise in stethoscope recordings is concentrated at low frequencies.
    bursts:
        Number of artifact bursts (0.2-0.8 s of low-pass noise, as a knock or a rub), placed at
        random, each ``burst_gain`` times the root-mean-square of the heart sounds.
    seed:
        Seed of the random generator; the same arguments give the same signal.
    """
    if not 20 <= heart_rate_bpm <= 250:
        raise ValueError(f"heart_rate_bpm={heart_rate_bpm}: expected 20-250 bpm")
    if duration_s <= 0:
        raise ValueError(f"duration_s={duration_s}: expected a positive duration")
    if not 0.5 <= systole_scale <= 1.5:
        raise ValueError(f"systole_scale={systole_scale}: expected 0.5-1.5")
    if not 0.3 <= premature_fraction < 1:
        raise ValueError(f"premature_fraction={premature_fraction}: expected 0.3 <= f < 1")
    rng = np.random.default_rng(seed)
    rr_s = 60.0 / heart_rate_bpm
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate

    premature = set(premature_beats)
    onsets: list[float] = []
    onset_s = rng.uniform(0.05, 0.6) * rr_s
    breath_phase = rng.uniform(0, 2 * np.pi)
    beat = 0
    while onset_s < duration_s:
        onsets.append(onset_s)
        breathing = respiratory_modulation * np.sin(2 * np.pi * 0.25 * onset_s + breath_phase)
        step_s = rr_s * (1 + breathing + variability * rng.standard_normal())
        if beat + 1 in premature:
            step_s = premature_fraction * rr_s
        elif beat in premature:
            step_s = (2 - premature_fraction) * rr_s
        onset_s += step_s
        beat += 1
    s1_on = np.asarray(onsets)
    # A premature beat's systole follows the premature (short) preceding cycle.
    preceding = np.array(
        [premature_fraction * rr_s if i in premature else rr_s for i in range(len(onsets))]
    )
    s2_on = s1_on + systole_scale * systole_interval_s(preceding)

    clean = np.zeros(n)
    for a, b in zip(s1_on, s2_on, strict=True):
        beat_gain = float(np.exp(amplitude_variability * rng.standard_normal()))
        _add_sound(
            clean,
            a,
            sample_rate=sample_rate,
            gain=beat_gain * (1.0 + 0.1 * rng.standard_normal()),
            frequencies_hz=(55.0, 75.0),
            delay_s=0.03,
            decay_s=0.025,
            second_gain=0.8,
        )
        _add_sound(
            clean,
            b,
            sample_rate=sample_rate,
            gain=beat_gain * s2_gain,
            frequencies_hz=(110.0, 140.0),
            delay_s=0.025,
            decay_s=0.018,
            second_gain=0.5,
        )
        if s3_gain > 0:
            _add_sound(
                clean,
                b + 0.15,
                sample_rate=sample_rate,
                gain=s3_gain,
                frequencies_hz=(35.0, 35.0),
                delay_s=0.0,
                decay_s=0.02,
                second_gain=0.0,
            )
        if murmur_gain > 0:
            clean += murmur_gain * _murmur(
                t, start_s=a + S1_DURATION_S, stop_s=b, sample_rate=sample_rate, rng=rng
            )
    rms = np.sqrt(np.mean(clean**2))
    for _ in range(bursts):
        length = int(rng.uniform(0.2, 0.8) * sample_rate)
        start = int(rng.integers(0, max(1, n - length)))
        burst = signal.lfilter([1.0], [1.0, -0.9], rng.standard_normal(length))
        stop = min(n, start + length)
        clean[start:stop] += burst_gain * rms * burst[: stop - start] / np.std(burst)
    if snr_db is not None:
        noise = _pink_noise(n, rng)
        scale = rms / np.std(noise) / 10 ** (snr_db / 20)
        clean = clean + scale * noise
    samples = (clean / (np.max(np.abs(clean)) * 1.25)).astype(np.float32)

    keep1 = s1_on + S1_DURATION_S <= duration_s
    keep2 = s2_on + S2_DURATION_S <= duration_s
    return SyntheticPCG(
        samples=samples,
        sample_rate=sample_rate,
        heart_rate_bpm=float(heart_rate_bpm),
        s1_onsets_s=s1_on[keep1],
        s1_offsets_s=s1_on[keep1] + S1_DURATION_S,
        s2_onsets_s=s2_on[keep2],
        s2_offsets_s=s2_on[keep2] + S2_DURATION_S,
        premature_beats=tuple(sorted(i for i in premature if i < len(onsets))),
    )


def _pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a 1/f power spectrum, (n,), unit standard deviation."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n)
    return noise / np.std(noise)


def _murmur(
    t: np.ndarray, *, start_s: float, stop_s: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Band-limited noise with a diamond (crescendo-decrescendo) envelope between two times."""
    inside = (t >= start_s) & (t < stop_s)
    out = np.zeros_like(t)
    if inside.sum() < 8:
        return out
    high_hz = min(400.0, 0.45 * sample_rate)
    sos = signal.butter(4, [100.0, high_hz], btype="bandpass", fs=sample_rate, output="sos")
    noise = signal.sosfilt(sos, rng.standard_normal(int(inside.sum())))
    noise /= np.max(np.abs(noise))
    phase = (t[inside] - start_s) / (stop_s - start_s)
    out[inside] = noise * (1 - np.abs(2 * phase - 1))
    return out
