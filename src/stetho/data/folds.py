"""Patient-grouped, label-stratified validation folds, written into the Manifest's ``fold``.

Recordings of one patient are strongly alike (same chest, same day, same device). A patient
with recordings on both sides of a split lets a model score by recognising the patient, so
every strategy here keeps all recordings of a group (``patient``) in one fold.

Folds are assigned to labelled rows. An unlabelled row takes the fold of its patient when
that patient has labelled rows (so a later pseudo-labelling step can tell that it belongs to
a validation patient and must not be trained on while that fold validates); otherwise it
gets ``-1`` (not assigned).
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

Strategy = Literal["kfold", "holdout", "leave_source_out", "fold_column"]
STRATEGIES = ("kfold", "holdout", "leave_source_out", "fold_column")

#: The hold-out split is built from this many stratified group folds (fewer when there are
#: fewer groups), so ``validation_size`` is met in steps of 1/20.
HOLDOUT_RESOLUTION = 20


def source_names(df: pd.DataFrame) -> list[str]:
    """Sorted source names: with ``strategy="leave_source_out"`` fold ``k`` holds out
    ``source_names(df)[k]``."""
    return sorted(str(s) for s in df["source"].unique())


def _groups_per_class(labels: pd.Series, groups: pd.Series) -> pd.Series:
    return pd.DataFrame({"label": labels, "group": groups}).groupby("label")["group"].nunique()


def _stratified_group_folds(
    labels: pd.Series, groups: pd.Series, *, n_splits: int, seed: int
) -> np.ndarray:
    """Fold id per row from :class:`~sklearn.model_selection.StratifiedGroupKFold`."""
    folds = np.full(len(labels), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Our own warning (patients per class, not recordings) has been issued already.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for k, (_, test) in enumerate(
            splitter.split(np.zeros(len(labels)), labels.to_numpy(), groups.to_numpy())
        ):
            folds[test] = k
    return folds


def _check_splits(labels: pd.Series, groups: pd.Series, n_splits: int, what: str) -> None:
    n_groups = groups.nunique()
    if n_splits > n_groups:
        raise ValueError(
            f"{what}: n_splits={n_splits} is more than the {n_groups} patient group(s) with "
            "labelled recordings; lower n_splits or use strategy='holdout'"
        )
    per_class = _groups_per_class(labels, groups)
    short = per_class[per_class < n_splits]
    if len(short):
        counts = ", ".join(f"{label!r} ({n})" for label, n in short.items())
        warnings.warn(
            f"{what}: class(es) with fewer patient groups than n_splits={n_splits}: {counts}; "
            "some folds validate without them",
            UserWarning,
            stacklevel=3,
        )


#: What a classifier's data needs, said in every refusal of a dataset without it.
_NEEDED = (
    "validation folds need labelled recordings of at least two classes (a folder: one "
    "subfolder per class, e.g. normal/ and abnormal/; a table: a label column)"
)


def _check_classes(labels: pd.Series, n_rows: int) -> None:
    """Refuse data that cannot train a classifier, saying what was found and what is needed."""
    counts = labels.astype(str).value_counts()
    if len(counts) == 0:
        raise ValueError(
            f"assign_folds: no labelled recordings to split: found {n_rows} recording(s), none "
            f"labelled; {_NEEDED}"
        )
    if len(counts) == 1:
        label, n = next(iter(counts.items()))
        unlabelled = n_rows - n
        also = f" and {unlabelled} unlabelled" if unlabelled else ""
        raise ValueError(
            f"assign_folds: found one class, {label!r} ({n} recording(s){also}); {_NEEDED}"
        )


def assign_folds(
    df: pd.DataFrame,
    *,
    n_splits: int = 5,
    seed: int = 0,
    group_column: str = "patient",
    label_column: str = "label",
    strategy: Strategy = "kfold",
    validation_size: float = 0.2,
    fold_column: str | None = None,
) -> pd.DataFrame:
    """Return a copy of the manifest ``df`` with its ``fold`` column set.

    Strategies
    ----------
    ``kfold``
        ``n_splits`` folds by :class:`~sklearn.model_selection.StratifiedGroupKFold`
        (``shuffle=True, random_state=seed``): whole groups per fold, class proportions kept
        close. Fold ids ``0 .. n_splits-1``.
    ``holdout``
        One split: fold ``1`` is validation (about ``validation_size`` of the groups, class-
        stratified where the groups allow), fold ``0`` is training.
    ``leave_source_out``
        Fold ``k`` is every recording of source ``source_names(df)[k]``; ``n_splits`` is
        ignored. Needs at least two sources.
    ``fold_column``
        The fold ids of the user's column ``fold_column`` (integers >= 0 on labelled rows).

    Unlabelled rows (missing ``label_column``) get the fold of their group when the group has
    labelled rows, else ``-1``. Deterministic for a given ``seed``.

    Raises ``ValueError`` for impossible requests (more folds than groups, an unknown
    strategy, a group spanning several sources); warns (``UserWarning``) when a class has
    fewer groups than folds, so that some folds cannot validate it.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}: expected one of {', '.join(STRATEGIES)}")
    for column in (group_column, label_column):
        if column not in df.columns:
            raise ValueError(f"assign_folds: no column {column!r}; columns are {list(df.columns)}")
    if df[group_column].isna().any():
        raise ValueError(
            f"assign_folds: {int(df[group_column].isna().sum())} row(s) have no "
            f"{group_column!r}; every recording needs a group (its own id if nothing better)"
        )
    out = df.copy()
    labelled = out[label_column].notna().to_numpy()
    _check_classes(out.loc[labelled, label_column], len(out))
    labels = out.loc[labelled, label_column].astype(str)
    groups = out.loc[labelled, group_column].astype(str)

    if strategy == "kfold":
        if n_splits < 2:
            raise ValueError(f"kfold: n_splits={n_splits}, expected at least 2")
        _check_splits(labels, groups, n_splits, "kfold")
        folds = _stratified_group_folds(labels, groups, n_splits=n_splits, seed=seed)
    elif strategy == "holdout":
        folds = _holdout(labels, groups, validation_size=validation_size, seed=seed)
    elif strategy == "leave_source_out":
        folds = _leave_source_out(out, labelled, labels, groups)
    else:
        folds = _user_folds(out, labelled, fold_column)

    fold = pd.Series(-1, index=out.index, dtype="int64")
    fold[labelled] = folds
    by_group = pd.Series(folds, index=groups.to_numpy()).groupby(level=0)
    split_groups = by_group.nunique()
    split_groups = split_groups[split_groups > 1]
    if len(split_groups):
        warnings.warn(
            f"{strategy}: {len(split_groups)} group(s) have recordings in several folds "
            f"(e.g. {', '.join(split_groups.index[:5])}): validation scores will be optimistic",
            UserWarning,
            stacklevel=2,
        )
    group_fold = by_group.first()
    unlabelled = ~labelled
    fold[unlabelled] = (
        out.loc[unlabelled, group_column].astype(str).map(group_fold).fillna(-1).astype("int64")
    )
    out["fold"] = fold
    return out


