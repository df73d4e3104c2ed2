"""Training on several datasets at once: sources, set labels, balance, leave-one-source-out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from fixtures_runs import TINY_OVERRIDES, beats

from stetho.config import ConfigError, load_config
from stetho.report.context import Context
from stetho.report.inputs import RunData
from stetho.report.sections.metrics import metrics as metrics_section
from stetho.training.data import balance_weights
from stetho.training.experiment import run_experiment

SR = 4000


def write_source(root: Path, counts: dict[str, tuple[int, float]], seed: int) -> Path:
    """``counts[label] = (n, tone_hz)``: n recordings of 4 s in ``root/label``."""
    rng = np.random.default_rng(seed)
    for label, (n, hz) in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            sf.write(root / label / f"{label}{i}.wav", beats(rng, SR, 4.0, tone_hz=hz), SR)
    return root


def config_file(tmp_path: Path, fine: Path, coarse: Path, **dataset: object) -> Path:
    data = {
        "dataset": {
            "sources": [
                {"path": str(fine), "name": "fine"},
                {"path": str(coarse), "name": "coarse", "label_map": {"sick": "abnormal"}},
            ],
            "label_groups": {"abnormal": ["extrastole", "murmur"]},
            **dataset,
        },
        "training": {"balance_by": "dataset", "class_weights": "Auto"},
    }
    path = tmp_path / "multi.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("sources")
    fine = write_source(
        base / "fine", {"normal": (4, 60.0), "murmur": (4, 400.0), "extrastole": (2, 250.0)}, 0
    )
    coarse = write_source(base / "coarse", {"normal": (6, 60.0), "sick": (6, 400.0)}, 1)
    return fine, coarse


def test_leave_one_source_out_trains_on_set_labels_and_scores_each_source(
    sources: tuple[Path, Path], tmp_path: Path, one_torch_thread: None
) -> None:
    fine, coarse = sources
    path = config_file(tmp_path, fine, coarse, validation_strategy="leave_source_out")
    cfg = load_config(path, TINY_OVERRIDES)
    result = run_experiment(cfg, out_dir=tmp_path / "run", progress=False)
    run = result.run_dir
    manifest = pd.read_parquet(run / "manifest.parquet")
    assert sorted(manifest["dataset"].unique()) == ["coarse", "fine"]
    # one fold per source: each source is validated by a model that never heard it
    folds = manifest.groupby("source")["fold"].nunique()
    assert (folds == 1).all() and manifest.groupby("fold")["source"].nunique().eq(1).all()
    summary = result.summary
    assert summary["classes"] == ["extrastole", "murmur", "normal"]  # "abnormal" is no class
    coarse_m = summary["per_source"]["coarse"]
    assert coarse_m["n"] == 6 and coarse_m["n_set_labelled"] == 6  # normals; sick as a set
    assert 0.0 <= coarse_m["physionet2016"]["auc"] <= 1.0
    assert set(summary["per_dataset"]) == {"coarse", "fine"}
    assert summary["pooled"]["n_set_labelled"] == 6
    oof = pd.read_parquet(run / "oof_predictions.parquet")
    assert oof.groupby("dataset").size().to_dict() == {"coarse": 12, "fine": 10}
    warnings = json.loads((run / "warnings.json").read_text())
    assert any("decision rule fitted on the dataset(s) ['fine'] only" in w for w in warnings)
    # the report's curves show the single-class recordings and say what they leave out
    data = RunData(run)
    assert len(data.oof) == 16 and data.n_set_labelled == 6
    assert "6 recordings labelled only by a group" in metrics_section(Context(data, n_worst=0))


def test_no_rule_when_every_dataset_has_set_labels_and_the_summary_says_why(
    sources: tuple[Path, Path], tmp_path: Path, one_torch_thread: None
) -> None:
    fine, coarse = sources
    path = config_file(tmp_path, fine, coarse)
    data = yaml.safe_load(path.read_text())
    data["dataset"]["sources"][0]["label_map"] = {"extrastole": "abnormal"}
    path.write_text(yaml.safe_dump(data))
    result = run_experiment(
        load_config(path, TINY_OVERRIDES), out_dir=tmp_path / "run", progress=False
    )
    reason = result.summary["decision"]["skipped"]
    assert "every dataset labels recordings by a group only" in reason
    assert reason in json.loads((result.run_dir / "warnings.json").read_text())
    assert not (result.run_dir / "decision.json").exists()


def test_set_labels_refuse_mixing_and_balance_needs_the_column(
    sources: tuple[Path, Path], tmp_path: Path
) -> None:
    fine, coarse = sources
    path = config_file(tmp_path, fine, coarse)
    mixing = load_config(path, [*TINY_OVERRIDES, "augmentation.mix_audio=true"])
    with pytest.raises(ConfigError, match="mix_audio with dataset.label_groups"):
        run_experiment(mixing, out_dir=tmp_path / "mix", progress=False)
    assert not (tmp_path / "mix").exists() and not (tmp_path / "mix.partial").exists()
    single = load_config(None, [*TINY_OVERRIDES, "training.balance_by=dataset"])
    with pytest.raises(ConfigError, match="no 'dataset' column"):
        run_experiment(single, out_dir=tmp_path / "one", data=fine, progress=False)


def test_balance_weights_make_every_dataset_equally_likely() -> None:
    keys = np.array(["big"] * 90 + ["small"] * 10)
    w = np.asarray(balance_weights(keys))
    assert w[:90].sum() == pytest.approx(w[90:].sum())
    assert np.allclose(w[:90], w[0]) and np.allclose(w[90:], w[90])


def test_a_recording_drawn_twice_in_an_epoch_gives_two_chunks() -> None:
    from stetho.config import AugmentationConfig
    from stetho.training.data import ChunkDataset

    rng = np.random.default_rng(0)
    waves = [beats(rng, 2000, 10.0, tone_hz=60.0), beats(rng, 2000, 10.0, tone_hz=400.0)]
    dataset = ChunkDataset(
        waves,
        np.eye(2, dtype=np.float32),
        chunk_samples=2000,
        sample_rate=2000,
        augmentation=AugmentationConfig(),
        seed=0,
    )
    dataset.draws = np.array([0, 0, 1])
    assert len(dataset) == 3
    first, second, third = (dataset[k] for k in range(3))
    assert not np.array_equal(first["wave"], second["wave"])  # same recording, other chunk
    assert np.array_equal(third["target"], [0.0, 1.0])
    again = dataset[1]
    assert np.array_equal(again["wave"], second["wave"])  # a function of (seed, epoch, k)
