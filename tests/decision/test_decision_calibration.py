"""Calibration fits (stetho.decision.calibration) on a synthetic, miscalibrated model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from stetho.decision.calibration import (
    Calibration,
    apply_calibration,
    calibration_metrics,
    compose,
    effective_prior,
    expected_calibration_error,
    fit_calibration,
    prior_correction_bias,
)

CLASSES = ["normal", "murmur", "extrastole"]
PRIOR = np.array([0.6, 0.25, 0.15])
MEANS = np.array([[0.0, 0.0], [1.5, 0.5], [0.3, 1.8]])


def true_posteriors(n: int, seed: int, prior: np.ndarray = PRIOR) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from ``prior`` and the Bayes posteriors of a 2-D Gaussian mixture."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(prior), size=n, p=prior)
    x = MEANS[y] + rng.normal(size=(n, 2))
    loglik = -0.5 * ((x[:, None, :] - MEANS[None]) ** 2).sum(axis=2)
    return np.asarray(CLASSES, dtype=object)[y], softmax(loglik + np.log(PRIOR), axis=1)


def miscalibrated(post: np.ndarray) -> np.ndarray:
    """Overconfident (logits x2.5) and trained as if the classes were balanced."""
    return softmax(2.5 * (np.log(post) - np.log(PRIOR)), axis=1)


def test_calibration_lowers_ece_and_log_loss_on_held_out_data() -> None:
    y_fit, post_fit = true_posteriors(3000, seed=0)
    y_test, post_test = true_posteriors(3000, seed=1)
    raw = miscalibrated(post_test)
    before = calibration_metrics(raw, y_test, CLASSES)
    for method in ("temperature", "vector"):
        cal = fit_calibration(miscalibrated(post_fit), y_fit, CLASSES, method)
        after = calibration_metrics(cal.apply(raw), y_test, CLASSES)
        assert after["ece"] < before["ece"] / 2, method
        assert after["log_loss"] < before["log_loss"] - 0.05, method
    # vector scaling can represent the truth exactly: weight 1/2.5, bias log(prior) / 2.5 ...
    cal = fit_calibration(miscalibrated(post_fit), y_fit, CLASSES, "vector")
    np.testing.assert_allclose(cal.weight, 0.4, atol=0.06)
    truth_ece = expected_calibration_error(post_test, y_test, CLASSES)
    assert calibration_metrics(cal.apply(raw), y_test, CLASSES)["ece"] < truth_ece + 0.03


def test_temperature_has_one_shared_weight_and_keeps_the_prior_offset() -> None:
    y, post = true_posteriors(2000, seed=2)
    offset = prior_correction_bias(PRIOR, trained_prior=np.ones(3))
    cal = fit_calibration(miscalibrated(post), y, CLASSES, "temperature", prior_bias=offset)
    assert cal.method == "prior+temperature"
    assert len(set(cal.weight)) == 1 and cal.weight[0] == pytest.approx(0.4, abs=0.05)
    np.testing.assert_allclose(cal.bias, offset - offset.mean(), atol=1e-12)
    assert set(cal.to_dict()) == {"method", "weight", "bias"}


def test_prior_correction_undoes_auto_class_weights_exactly() -> None:
    counts = PRIOR * 500  # the training data's class counts
    weights = counts.sum() / (3 * counts)  # inverse frequency, as training's ``Auto``
    np.testing.assert_allclose(effective_prior(counts, weights), 1 / 3)
    bias = prior_correction_bias(counts, class_weights=weights)
    _, post = true_posteriors(200, seed=3)
    # what a class-weighted model converges to: q(c|x) ∝ w_c p(c|x)
    weighted = post * weights / (post * weights).sum(axis=1, keepdims=True)
    assert np.abs(weighted - post).max() > 0.1
    np.testing.assert_allclose(apply_calibration(weighted, np.ones(3), bias), post, atol=1e-9)
    # BCE weights a class's whole binary loss: nothing to correct
    assert not prior_correction_bias(counts, class_weights=weights, loss_function="BCE").any()


def test_compose_equals_applying_one_after_the_other() -> None:
    _, post = true_posteriors(50, seed=4)
    first = Calibration("prior", (1.0, 1.0, 1.0), (0.3, -0.1, -0.2))
    then = Calibration("temperature", (0.5, 0.5, 0.5), (0.0, 0.2, -0.2))
    np.testing.assert_allclose(
        compose(first, then).apply(post), then.apply(first.apply(post)), atol=1e-9
    )
    vector = Calibration("vector", (0.5, 0.7, 0.9), (0.0, 0.2, -0.2))
    with pytest.raises(ValueError, match="per-class weights"):
        compose(first, vector)


def test_bad_inputs_get_specific_errors() -> None:
    y, post = true_posteriors(20, seed=5)
    with pytest.raises(ValueError, match="not among the model's classes"):
        fit_calibration(post, np.array(["normal"] * 19 + ["artifact"]), CLASSES)
    with pytest.raises(ValueError, match="calibration method"):
        fit_calibration(post, y, CLASSES, "platt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        prior_correction_bias([10, 0, 5], class_weights=[1, 1, 1])
