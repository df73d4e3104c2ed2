"""The MLP emission model of the default HSMM: file format, fitting, decoding."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from stetho.pcg import analyze
from stetho.pcg.analysis import recording_envelopes
from stetho.pcg.envelopes import FEATURE_RATE_HZ
from stetho.pcg.lr_hsmm import decode, frame_features
from stetho.pcg.mlp_emissions import (
    MLP_CONTEXT_FRAMES,
    MLPEmissionModel,
    default_mlp_emission_model,
    fit_mlp_emissions,
)
from stetho.pcg.segmentation import DIASTOLE, S1, S2, SYSTOLE
from stetho.pcg.synthetic import SyntheticPCG, synthesize_pcg


def true_states(s: SyntheticPCG, n_frames: int, hz: float) -> np.ndarray:
    """The synthetic truth per frame centre: S1, systole, S2, diastole."""
    t = np.arange(n_frames) / hz
    states = np.full(n_frames, -1)
    # Complete cycles only: an S1, its S2 and the next S1 all inside the recording.
    n = min(len(s.s1_onsets_s) - 1, len(s.s2_onsets_s), len(s.s2_offsets_s))
    for on, off, on2, off2, nxt in zip(
        s.s1_onsets_s[:n],
        s.s1_offsets_s[:n],
        s.s2_onsets_s[:n],
        s.s2_offsets_s[:n],
        s.s1_onsets_s[1 : n + 1],
        strict=True,
    ):
        states[(t >= on) & (t < off)] = S1
        states[(t >= off) & (t < on2)] = SYSTOLE
        states[(t >= on2) & (t < off2)] = S2
        states[(t >= off2) & (t < nxt)] = DIASTOLE
    return states


def test_shipped_model_round_trips_without_pickle(tmp_path: Path) -> None:
    model = default_mlp_emission_model()
    assert model.context == MLP_CONTEXT_FRAMES
    path = tmp_path / "m.npz"
    model.save(path)
    # Every member is a plain numeric array: nothing a loader would have to unpickle.
    with np.load(path, allow_pickle=False) as f:
        assert all(f[name].dtype != object for name in f.files)
    with zipfile.ZipFile(path) as z:
        assert all(name.endswith(".npy") for name in z.namelist())
    again = MLPEmissionModel.load(path)
    x = np.random.default_rng(0).standard_normal((50, model.n_envelopes * len(model.context)))
    assert np.array_equal(again.log_posterior(x), model.log_posterior(x))
    assert np.allclose(np.exp(model.log_posterior(x)).sum(axis=1), 1.0)


def test_malformed_model_files_are_refused(tmp_path: Path) -> None:
    model = default_mlp_emission_model()
    np.savez(tmp_path / "lr.npz", coef=np.zeros((4, 20)))
    with pytest.raises(ValueError, match="missing"):
        MLPEmissionModel.load(tmp_path / "lr.npz")
    broken = MLPEmissionModel(
        weights=(model.weights[0][:, :5], *model.weights[1:]),
        biases=model.biases,
        mean=model.mean,
        scale=model.scale,
        log_prior=model.log_prior,
        context=model.context,
    )
    broken.save(tmp_path / "broken.npz")
    with pytest.raises(ValueError, match="shapes"):
        MLPEmissionModel.load(tmp_path / "broken.npz")


@pytest.mark.parametrize("bpm", [70, 120, 170])
def test_shipped_model_decodes_synthetic_states(bpm: int) -> None:
    s = synthesize_pcg(bpm, duration_s=10.0, snr_db=15, seed=bpm)
    hz = float(FEATURE_RATE_HZ)
    z = recording_envelopes(s.samples, s.sample_rate).features
    dec = decode(z, hz, [60.0 / bpm], model=default_mlp_emission_model())
    truth = true_states(s, len(z), hz)
    known = truth >= 0
    # Frame-wise agreement with the synthetic truth (edges between states blur by a frame).
    assert np.mean(dec.segmentation.states[known] == truth[known]) >= 0.75
    a = analyze(s.samples, s.sample_rate)
    assert abs(a.heart_rate_bpm - 60.0 / np.median(np.diff(s.s1_onsets_s))) < 5


def test_fitting_learns_the_states_of_synthetic_recordings() -> None:
    hz = float(FEATURE_RATE_HZ)
    xs, ys = [], []
    for k, bpm in enumerate((60, 75, 90, 110, 130, 100)):
        s = synthesize_pcg(bpm, duration_s=8.0, snr_db=15, seed=100 + k)
        z = recording_envelopes(s.samples, s.sample_rate).features
        labels = true_states(s, len(z), hz)
        keep = labels >= 0
        xs.append(frame_features(z, MLP_CONTEXT_FRAMES)[keep])
        ys.append(labels[keep])
    model = fit_mlp_emissions(np.concatenate(xs[:-1]), np.concatenate(ys[:-1]))
    predicted = np.argmax(model.log_posterior(xs[-1]), axis=1)
    # Held-out recording: sound frames (S1 or S2) against gap frames, and the four states,
    # well above always answering the commonest state.
    sound = np.isin(ys[-1], (S1, S2))
    majority = max(np.mean(sound), 1 - np.mean(sound))
    assert np.mean(np.isin(predicted, (S1, S2)) == sound) >= min(0.9, majority + 0.15)
    assert np.mean(predicted == ys[-1]) >= np.max(np.bincount(ys[-1])) / len(ys[-1]) + 0.15
    with pytest.raises(ValueError, match="four states"):
        fit_mlp_emissions(xs[0], np.zeros(len(xs[0]), dtype=np.int64))
