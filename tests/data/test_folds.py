"""Patient-grouped folds: on the mission set and on small synthetic manifests."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stetho.data.folds import assign_folds, fold_indices, source_names
from stetho.data.readers import read_dataset


@pytest.fixture(scope="module")
def mission(mission_dir: Path) -> pd.DataFrame:
    return read_dataset(mission_dir)


def _toy(n_patients: int = 40, per_patient: int = 3, seed: int = 0) -> pd.DataFrame:
    """``n_patients`` patients with ``per_patient`` recordings each; a quarter are 'murmur',
    and every patient has one extra unlabelled recording; two sources."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = "murmur" if p % 4 == 0 else "normal"
        source = "s1" if p % 2 else "s2"
        for r in range(per_patient + 1):
            rows.append(
                {
                    "path": f"/d/{p}_{r}.wav",
                    "label": label if r < per_patient else None,
                    "patient": f"{source}/{p}",
                    "source": source,
                    "duration_s": float(rng.uniform(1, 5)),
                    "sample_rate": 4000,
                    "fold": -1,
                }
            )
    rows.append({**rows[-1], "path": "/d/lonely.wav", "patient": "s1/lonely", "label": None})
    return pd.DataFrame(rows)


def _patients_in_one_fold(df: pd.DataFrame) -> bool:
    assigned = df[df["fold"] >= 0]
    return bool(assigned.groupby("patient")["fold"].nunique().max() == 1)


def test_mission_kfold_groups_patients_and_keeps_class_ratios(mission: pd.DataFrame) -> None:
    folds = assign_folds(mission, n_splits=5, seed=0)
    labelled = folds[folds["label"].notna()]
    assert sorted(labelled["fold"].unique()) == [0, 1, 2, 3, 4]
    assert _patients_in_one_fold(folds)
    overall = labelled["label"].value_counts(normalize=True)
    for _, fold in labelled.groupby("fold"):
        ratios = fold["label"].value_counts(normalize=True).reindex(overall.index, fill_value=0)
        assert (ratios - overall).abs().max() < 0.05
        assert 0.15 < len(fold) / len(labelled) < 0.25
    # Unlabelled recordings of a patient with labelled ones share that patient's fold.
    set_b_unlabelled = folds[(folds["source"] == "set_b") & folds["label"].isna()]
    assert (set_b_unlabelled["fold"] >= 0).sum() == 188
    assert (folds.loc[folds["label"].isna() & (folds["source"] == "set_a"), "fold"] == -1).all()


def test_same_seed_same_folds_other_seed_other_folds(mission: pd.DataFrame) -> None:
    a = assign_folds(mission, seed=1)["fold"]
    b = assign_folds(mission, seed=1)["fold"]
    c = assign_folds(mission, seed=2)["fold"]
    pd.testing.assert_series_equal(a, b)
    assert (a != c).mean() > 0.3


def test_input_is_not_modified(mission: pd.DataFrame) -> None:
    before = mission["fold"].copy()
    assign_folds(mission)
    pd.testing.assert_series_equal(mission["fold"], before)


def test_holdout_size(mission: pd.DataFrame) -> None:
    folds = assign_folds(mission, strategy="holdout", validation_size=0.2, seed=0)
    labelled = folds[folds["label"].notna()]
    assert set(labelled["fold"]) == {0, 1}
    patients = labelled.groupby("fold")["patient"].nunique()
    assert patients[1] / patients.sum() == pytest.approx(0.2, abs=0.03)
    assert _patients_in_one_fold(folds)
    assert set(labelled.loc[labelled["fold"] == 1, "label"]) == set(labelled["label"])


@pytest.mark.parametrize("size", [0.1, 0.25, 0.5, 0.8])
def test_holdout_sizes_on_toy(size: float) -> None:
    folds = assign_folds(_toy(n_patients=80), strategy="holdout", validation_size=size)
    labelled = folds[folds["label"].notna()]
    share = labelled.groupby("fold")["patient"].nunique()[1] / labelled["patient"].nunique()
    assert share == pytest.approx(size, abs=0.06)


