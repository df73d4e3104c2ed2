"""Training engine: learns a known difference, resumes to the same result, runs the reference."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import WORKSPACE
from fixtures_runs import TINY_BASE

from stetho.config import load_config
from stetho.runs import load_run, partial_dir
from stetho.scoring import predict_waves
from stetho.training.callbacks import TrainingCallback
from stetho.training.experiment import run_experiment

REFERENCE = WORKSPACE / "shared" / "reference" / "hydrogen_torch_heartbeat.yaml"

TINY = [
    *TINY_BASE,
    "training.batch_size=4",
    "training.epochs=6",
    "training.learning_rate=0.01",
    "training.evaluation_epochs=1",
]


def test_learns_a_known_difference(two_class_folder, tmp_path):
    cfg = load_config(None, TINY)
    result = run_experiment(cfg, out_dir=tmp_path / "run", data=two_class_folder, progress=False)
    assert result.summary["pooled"]["macro_auc"] > 0.95
    oof = pd.read_parquet(tmp_path / "run" / "oof_predictions.parquet")
    assert len(oof) == 24 and oof["path"].is_unique
    for name in (
        "config.yaml",
        "labels.json",
        "manifest.parquet",
        "metrics.jsonl",
        "summary.json",
        "environment.json",
        "fold-0/model.safetensors",
        "fold-1/model.safetensors",
    ):
        assert (tmp_path / "run" / name).exists(), name
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 6  # one per epoch and fold
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["seed"] == 0 and env["packages"]["torch"]
    assert env["pretrained_weights"] is None  # TINY starts from random weights
    # The saved run scores recordings like the validation did.
    run = load_run(tmp_path / "run", folds=[0])
    part = oof[oof["fold"] == 0]
    waves = [sf.read(p, dtype="float32")[0] for p in part["path"]]
    probs = predict_waves(run, waves)
    np.testing.assert_allclose(
        probs, part[[f"prob_{c}" for c in run.classes]].to_numpy(), atol=1e-5
    )


class CrashAfter(TrainingCallback):
    """Simulates a kill: raises once fold ``fold`` has finished epoch ``epoch``."""

    def __init__(self, *, fold: int, epoch: int) -> None:
        self.fold, self.epoch = fold, epoch

    def on_epoch_end(self, record: dict) -> None:
        if record["fold"] == self.fold and record["epoch"] >= self.epoch:
            raise KeyboardInterrupt(f"stopped after epoch {record['epoch']} (simulated crash)")


def test_killed_run_resumes_to_the_same_result(two_class_folder, tmp_path):
    cfg = load_config(None, TINY)
    straight = run_experiment(cfg, out_dir=tmp_path / "a", data=two_class_folder, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(
            cfg,
            out_dir=tmp_path / "b",
            data=two_class_folder,
            progress=False,
            callbacks=[CrashAfter(fold=0, epoch=2)],
        )
    assert partial_dir(tmp_path / "b").exists() and not (tmp_path / "b").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        run_experiment(cfg, out_dir=tmp_path / "b", data=two_class_folder, progress=False)
    resumed = run_experiment(
        cfg, out_dir=tmp_path / "b", data=two_class_folder, progress=False, resume=True
    )
    cols = [c for c in straight.oof.columns if c.startswith("prob_")]
    np.testing.assert_allclose(
        resumed.oof[cols].to_numpy(), straight.oof[cols].to_numpy(), atol=1e-6
    )
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 6


def test_same_seed_same_result_and_seed_minus_one_is_recorded(two_class_folder, tmp_path):
    cfg = load_config(None, TINY + ["training.epochs=1", "environment.seed=-1"])
    run_experiment(cfg, out_dir=tmp_path / "r", data=two_class_folder, progress=False)
    stored = load_config(tmp_path / "r" / "config.yaml")
    assert stored.environment.seed >= 0
    warnings = json.loads((tmp_path / "r" / "warnings.json").read_text())
    assert any(str(stored.environment.seed) in w for w in warnings)


def test_holdout_and_leave_source_out(two_class_folder, tmp_path):
    cfg = load_config(None, TINY + ["training.epochs=1", "dataset.validation_strategy=holdout"])
    res = run_experiment(cfg, out_dir=tmp_path / "h", data=two_class_folder, progress=False)
    assert res.summary["folds"] == [1]
    assert 0 < len(res.oof) < 24


@pytest.mark.slow
def test_reference_yaml_runs_unchanged(mission_dir, tmp_path):
    """Hydrogen Torch's file, as shipped; only size and speed are overridden for CI."""
    if not REFERENCE.exists():
        pytest.skip("reference YAML absent")
    cfg = load_config(
        REFERENCE,
        [
            "architecture.backbone=resnet18",
            "architecture.pretrained=false",
            "training.epochs=1",
            "dataset.data_sample=0.15",
            "training.run_interpretations=false",
            "training.build_scoring_pipelines=false",
        ],
    )
    res = run_experiment(cfg, out_dir=tmp_path / "ref", data=mission_dir, progress=False)
    assert res.summary["folds"] == [0]  # folds: ['0'] trains fold 0 only
    warnings = json.loads((tmp_path / "ref" / "warnings.json").read_text())
    assert any("Nyquist" in w for w in warnings)
    assert any("occurs only in source" in w for w in warnings)
    stored = load_config(tmp_path / "ref" / "config.yaml")
    assert stored.audio.maximum_frequency == 2000
    assert (tmp_path / "ref" / "fold-0" / "model.safetensors").exists()


def test_unavailable_pretrained_weights_are_recorded_in_the_run(
    two_class_folder, tmp_path, timm_offline
):
    cfg = load_config(
        None,
        TINY
        + ["training.epochs=1", "architecture.backbone=resnet18", "architecture.pretrained=true"],
    )
    run_experiment(cfg, out_dir=tmp_path / "p", data=two_class_folder, progress=False)
    warnings = json.loads((tmp_path / "p" / "warnings.json").read_text())
    assert any("PRETRAINED WEIGHTS UNAVAILABLE for resnet18" in w for w in warnings)


def test_split_seed_keeps_the_folds_while_the_seed_changes_the_training(two_class_folder, tmp_path):
    def run(name: str, *overrides: str) -> pd.DataFrame:
        cfg = load_config(None, TINY + ["training.epochs=1", *overrides])
        run_experiment(cfg, out_dir=tmp_path / name, data=two_class_folder, progress=False)
        return pd.read_parquet(tmp_path / name / "oof_predictions.parquet").set_index("path")

    a = run("a", "environment.seed=1", "dataset.split_seed=7")
    b = run("b", "environment.seed=2", "dataset.split_seed=7").loc[a.index]
    c = run("c", "environment.seed=7").loc[a.index]  # no split_seed: the seed splits too
    d = run("d", "environment.seed=8").loc[a.index]
    assert a["fold"].equals(b["fold"]) and a["fold"].equals(c["fold"])
    assert not a["fold"].equals(d["fold"])
    cols = [col for col in a.columns if col.startswith("prob_")]
    # same folds, another initialisation and batch order: other predictions
    assert np.abs(a[cols].to_numpy() - b[cols].to_numpy()).max() > 1e-3
    stored = load_config(tmp_path / "a" / "config.yaml")
    assert (stored.dataset.split_seed, stored.environment.seed) == (7, 1)
