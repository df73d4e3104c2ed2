"""Shared fixtures: the mission dataset (skipped when absent) and synthetic audio files."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

#: The session-scoped trained runs (tiny_run, sharp_run, mission_run, ...) are fixtures of every
#: test module: one training per session, shared.
pytest_plugins = ("fixtures_runs",)

#: Headless Chromium for the browser tests: Debian's package, or STETHO_CHROMIUM.
CHROMIUM = Path(
    os.environ.get("STETHO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
)
#: As root, in a sandbox without network: no sandbox, no GPU, no background connections.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: The checkout, and the folder it sits in (``shared/`` with the data lies beside it).
REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO.parent
#: The mission dataset sits beside the checkout: <repo>/../shared/data/heartbeat-sounds.
MISSION_DIR = WORKSPACE / "shared/data/heartbeat-sounds"

MakeWav = Callable[..., Path]


@pytest.fixture(scope="session")
def mission_dir() -> Path:
    """The PASCAL heartbeat-sounds folder (read-only); the test is skipped when it is absent."""
    if not (MISSION_DIR / "set_a.csv").is_file():
        pytest.skip(f"mission dataset not found at {MISSION_DIR}")
    return MISSION_DIR


def write_tone(
    path: Path,
    seconds: float,
    sr: int,
    *,
    freq: float = 100.0,
    amplitude: float = 0.5,
    channels: int = 1,
    subtype: str | None = None,
) -> Path:
    """Write a sine of ``freq`` Hz lasting ``seconds`` at ``sr`` Hz; returns ``path``."""
    t = np.arange(round(seconds * sr)) / sr
    tone = amplitude * np.sin(2 * np.pi * freq * t)
    data = np.repeat(tone[:, None], channels, axis=1) if channels > 1 else tone
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, sr, subtype=subtype)
    return path


@pytest.fixture
def make_wav() -> MakeWav:
    """``make_wav(path, seconds, sr, freq=100.0, amplitude=0.5, channels=1, subtype=None)``
    writes a sine tone (format from the suffix) and returns the path."""
    return write_tone


#: Broken files of the zoo: name -> (AudioError subclass name, words the reason contains).
BROKEN_AUDIO = {
    "empty.wav": ("EmptyFileError", "empty"),
    "truncated_header.wav": ("DecodeError", "cannot decode"),
    "text.wav": ("DecodeError", "cannot decode"),
    "nan.wav": ("NonFiniteError", "NaN"),
    "silent.wav": ("SilentError", "silence"),
    "short.wav": ("TooShortError", "too short"),
}
#: Odd but valid files of the zoo: name -> (sample rate in Hz, channels).
ODD_AUDIO = {
    "stereo.wav": (4000, 2),
    "pcm24.wav": (4000, 1),
    "unsigned8.wav": (8000, 1),
    "hires96k.wav": (96000, 1),
    "tone.flac": (4000, 1),
    "tone.ogg": (22050, 1),
    "tone.mp3": (22050, 1),
    "tone.aiff": (4000, 1),
}


@pytest.fixture
def audio_zoo(tmp_path: Path) -> Path:
    """A folder of broken (:data:`BROKEN_AUDIO`) and odd-but-valid (:data:`ODD_AUDIO`) files."""
    root = tmp_path / "zoo"
    root.mkdir()
    (root / "empty.wav").write_bytes(b"")
    valid = write_tone(tmp_path / "valid.wav", 1.0, 4000)
    (root / "truncated_header.wav").write_bytes(valid.read_bytes()[:30])
    (root / "text.wav").write_text("this is not audio, just a text file with a .wav name\n")
    nan = np.full(4000, 0.1, dtype=np.float32)
    nan[100:110] = np.nan
    sf.write(root / "nan.wav", nan, 4000, subtype="FLOAT")
    sf.write(root / "silent.wav", np.zeros(8000, dtype=np.int16), 4000, subtype="PCM_16")
    write_tone(root / "short.wav", 0.2, 4000)
    subtypes = {"pcm24.wav": "PCM_24", "unsigned8.wav": "PCM_U8"}
    for name, (sr, channels) in ODD_AUDIO.items():
        write_tone(root / name, 1.5, sr, channels=channels, subtype=subtypes.get(name))
    return root
