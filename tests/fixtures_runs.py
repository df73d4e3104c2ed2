"""Tiny trained runs and a folder of recordings to score, shared by the scoring tests.

Import the fixtures into a test module (``from fixtures_runs import tiny_run, ...``). A run is
trained once per test session (a module-level cache behind the session fixtures), on 12
synthetic recordings in class subfolders: a few seconds on two cores.

One epoch of a tiny model gives nearly the same probabilities for every input (a spread of
~1e-3), which would make a 1e-4 parity check toothless. :func:`sharpen_run` therefore rescales
each fold's head so that its logits spread by ~2 over varied inputs: any difference in
decoding, resampling or chunking between two scoring paths then moves the probabilities by
far more than the tolerance.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from stetho.config import load_config, save_config
from stetho.runs import CONFIG, MODEL, fold_dir, load_run, save_model
from stetho.runs.folder import RunFolder
from stetho.training.experiment import run_experiment

#: What makes a run tiny: a narrow net, 2 folds, 2 s chunks, no after-training steps. Test
#: modules add only what their test is about (epochs, learning rate, threads, ...).
TINY_BASE = [
    "architecture.width=8",
    "dataset.number_of_folds=2",
    "audio.training_chunk_seconds=2",
    "prediction.inference_chunk_seconds=2",
    "training.build_scoring_pipelines=false",
    "training.run_interpretations=false",
]
TINY_OVERRIDES = [
    *TINY_BASE,
    "training.epochs=1",
    "training.warmup_epochs=0",
    "training.learning_rate=0.01",
    "training.batch_size=4",
    "training.evaluation_epochs=1",
]

#: Training recordings are written at 4 kHz (the model runs at 2 kHz: resampling is exercised).
SYNTH_SR = 4000

_CACHE: dict[str, Path] = {}


def beats(
    rng: np.random.Generator,
    sr: int,
    seconds: float,
    *,
    tone_hz: float,
    amplitude: float = 0.5,
) -> np.ndarray:
    """``(round(seconds * sr),)`` float32: noise with a 60 ms tone burst every 0.8 s, a
    caricature of S1 at ``tone_hz``. The one synthetic beat generator of the test suite."""
    n = round(seconds * sr)
    x = 0.01 * rng.standard_normal(n)
    t = np.arange(int(0.06 * sr)) / sr
    burst = amplitude * np.sin(2 * np.pi * tone_hz * t) * np.hanning(t.size)
    for start in np.arange(rng.uniform(0, 0.4), seconds - 0.1, 0.8):
        i = int(start * sr)
        seg = x[i : i + burst.size]
        seg += burst[: seg.size]
    return x.astype(np.float32)


def write_training_folder(root: Path) -> Path:
    """6 recordings per class in ``root/normal`` (60 Hz bursts) and ``root/murmur`` (400 Hz)."""
    rng = np.random.default_rng(0)
    for label, hz in (("normal", 60.0), ("murmur", 400.0)):
        (root / label).mkdir(parents=True)
        for i in range(6):
            sf.write(
                root / label / f"{label}_{i:02d}.wav",
                beats(rng, SYNTH_SR, 3.0, tone_hz=hz),
                SYNTH_SR,
            )
    return root


#: The service tests' run: tiny, but trained on real set_b recordings (6 normal + 6 murmur).
MISSION_RUN_OVERRIDES = [
    *TINY_BASE,
    "training.epochs=1",
    # The rule the service tests read: no calibration, abnormal at probability_threshold 0.5.
    "prediction.calibration=none",
    "prediction.probability_threshold=0.5",
]


def build_mission_run(mission_dir: Path, base: Path) -> Path:
    """Train the tiny run on 6 + 6 real set_b recordings; returns the run folder."""
    for label in ("normal", "murmur"):
        (base / "data" / label).mkdir(parents=True)
        for src in sorted((mission_dir / "set_b").glob(f"{label}__*.wav"))[:6]:
            shutil.copy(src, base / "data" / label / src.name)
    out = base / "run"
    config = load_config(None, MISSION_RUN_OVERRIDES)
    run_experiment(config, out_dir=out, data=base / "data", progress=False)
    return out


@pytest.fixture(scope="session")
def mission_run(mission_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run trained once per session on 12 set_b recordings; read-only."""
    if "mission" not in _CACHE:
        _CACHE["mission"] = build_mission_run(mission_dir, tmp_path_factory.mktemp("mission"))
    return _CACHE["mission"]


