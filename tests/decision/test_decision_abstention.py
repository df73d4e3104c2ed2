"""Abstaining near the threshold (stetho.decision.abstention)."""

from __future__ import annotations

import numpy as np
import pytest

from stetho.decision.abstention import abstain_band, accepted_metrics, outcomes, risk_coverage


def scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    abnormal = rng.random(n) < 0.4
    z = rng.normal(size=n) + 1.5 * abnormal - 0.4
    return 1 / (1 + np.exp(-z)), abnormal


def test_band_holds_its_coverage_on_held_out_data_and_raises_accepted_accuracy() -> None:
    s_fit, _ = scores(4000, seed=0)
    s_test, a_test = scores(4000, seed=1)
    t = 0.4
    lo, hi = abstain_band(s_fit, t, 0.9)
    assert lo < t < hi
    out = outcomes(s_test, t, (lo, hi))
    correct = (s_test >= t) == a_test
    m = accepted_metrics(out, a_test, correct=correct)
    assert m["coverage"] == pytest.approx(0.9, abs=0.02)
    assert m["accuracy"] > correct.mean() + 0.02
    assert m["macc"] > accepted_metrics(outcomes(s_test, t), a_test)["macc"]


def test_unusable_recordings_are_re_recorded_whatever_their_score() -> None:
    s = np.array([0.99, 0.01, 0.5, 0.7])
    out = outcomes(s, 0.5, (0.45, 0.55), usable=[False, True, True, True])
    assert out.tolist() == ["re-record", "normal", "re-record", "abnormal"]
    with pytest.raises(ValueError, match="usable has"):
        outcomes(s, 0.5, usable=[True])
    assert abstain_band(s, 0.5, 1.0) == (0.5, 0.5)
    with pytest.raises(ValueError, match="coverage"):
        abstain_band(s, 0.5, 0.0)


def test_risk_coverage_curve_improves_as_coverage_falls() -> None:
    s, a = scores(3000, seed=2)
    curve = risk_coverage(s, a, 0.4, coverages=(1.0, 0.9, 0.7, 0.5))
    assert curve["coverage"].tolist() == pytest.approx([1.0, 0.9, 0.7, 0.5], abs=1e-3)
    assert curve["accuracy"].is_monotonic_increasing
    assert curve["macc"].iloc[-1] > curve["macc"].iloc[0]
