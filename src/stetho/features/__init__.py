"""Model inputs computed from audio: the log-mel front end (and rhythm inputs)."""

from stetho.features.logmel import (
    LOG_EPS,
    LogMel,
    fourier_basis,
    hz_to_mel,
    log_mel,
    mel_band_edges_hz,
    mel_filterbank,
    mel_to_hz,
    normalize_waveform,
)

__all__ = [
    "LOG_EPS",
    "LogMel",
    "fourier_basis",
    "hz_to_mel",
    "log_mel",
    "mel_band_edges_hz",
    "mel_filterbank",
    "mel_to_hz",
    "normalize_waveform",
]