@pytest.fixture(scope="module")
def two_class_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 recordings per class in class subfolders at 2 kHz: low (60 Hz) vs high (400 Hz)
    bursts, a difference a tiny model learns in a few epochs; read-only."""
    root = tmp_path_factory.mktemp("two_class")
    rng = np.random.default_rng(0)
    for label, hz in (("normal", 60.0), ("murmur", 400.0)):
        (root / label).mkdir()
        for i in range(12):
            wave = beats(rng, 2000, 3.0, tone_hz=hz, amplitude=1.0)
            sf.write(root / label / f"{label}_{i:02d}.wav", wave, 2000)
    return root


@pytest.fixture
def timm_offline(monkeypatch: pytest.MonkeyPatch) -> Any:
    """timm as on a machine without network: ImageNet weights cannot be fetched (a local
    weights file still loads), and stetho has not yet tried and remembered the failure.
    Returns timm's real ``create_model``."""
    import timm

    real = timm.create_model

    def offline(name: str, pretrained: bool = False, **kw: object) -> torch.nn.Module:
        if pretrained and "pretrained_cfg_overlay" not in kw:
            raise OSError("no network")
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", offline)
    monkeypatch.setattr("stetho.models.timm_backbones._UNAVAILABLE", {})
    return real


@pytest.fixture(scope="module")
def noise_tone_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 noise recordings and 6 tone (200 Hz) recordings at 2 kHz in class subfolders."""
    root = tmp_path_factory.mktemp("noise_tone")
    rng = np.random.default_rng(0)
    t = np.arange(6000) / 2000
    for label in ("noise", "tone"):
        (root / label).mkdir()
        for i in range(6):
            x = 0.1 * rng.standard_normal(t.size)
            if label == "tone":
                x += 0.5 * np.sin(2 * np.pi * 200 * t)
            sf.write(root / label / f"{label}_{i}.wav", x.astype(np.float32), 2000)
    return root


def _train(base: Path) -> Path:
    data = write_training_folder(base / "data")
    out = base / "run"
    run_experiment(load_config(None, TINY_OVERRIDES), out_dir=out, data=data, progress=False)
    return out


def copy_run_with(run_dir: Path, dest: Path, overrides: list[str]) -> Path:
    """A copy of ``run_dir`` whose stored config has ``overrides`` applied (same weights)."""
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("scoring"))
    config = load_config(dest / CONFIG, overrides)
    save_config(config, dest / CONFIG)
    return dest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for the module: on a shared two-core machine, OpenMP threads
    spinning against other processes make inference several times slower, not faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@torch.no_grad()
def sharpen_run(run_dir: Path, dest: Path, *, logit_std: float = 2.0) -> Path:
    """A copy of ``run_dir`` whose fold heads give logits centred on zero with ``logit_std``
    spread over 16 probe recordings (60 ms bursts from 40 to 800 Hz)."""
    # The decision rule was fitted to the old weights' predictions: it goes with them (the
    # sharpened run decides by the default rule, whose probabilities are the raw ones).
    shutil.copytree(
        run_dir,
        dest,
        ignore=shutil.ignore_patterns(
            "scoring", RunFolder(dest).decision.name, RunFolder(dest).decision_oof.name
        ),
    )
    run = load_run(dest)
    rng = np.random.default_rng(5)
    probes = [beats(rng, run.sample_rate, 2.0, tone_hz=hz) for hz in np.geomspace(40, 800, 16)]
    x = torch.from_numpy(np.stack(probes))
    for k, model in zip(run.folds, run.models, strict=True):
        pooled = model.pool(model.forward_features(model.frontend(x)))
        raw = pooled @ model.head.weight.T
        factor = logit_std / (raw - raw.mean(0)).std()
        model.head.weight.mul_(factor)
        model.head.bias.copy_(-(factor * raw).mean(0))
        save_model(model, fold_dir(dest, k) / MODEL)
    return dest


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-fold run (width 8, 1 epoch, Fix chunks of 2 s), as trained; read-only."""
    if "trained" not in _CACHE:
        _CACHE["trained"] = _train(tmp_path_factory.mktemp("tiny_run"))
    return _CACHE["trained"]


@pytest.fixture(scope="session")
def sharp_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run with sharpened heads (:func:`sharpen_run`): input-sensitive; read-only."""
    if "fix" not in _CACHE:
        _CACHE["fix"] = sharpen_run(tiny_run, tmp_path_factory.mktemp("sharp_run") / "run")
    return _CACHE["fix"]


@pytest.fixture(scope="session")
def dynamic_run(sharp_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sharpened run with ``Dynamic`` chunking: whole recordings up to 2.5 s, longer
    ones split into 2.5 s chunks."""
    if "dynamic" not in _CACHE:
        _CACHE["dynamic"] = copy_run_with(
            sharp_run,
            tmp_path_factory.mktemp("dynamic_run") / "run",
            [
                "prediction.inference_chunk_method=Dynamic",
                "prediction.max_inference_chunk_seconds=2.5",
            ],
        )
    return _CACHE["dynamic"]


