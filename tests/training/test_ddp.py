"""Distributed training: ``stetho train --nproc 2`` (torchrun, gloo on CPU) against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from fixtures_runs import TINY_BASE

from stetho.config import load_config
from stetho.training.experiment import run_experiment

TINY = [
    *TINY_BASE,
    "training.epochs=12",
    "training.learning_rate=0.01",
    "environment.threads=1",
]


@pytest.mark.slow
def test_two_processes_match_one(two_class_folder, tmp_path):
    # One process with batch 4, against two with batch 2 each: the same 4 recordings per step.
    single = run_experiment(
        load_config(None, TINY + ["training.batch_size=4"]),
        out_dir=tmp_path / "single",
        data=two_class_folder,
        progress=False,
    )
    config = tmp_path / "tiny.yaml"
    config.write_text(load_config(None, TINY + ["training.batch_size=2"]).to_yaml())
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stetho",
            "train",
            str(config),
            "--data",
            str(two_class_folder),
            "--out",
            str(out),
            "--nproc",
            "2",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]

    # Both ranks took part: each joined the gloo group and trained every epoch of every fold,
    lines = log.splitlines()
    for rank in (0, 1):
        mine = [x for x in lines if f"default{rank}]" in x]
        assert any(f"rank {rank} of 2 joined the process group (backend gloo" in x for x in mine)
        assert sum("epoch 12: loss" in x for x in mine) == 2
    # ... on its own half of each epoch (12 training recordings per fold, 6 per rank).
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 12  # written once, not once per rank
    assert all(r["rank_samples"] == [6, 6] for r in records)
    # Rank 0 alone wrote the artifacts, once, into a sealed folder.
    assert sum("run folder" in x and "written" in x for x in lines) == 1
    assert not (tmp_path / "ddp.partial").exists()
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("checkpoint.pt"))
    assert json.loads((out / "environment.json").read_text())["world_size"] == 2
    assert sorted(p.parent.name for p in out.glob("fold-*/model.safetensors")) == [
        "fold-0",
        "fold-1",
    ]

    # The result matches the single-process run within tolerance.
    ddp = json.loads((out / "summary.json").read_text())
    auc_single, auc_ddp = single.summary["pooled"]["macro_auc"], ddp["pooled"]["macro_auc"]
    assert auc_single > 0.9 and auc_ddp > 0.9
    assert abs(auc_ddp - auc_single) <= 0.05
    oof = pd.read_parquet(out / "oof_predictions.parquet").set_index("path")
    ref = single.oof.set_index("path").loc[oof.index]
    cols = ["prob_murmur", "prob_normal"]
    agree = (oof[cols].to_numpy().argmax(1) == ref[cols].to_numpy().argmax(1)).mean()
    assert agree >= 0.9
    assert np.abs(oof[cols].to_numpy() - ref[cols].to_numpy()).mean() < 0.05
