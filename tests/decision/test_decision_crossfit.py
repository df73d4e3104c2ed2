"""Cross-fitted decisions (stetho.decision.crossfit): the fold reported is never fitted on."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from stetho.decision.calibration import prior_correction_bias
from stetho.decision.crossfit import DecisionSpec, cross_fit, fit_decision
from stetho.decision.operating_point import OperatingPointConfig

CLASSES = ["normal", "murmur", "extrastole"]
PRIOR = np.array([0.6, 0.25, 0.15])
MEANS = np.array([[0.0, 0.0], [1.5, 0.5], [0.3, 1.8]])


def oof(n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, 5 folds, 2 recordings per patient, and a miscalibrated class-weighted model."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=PRIOR)
    x = MEANS[y] + rng.normal(size=(n, 2))
    loglik = -0.5 * ((x[:, None, :] - MEANS[None]) ** 2).sum(axis=2)
    probs = softmax(2.0 * loglik, axis=1)  # balanced prior, overconfident
    patients = np.arange(n) // 2
    folds = patients % 5
    return np.asarray(CLASSES, dtype=object)[y], probs, folds, patients


def test_the_reported_fold_is_never_seen_in_fitting() -> None:
    labels, probs, folds, patients = oof()
    spec = DecisionSpec(
        calibration="auto",
        operating_point=OperatingPointConfig(target="abnormal_sensitivity", value=0.9),
        coverage=0.9,
    )
    clean = cross_fit(probs, labels, folds, CLASSES, spec, patients=patients, n_boot=50)
    poisoned_labels = labels.copy()
    poisoned_labels[folds == 2] = "extrastole"  # fold 2's labels are nonsense now
    poisoned = cross_fit(probs, poisoned_labels, folds, CLASSES, spec, patients=patients, n_boot=50)
    assert poisoned.fitted[2] == clean.fitted[2]  # fold 2's rule: fitted without fold 2
    for k in (0, 1, 3, 4):  # every other fold's rule did see fold 2
        assert poisoned.fitted[k] != clean.fitted[k]
    same = (clean.decisions["fold"] == 2).to_numpy()
    cols = ["prob_normal", "abnormal_probability", "outcome", "predicted"]
    assert clean.decisions.loc[same, cols].equals(poisoned.decisions.loc[same, cols])


def test_cross_fitted_rule_is_calibrated_and_meets_its_target() -> None:
    labels, probs, folds, patients = oof(n=1500, seed=1)
    spec = DecisionSpec(
        calibration="vector",
        operating_point=OperatingPointConfig(target="abnormal_sensitivity", value=0.9),
        coverage=0.8,
        patient_aggregation="mean",
    )
    res = cross_fit(probs, labels, folds, CLASSES, spec, patients=patients, n_boot=200)
    before, after = res.metrics["before"], res.metrics["after"]
    assert after["ece"] < 0.05 < before["ece"]
    assert after["log_loss"] < before["log_loss"]
    assert after["sensitivity"] == pytest.approx(0.9, abs=0.04)
    lo, hi = after["specificity_ci"]
    assert lo <= after["specificity"] <= hi
    assert res.metrics["accepted"]["coverage"] == pytest.approx(0.8, abs=0.04)
    assert res.metrics["accepted"]["macc"] > after["macc"]
    assert res.metrics["patients"]["patients"] == len(np.unique(patients))
    # labels stay consistent with the abnormal flag
    d = res.decisions
    flagged = d["abnormal_probability"] >= d["threshold"]
    assert ((d["predicted"] != "normal") == flagged).all()


def test_per_fold_prior_offsets_reach_the_rule() -> None:
    labels, probs, folds, _ = oof(n=600, seed=2)
    offset = prior_correction_bias(PRIOR, trained_prior=np.ones(3))
    offsets = {k: offset for k in range(5)}
    spec = DecisionSpec(calibration="prior", operating_point=OperatingPointConfig())
    res = cross_fit(probs, labels, folds, CLASSES, spec, offsets=offsets, n_boot=10)
    rule = res.fitted[0].rule_dict(offset)
    assert rule["calibration"]["method"] == "prior"
    np.testing.assert_allclose(rule["calibration"]["bias"], offset - offset.mean())
    assert rule["threshold"] == 0.5 and rule["abstain_band"] is None
    with pytest.raises(ValueError, match="no prior correction given for folds"):
        cross_fit(probs, labels, folds, CLASSES, spec, offsets={0: offset}, n_boot=10)


def test_unusable_recordings_are_re_recorded_and_one_fold_is_refused() -> None:
    labels, probs, folds, _ = oof(n=300, seed=3)
    usable = np.ones(len(labels), bool)
    usable[:7] = False
    spec = DecisionSpec(calibration="temperature", coverage=1.0)
    res = cross_fit(probs, labels, folds, CLASSES, spec, usable=usable, n_boot=10)
    assert (res.decisions["outcome"][:7] == "re-record").all()
    assert (res.decisions["outcome"][7:] != "re-record").all()
    with pytest.raises(ValueError, match="at least two folds"):
        cross_fit(probs, labels, np.zeros(len(labels)), CLASSES, spec)
    with pytest.raises(ValueError, match="needs both normal and abnormal"):
        fit_decision(probs[:5], ["normal"] * 5, CLASSES, DecisionSpec(calibration="none"))
