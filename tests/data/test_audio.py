"""stetho.data.audio: decoding, validation, resampling and chunking on synthetic signals."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import BROKEN_AUDIO, ODD_AUDIO, MakeWav

from stetho.data import audio as A


def test_audio_error_names_file_and_reason() -> None:
    err = A.SilentError("a/b.wav", "digital silence")
    assert str(err) == "a/b.wav: digital silence"
    assert (err.path, err.reason) == ("a/b.wav", "digital silence")
    assert isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is A.SilentError and str(again) == str(err)


@pytest.mark.parametrize("name", sorted(BROKEN_AUDIO))
def test_broken_files_raise_their_specific_error(audio_zoo: Path, name: str) -> None:
    kind, words = BROKEN_AUDIO[name]
    with pytest.raises(getattr(A, kind)) as info:
        A.read_audio(audio_zoo / name)
    assert info.value.path == str(audio_zoo / name)
    assert words in info.value.reason


@pytest.mark.parametrize("name", sorted(ODD_AUDIO))
def test_odd_but_valid_files_load_as_mono_float32(audio_zoo: Path, name: str) -> None:
    sr, channels = ODD_AUDIO[name]
    audio = A.read_audio(audio_zoo / name)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert (audio.sample_rate, audio.original_sample_rate, audio.channels) == (sr, sr, channels)
    assert audio.duration_s == pytest.approx(1.5, abs=0.06)
    # The written tone has amplitude 0.5 whatever the bit depth or codec.
    assert np.abs(audio.samples).max() == pytest.approx(0.5, abs=0.03)


def test_unsigned_8bit_is_centred_on_zero(audio_zoo: Path) -> None:
    audio = A.read_audio(audio_zoo / "unsigned8.wav")
    assert abs(float(audio.samples.mean())) < 0.01


def test_stereo_is_mixed_by_channel_mean(tmp_path: Path) -> None:
    left = np.full(4000, 0.5, dtype=np.float32)
    right = np.linspace(-0.2, 0.2, 4000, dtype=np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 4000, subtype="FLOAT")
    audio = A.read_audio(tmp_path / "s.wav")
    np.testing.assert_allclose(audio.samples, (left + right) / 2, atol=1e-7)


def test_resampling_keeps_duration_and_tone(make_wav: MakeWav, tmp_path: Path) -> None:
    path = make_wav(tmp_path / "t.wav", 2.0, 44100, freq=100.0)
    audio = A.read_audio(path, sample_rate=2000)
    assert (audio.sample_rate, audio.original_sample_rate) == (2000, 44100)
    assert len(audio.samples) == 4000 and audio.duration_s == pytest.approx(2.0)
    spectrum = np.abs(np.fft.rfft(audio.samples))
    assert np.argmax(spectrum) * 2000 / len(audio.samples) == pytest.approx(100.0, abs=1.0)


def test_bytes_and_file_objects_are_read_and_named(make_wav: MakeWav, tmp_path: Path) -> None:
    data = make_wav(tmp_path / "t.wav", 1.0, 4000).read_bytes()
    from_bytes = A.read_audio(data, name="upload.wav")
    from_stream = A.read_audio(io.BytesIO(data))
    assert from_bytes.path == "upload.wav" and len(from_bytes.samples) == 4000
    np.testing.assert_array_equal(from_bytes.samples, from_stream.samples)
    with pytest.raises(A.EmptyFileError, match=r"^upload\.wav: empty"):
        A.read_audio(b"", name="upload.wav")
    with pytest.raises(A.DecodeError, match=r"^<bytes>: cannot decode"):
        A.read_audio(b"not audio at all")


def test_missing_file_and_duration_limits(make_wav: MakeWav, tmp_path: Path) -> None:
    with pytest.raises(A.MissingFileError, match="file not found"):
        A.read_audio(tmp_path / "nope.wav")
    path = make_wav(tmp_path / "t.wav", 3.0, 4000)
    with pytest.raises(A.TooLongError, match=r"too long: 3 s, maximum is 2 s"):
        A.read_audio(path, max_duration_s=2.0)
    with pytest.raises(A.TooShortError, match=r"too short: 3 s, minimum is 4 s"):
        A.read_audio(path, min_duration_s=4.0)
    assert A.read_audio(path, min_duration_s=0.0, max_duration_s=None).duration_s == 3.0


def test_header_only_wav_is_empty(tmp_path: Path) -> None:
    sf.write(tmp_path / "h.wav", np.zeros(0, dtype=np.int16), 4000)
    with pytest.raises(A.EmptyFileError, match="no audio samples"):
        A.read_audio(tmp_path / "h.wav")


def test_audio_info_reads_header(make_wav: MakeWav, tmp_path: Path) -> None:
    path = make_wav(tmp_path / "t.wav", 1.25, 4000, channels=2, subtype="PCM_24")
    info = A.audio_info(path)
    assert info == {
        "sample_rate": 4000,
        "channels": 2,
        "frames": 5000,
        "duration_s": 1.25,
        "subtype": "PCM_24",
    }
    (tmp_path / "x.wav").write_text("hello")
    with pytest.raises(A.DecodeError, match="x.wav: cannot decode"):
        A.audio_info(tmp_path / "x.wav")


def test_levels() -> None:
    assert A.peak_dbfs(np.array([0.5, -1.0])) == pytest.approx(0.0)
    assert A.peak_dbfs(np.zeros(4)) == float("-inf")
    sine = np.sin(2 * np.pi * np.arange(4000) / 40)
    assert A.rms_dbfs(sine) == pytest.approx(-3.01, abs=0.01)


def test_to_mono_and_resample_validate_input() -> None:
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(A.to_mono(x), [0.5, 2.5, 4.5])
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        A.to_mono(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="orig_sr=0"):
        A.resample(np.zeros(10), 0, 100)
    assert len(A.resample(np.zeros(4000), 4000, 2000)) == 2000


@pytest.mark.parametrize(
    ("n", "chunk", "hop", "expected_chunks"),
    [
        (10, 4, None, 3),  # remainder 2 = half a chunk: kept, padded
        (9, 4, None, 2),  # remainder 1 < half: dropped
        (11, 4, None, 3),  # remainder 3: kept
        (8, 4, None, 2),  # exact
        (3, 4, None, 1),  # shorter than a chunk: one wrapped chunk
        (10, 4, 2, 4),  # overlap: starts 0,2,4,6 cover all 10 samples
        (11, 4, 2, 5),  # overlap: 1 uncovered sample, partial chunk x[8:] has 3 samples
    ],
)
def test_chunk_counts(n: int, chunk: int, hop: int | None, expected_chunks: int) -> None:
    out = A.chunk(np.arange(n), chunk_samples=chunk, hop_samples=hop)
    assert out.shape == (expected_chunks, chunk)


def test_chunk_content_wraps() -> None:
    out = A.chunk(np.arange(10), chunk_samples=4)
    np.testing.assert_array_equal(out, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 8, 9]])
    np.testing.assert_array_equal(A.chunk(np.arange(3), chunk_samples=7), [[0, 1, 2, 0, 1, 2, 0]])
    assert A.chunk(np.arange(3), chunk_samples=7, pad=False).shape == (0, 7)
    assert A.chunk(np.arange(10), chunk_samples=4, pad=False).shape == (2, 4)
    with pytest.raises(ValueError, match="hop_samples=0"):
        A.chunk(np.arange(10), chunk_samples=4, hop_samples=0)
    with pytest.raises(ValueError, match="1-D"):
        A.chunk(np.zeros((2, 10)), chunk_samples=4)


def test_pad_or_crop() -> None:
    x = np.arange(10)
    np.testing.assert_array_equal(A.pad_or_crop(x, 4), [3, 4, 5, 6])
    np.testing.assert_array_equal(A.pad_or_crop(x[:3], 7), [0, 1, 2, 0, 1, 2, 0])
    starts = {int(A.pad_or_crop(x, 4, rng=np.random.default_rng(s))[0]) for s in range(50)}
    assert starts == set(range(7))
    first = A.pad_or_crop(x, 4, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(first, A.pad_or_crop(x, 4, rng=np.random.default_rng(3)))


def test_scan_audio_never_stops(audio_zoo: Path) -> None:
    files = A.iter_audio_files(audio_zoo)
    good, bad = A.scan_audio(files, min_duration_s=0.5, max_duration_s=600.0, progress=False)
    assert sorted(Path(g["path"]).name for g in good) == sorted(ODD_AUDIO)
    assert {Path(e.path).name: type(e).__name__ for e in bad} == {
        name: kind for name, (kind, _) in BROKEN_AUDIO.items()
    }


def test_iter_audio_files(tmp_path: Path, make_wav: MakeWav) -> None:
    make_wav(tmp_path / "b" / "x.WAV", 0.1, 4000)
    make_wav(tmp_path / "a.flac", 0.1, 4000)
    make_wav(tmp_path / ".hidden" / "h.wav", 0.1, 4000)
    make_wav(tmp_path / ".dot.wav", 0.1, 4000)
    (tmp_path / "notes.txt").write_text("x")
    assert A.iter_audio_files(tmp_path) == [tmp_path / "a.flac", tmp_path / "b" / "x.WAV"]
    assert A.iter_audio_files(tmp_path / "a.flac") == [tmp_path / "a.flac"]
    with pytest.raises(FileNotFoundError):
        A.iter_audio_files(tmp_path / "missing")
