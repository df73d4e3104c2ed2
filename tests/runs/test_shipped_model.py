"""The ready screening model stetho ships: ``stetho:heart-v1`` (src/stetho/zoo/heart-v1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from conftest import MISSION_DIR
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from stetho.cli import app
from stetho.data.readers import read_dataset
from stetho.runs.zoo import list_models, model_card, model_dir

runner = CliRunner()


def mission_slice(n: int = 8) -> tuple[list[str], list[int]]:
    """``n`` normal and ``n`` murmur recordings of set_a and set_b, abnormal as 1."""
    manifest = read_dataset(MISSION_DIR, layout="pascal")
    files, abnormal = [], []
    for source in ("set_a", "set_b"):
        for label, flag in (("normal", 0), ("murmur", 1)):
            rows = manifest[(manifest["source"] == source) & (manifest["label"] == label)]
            files += rows["path"].head(n // 2).tolist()
            abnormal += [flag] * len(rows.head(n // 2))
    return files, abnormal


def test_heart_v1_is_shipped_with_a_card_naming_its_validation() -> None:
    assert "heart-v1" in list_models()
    card = model_card("heart-v1")
    for needed in ("leave-one-source-out", "ODC-By", "CC0", "stetho train", "training-a"):
        assert needed in card, needed
    size = sum(p.stat().st_size for p in model_dir("heart-v1").iterdir())
    assert size < 20 * 2**20


def test_predict_stetho_heart_v1_scores_recordings_offline(tmp_path: Path) -> None:
    files, abnormal = mission_slice()
    out = tmp_path / "scores.csv"
    result = runner.invoke(
        app, ["predict", "stetho:heart-v1", *files, "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    probs = table[[c for c in table.columns if c.startswith("prob_")]].to_numpy()
    assert probs.shape == (len(files), 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    # it hears murmurs: 1 - p(normal) ranks them above normal hearts
    assert roc_auc_score(abnormal, 1 - table["prob_normal"]) > 0.7