#: Files of :func:`scoring_folder` that cannot be scored, and the start of their reason.
BAD_FILES = {
    "b_empty.wav": "empty file (0 bytes)",
    "m_corrupt.wav": "cannot decode",
    "s_short.wav": "too short",
    "sub/n_nan.wav": "NaN or infinite",
}


def _write_scoring_folder(root: Path, mission: Path | None) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    (root / "sub").mkdir()
    (root / ".hidden").mkdir()
    # Good recordings of several rates, lengths (under, at and over one 2 s chunk) and layouts.
    sf.write(root / "a_normal.wav", beats(rng, SYNTH_SR, 5.3, tone_hz=60.0), SYNTH_SR)
    sf.write(root / "c_murmur.flac", beats(rng, 8000, 4.1, tone_hz=400.0), 8000)
    stereo = np.stack([beats(rng, 44100, 2.2, tone_hz=80.0)] * 2, axis=1)
    sf.write(root / "d_stereo44k.wav", stereo, 44100)
    sf.write(root / "e_short_ok.wav", beats(rng, 2000, 0.9, tone_hz=60.0), 2000)
    sf.write(
        root / "sub" / "z_long.wav", beats(rng, 3000, 11.7, tone_hz=300.0), 3000, subtype="PCM_24"
    )
    # Bad recordings, one in the middle of the sorted order.
    (root / "b_empty.wav").write_bytes(b"")
    (root / "m_corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(200)))
    sf.write(root / "s_short.wav", beats(rng, SYNTH_SR, 0.3, tone_hz=60.0), SYNTH_SR)
    nan = beats(rng, SYNTH_SR, 1.5, tone_hz=60.0)
    nan[100:103] = np.nan
    sf.write(root / "sub" / "n_nan.wav", nan, SYNTH_SR, subtype="FLOAT")
    # Not scored at all: hidden, or not audio.
    sf.write(root / ".hidden" / "h.wav", beats(rng, SYNTH_SR, 2.0, tone_hz=60.0), SYNTH_SR)
    (root / "notes.txt").write_text("not audio\n")
    if mission is not None:  # a few real recordings: 44.1 kHz (set_a) and 4 kHz (set_b)
        for sub, n in (("set_a", 3), ("set_b", 4)):
            for f in sorted((mission / sub).glob("*.wav"))[:n]:
                (root / "real").mkdir(exist_ok=True)
                shutil.copyfile(f, root / "real" / f.name)
    return root


@pytest.fixture(scope="session")
def scoring_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Recordings to score: good synthetic files of several rates and channel counts, the bad
    ones of :data:`BAD_FILES`, a hidden file and a text file (both ignored), and, when the
    mission set is present, seven real recordings under ``real/``."""
    if "folder" not in _CACHE:
        mission = Path(__file__).resolve().parents[2] / "shared/data/heartbeat-sounds"
        _CACHE["folder"] = _write_scoring_folder(
            tmp_path_factory.mktemp("to_score") / "recordings",
            mission if (mission / "set_a").is_dir() else None,
        )
    return _CACHE["folder"]


@pytest.fixture(scope="session")
def bce_run(sharp_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sharpened run read as a BCE run (same weights, sigmoid outputs): its probabilities
    do not sum to 1, so the decision rule's renormalisation is exercised."""
    if "bce" not in _CACHE:
        _CACHE["bce"] = copy_run_with(
            sharp_run,
            tmp_path_factory.mktemp("bce_run") / "run",
            ["training.loss_function=BCE"],
        )
    return _CACHE["bce"]


def mission_recordings(mission: Path, dest: Path, *, per_set: int = 6) -> Path:
    """``per_set`` recordings of each of set_a (44.1 kHz) and set_b (4 kHz), copied to
    ``dest``, taken across the classes (every k-th file of the sorted set)."""
    dest.mkdir(parents=True, exist_ok=True)
    for sub in ("set_a", "set_b"):
        files = sorted((mission / sub).glob("*.wav"))
        step = max(1, len(files) // per_set)
        for f in files[::step][:per_set]:
            shutil.copyfile(f, dest / f"{sub}_{f.name}")
    return dest


def labelled_table(recordings: Path, dest: Path) -> Path:
    """``dest`` (csv: ``path, class, patient``) labelling :func:`mission_recordings`' files for a
    two-class (murmur / normal) run: ``normal`` files are normal, every other class murmur;
    the patient is the file's id without its A/B/C take letter."""
    rows = []
    for f in sorted(recordings.glob("*.wav")):
        name = f.name.lower()
        label = "normal" if "normal" in name else "murmur"
        rows.append({"path": str(f), "class": label, "patient": f.stem.rstrip("abcABC_")})
    pd.DataFrame(rows).to_csv(dest, index=False)
    return dest
