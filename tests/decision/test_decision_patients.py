"""Patient-level decisions from several recordings (stetho.decision.patients)."""

from __future__ import annotations

import numpy as np
import pytest

from stetho.decision.patients import patient_decisions, patient_ids, patient_metrics

#  patient A: one clearly abnormal site among normal ones; B: all borderline; C: one recording
PATIENTS = ["A", "A", "A", "B", "B", "C"]
SCORE = np.array([0.9, 0.1, 0.2, 0.45, 0.55, 0.3])
ABNORMAL = np.array([True, False, False, False, False, False])


def decisions(method: str, **kw: object) -> dict[str, str]:
    t = patient_decisions(PATIENTS, SCORE, 0.5, method=method, abnormal=ABNORMAL, **kw)  # type: ignore[arg-type]
    return dict(zip(t["patient"], t["decision"], strict=True))


def test_any_max_and_mean_aggregate_as_documented() -> None:
    assert decisions("any") == {"A": "abnormal", "B": "abnormal", "C": "normal"}
    assert decisions("max") == decisions("any")
    assert decisions("mean") == {"A": "normal", "B": "abnormal", "C": "normal"}
    table = patient_decisions(PATIENTS, SCORE, 0.5, method="mean", abnormal=ABNORMAL)
    assert table.set_index("patient").loc["A", "score"] == pytest.approx(0.4)
    assert table["abnormal"].tolist() == [True, False, False]  # A: any recording abnormal


def test_any_uses_the_recording_outcomes_and_re_records_only_when_all_were_set_aside() -> None:
    outcome = np.array(["re-record", "normal", "normal", "re-record", "re-record", "normal"])
    got = decisions("any", outcome=outcome)
    assert got == {"A": "normal", "B": "re-record", "C": "normal"}
    m = patient_metrics(patient_decisions(PATIENTS, SCORE, 0.5, abnormal=ABNORMAL, outcome=outcome))
    assert m["patients"] == 3 and m["coverage"] == pytest.approx(2 / 3)
    assert m["sensitivity"] == 0.0 and m["specificity"] == 1.0


def test_missing_patient_ids_are_separate_patients() -> None:
    ids = patient_ids(["p1", None, float("nan"), "", "p1"], 5)
    assert len(set(ids)) == 4 and ids[0] == ids[4] == "p1"
    with pytest.raises(ValueError, match="aggregation"):
        patient_decisions(PATIENTS, SCORE, 0.5, method="median")  # type: ignore[arg-type]
