"""One decision per patient from several recordings (set_b's A/B/C takes, CirCor's sites).

A patient's truth is abnormal when any of their recordings is labelled abnormal (a murmur heard
at one auscultation site is a finding for the patient). Aggregations of the recordings' abnormal
probabilities:

- ``any``: the patient is abnormal if any *accepted* recording is; "re-record" only when every
  recording was set aside. This applies the recording-level decisions as they are, band and
  unusable recordings included; the patient's score is the maximum over accepted recordings.
- ``max``: the largest abnormal probability of the patient's usable recordings, thresholded
  again (no band: one confident site is enough). Without abstention it decides as ``any``.
- ``mean``: the mean abnormal probability of the usable recordings, thresholded. More
  specific than ``max`` (one noisy site does not decide), less sensitive to a finding heard at
  one site only.

Patient ids that are missing (NaN/None/empty) make each such recording its own patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from stetho.decision.abstention import ABNORMAL, NORMAL_OUTCOME, RERECORD
from stetho.decision.operating_point import binary_metrics

Aggregation = Literal["any", "mean", "max"]
AGGREGATIONS: tuple[str, ...] = ("any", "mean", "max")


def patient_ids(patients: Sequence[object] | np.ndarray | None, n: int) -> np.ndarray:
    """Patient ids as strings, a missing id replaced by a per-recording one."""
    if patients is None:
        return np.array([f"recording-{i}" for i in range(n)], dtype=object)
    ids = pd.Series(list(patients), dtype=object)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} patient ids for {n} recordings")
    missing = ids.isna() | (ids.astype(str).str.strip() == "")
    out = ids.astype(str).to_numpy(dtype=object)
    out[missing.to_numpy()] = [f"recording-{i}" for i in np.flatnonzero(missing.to_numpy())]
    return out


def patient_decisions(
    patients: Sequence[object] | np.ndarray | None,
    score: np.ndarray,
    threshold: float,
    *,
    method: Aggregation = "any",
    abnormal: np.ndarray | None = None,
    outcome: np.ndarray | None = None,
    usable: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per patient: ``patient, n_recordings, score, decision`` (and ``abnormal`` truth).

    Args:
        patients: patient id per recording.
        score: abnormal probability per recording (calibrated).
        threshold: the recording-level threshold, applied to the patient's score.
        method: ``any``, ``mean`` or ``max`` (module docstring).
        abnormal: per-recording truth; the patient's is ``any``.
        outcome: per-recording outcome (``abnormal``/``normal``/``re-record``), needed by
            ``any``; without it every recording is accepted.
        usable: per-recording usability; ``mean``/``max`` ignore unusable recordings.
    """
    if method not in AGGREGATIONS:
        raise ValueError(f"patient aggregation {method!r}: expected one of {list(AGGREGATIONS)}")
    score = np.asarray(score, dtype=np.float64)
    n = len(score)
    df = pd.DataFrame({"patient": patient_ids(patients, n), "score": score})
    if outcome is None:
        outcome = np.where(score >= threshold, ABNORMAL, NORMAL_OUTCOME).astype(object)
    if method == "any":
        df["use"] = np.asarray(outcome, dtype=object) != RERECORD
    else:
        df["use"] = np.ones(n, bool) if usable is None else np.asarray(usable, dtype=bool)
    if abnormal is not None:
        df["abnormal"] = np.asarray(abnormal, dtype=bool)
    df["used_score"] = df["score"].where(df["use"])
    g = df.groupby("patient", sort=True)
    agg = "mean" if method == "mean" else "max"
    out = pd.DataFrame(
        {
            "n_recordings": g.size(),
            "n_used": g["use"].sum().astype(int),
            "score": g["used_score"].agg(agg),
        }
    )
    if abnormal is not None:
        out["abnormal"] = g["abnormal"].any()
    decided = out["score"].notna()
    out["decision"] = np.where(
        ~decided, RERECORD, np.where(out["score"] >= threshold, ABNORMAL, NORMAL_OUTCOME)
    )
    return out.reset_index()


def patient_metrics(table: pd.DataFrame) -> dict[str, float]:
    """Se / Sp / MAcc over the patients that got a decision, and the fraction that did."""
    if "abnormal" not in table:
        raise ValueError("patient metrics need the truth: pass abnormal= to patient_decisions")
    keep = table["decision"] != RERECORD
    part = table[keep]
    m = binary_metrics(
        (part["decision"] == ABNORMAL).to_numpy(float), part["abnormal"].to_numpy(bool), 0.5
    )
    m["patients"] = int(len(table))
    m["coverage"] = float(keep.mean()) if len(table) else float("nan")
    return m
