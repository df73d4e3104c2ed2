"""Audio in the report: a recording as a ``data:audio/wav`` URI every browser plays."""

from __future__ import annotations

import base64
import io

import numpy as np
import soundfile as sf

from stetho.data.audio import resample

AUDIO_RATE_HZ = 8000
MAX_AUDIO_S = 30.0


def wav_data_uri(
    wave: np.ndarray, sample_rate: int, *, max_s: float = MAX_AUDIO_S
) -> tuple[str, float]:
    """``(samples,)`` float waveform -> ``data:audio/wav`` URI and the seconds embedded.

    The clip is cut to ``max_s``, resampled to :data:`AUDIO_RATE_HZ` when slower (browsers do
    not play 2 kHz audio), peak-normalised to -1 dBFS so quiet recordings are audible, and
    written as 16-bit PCM WAV.
    """
    x = np.asarray(wave, dtype=np.float32)[: int(max_s * sample_rate)]
    rate = sample_rate
    if rate < AUDIO_RATE_HZ:
        x, rate = resample(x, sample_rate, AUDIO_RATE_HZ), AUDIO_RATE_HZ
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0:
        x = x * (0.89 / peak)
    buf = io.BytesIO()
    sf.write(buf, x, rate, subtype="PCM_16", format="WAV")
    uri = "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return uri, len(x) / rate