def _holdout(
    labels: pd.Series, groups: pd.Series, *, validation_size: float, seed: int
) -> np.ndarray:
    if not 0 < validation_size < 1:
        raise ValueError(f"holdout: validation_size={validation_size}, expected 0 < size < 1")
    n_groups = groups.nunique()
    if n_groups < 2:
        raise ValueError(
            f"holdout: {n_groups} patient group with labelled recordings; need at least 2"
        )
    per_class = _groups_per_class(labels, groups)
    single = per_class[per_class < 2]
    if len(single):
        warnings.warn(
            f"holdout: class(es) with a single patient group appear on one side only: "
            f"{', '.join(map(repr, single.index))}",
            UserWarning,
            stacklevel=3,
        )
    # k small stratified group folds; the first round(size * k) of them validate.
    k = int(min(HOLDOUT_RESOLUTION, n_groups, labels.value_counts().max()))
    k = max(k, 2)
    n_valid = int(np.clip(round(validation_size * k), 1, k - 1))
    small = _stratified_group_folds(labels, groups, n_splits=k, seed=seed)
    return (small < n_valid).astype(np.int64)


def _leave_source_out(
    df: pd.DataFrame, labelled: np.ndarray, labels: pd.Series, groups: pd.Series
) -> np.ndarray:
    names = source_names(df)
    if len(names) < 2:
        raise ValueError(f"leave_source_out: needs at least 2 sources, the manifest has {names}")
    sources = df.loc[labelled, "source"].astype(str)
    spanning = pd.Series(sources.to_numpy(), index=groups.to_numpy()).groupby(level=0).nunique()
    spanning = spanning[spanning > 1]
    if len(spanning):
        raise ValueError(
            f"leave_source_out: group(s) {', '.join(spanning.index[:5])} have recordings in "
            "several sources; prefix patient ids with their source"
        )
    classes_per_source = pd.crosstab(labels.to_numpy(), sources.to_numpy()) > 0
    only_one = classes_per_source.index[classes_per_source.sum(axis=1) == 1]
    if len(only_one):
        warnings.warn(
            f"leave_source_out: class(es) {', '.join(map(repr, only_one))} occur in one source "
            "only: when it is held out they are never trained on",
            UserWarning,
            stacklevel=3,
        )
    return sources.map({name: k for k, name in enumerate(names)}).to_numpy(np.int64)


def _user_folds(df: pd.DataFrame, labelled: np.ndarray, fold_column: str | None) -> np.ndarray:
    if fold_column is None or fold_column not in df.columns:
        raise ValueError(
            f"fold_column strategy: fold_column={fold_column!r} must name a column of fold ids; "
            f"columns are {list(df.columns)}"
        )
    rows = df.loc[labelled]
    values = pd.to_numeric(rows[fold_column], errors="coerce")
    bad = values.isna() | (values < 0) | (values != values.round())
    if bad.any():
        examples = ", ".join(
            f"{p} ({v!r})" for p, v in rows.loc[bad, ["path", fold_column]].head().to_numpy()
        )
        raise ValueError(
            f"fold_column strategy: column {fold_column!r} must hold integer folds >= 0 for "
            f"labelled recordings, got {examples}"
        )
    return values.to_numpy(np.int64)


def fold_indices(
    df: pd.DataFrame, fold: int, *, label_column: str = "label"
) -> tuple[np.ndarray, np.ndarray]:
    """Positional indices (for ``df.iloc``) of the labelled rows that train and validate
    ``fold``: validation is ``fold == fold``, training every other assigned fold (>= 0)."""
    labelled = df[label_column].notna().to_numpy()
    folds = df["fold"].to_numpy()
    valid = np.flatnonzero(labelled & (folds == fold))
    if len(valid) == 0:
        raise ValueError(
            f"fold_indices: no labelled recordings in fold {fold}; folds present: "
            f"{sorted(set(folds[labelled].tolist()))}"
        )
    train = np.flatnonzero(labelled & (folds >= 0) & (folds != fold))
    return train, valid