def test_leave_source_out(mission: pd.DataFrame) -> None:
    with pytest.warns(UserWarning, match="'artifact', 'extrahls', 'extrastole' occur in one"):
        folds = assign_folds(mission, strategy="leave_source_out")
    assert source_names(mission) == ["set_a", "set_b"]
    labelled = folds[folds["label"].notna()]
    assert labelled.groupby("source")["fold"].unique().map(list).to_dict() == {
        "set_a": [0],
        "set_b": [1],
    }


def test_fold_column_strategy() -> None:
    df = _toy(n_patients=8)
    df["my_fold"] = df.index // 4 % 2  # patients have 4 consecutive rows
    folds = assign_folds(df, strategy="fold_column", fold_column="my_fold")
    labelled = folds["label"].notna()
    assert folds.loc[labelled, "fold"].tolist() == df.loc[labelled, "my_fold"].tolist()
    assert folds.loc[folds["path"] == "/d/lonely.wav", "fold"].item() == -1
    with pytest.raises(ValueError, match="fold_column=None must name a column"):
        assign_folds(df, strategy="fold_column")
    df.loc[0, "my_fold"] = -3
    with pytest.raises(ValueError, match=r"integer folds >= 0.*/d/0_0\.wav"):
        assign_folds(df, strategy="fold_column", fold_column="my_fold")


def test_fold_column_that_splits_a_patient_warns() -> None:
    df = _toy(n_patients=8)
    df["my_fold"] = np.arange(len(df)) % 2
    with pytest.warns(UserWarning, match="recordings in several folds"):
        assign_folds(df, strategy="fold_column", fold_column="my_fold")


def test_unlabelled_rows_follow_their_patient() -> None:
    folds = assign_folds(_toy(), n_splits=4)
    last = folds.groupby("patient").tail(1).set_index("patient")["fold"]
    first = folds.groupby("patient").head(1).set_index("patient")["fold"]
    assert (last.drop("s1/lonely") == first.drop("s1/lonely")).all()
    assert last["s1/lonely"] == -1


def test_impossible_and_poor_splits() -> None:
    df = _toy(n_patients=6)
    with pytest.raises(ValueError, match="n_splits=7 is more than the 6 patient group"):
        assign_folds(df, n_splits=7)
    with pytest.warns(UserWarning, match=r"fewer patient groups than n_splits=3: 'murmur' \(2\)"):
        assign_folds(df, n_splits=3)
    with pytest.raises(ValueError, match="strategy='loo'"):
        assign_folds(df, strategy="loo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no labelled recordings"):
        assign_folds(df.assign(label=None))


def test_no_warning_for_a_healthy_split() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assign_folds(_toy(), n_splits=5)


def test_fold_indices() -> None:
    folds = assign_folds(_toy(), n_splits=4)
    train, valid = fold_indices(folds, 2)
    assert set(folds.iloc[valid]["fold"]) == {2}
    assert 2 not in set(folds.iloc[train]["fold"])
    assert folds.iloc[np.concatenate([train, valid])]["label"].notna().all()
    assert len(train) + len(valid) == folds["label"].notna().sum()
    with pytest.raises(ValueError, match=r"no labelled recordings in fold 9; folds present: \[0"):
        fold_indices(folds, 9)


def test_refusals_say_what_was_found_and_what_is_needed() -> None:
    df = _toy(n_patients=6)
    with pytest.raises(ValueError, match=r"found 25 recording\(s\), none labelled; .*two classes"):
        assign_folds(df.assign(label=None))
    one = df.assign(label=df["label"].where(df["label"].isna(), "normal"))
    with pytest.raises(
        ValueError, match=r"found one class, 'normal' \(18 recording\(s\) and 7 unlabelled\)"
    ):
        assign_folds(one)
