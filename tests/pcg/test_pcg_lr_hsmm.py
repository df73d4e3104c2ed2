"""The LR-HSMM segmenter (the default), heart rate from its decoded cycle, and its quality.

Synthetic recordings carry their truth; real-data tests use the shared PASCAL and CirCor sets
(skipped when the folder is missing).  The CirCor test runs the shipped model, which was fitted
on those recordings: it checks the reader, the features and the decoder fit together, not
generalisation (the benchmark's cross-validated figures do that).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import soxr
from conftest import REPO

from stetho.data.audio import read_audio
from stetho.pcg import METHODS, analyze
from stetho.pcg.lr_hsmm import (
    EmissionModel,
    circor_recordings,
    default_emission_model,
    read_circor_tsv,
)
from stetho.pcg.physiology import MAX_HEART_RATE_BPM, MIN_HEART_RATE_BPM
from stetho.pcg.segmentation import S1, S2
from stetho.pcg.synthetic import synthesize_pcg

DATA = REPO / ".." / "shared" / "data"
MISSION = DATA / "heartbeat-sounds"
CIRCOR = DATA / "circor-2022-dev"
TOLERANCE_S = 0.06


def matched(detected: np.ndarray, truth: np.ndarray) -> int:
    """Greedy one-to-one matches within TOLERANCE_S."""
    used: set[int] = set()
    for t in truth:
        free = [i for i in range(len(detected)) if i not in used]
        if free:
            best = min(free, key=lambda i: abs(detected[i] - t))
            if abs(detected[best] - t) <= TOLERANCE_S:
                used.add(best)
    return len(used)


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return path


# --- synthetic truth -------------------------------------------------------------------------


@pytest.mark.parametrize("bpm", [55, 80, 110, 140])
def test_default_decodes_synthetic_onsets(bpm: int) -> None:
    s = synthesize_pcg(bpm, duration_s=10.0, snr_db=15, seed=bpm + 7)
    a = analyze(s.samples, s.sample_rate)
    assert a.method == "lr-hsmm"
    end = len(s.samples) / s.sample_rate
    for detected, truth in ((a.s1_s[:, 0], s.s1_onsets_s), (a.s2_s[:, 0], s.s2_onsets_s)):
        truth = truth[(truth > 0.2) & (truth < end - 0.3)]
        hits = matched(detected, truth)
        assert hits >= 0.9 * len(truth), (bpm, hits, len(truth))
        assert hits >= 0.85 * len(detected)
    assert abs(a.heart_rate_bpm - 60 / np.median(np.diff(s.s1_onsets_s))) < 3
    # Outputs hang together: systoles lie between an S1 and the next S2.
    assert len(a.systole_s) and np.all(a.systole_s[:, 1] > a.systole_s[:, 0])
    assert a.quality.usable and len(a.usable_segments_s) >= 1


def test_method_switch_and_dict_keys() -> None:
    s = synthesize_pcg(72, duration_s=8.0, snr_db=15, seed=3)
    results = {m: analyze(s.samples, s.sample_rate, method=m) for m in METHODS}
    assert {m: r.method for m, r in results.items()} == {m: m for m in METHODS}
    d = results["lr-hsmm"].to_dict()
    for key in (
        "s1",
        "s2",
        "s1_intervals",
        "systole_intervals",
        "diastole_intervals",
        "usable_segments",
        "heart_rate_flag",
        "rr_ms",
        "quality",
        "usable",
    ):
        assert key in d
    assert not np.array_equal(results["lr-hsmm"].states, results["envelope"].states)
    with pytest.raises(ValueError, match="method"):
        analyze(s.samples, s.sample_rate, method="nope")


def test_irregular_clean_rhythm_is_usable() -> None:
    s = synthesize_pcg(70, duration_s=12.0, snr_db=15, premature_beats=(3, 7, 10), seed=5)
    a = analyze(s.samples, s.sample_rate)
    assert a.quality.usable, a.quality.reasons
    assert a.rhythm.premature_beats >= 1


def test_heart_rate_is_never_outside_the_range() -> None:
    rng = np.random.default_rng(1)
    sr = 4000
    signals = [rng.standard_normal(sr * 6)]
    for bpm in (15.0, 320.0):  # clicks far outside the physiological range
        x = 0.01 * rng.standard_normal(sr * 10)
        for t in np.arange(0.1, 9.9, 60 / bpm):
            k = int(t * sr)
            x[k : k + 200] += np.hanning(200) * np.sin(2 * np.pi * 60 * np.arange(200) / sr)
        signals.append(x)
    for x in signals:
        a = analyze(x, sr)
        hr = a.heart_rate_bpm
        assert np.isnan(hr) or MIN_HEART_RATE_BPM <= hr <= MAX_HEART_RATE_BPM
        if np.isnan(hr):
            assert a.heart_rate_flag


def test_emission_model_round_trip_and_refusal(tmp_path: Path) -> None:
    model = default_emission_model()
    model.save(tmp_path / "m.npz")
    again = EmissionModel.load(tmp_path / "m.npz")
    assert np.array_equal(again.coef, model.coef) and again.context == model.context
    np.savez(tmp_path / "bad.npz", coef=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="missing"):
        EmissionModel.load(tmp_path / "bad.npz")


def test_circor_tsv_repeated_block_is_read_once(tmp_path: Path) -> None:
    rows = "0\t0.5\t0\n0.5\t0.6\t1\n0.6\t0.8\t2\n0.8\t0.9\t3\n0.9\t1.3\t4\n"
    (tmp_path / "a.tsv").write_text(rows + rows.split("\n", 1)[1])
    ann = read_circor_tsv(tmp_path / "a.tsv")
    assert len(ann.segments) == 4 and ann.span_s == (0.5, 1.3)
    assert list(ann.onsets_s(S1)) == [0.5] and list(ann.onsets_s(S2)) == [0.8]
    assert not ann.annotated(np.array([0.2]))[0]


# --- real data -------------------------------------------------------------------------------


def test_pascal_timing_heart_rates() -> None:
    timing = pd.read_csv(need(MISSION / "set_a_timing.csv"))
    ok = 0
    files = sorted(timing["fname"].unique())
    for fname in files:
        rows = timing[timing["fname"] == fname]
        s1 = np.sort(rows.loc[rows["sound"] == "S1", "location"].to_numpy()) / 44100
        audio = read_audio(MISSION / fname)
        a = analyze(audio.samples, audio.sample_rate)
        ok += abs(a.heart_rate_bpm - 60 / np.median(np.diff(s1))) <= 5
    assert ok >= 19, f"{ok} of {len(files)}"


def test_circor_recordings_are_segmented() -> None:
    items = circor_recordings(need(CIRCOR))[::40][:6]
    hits = truth = untyped = 0
    for audio_path, tsv, _ in items:
        ann = read_circor_tsv(tsv)
        audio = read_audio(audio_path)
        a = analyze(audio.samples, audio.sample_rate)
        for state, spans in ((S1, a.s1_s), (S2, a.s2_s)):
            onsets = spans[:, 0]
            true = ann.onsets_s(state)
            hits += matched(onsets[ann.annotated(onsets)], true)
            truth += len(true)
        every = np.concatenate([a.s1_s[:, 0], a.s2_s[:, 0]])
        untyped += matched(
            every[ann.annotated(every)],
            np.sort(ann.onsets_s(S1).tolist() + ann.onsets_s(S2).tolist()),
        )
    assert untyped >= 0.85 * truth, (untyped, truth)
    assert hits >= 0.7 * truth, (hits, truth)


def test_extrastole_recordings_are_mostly_usable() -> None:
    paths = sorted(need(MISSION / "set_b").glob("extrastole__*.wav"))
    usable = [analyze(*_read(p)).quality.usable for p in paths]
    assert np.mean(usable) >= 0.8, f"{sum(usable)} of {len(usable)} usable"
    murmur = analyze(*_read(MISSION / "set_b" / "murmur__112_1306243000964_B.wav"))
    assert murmur.quality.usable, murmur.quality.reasons


def _read(path: Path) -> tuple[np.ndarray, int]:
    audio = read_audio(path)
    return audio.samples, audio.sample_rate


def test_stream_windows_agree_with_the_whole_file() -> None:
    """Windows as ``stetho.serve.streaming`` cuts them: resampled (soxr HQ) to the model rate,
    the default 6 s window (the model's scoring chunk) every 2 s hop."""
    folder = need(MISSION / "set_b")
    names = ["murmur__112_1306243000964_B.wav"] + sorted(
        p.name for p in folder.glob("normal__*.wav") if sf.info(p).duration >= 9.0
    )[:5]
    rate, window_s, hop_s = 2000, 6.0, 2.0
    for name in names:
        audio = read_audio(folder / name)
        whole = analyze(audio.samples, audio.sample_rate).heart_rate_bpm
        x = soxr.resample(audio.samples.astype(np.float32), audio.sample_rate, rate, quality="HQ")
        w, h = int(window_s * rate), int(hop_s * rate)
        rates = [analyze(x[end - w : end], rate).heart_rate_bpm for end in range(w, len(x) + 1, h)]
        assert np.isfinite(whole) and np.isfinite(rates).any(), name
        assert abs(np.nanmedian(rates) - whole) <= 5, (name, whole, rates)
