"""Experiment tracking: a tiny run logged to a temporary MLflow store and read back."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from fixtures_runs import TINY_BASE
from typer.testing import CliRunner

from stetho.cli import app
from stetho.config import load_config
from stetho.workflows.tracking import NEPTUNE_MISSING, epoch_metrics, flat_params

TINY = [
    *TINY_BASE,
    "training.batch_size=4",
    "training.epochs=3",
    "training.learning_rate=0.01",
    "environment.threads=1",
]


@pytest.fixture(scope="module")
def folder(noise_tone_folder: Path) -> Path:
    return noise_tone_folder


def _train(folder: Path, out: Path, overrides: list[str]) -> None:
    config = out.parent / "tiny.yaml"
    config.write_text(load_config(None, TINY).to_yaml())
    args = ["train", str(config), *overrides, "--data", str(folder), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output


def test_epoch_metrics_are_flat_names():
    record = {"fold": 1, "epoch": 2, "round": 1, "train_loss": 0.5, "valid_auc": {"a b": 0.75}}
    assert epoch_metrics(record) == {
        "round1/fold1/train_loss": 0.5,
        "round1/fold1/valid_auc/a b": 0.75,
    }


def test_mlflow_run_reads_back(folder, tmp_path):
    from mlflow import MlflowClient

    out = tmp_path / "runs" / "tiny-run"
    out.parent.mkdir()
    _train(folder, out, ["logging.logger=MLflow", "logging.mlflow_experiment=tiny"])

    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny-run"
    assert run.data.tags["stetho.run_dir"] == str(out.resolve())
    # Parameters: the resolved config, every key.
    assert run.data.params == flat_params(load_config(out / "config.yaml").to_dict())
    assert run.data.params["training.epochs"] == "3"
    # Per-epoch metrics per fold: the same numbers as metrics.jsonl, at step = epoch.
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 3
    for key in ("train_loss", "valid_macro_auc", "valid_log_loss", "valid_auc/tone"):
        for fold in (0, 1):
            history = client.get_metric_history(run.info.run_id, f"fold{fold}/{key}")
            logged = {m.step: m.value for m in history}
            expected = {
                r["epoch"]: r[key] if "/" not in key else r["valid_auc"]["tone"]
                for r in records
                if r["fold"] == fold
            }
            assert logged.keys() == expected.keys()
            for step, value in expected.items():
                assert logged[step] == pytest.approx(value) or math.isnan(value)
    summary = json.loads((out / "summary.json").read_text())
    assert run.data.metrics["oof_macro_auc"] == pytest.approx(summary["pooled"]["macro_auc"])
    # Artifacts: report material, out-of-fold predictions and the fold models, byte for byte.
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "summary.json", "metrics.jsonl", "oof_predictions.parquet"} <= names
    models = {a.path for a in client.list_artifacts(run.info.run_id, "model/fold-1")}
    assert models == {"model/fold-1/model.safetensors"}
    local = client.download_artifacts(
        run.info.run_id, "model/fold-1/model.safetensors", str(tmp_path)
    )
    assert Path(local).read_bytes() == (out / "fold-1" / "model.safetensors").read_bytes()
    # The store lives beside the runs, not in the working directory.
    assert (tmp_path / "runs" / "mlartifacts").is_dir()


@pytest.mark.skipif(importlib.util.find_spec("neptune") is not None, reason="neptune installed")
def test_neptune_without_the_package_warns_and_the_run_goes_on(folder, tmp_path):
    out = tmp_path / "runs" / "nep"
    out.parent.mkdir()
    _train(folder, out, ["logging.logger=Neptune", "training.epochs=1"])
    assert NEPTUNE_MISSING in json.loads((out / "warnings.json").read_text())
    assert (out / "fold-0" / "model.safetensors").exists()
