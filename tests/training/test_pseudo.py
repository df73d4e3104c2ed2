"""Pseudo-labelling: the leakage guard, soft labels over a threshold, and a run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from fixtures_runs import TINY_BASE, beats

from stetho.config import load_config
from stetho.training.experiment import run_experiment
from stetho.training.pseudo import candidates_for_fold, select_pseudo_labels, soft_targets

TINY = [
    *TINY_BASE,
    "training.batch_size=2",
    "training.epochs=8",
    "training.learning_rate=0.01",
    "environment.threads=1",
]


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[Path, Path]:
    """``train.csv``: 10 patients per class, each with one labelled and one unlabelled
    recording; ``unlabeled.csv`` (Hydrogen Torch's unlabeled_dataframe): 4 recordings of
    patients never seen labelled."""
    root = tmp_path_factory.mktemp("pseudo")
    rng = np.random.default_rng(0)
    rows, extra = [], []
    for label, hz in (("normal", 60.0), ("murmur", 400.0)):
        for i in range(10):
            for kind in ("a", "b"):
                name = f"{label}_{i:02d}_{kind}.wav"
                sf.write(root / name, beats(rng, 2000, 3.0, tone_hz=hz, amplitude=1.0), 2000)
                rows.append(
                    {
                        "audio": name,
                        "class": label if kind == "a" else "",
                        "patient": f"p{label}{i}",
                    }
                )
        for i in range(2):
            name = f"extra_{label}_{i}.wav"
            sf.write(root / name, beats(rng, 2000, 3.0, tone_hz=hz, amplitude=1.0), 2000)
            extra.append({"audio": name})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    pd.DataFrame(extra).to_csv(root / "unlabeled.csv", index=False)
    return root / "train.csv", root / "unlabeled.csv"


def test_candidates_exclude_validation_patients():
    labelled = pd.DataFrame(
        {"patient": ["a", "b", "c", "d"], "fold": [0, 0, 1, 1], "label": ["x", "y", "x", "y"]}
    )
    pool = pd.DataFrame(
        {
            "path": ["ua", "uc", "ue", "uf", "ub"],
            "patient": ["a", "c", "e", "f", "b"],
            # "ub" carries a wrong fold: the patient check must still exclude it from fold 0.
            "fold": [0, 1, -1, -1, 1],
        }
    )
    assert sorted(candidates_for_fold(pool, labelled, fold=0)["path"]) == ["uc", "ue", "uf"]
    assert sorted(candidates_for_fold(pool, labelled, fold=1)["path"]) == ["ua", "ue", "uf"]


def test_soft_labels_over_the_threshold():
    candidates = pd.DataFrame(
        {"path": ["p", "q", "r"], "patient": ["1", "2", "3"], "source": "s", "fold": [1, -1, 1]}
    )
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.15, 0.85]])
    table = select_pseudo_labels(
        candidates, probs, ["a", "b"], fold=0, round_=1, confidence_threshold=0.8, weight=0.5
    )
    assert table["used"].tolist() == [True, False, True]
    paths, targets, weights = soft_targets(table, ["a", "b"])
    assert paths == ["p", "r"]
    np.testing.assert_allclose(targets, [[0.9, 0.1], [0.15, 0.85]], rtol=1e-6)  # soft, not one-hot
    np.testing.assert_allclose(weights, [0.5, 0.5])
    with pytest.raises(ValueError, match="shape"):
        select_pseudo_labels(
            candidates, probs[:2], ["a", "b"], fold=0, round_=1, confidence_threshold=0.8, weight=1
        )


def test_pseudo_labelling_run_without_leakage(tables, tmp_path):
    train_csv, unlabeled_csv = tables
    plain = run_experiment(
        load_config(None, TINY), out_dir=tmp_path / "plain", data=train_csv, progress=False
    )
    cfg = load_config(
        None,
        TINY
        + [
            "pseudo_labeling.enabled=true",
            "pseudo_labeling.rounds=1",
            "pseudo_labeling.confidence_threshold=0.8",
            "pseudo_labeling.weight=0.5",
            f"dataset.unlabeled_dataframe={unlabeled_csv}",
        ],
    )
    res = run_experiment(cfg, out_dir=tmp_path / "pl", data=train_csv, progress=False)
    run = tmp_path / "pl"
    manifest = pd.read_parquet(run / "manifest.parquet")
    assert manifest["label"].isna().sum() == 24  # 20 from the table + 4 from unlabeled_dataframe
    labelled = manifest[manifest["label"].notna()]
    n_used = 0
    for k in (0, 1):
        table = pd.read_parquet(run / f"pseudo_labels_fold{k}_round1.parquet")
        fold_k_patients = set(labelled.loc[labelled["fold"] == k, "patient"])
        # The leakage guard: nothing of a patient that fold k validates on.
        assert not set(table["patient"]) & fold_k_patients
        assert (table["fold"] != k).all() and (table["teacher_fold"] == k).all()
        # Candidates: the other fold's 10 unlabelled recordings and the 4 without a fold.
        assert len(table) == 14 and (table["fold"] == -1).sum() == 4
        used = table[table["used"]]
        assert (used["confidence"] >= 0.8).all()
        probs = used[["prob_murmur", "prob_normal"]].to_numpy()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        # The file names know the hidden class: confident pseudo-labels are right.
        hidden = np.where(used["path"].str.contains("murmur"), 0, 1)
        assert (probs.argmax(axis=1) == hidden).mean() >= 0.9
        n_used += len(used)
    assert n_used >= 10
    rounds = res.summary["pseudo_labeling"]
    assert [r["round"] for r in rounds] == [0, 1]
    assert sum(rounds[1]["pseudo_labels_used"].values()) == n_used
    # Round 0 is the supervised run, to the digit: the comparison is on the same folds.
    assert rounds[0]["macro_auc"] == pytest.approx(plain.summary["pooled"]["macro_auc"], abs=1e-9)
    for k in (0, 1):
        r0 = pd.read_parquet(run / "pseudo" / "round-0" / f"fold-{k}" / "valid_predictions.parquet")
        base = pd.read_parquet(tmp_path / "plain" / f"fold-{k}" / "valid_predictions.parquet")
        np.testing.assert_allclose(r0["prob_murmur"], base["prob_murmur"], atol=1e-6)
    # The OOF scores are the last round's, and every epoch of every round is logged.
    assert res.summary["pooled"]["macro_auc"] == pytest.approx(rounds[1]["macro_auc"])
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert sorted({(x["round"], x["fold"]) for x in lines}) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len(lines) == 2 * 2 * 8
    assert res.summary["pooled"]["macro_auc"] > 0.9
