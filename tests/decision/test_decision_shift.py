"""Label-shift EM and the shift indicator (stetho.decision.shift)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from stetho.decision.shift import estimate_priors, shift_indicator

CLASSES = ["normal", "murmur", "extrastole"]
TRAIN_PRIOR = np.array([0.6, 0.25, 0.15])
MEANS = np.array([[0.0, 0.0], [2.0, 0.5], [0.3, 2.2]])


def batch(n: int, prior: np.ndarray, seed: int, offset: float = 0.0) -> np.ndarray:
    """Calibrated posteriors (under the training prior) of recordings drawn with ``prior``."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=prior)
    x = MEANS[y] + rng.normal(size=(n, 2)) + offset
    loglik = -0.5 * ((x[:, None, :] - MEANS[None]) ** 2).sum(axis=2)
    return softmax(loglik + np.log(TRAIN_PRIOR), axis=1)


def test_em_recovers_a_known_prior_shift() -> None:
    new_prior = np.array([0.3, 0.5, 0.2])
    res = estimate_priors(batch(4000, new_prior, seed=0), TRAIN_PRIOR)
    assert res.converged
    np.testing.assert_allclose(res.prior, new_prior, atol=0.03)
    expected = np.log(new_prior) - np.log(TRAIN_PRIOR)
    np.testing.assert_allclose(res.bias, expected - expected.mean(), atol=0.12)
    same = estimate_priors(batch(4000, TRAIN_PRIOR, seed=1), TRAIN_PRIOR)
    np.testing.assert_allclose(same.prior, TRAIN_PRIOR, atol=0.03)
    with pytest.raises(ValueError, match="one per class"):
        estimate_priors(batch(10, TRAIN_PRIOR, seed=2), [0.5, 0.5])


def test_shift_indicator_flags_an_unlike_batch_only() -> None:
    train = batch(1500, TRAIN_PRIOR, seed=3)
    alike = shift_indicator(train, batch(500, TRAIN_PRIOR, seed=4), CLASSES)
    assert not alike.looks_shifted and "looks like" in alike.message
    moved = shift_indicator(train, batch(500, TRAIN_PRIOR, seed=5, offset=1.0), CLASSES)
    assert moved.looks_shifted and "unlike the training data" in moved.message
    assert moved.wasserstein > alike.wasserstein
