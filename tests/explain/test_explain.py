"""Attribution maps: each method finds the burst that decides the class (synthetic truth), the
files ``explain_files`` writes, the interpretations hook, and ``stetho explain``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from stetho.config import Config, PredictionConfig, load_config, resolve_config, save_config
from stetho.explain import (
    METHODS,
    explain_recording,
    explain_waveform,
    ig_tile_frames,
    interpretations_hook,
    select_worst,
)
from stetho.io import atomic_write_json, write_table
from stetho.models import create_model
from stetho.runs import save_model
from stetho.scoring.chunking import predict_recordings

SR = 2000
DURATION_S = 2.0
#: Class "burst" has a tone here; class "quiet" has none. Both have random low thumps.
BURST_S = (0.8, 1.1)
#: 280 Hz is the centre of mel band 16 of 64 (25-1000 Hz), i.e. of one row of HeartNet's last
#: feature map (16 bands per row): Grad-CAM, which cannot resolve finer than a row, gets a
#: fair chance. The other methods resolve single bands.
BURST_HZ = 280.0


#: Tiny models run ~100x faster on one thread than on two when other processes share the two
#: cores (the shared fixture restores the count afterwards).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def synth(rng: np.random.Generator, *, burst: bool) -> np.ndarray:
    """2 s at 2 kHz: noise floor, 2-4 heart-sound-like 40-90 Hz thumps, optional burst."""
    n = round(DURATION_S * SR)
    t = np.arange(n) / SR
    x = 0.01 * rng.uniform(0.5, 2) * rng.standard_normal(n)
    for _ in range(rng.integers(2, 5)):
        centre, f = rng.uniform(0.1, DURATION_S - 0.1), rng.uniform(40, 90)
        x += (
            rng.uniform(0.3, 0.6)
            * np.exp(-0.5 * ((t - centre) / 0.02) ** 2)
            * np.sin(2 * np.pi * f * t)
        )
    if burst:
        sel = (t >= BURST_S[0]) & (t < BURST_S[1])
        envelope = np.sin(np.pi * (t[sel] - BURST_S[0]) / (BURST_S[1] - BURST_S[0])) ** 0.5
        x[sel] += rng.uniform(0.2, 0.4) * envelope * np.sin(2 * np.pi * BURST_HZ * t[sel])
    return (x * rng.uniform(0.5, 2)).astype(np.float32)


def _config() -> Config:
    cfg, _ = resolve_config(
        load_config(
            None,
            [
                "architecture.width=8",
                "architecture.dropout=0",
                'audio.spectrogram_normalization="No"',
                'audio.waveform_normalization="No"',
                "prediction.inference_chunk_seconds=2",
            ],
        )
    )
    return cfg


@pytest.fixture(scope="module")
def burst_model() -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    """A tiny HeartNet trained to tell "burst" (class 1) from "quiet" (class 0).

    Per-recording normalisation is off: standardising each spectrogram lets a loud burst shift
    every cell of it, so the evidence would not be confined to the burst by construction.
    Returns the model and 8 held-out recordings with their labels.
    """
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = create_model(_config(), 2)
    y = np.arange(32) % 2
    x = np.stack([synth(rng, burst=bool(k)) for k in y])
    with torch.no_grad():
        spec = model.frontend(torch.from_numpy(x))
    target = torch.from_numpy(y)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    model.train()
    for _ in range(12):
        for idx in torch.randperm(len(y)).split(16):
            loss = torch.nn.functional.cross_entropy(model.forward_spec(spec[idx]), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    y_valid = np.arange(8) % 2
    x_valid = np.stack([synth(rng, burst=bool(k)) for k in y_valid])
    return model, x_valid, y_valid


def _region(model: torch.nn.Module, method: str, times: np.ndarray, freqs: np.ndarray):
    """Where the burst is on the spectrogram, widened by what ``method`` can resolve.

    The burst's footprint is its time span plus half the STFT window (32 ms) on each side, and
    its frequency plus 50 Hz (the Hann main lobe, +-2 FFT bins of 15.6 Hz, plus a mel band).
    Each method spreads a point of evidence by its own resolution, and its region is the
    footprint widened by that much on each side: Grad-CAM by one cell of the last feature map
    (interpolated between cell centres), occlusion by one patch, integrated gradients by half
    its smoothing tile. Returns boolean masks (bands,), (frames,).
    """
    fe = model.frontend
    half_window_s = fe.n_fft / fe.sample_rate / 2
    frames = (times >= BURST_S[0] - half_window_s) & (times <= BURST_S[1] + half_window_s)
    bands = np.abs(freqs - BURST_HZ) <= 50.0
    if method == "gradcam":
        with torch.no_grad():
            spec = fe(torch.zeros(1, round(DURATION_S * SR)))
            fmap = model.forward_features(spec)
        cell = (spec.shape[2] / fmap.shape[2], spec.shape[3] / fmap.shape[3])
    elif method == "occlusion":
        cell = (8, round(0.25 * fe.sample_rate / fe.hop))  # explain_recording's default patch
    else:  # integrated gradients: averaged over a tile, which spreads a point by half a tile
        cell = (1, ig_tile_frames(model) // 2)
    grow = [
        np.convolve(m, np.ones(2 * int(np.ceil(c)) + 1), "same") > 0
        for m, c in zip((bands, frames), cell, strict=True)
    ]
    return grow[0], grow[1]


@pytest.mark.parametrize("method", METHODS)
def test_attribution_mass_lies_on_the_burst(burst_model, method: str) -> None:
    """Most of the positive attribution mass (averaged over the 4 held-out burst recordings)
    lies where the burst is, at the method's resolution, and at least 3x what a map spread
    evenly over the spectrogram would put there (the region's share of the area).

    Measured when written: Grad-CAM 0.55 (chance 0.17), occlusion 0.98 (chance 0.16),
    integrated gradients 0.68 (chance 0.03).
    """
    model, x_valid, y_valid = burst_model
    with torch.no_grad():
        p = torch.softmax(model(torch.from_numpy(x_valid)), dim=-1)[:, 1].numpy()
    assert roc_auc_score(y_valid, p) == 1.0  # the model separates the classes
    shares = []
    for wave in x_valid[y_valid == 1]:
        att = explain_waveform(model, wave, method=method, target=1, classes=["quiet", "burst"])
        assert att.map.shape == (64, 1 + len(wave) // 32)
        assert att.class_name == "burst" and att.probability > 0.5
        bands, frames = _region(model, method, att.times_s, att.freqs_hz)
        shares.append(
            att.positive_mass_fraction(
                time_s=(att.times_s[frames].min(), att.times_s[frames].max()),
                freq_hz=(att.freqs_hz[bands].min(), att.freqs_hz[bands].max()),
            )
        )
    inside, chance = float(np.mean(shares)), float(bands.mean() * frames.mean())
    measured = f"{method}: {np.round(shares, 2)} of the positive mass, region area {chance:.2f}"
    assert inside >= 0.5, measured
    assert inside >= 3 * chance, measured


def test_chunks_are_stitched_onto_the_recording_time_axis(burst_model) -> None:
    """Fix 2 s chunks of a 4.8 s recording: chunks at 0 and 2 s, the 0.8 s tail unscored."""
    model, _, _ = burst_model
    rng = np.random.default_rng(5)
    tail = synth(rng, burst=False)[: round(0.8 * SR)]
    wave = np.concatenate([synth(rng, burst=False), synth(rng, burst=True), tail])
    prediction = PredictionConfig(inference_chunk_method="Fix", inference_chunk_seconds=2.0)
    att = explain_waveform(model, wave, method="gradcam", target=1, prediction=prediction)
    n_frames = 1 + len(wave) // 32
    assert att.map.shape == att.spectrogram.shape == (64, n_frames)
    np.testing.assert_allclose(att.times_s, np.arange(n_frames) * 32 / SR)
    assert att.scored_s == pytest.approx(4.0)
    unscored = att.times_s > 4.0
    assert np.isnan(att.spectrogram[:, unscored]).all()
    assert not np.isnan(att.spectrogram[:, ~unscored]).any()
    assert (att.map[:, unscored] == 0).all()
    # The burst sits at 2.8-3.1 s, in the second chunk: the map must peak there, not at 0.8 s.
    time_profile, _ = att.profiles()
    assert 2.6 <= att.times_s[np.argmax(time_profile)] <= 3.3
    # The probability is the scorer's: mean over the scored chunks.
    p = predict_recordings(
        [model], [wave], sample_rate=SR, prediction=prediction, loss_function="CrossEntropy"
    )
    assert att.probability == pytest.approx(p[0, 1], abs=1e-5)


def test_bad_arguments_are_refused(burst_model) -> None:
    model, x_valid, _ = burst_model
    with pytest.raises(ValueError, match="expected one or more of"):
        explain_recording(model, x_valid[0], methods=["lime"])
    with pytest.raises(ValueError, match="not one of the model's classes"):
        explain_waveform(model, x_valid[0], method="gradcam", target="murmur", classes=["a", "b"])
    with pytest.raises(ValueError, match="1-D waveform"):
        explain_waveform(model, x_valid[:2], method="gradcam")
    with pytest.raises(TypeError, match="HeartSoundClassifier"):
        explain_waveform(torch.nn.Linear(2, 2), x_valid[0], method="gradcam")


def test_select_worst_takes_classes_in_turn() -> None:
    oof = pd.DataFrame(
        {
            "path": [f"r{i}.wav" for i in range(7)],
            "fold": [0, 1, 0, 1, 0, 1, 0],
            "label": ["a", "a", "a", "a", "b", "b", "c"],
            "prob_a": [0.9, 0.2, 0.5, 0.1, 0.6, 0.1, 0.3],
            "prob_b": [0.05, 0.7, 0.4, 0.8, 0.3, 0.8, 0.3],
            "prob_c": [0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.4],
        }
    )
    worst = select_worst(oof, ["a", "b", "c"], 4)
    # Rarest class first (c, then b, then a), each class's worst first; sorted by p(true).
    assert worst["path"].tolist() == ["r3.wav", "r4.wav", "r6.wav", "r5.wav"]
    np.testing.assert_allclose(worst["p_true"], [0.1, 0.3, 0.4, 0.8])
    assert worst["predicted"].tolist() == ["b", "a", "c", "b"]
    assert select_worst(oof, ["a", "b", "c"], 0).empty


def _write_run(root: Path, model: torch.nn.Module, waves: np.ndarray, *, interpretations: bool):
    """A finished run folder by hand: two "folds" sharing the trained model; recording ``i``
    is in fold ``i % 2``, labelled burst when ``i`` is odd, with made-up out-of-fold scores."""
    run = root / "run"
    cfg = _config()
    cfg.training.run_interpretations = interpretations
    cfg.logging.number_of_audios = 2
    save_config(cfg, run / "config.yaml")
    atomic_write_json(
        run / "labels.json",
        {"classes": ["burst", "quiet"], "loss_function": "CrossEntropy", "sample_rate": SR},
    )
    for k in (0, 1):
        save_model(model_in_label_order(model), run / f"fold-{k}" / "model.safetensors")
    paths = []
    for i, w in enumerate(waves):
        paths.append(root / "audio" / f"rec{i}.wav")
        paths[-1].parent.mkdir(exist_ok=True)
        sf.write(paths[-1], w, SR, subtype="FLOAT")
    n = len(waves)
    p_burst = np.array([0.1, 0.3, 0.2, 0.95, 0.05, 0.6, 0.15, 0.9])[:n]
    oof = pd.DataFrame(
        {
            "path": [str(p) for p in paths],
            "fold": np.arange(n) % 2,
            "label": ["burst" if i % 2 else "quiet" for i in range(n)],
            "source": "synthetic",
            "patient": [f"p{i}" for i in range(n)],
            "prob_burst": p_burst,
            "prob_quiet": 1 - p_burst,
        }
    )
    write_table(oof, run / "oof_predictions.parquet")
    return run, paths


def model_in_label_order(model: torch.nn.Module) -> torch.nn.Module:
    """The fixture's model outputs (quiet, burst); a run's classes are sorted: (burst, quiet)."""
    import copy

    flipped = copy.deepcopy(model)
    with torch.no_grad():
        flipped.head.weight.copy_(model.head.weight.flip(0))
        flipped.head.bias.copy_(model.head.bias.flip(0))
    return flipped


def test_interpretations_hook_explains_the_worst_recordings(tmp_path, burst_model) -> None:
    model, x_valid, _ = burst_model
    run, paths = _write_run(tmp_path, model, x_valid, interpretations=True)
    interpretations_hook(run)
    index = json.loads((run / "interpretations" / "index.json").read_text())
    assert index["methods"] == ["occlusion", "integrated_gradients"]
    assert index["classes"] == ["burst", "quiet"]
    recs = index["recordings"]
    # Worst burst recording is rec1 (p=0.3), worst quiet one rec2 (p(quiet)=0.8); each is
    # explained by the model of its own validation fold.
    assert [r["path"] for r in recs] == [str(paths[1]), str(paths[2])]
    assert [r["fold"] for r in recs] == [1, 0]
    assert [r["label"] for r in recs] == ["burst", "quiet"]
    for r in recs:
        assert r["explained_class"] == r["predicted"]
        assert sum(r["probabilities"].values()) == pytest.approx(1.0)
        assert (run / "interpretations" / r["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        for method, files in r["maps"].items():
            meta = json.loads((run / "interpretations" / files["json"]).read_text())
            arr = np.load(run / "interpretations" / files["npy"], allow_pickle=False)
            assert meta["method"] == method and meta["class"] == r["predicted"]
            assert arr.shape == (len(meta["freqs_hz"]), len(meta["times_s"])) == (64, 126)
            assert meta["times_s"][1] == pytest.approx(0.016)
            assert np.isfinite(arr).all() and np.abs(arr).max() > 0
    # The burst recording is called "burst", and the evidence sits on the burst.
    burst_map = np.load(run / "interpretations" / recs[0]["maps"]["occlusion"]["npy"])
    assert recs[0]["predicted"] == "burst"
    pos = np.clip(burst_map, 0, None)
    assert pos[:, 45:75].sum() / pos.sum() > 0.5  # frames 45-75: 0.72-1.2 s


def test_interpretations_hook_respects_the_config(tmp_path, burst_model) -> None:
    model, x_valid, _ = burst_model
    run, _ = _write_run(tmp_path, model, x_valid[:2], interpretations=False)
    interpretations_hook(run)
    assert not (run / "interpretations").exists()


def test_cli_explain(tmp_path, burst_model) -> None:
    from stetho.cli import app

    model, x_valid, _ = burst_model
    run, paths = _write_run(tmp_path, model, x_valid[:2], interpretations=False)
    out = tmp_path / "why"
    result = CliRunner().invoke(
        app, ["explain", str(run), str(paths[1]), "--out", str(out), "-m", "gradcam", "--fold", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "rec1.wav: burst" in result.output
    index = json.loads((out / "index.json").read_text())
    assert index["methods"] == ["gradcam"] and index["recordings"][0]["stem"] == "rec1"
    assert (out / "rec1.png").is_file() and (out / "rec1.gradcam.npy").is_file()
    bad = CliRunner().invoke(
        app, ["explain", str(run), str(tmp_path / "missing.wav"), "--out", str(out)]
    )
    assert bad.exit_code == 1  # some recordings failed (docs/exit-codes.md)
    assert "could not be read" in bad.output


def test_methods_are_a_registry() -> None:
    from stetho.explain import get_method, method_names, register_method

    assert method_names()[:3] == METHODS
    with pytest.raises(ValueError, match=r"unknown attribution method 'lime'.*'occlusion'"):
        get_method("lime")
    with pytest.raises(ValueError, match="already registered"):
        register_method("occlusion", get_method("gradcam"), cost=lambda *a: 1.0, label="x")


def test_a_registered_method_is_used_by_name(burst_model) -> None:
    """A plug-in method gets the model input and its map is stitched like the built-ins'."""
    from stetho.explain import method_names, register_method

    model, x_valid, _ = burst_model

    def energy(model, spec, extra, *, target, loss_function, settings):
        return spec[:, 0] - spec.mean()

    if "test_energy" not in method_names():
        register_method("test_energy", energy, cost=lambda *a: 1.0, label="Energy")
    att = explain_waveform(model, x_valid[1], method="test_energy")
    np.testing.assert_allclose(att.map, att.spectrogram - np.nanmean(att.spectrogram), atol=1e-4)


def test_occlusion_cost_counts_the_forward_passes(burst_model) -> None:
    """forward_passes predicts how many inputs occlusion really evaluates."""
    from stetho.explain import MethodSettings
    from stetho.explain.methods import forward_passes

    model, x_valid, _ = burst_model
    rows = []
    handle = model.head.register_forward_hook(lambda m, i, o: rows.append(o.shape[0]))
    try:
        settings = MethodSettings(occlusion_window=(16, 0.5))
        explain_waveform(
            model, x_valid[1], method="occlusion", target=1, occlusion_window=(16, 0.5)
        )
    finally:
        handle.remove()
    with torch.no_grad():
        spec = model.frontend(torch.from_numpy(x_valid[1][None]))
    predicted = forward_passes(
        "occlusion", model, settings, n_mels=spec.shape[2], frames=spec.shape[3]
    )
    assert sum(rows) - 1 == predicted  # explain_recording's own scoring pass is the extra one


def test_large_backbones_get_cheaper_settings(burst_model) -> None:
    """Above 5 M parameters the defaults switch to coarser occlusion and fewer IG steps; on
    the reference config (4 kHz, hop 512, 128 mels, 28 s chunks) that is >5x cheaper."""
    import copy

    from stetho.explain import (
        LARGE_MODEL_SETTINGS,
        MethodSettings,
        default_settings,
        estimate_forward_passes,
    )

    model, _, _ = burst_model
    assert default_settings(model) == MethodSettings()
    big = copy.deepcopy(model)
    big.register_parameter("ballast", torch.nn.Parameter(torch.zeros(5_000_001)))
    assert default_settings(big) == LARGE_MODEL_SETTINGS
    cfg, _ = resolve_config(
        load_config(
            None,
            [
                "architecture.width=4",
                "audio.sample_rate=4000",
                "audio.hop_size=512",
                "audio.stft_window_size=2048",
                "audio.mel_frequency_bins=128",
                "audio.maximum_frequency=2000",
            ],
        )
    )
    reference = create_model(cfg, 5)
    prediction = PredictionConfig(inference_chunk_method="Fix", inference_chunk_seconds=28.0)
    fine, coarse = (
        estimate_forward_passes(
            reference, 28 * 4000, prediction=prediction, settings=s, methods=["occlusion"]
        )
        for s in (MethodSettings(), LARGE_MODEL_SETTINGS)
    )
    assert (fine, coarse) == (31 * 218 + 1, 15 * 54 + 1)
    assert fine / coarse > 5


def test_budget_stops_starting_recordings(tmp_path, burst_model, caplog) -> None:
    """A run still named <name>.partial: the hook stops at the budget, says so in the index and
    warnings.json, and its log lines name the folder the run will have once sealed."""
    import logging

    model, x_valid, _ = burst_model
    run, paths = _write_run(tmp_path, model, x_valid, interpretations=True)
    partial = run.with_name("run.partial")
    run.rename(partial)
    with caplog.at_level(logging.INFO, logger="stetho.explain"):
        interpretations_hook(partial, budget_s=1e-6)  # the first recording always runs
    index = json.loads((partial / "interpretations" / "index.json").read_text())
    assert len(index["recordings"]) == 1 and index["not_explained"] == [str(paths[2])]
    warnings = json.loads((partial / "warnings.json").read_text())
    assert any("budget" in w and "1 of 2 recordings" in w for w in warnings), warnings
    explained = [r.getMessage() for r in caplog.records if "explained 1/2" in r.getMessage()]
    assert explained and str(run / "interpretations" / "rec1.png") in explained[0]
    assert ".partial" not in " ".join(explained)
