"""The training plan and the run folder's life: fold columns, failures, resume, fast checks."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from fixtures_runs import TINY_OVERRIDES, write_training_folder
from typer.testing import CliRunner

from stetho.cli import app
from stetho.config import ConfigError, load_config, load_resolved_config
from stetho.io import ArtifactError
from stetho.runs.folder import RunFolder
from stetho.training.callbacks import TrainingCallback
from stetho.training.experiment import run_experiment
from stetho.training.plan import plan_training, runtime_warnings

TWO_EPOCHS = [*TINY_OVERRIDES, "training.epochs=2"]


class CrashAfter(TrainingCallback):
    def __init__(self, *, fold: int, epoch: int) -> None:
        self.fold, self.epoch = fold, epoch

    def on_epoch_end(self, record: dict) -> None:
        if record["fold"] == self.fold and record["epoch"] >= self.epoch:
            raise KeyboardInterrupt("simulated crash")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_training_folder(tmp_path_factory.mktemp("plan") / "data")


@pytest.fixture(scope="module")
def crashed(data, tmp_path_factory) -> Path:
    """A run killed after fold 1's first epoch (fold 0 finished, fold 1 checkpointed)."""
    out = tmp_path_factory.mktemp("crashed") / "run"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(
            load_config(None, TWO_EPOCHS),
            out_dir=out,
            data=data,
            progress=False,
            callbacks=[CrashAfter(fold=1, epoch=1)],
        )
    return out


def _copy(crashed: Path, dest: Path) -> RunFolder:
    shutil.copytree(RunFolder(crashed).working().root, RunFolder(dest).working().root)
    return RunFolder(dest).working()


def test_fold_column_folds_are_used(data, tmp_path):
    files = sorted(str(p) for p in data.rglob("*.wav"))
    table = pd.DataFrame(
        {
            "audio": files,
            "class": [Path(f).parent.name for f in files],
            "fold": [i % 3 for i in range(len(files))],
        }
    )
    table.to_csv(tmp_path / "train.csv", index=False)
    cfg = load_config(
        None, ["dataset.validation_strategy=fold_column", "dataset.label_columns=label"]
    )
    plan = plan_training(cfg, data=tmp_path / "train.csv")
    assert plan.folds == [0, 1, 2]
    by_path = dict(zip(plan.manifest["path"], plan.manifest["fold"], strict=True))
    assert [by_path[str(Path(f).resolve())] for f in files] == table["fold"].tolist()
    with pytest.raises(ConfigError, match="no column 'split'"):
        plan_training(
            load_config(
                None, ["dataset.validation_strategy=fold_column", "dataset.fold_column=split"]
            ),
            data=tmp_path / "train.csv",
        )


def test_data_folder_is_dropped_when_data_is_given(data):
    cfg = load_config(None, ["dataset.data_folder=data/anon/", "dataset.train_dataframe=x.pq"])
    plan = plan_training(cfg, data=data)
    assert plan.config.dataset.data_folder is None and plan.config.dataset.train_dataframe is None


def test_unknown_backbone_fails_before_any_folder(data, tmp_path):
    cfg = load_config(None, [*TINY_OVERRIDES, "architecture.backbone=resnet9000"])
    with pytest.raises(ConfigError, match="resnet9000.*heartnet"):
        run_experiment(cfg, out_dir=tmp_path / "r", data=data, progress=False)
    assert not RunFolder(tmp_path / "r").working().root.exists()


def test_failure_before_anything_trained_leaves_nothing(data, tmp_path):
    cfg = load_config(None, TINY_OVERRIDES)  # one epoch: no checkpoint before the fold ends
    with pytest.raises(KeyboardInterrupt):
        run_experiment(
            cfg,
            out_dir=tmp_path / "r",
            data=data,
            progress=False,
            callbacks=[CrashAfter(fold=0, epoch=1)],
        )
    assert not RunFolder(tmp_path / "r").working().root.exists()


def test_stale_partial_is_cleared_but_trained_one_is_kept(crashed, tmp_path):
    stale = RunFolder(tmp_path / "stale").working()
    stale.root.mkdir()
    stale.config.write_text("experiment_name: x\n")
    kept = _copy(crashed, tmp_path / "kept")
    with pytest.raises(FileExistsError, match="--resume"):
        run_experiment(load_config(None, TWO_EPOCHS), out_dir=kept.final, progress=False)
    assert kept.trained_folds() == [0]
    with pytest.raises(FileNotFoundError):  # no data here: stops after clearing the stale folder
        run_experiment(load_config(None, ["dataset.train_dataframe=nope.pq"]), out_dir=stale.final)
    assert not stale.root.exists()


