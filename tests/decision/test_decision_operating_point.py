"""Choosing the abnormal threshold and its bootstrap intervals (stetho.decision.operating_point)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from stetho.decision.operating_point import (
    OperatingPointConfig,
    abnormal_score,
    binary_metrics,
    bootstrap_ci,
    choose_threshold,
)


def scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Abnormal scores: abnormal recordings score higher, with overlap."""
    rng = np.random.default_rng(seed)
    abnormal = rng.random(n) < 0.4
    z = rng.normal(size=n) + 1.5 * abnormal
    return 1 / (1 + np.exp(-z)), abnormal


def test_sensitivity_target_is_met_on_held_out_data_at_the_highest_such_threshold() -> None:
    s_fit, a_fit = scores(4000, seed=0)
    s_test, a_test = scores(4000, seed=1)
    cfg = OperatingPointConfig(target="abnormal_sensitivity", value=0.9)
    op = choose_threshold(s_fit, a_fit, cfg)
    assert binary_metrics(s_fit, a_fit, op.threshold)["sensitivity"] >= 0.9
    # the highest: the next abnormal score above the threshold drops below the target
    above = np.sort(s_fit[a_fit & (s_fit > op.threshold)])[0]
    assert binary_metrics(s_fit, a_fit, np.nextafter(above, 1))["sensitivity"] < 0.9
    held_out = binary_metrics(s_test, a_test, op.threshold)["sensitivity"]
    assert held_out == pytest.approx(0.9, abs=0.02)


def test_specificity_and_macc_targets() -> None:
    s, a = scores(3000, seed=2)
    op = choose_threshold(s, a, OperatingPointConfig(target="specificity", value=0.8))
    assert binary_metrics(s, a, op.threshold)["specificity"] >= 0.8
    best = choose_threshold(s, a, OperatingPointConfig(target="macc", value=None))
    grid = np.linspace(0, 1, 501)
    assert best.macc >= max(binary_metrics(s, a, t)["macc"] for t in grid) - 1e-12
    youden = choose_threshold(s, a, OperatingPointConfig(target="youden", value=None))
    assert youden.threshold == best.threshold
    fixed = choose_threshold(s, a, OperatingPointConfig())
    assert fixed.threshold == 0.5 and fixed.target == "fixed"


def test_config_block_validation() -> None:
    with pytest.raises(ValidationError, match="needs a value"):
        OperatingPointConfig(target="abnormal_sensitivity", value=None)
    with pytest.raises(ValidationError):
        OperatingPointConfig(target="abnormal_sensitivity", value=1.5)
    with pytest.raises(ValidationError):
        OperatingPointConfig.model_validate({"target": "macc", "vlaue": 0.9})
    with pytest.raises(ValidationError):
        OperatingPointConfig.model_validate({"target": "accuracy"})


def test_abnormal_score_is_one_minus_renormalised_normal() -> None:
    p = np.array([[0.6, 0.6], [0.2, 0.2]])  # BCE outputs: rows do not sum to 1
    np.testing.assert_allclose(abnormal_score(p, ["murmur", "normal"]), [0.5, 0.5])
    with pytest.raises(ValueError, match="class named 'normal'"):
        abnormal_score(p, ["a", "b"])


def test_patient_bootstrap_is_wider_when_a_patient_s_recordings_agree() -> None:
    rng = np.random.default_rng(3)
    n_pat = 60
    abnormal_pat = rng.random(n_pat) < 0.5
    z_pat = rng.normal(size=n_pat) + 1.2 * abnormal_pat
    groups = np.repeat(np.arange(n_pat), 5)
    s = 1 / (1 + np.exp(-(z_pat[groups] + 0.05 * rng.normal(size=len(groups)))))
    a = abnormal_pat[groups]
    m = binary_metrics(s, a, 0.5)
    by_rec = bootstrap_ci(s, a, 0.5, n_boot=500)
    by_pat = bootstrap_ci(s, a, 0.5, groups=groups, n_boot=500)
    for key in ("sensitivity", "specificity"):
        lo, hi = by_pat[key]
        assert lo <= m[key] <= hi
        assert hi - lo > 1.5 * (by_rec[key][1] - by_rec[key][0])
