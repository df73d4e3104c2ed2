import math

import numpy as np
import pytest

from stetho.metrics import classification_metrics, discriminant_power, normal_vs_abnormal

CLASSES = ["extrastole", "murmur", "normal"]


def test_perfect_scores():
    y = np.array(["normal", "murmur", "extrastole", "normal"])
    probs = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0], [0.1, 0.1, 0.8]], dtype=float)
    m = classification_metrics(y, probs, CLASSES)
    assert m["macro_auc"] == 1.0 and m["balanced_accuracy"] == 1.0
    assert m["per_class"]["murmur"]["youden"] == 1.0
    assert m["confusion_matrix"]["matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 2]]
    assert m["physionet2016"]["macc"] == 1.0


def test_known_confusion_gives_known_sensitivity_specificity():
    # 4 normal (3 right), 2 murmur (1 right, 1 called normal)
    y = np.array(["normal"] * 4 + ["murmur"] * 2)
    probs = np.array([[0.0, 0.2, 0.8]] * 3 + [[0.0, 0.7, 0.3]] + [[0.0, 0.9, 0.1], [0.0, 0.4, 0.6]])
    m = classification_metrics(y, probs, CLASSES)
    mur = m["per_class"]["murmur"]
    assert mur["sensitivity"] == pytest.approx(0.5)
    assert mur["specificity"] == pytest.approx(0.75)
    assert mur["precision"] == pytest.approx(0.5)
    assert mur["youden"] == pytest.approx(0.25)
    assert math.isnan(m["per_class"]["extrastole"]["auc"])  # no positives: undefined, not 0.5
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 0.5) / 2)


def test_discriminant_power_formula():
    se, sp = 0.8, 0.9
    expected = math.sqrt(3) / math.pi * (math.log(0.8 / 0.2) + math.log(0.9 / 0.1))
    assert discriminant_power(se, sp) == pytest.approx(expected)


def test_macc_uses_one_minus_p_normal():
    y = np.array(["normal", "normal", "murmur", "extrastole"])
    probs = np.array([[0.1, 0.1, 0.8], [0.5, 0.2, 0.3], [0.1, 0.7, 0.2], [0.3, 0.3, 0.4]])
    r = normal_vs_abnormal(y, probs, CLASSES)
    # abnormal scores: 0.2, 0.7, 0.8, 0.6 -> predictions at 0.5: N, A, A, A
    assert r["sensitivity"] == 1.0 and r["specificity"] == 0.5 and r["macc"] == 0.75


def test_shape_and_label_errors_are_specific():
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(["normal"], np.zeros((1, 2)), CLASSES)
    with pytest.raises(ValueError, match="artifact"):
        classification_metrics(["artifact"], np.zeros((1, 3)), CLASSES)


def test_set_labels_leave_the_multiclass_figures_and_stay_in_normal_vs_abnormal() -> None:
    classes = ["extrastole", "murmur", "normal"]
    groups = {"abnormal": ["extrastole", "murmur"]}
    probs = np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8], [0.0, 0.9, 0.1]])
    m = classification_metrics(
        np.array(["abnormal", "abnormal", "normal", "murmur"]), probs, classes, groups=groups
    )
    assert m["n"] == 2 and m["n_set_labelled"] == 2
    # normal vs abnormal scores all four: the two set labels count as abnormal
    assert m["physionet2016"]["auc"] == pytest.approx(5 / 6)
    only_sets = classification_metrics(
        np.array(["abnormal", "abnormal"]), probs[:2], classes, groups=groups
    )
    assert only_sets["n"] == 0 and np.isnan(only_sets["macro_auc"])
    # a group that includes normal cannot say abnormal: left out of normal vs abnormal too
    with_normal = {"any": ["murmur", "normal"], **groups}
    m = classification_metrics(
        np.array(["abnormal", "any", "normal", "murmur"]), probs, classes, groups=with_normal
    )
    assert m["physionet2016"]["auc"] == pytest.approx(1.0)  # 0.5, 0.9 over 0.2; "any" out
