"""Waveform -> log-mel spectrogram, as a pure function and a thin torch module.

One feature path serves training, ``predict``, explanations and the exported ONNX graph. The
STFT is written as a strided convolution with a fixed Fourier basis rather than ``torch.stft``:
it exports to ONNX with the default opset, runs in onnxruntime without complex tensors, and
gives the same numbers on CPU and GPU. The mel filterbank comes from librosa's definition
(Slaney scale and area normalisation), computed once in ``__init__`` and stored as a buffer.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stetho.config import ResolvedAudioConfig

#: Floor added before the log: -100 dB below full scale, well under any stethoscope's noise.
LOG_EPS = 1e-10


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (linear below 1 kHz, logarithmic above), as librosa's default."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(
        f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels
    )


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * m
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)


def mel_filterbank(
    *, sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float
) -> np.ndarray:
    """Triangular mel filters, shape ``(n_mels, n_fft // 2 + 1)``, Slaney-normalised.

    Matches ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)`` (checked in the tests).
    """
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(
            f"mel filterbank needs 0 <= f_min < f_max <= sample_rate/2; got f_min={f_min}, "
            f"f_max={f_max}, sample_rate={sample_rate}"
        )
    n_freqs = n_fft // 2 + 1
    fft_freqs = np.linspace(0, sample_rate / 2, n_freqs)
    mel_pts = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    fdiff = np.diff(mel_pts)
    ramps = mel_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_pts[2 : n_mels + 2] - mel_pts[:n_mels])
    return (weights * enorm[:, None]).astype(np.float32)


def mel_band_edges_hz(*, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Centre frequency (Hz) of each mel band, for axis labels and attribution maps."""
    return mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))[1:-1]


def fourier_basis(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed cosine and sine kernels, each ``(n_fft // 2 + 1, n_fft)``."""
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann, as torch/librosa
    angle = 2 * np.pi * k * n / n_fft
    return (np.cos(angle) * window).astype(np.float32), (-np.sin(angle) * window).astype(np.float32)


def log_mel(
    wave: torch.Tensor,
    *,
    cos_basis: torch.Tensor,
    sin_basis: torch.Tensor,
    fbank: torch.Tensor,
    hop: int,
    normalization: str = "No",
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-mel power spectrogram in dB.

    Args:
        wave: ``(batch, samples)`` float waveform.
        cos_basis, sin_basis: ``(n_freqs, n_fft)`` windowed Fourier kernels.
        fbank: ``(n_mels, n_freqs)`` mel filterbank.
        hop: hop between frames, samples.
        normalization: ``No``; ``Recording`` (zero mean, unit variance per recording);
            ``Global`` (subtract ``mean`` and divide by ``std``, scalars from training data).

    Returns:
        ``(batch, 1, n_mels, frames)``; frames = ``1 + samples // hop`` (centred, reflect-padded
        by ``n_fft // 2`` as ``torch.stft(center=True)``).
    """
    n_fft = cos_basis.shape[-1]
    x = wave.unsqueeze(1)
    pad = n_fft // 2
    # Reflect padding needs more samples than the pad; very short inputs are zero-padded.
    mode = "reflect" if wave.shape[-1] > pad else "constant"
    x = F.pad(x, (pad, pad), mode=mode)
    kernels = torch.cat([cos_basis, sin_basis], dim=0).unsqueeze(1)
    spec = F.conv1d(x, kernels, stride=hop)
    n_freqs = cos_basis.shape[0]
    power = spec[:, :n_freqs] ** 2 + spec[:, n_freqs:] ** 2
    mel = torch.matmul(fbank, power)
    db = 10.0 * torch.log10(mel + LOG_EPS)
    if normalization == "Recording":
        m = db.mean(dim=(1, 2), keepdim=True)
        s = db.std(dim=(1, 2), keepdim=True)
        db = (db - m) / (s + 1e-5)
    elif normalization == "Global":
        if mean is None or std is None:
            raise ValueError("normalization='Global' needs mean and std from the training data")
        db = (db - mean) / (std + 1e-5)
    elif normalization != "No":
        raise ValueError(f"normalization={normalization!r}: expected 'No', 'Recording' or 'Global'")
    return db.unsqueeze(1)


def normalize_waveform(wave: torch.Tensor, mode: str) -> torch.Tensor:
    """Scale each recording to unit peak or unit RMS: removes the recorder's gain."""
    if mode == "No":
        return wave
    if mode == "Peak":
        scale = wave.abs().amax(dim=-1, keepdim=True)
    elif mode == "RMS":
        scale = wave.pow(2).mean(dim=-1, keepdim=True).sqrt() * 10.0  # RMS at -20 dBFS
    else:
        raise ValueError(f"waveform_normalization={mode!r}: expected 'No', 'Peak' or 'RMS'")
    return wave / (scale + 1e-8)


class LogMel(nn.Module):
    """``(batch, samples)`` waveform at ``sample_rate`` -> ``(batch, 1, n_mels, frames)`` dB.

    Holds the Fourier kernels and mel filterbank as buffers, so they follow ``.to(device)``,
    sit in the ``state_dict`` and are traced into the ONNX graph.
    """

    cos_basis: torch.Tensor
    sin_basis: torch.Tensor
    fbank: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        *,
        sample_rate: int,
        n_fft: int,
        hop: int,
        n_mels: int,
        f_min: float,
        f_max: float,
        normalization: str = "Recording",
        waveform_normalization: str = "RMS",
    ) -> None:
        super().__init__()
        if hop <= 0 or n_fft <= 0:
            raise ValueError(f"hop={hop} and n_fft={n_fft} must be positive sample counts")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop = hop
        self.n_mels = n_mels
        self.f_min = f_min
        self.f_max = f_max
        self.normalization = normalization
        self.waveform_normalization = waveform_normalization
        cos_b, sin_b = fourier_basis(n_fft)
        fb = mel_filterbank(
            sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, f_min=f_min, f_max=f_max
        )
        self.register_buffer("cos_basis", torch.from_numpy(cos_b))
        self.register_buffer("sin_basis", torch.from_numpy(sin_b))
        self.register_buffer("fbank", torch.from_numpy(fb))
        # Global statistics, filled from the training folds when normalization == 'Global'.
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    @classmethod
    def from_config(cls, audio: ResolvedAudioConfig) -> LogMel:
        """Build from a resolved audio config (no ``Auto`` left)."""
        return cls(
            sample_rate=audio.sample_rate,
            n_fft=audio.stft_window_size,
            hop=audio.hop_size,
            n_mels=audio.mel_frequency_bins,
            f_min=audio.minimum_frequency,
            f_max=audio.maximum_frequency,
            normalization=audio.spectrogram_normalization,
            waveform_normalization=audio.waveform_normalization,
        )

    def frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop

    def band_centres_hz(self) -> np.ndarray:
        return mel_band_edges_hz(n_mels=self.n_mels, f_min=self.f_min, f_max=self.f_max)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        wave = normalize_waveform(wave, self.waveform_normalization)
        return log_mel(
            wave,
            cos_basis=self.cos_basis,
            sin_basis=self.sin_basis,
            fbank=self.fbank,
            hop=self.hop,
            normalization=self.normalization,
            mean=self.mean,
            std=self.std,
        )