def test_resume_accumulates_seconds_and_applies_only_safe_overrides(crashed, data, tmp_path):
    work = _copy(crashed, tmp_path / "r")
    assert work.read_json(work.elapsed)["seconds"] > 0
    with pytest.raises(ConfigError, match=r"training\.epochs: 2 \(stored\) -> 3"):
        run_experiment(
            load_config(None, [*TWO_EPOCHS, "training.epochs=3"]),
            out_dir=work.final,
            resume=True,
            progress=False,
        )
    work.elapsed.write_text(json.dumps({"seconds": 1000.0}))
    result = run_experiment(
        load_config(None, [*TWO_EPOCHS, "training.build_scoring_pipelines=true"]),
        out_dir=work.final,
        resume=True,
        progress=False,
    )
    assert result.summary["seconds"] >= 1000.0
    stored = load_resolved_config(RunFolder(work.final).config)
    assert stored.training.build_scoring_pipelines is True


@pytest.mark.parametrize("damage", ["truncated", "pickled code"])
def test_bad_checkpoint_on_resume_is_an_artifact_error(crashed, tmp_path, damage):
    import torch

    work = _copy(crashed, tmp_path / "r")
    ckpt = work.fold_checkpoint(1)
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    else:
        torch.save({"model": ArtifactError("x", "y", "z")}, ckpt)  # needs code to unpickle
    with pytest.raises(ArtifactError) as err:
        run_experiment(
            load_config(None, TWO_EPOCHS), out_dir=work.final, resume=True, progress=False
        )
    assert str(ckpt) in str(err.value) and "--resume" in str(err.value)
    assert work.trained_folds() == [0]  # what was trained is kept


def test_cli_exit_2_for_a_bad_checkpoint_and_unknown_layout(crashed, data, tmp_path):
    work = _copy(crashed, tmp_path / "r")
    work.fold_checkpoint(1).write_bytes(b"not a zip")
    config = tmp_path / "tiny.yaml"
    config.write_text(load_config(None, TWO_EPOCHS).to_yaml())
    runner = CliRunner()
    res = runner.invoke(
        app, ["train", str(config), "--out", str(work.final), "--resume", "--no-progress"]
    )
    assert res.exit_code == 2 and "checkpoint.pt" in res.output, res.output
    res = runner.invoke(
        app,
        [
            "train",
            str(config),
            "--data",
            str(data),
            "--layout",
            "nope",
            "--out",
            str(tmp_path / "l"),
        ],
    )
    assert res.exit_code == 2 and "unknown dataset layout 'nope'" in res.output, res.output
    assert not RunFolder(tmp_path / "l").working().root.exists()


def test_missing_tracker_or_optuna_fails_before_work(data, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("mlflow", "optuna") else real(name, *a),
    )
    config = tmp_path / "tiny.yaml"
    config.write_text(load_config(None, TINY_OVERRIDES).to_yaml())
    runner = CliRunner()
    out = tmp_path / "m"
    res = runner.invoke(
        app, ["train", str(config), "logging.logger=MLflow", "--data", str(data), "--out", str(out)]
    )
    assert res.exit_code == 2 and "pip install 'stetho[mlflow]'" in res.output, res.output
    assert not RunFolder(out).working().root.exists()
    res = runner.invoke(app, ["tune", str(config), "--out", str(tmp_path / "t")])
    assert res.exit_code == 2 and "pip install 'stetho[tune]'" in res.output, res.output


def test_workers_are_capped_at_the_cores(monkeypatch):
    monkeypatch.setattr("stetho.training.plan.available_cores", lambda: 2)
    cfg, _ = __import__("stetho.config", fromlist=["resolve_config"]).resolve_config(
        load_config(None, ["environment.number_of_workers=4"])
    )
    warnings = runtime_warnings(cfg)
    assert cfg.environment.number_of_workers == 2
    assert any("number_of_workers=4" in w and "2 CPU core" in w for w in warnings)
