import librosa
import numpy as np
import pytest
import torch

from stetho.features import LogMel, mel_filterbank


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "fmin", "fmax"),
    [(2000, 256, 64, 25.0, 1000.0), (4000, 2048, 128, 50.0, 2000.0), (16000, 512, 40, 0.0, 8000.0)],
)
def test_mel_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(sample_rate=sr, n_fft=n_fft, n_mels=n_mels, f_min=fmin, f_max=fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)


def _frontend(norm="No", wnorm="No"):
    return LogMel(
        sample_rate=2000,
        n_fft=256,
        hop=32,
        n_mels=64,
        f_min=25,
        f_max=1000,
        normalization=norm,
        waveform_normalization=wnorm,
    )


def test_log_mel_matches_librosa_power_melspectrogram():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000).astype(np.float32) * 0.1
    ours = _frontend()(torch.from_numpy(x)[None])[0, 0].numpy()
    ref = librosa.feature.melspectrogram(
        y=x,
        sr=2000,
        n_fft=256,
        hop_length=32,
        n_mels=64,
        fmin=25,
        fmax=1000,
        power=2.0,
        center=True,
        pad_mode="reflect",
    )
    ref_db = 10 * np.log10(ref + 1e-10)
    assert ours.shape == ref_db.shape
    np.testing.assert_allclose(ours, ref_db, atol=1e-2)


def test_sine_lights_the_band_that_contains_it():
    fe = _frontend()
    t = np.arange(4000) / 2000
    spec = fe(torch.from_numpy(np.sin(2 * np.pi * 100 * t).astype(np.float32))[None])[0, 0]
    peak_band = int(spec.mean(dim=1).argmax())
    centres = fe.band_centres_hz()
    assert abs(centres[peak_band] - 100) < 20


def test_batch_equals_items():
    fe = _frontend("Recording", "RMS")
    x = torch.randn(3, 3000)
    batch = fe(x)
    items = torch.cat([fe(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, items, rtol=1e-4, atol=1e-4)


def test_gain_does_not_change_normalised_features():
    fe = _frontend("Recording", "RMS")
    x = torch.randn(1, 3000)
    torch.testing.assert_close(fe(x), fe(x * 7.3), rtol=1e-3, atol=1e-3)


def test_bad_frequency_range_is_refused():
    with pytest.raises(ValueError, match="f_max"):
        mel_filterbank(sample_rate=2000, n_fft=256, n_mels=10, f_min=100, f_max=1500)
