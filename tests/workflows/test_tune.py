"""Hyperparameter search: the search space is checked, bad trials are pruned, and a study
killed in the middle of a trial resumes from its storage to the requested number of trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import REPO
from fixtures_runs import TINY_BASE

from stetho.config import ConfigError, load_config
from stetho.workflows.tune import load_search_space, parse_search_space, pruning_reporter, tune

TINY = [
    *TINY_BASE,
    "training.batch_size=4",
    "training.epochs=4",
    "environment.threads=1",
]
SPACE = """
training.learning_rate: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}
architecture.pool: {type: categorical, choices: [GeM, Average]}
"""


@pytest.fixture(scope="module")
def folder(noise_tone_folder: Path) -> Path:
    return noise_tone_folder


def test_search_space_is_checked_against_the_config(tmp_path):
    base = load_config(None)
    repo_space = REPO / "configs" / "search_space.yaml"
    assert "training.learning_rate" in [d.key for d in load_search_space(repo_space, base=base)]
    with pytest.raises(ConfigError, match="unknown key 'training.learning_rat'.*learning_rate"):
        parse_search_space(
            {"training.learning_rat": {"type": "float", "low": 0.1, "high": 1}}, base=base
        )
    with pytest.raises(ConfigError, match="unknown key 'trainer.epochs': no section 'trainer'"):
        parse_search_space({"trainer.epochs": {"type": "int", "low": 1, "high": 3}}, base=base)
    with pytest.raises(ConfigError, match="architecture.pool = 'Mean' is not a valid config value"):
        parse_search_space(
            {"architecture.pool": {"type": "categorical", "choices": ["GeM", "Mean"]}}, base=base
        )
    with pytest.raises(ConfigError, match="low = 0.5 must be below high = 0.1"):
        parse_search_space(
            {"architecture.dropout": {"type": "float", "low": 0.5, "high": 0.1}}, base=base
        )
    with pytest.raises(ConfigError, match="log: true needs low > 0"):
        parse_search_space(
            {"training.weight_decay": {"type": "float", "low": 0, "high": 1, "log": True}},
            base=base,
        )
    with pytest.raises(ConfigError, match="unknown field"):
        parse_search_space(
            {"training.epochs": {"type": "int", "low": 1, "high": 3, "lo": 2}}, base=base
        )


def test_a_width_the_default_configs_pretrained_backbone_lacks_is_refused_before_any_trial():
    width = {"architecture.width": {"type": "int", "low": 8, "high": 32, "step": 8}}
    default = load_config(REPO / "configs" / "heartbeat.yaml")
    assert [d.key for d in load_search_space(REPO / "configs" / "search_space.yaml", base=default)]
    with pytest.raises(ConfigError, match=r"(?s)architecture.width = 8 .*pretrained width is 16"):
        parse_search_space(width, base=default)
    scratch = load_config(REPO / "configs" / "heartbeat.yaml", ["architecture.pretrained=false"])
    assert [d.key for d in parse_search_space(width, base=scratch)] == ["architecture.width"]


def test_reporter_prunes_a_trial_below_the_median():
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=2)
    )

    def objective(trial: optuna.Trial) -> float:
        report = pruning_reporter(trial, epochs=3)
        auc = 0.9 if trial.number < 2 else 0.6
        for fold in (0, 1):
            for epoch in (1, 2, 3):
                report({"fold": fold, "epoch": epoch, "valid_macro_auc": auc})
        return auc

    study.optimize(objective, n_trials=3)
    states = [t.state for t in study.trials]
    assert states[:2] == [optuna.trial.TrialState.COMPLETE] * 2
    assert states[2] == optuna.trial.TrialState.PRUNED
    # Pruned at its first report: fold 0, epoch 1 (step 1); fold 1 epoch 1 would be step 4.
    assert list(study.trials[2].intermediate_values) == [1]


def test_killed_study_resumes_from_storage(folder, tmp_path):
    base = tmp_path / "tiny.yaml"
    base.write_text(load_config(None, TINY).to_yaml())
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    study_dir = tmp_path / "study"
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    cmd = [
        sys.executable,
        "-m",
        "stetho",
        "tune",
        str(base),
        "--trials",
        "3",
        "--storage",
        storage,
        "--space",
        str(space),
        "--out",
        str(study_dir),
        "--data",
        str(folder),
        "--no-pruning",
        "--heartbeat-seconds",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Kill it (no clean-up possible) once trial 1 has a checkpoint: mid-trial.
    deadline = time.time() + 240
    while not list((study_dir / "trial-1.partial").glob("fold-*/checkpoint.pt")):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "trial 1 never started"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name="stetho", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "RUNNING"]
    first_value = study.trials[0].value

    # The killed trial's heartbeat (1 s) goes stale after a 2 s grace period; wait well past it,
    # or on a loaded machine the next trial starts before the dead one counts as stale and its
    # retry comes one trial later.
    time.sleep(4.5)
    config = load_config(base)
    result = tune(
        config,
        space=load_search_space(space, base=config),
        trials=3,
        storage=storage,
        study_dir=study_dir,
        data=folder,
        pruning=False,
        heartbeat_s=1,
    )
    study = optuna.load_study(study_name="stetho", storage=storage)
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[0].value == first_value  # kept, not re-run
    # Trial 2 retried the killed trial 1 with its parameters, continuing its run folder.
    assert trials[2].params == trials[1].params
    assert not (study_dir / "trial-1.partial").exists()
    assert (study_dir / "trial-2" / "summary.json").exists()
    lines = (study_dir / "trial-2" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 4
    assert result.n_finished == 3
    # The best config is the full config with the best trial's values, ready to train.
    best = load_config(result.best_config)
    values = [t.value for t in trials if t.state.name == "COMPLETE"]
    assert result.best_value == max(values)
    assert best.training.learning_rate == pytest.approx(
        result.best_params["training.learning_rate"]
    )
    assert best.architecture.pool == result.best_params["architecture.pool"]
    assert best.training.epochs == 4 and best.architecture.width == 8
    assert json.loads((study_dir / "best_trial.json").read_text())["number"] == result.best_number
