"""Which validation recordings to explain: the worst-classified, every class in turn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def select_worst(oof: pd.DataFrame, classes: Sequence[str], n: int) -> pd.DataFrame:
    """The ``n`` worst-classified validation recordings, spread over the true classes.

    Within each class, recordings are ranked by the probability given to their true class
    (lowest first); the classes then take turns (rarest first), so a dominant class cannot
    fill the list. Adds columns ``p_true``, ``predicted`` and ``p_predicted``.
    """
    if n < 0:
        raise ValueError(f"n={n}: expected a non-negative count")
    cols = [f"prob_{c}" for c in classes]
    missing = [c for c in cols + ["label", "path"] if c not in oof.columns]
    if missing:
        raise ValueError(f"oof predictions lack columns {missing}")
    df = oof[oof["label"].isin(list(classes))].copy()
    if df.empty or n == 0:
        return df.iloc[:0].assign(p_true=[], predicted=[], p_predicted=[])
    p = df[cols].to_numpy(dtype=np.float64)
    idx = {c: i for i, c in enumerate(classes)}
    df["p_true"] = p[np.arange(len(df)), df["label"].map(idx).to_numpy()]
    df["predicted"] = np.asarray(classes, dtype=object)[p.argmax(axis=1)]
    df["p_predicted"] = p.max(axis=1)
    queues = {
        c: part.sort_values(["p_true", "path"]).index.tolist()
        for c, part in sorted(df.groupby("label"), key=lambda kv: (len(kv[1]), kv[0]))
    }
    picked: list[Any] = []
    while len(picked) < n and any(queues.values()):
        for q in queues.values():
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return df.loc[picked].sort_values("p_true").reset_index(drop=True)
