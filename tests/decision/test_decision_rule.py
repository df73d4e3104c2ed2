"""The decision rule: CE vs BCE, calibration, label/flag consistency, abstain band, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stetho.decision import Calibration, DecisionRule

CLASSES = ("artifact", "murmur", "normal")


def _probs(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(len(CLASSES)) * 0.7, size=n)


def test_cross_entropy_rule_is_one_minus_normal():
    p = _probs()
    rule = DecisionRule.default(CLASSES)
    assert rule.normal_class == "normal" and not rule.multilabel
    np.testing.assert_array_equal(rule.probabilities(p), p)
    np.testing.assert_allclose(rule.abnormal_probability(p), 1 - p[:, 2])
    flags = [d.abnormal for d in rule.decide(p)]
    assert flags == list(1 - p[:, 2] >= 0.5)


def test_bce_rule_renormalises_before_one_minus_normal():
    rng = np.random.default_rng(1)
    sig = rng.uniform(0.01, 0.99, size=(50, 3))  # independent sigmoids: rows do not sum to 1
    rule = DecisionRule.default(CLASSES, loss_function="BCE")
    assert rule.multilabel
    probs = rule.probabilities(sig)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(rule.abnormal_probability(probs), 1 - sig[:, 2] / sig.sum(axis=1))
    # Without the renormalisation many decisions would differ.
    assert ((1 - sig[:, 2] >= 0.5) != (rule.abnormal_probability(probs) >= 0.5)).sum() > 5


def test_identity_calibration_changes_nothing_and_a_real_one_does():
    p = _probs()
    n = len(CLASSES)
    ident = DecisionRule(
        CLASSES, "normal", calibration=Calibration("temperature", (1.0,) * n, (0.0,) * n)
    )
    np.testing.assert_allclose(ident.probabilities(p), p, atol=1e-12)
    cal = Calibration("vector", (0.5, 2.0, 1.5), (0.1, -0.2, 0.3))
    rule = DecisionRule(CLASSES, "normal", calibration=cal)
    z = np.array(cal.weight) * np.log(np.clip(p, 1e-12, None)) + np.array(cal.bias)
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(rule.probabilities(p), expected, atol=1e-12)


def test_label_never_contradicts_the_flag():
    p = _probs(500)
    for threshold in (0.2, 0.5, 0.8):
        rule = DecisionRule(CLASSES, "normal", threshold=threshold)
        for row, d in zip(p, rule.decide(p), strict=True):
            assert d.abnormal == (d.abnormal_probability >= threshold)
            if d.abnormal:
                assert d.label != "normal"
                assert d.label == ("artifact", "murmur")[int(np.argmax(row[:2]))]
                assert d.outcome == "abnormal"
            else:
                assert d.label == "normal" and d.outcome == "normal"
    # The case that was wrong before: normal is the most probable class yet abnormal >= 0.5.
    (d,) = DecisionRule(CLASSES, "normal").decide(np.array([[0.3, 0.3, 0.4]]))
    assert d.abnormal is True and d.label == "artifact"


def test_abstain_band_gives_re_record():
    rule = DecisionRule(CLASSES, "normal", threshold=0.5, abstain_band=(0.4, 0.6))
    p = np.array([[0.1, 0.2, 0.7], [0.2, 0.2, 0.6], [0.25, 0.25, 0.5], [0.2, 0.2, 0.4]])
    out = rule.decide(p)
    assert [d.outcome for d in out] == ["normal", "re-record", "re-record", "abnormal"]
    assert [d.abnormal for d in out] == [False, False, True, True]
    usable = rule.decide(p, usable=[False, True, True, True])
    assert usable[0].outcome == "re-record"


def test_runs_without_a_normal_class():
    rule = DecisionRule.default(["a", "b", "c"])
    assert rule.normal_class is None
    p = _probs()
    out = rule.decide(p)
    assert [d.label for d in out] == [["a", "b", "c"][i] for i in p.argmax(axis=1)]
    assert all(d.abnormal is None and d.outcome is None for d in out)
    assert np.isnan([d.abnormal_probability for d in out]).all()
    with pytest.raises(ValueError, match="normal class"):
        DecisionRule(("a", "b", "c"), None, abstain_band=(0.4, 0.6))
    # Two classes without "normal": the second class is the abnormal one.
    binary = DecisionRule.default(["absent", "present"])
    np.testing.assert_allclose(
        binary.abnormal_probability(p[:, :2] / p[:, :2].sum(1)[:, None]), p[:, 1] / p[:, :2].sum(1)
    )


def test_json_round_trip_and_validation():
    rule = DecisionRule(
        CLASSES,
        "normal",
        multilabel=True,
        calibration=Calibration("vector", (0.5, 2.0, 1.5), (0.1, -0.2, 0.3)),
        threshold=0.37,
        abstain_band=(0.3, 0.45),
        meta={"fitted_on": "oof"},
    )
    back = DecisionRule.from_dict(json.loads(json.dumps(rule.to_dict())))
    assert back == rule
    p = _probs()
    assert back.decide(p) == rule.decide(p)
    with pytest.raises(ValueError, match="threshold"):
        DecisionRule(CLASSES, "normal", threshold=1.5)
    with pytest.raises(ValueError, match="one per class"):
        DecisionRule(CLASSES, "normal", calibration=Calibration("t", (1.0,), (0.0,)))
    with pytest.raises(ValueError, match="abstain_band"):
        DecisionRule(CLASSES, "normal", abstain_band=(0.6, 0.4))
    with pytest.raises(ValueError, match="missing or malformed"):
        DecisionRule.from_dict({"normal_class": "normal"})
