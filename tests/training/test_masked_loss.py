"""The loss of set labels (dataset.label_groups) on partially labelled batches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stetho.training.optim import loss_fn

# classes: extrastole, murmur, normal; row 0 says "one of extrastole, murmur"
SET_ROW = torch.tensor([[0.5, 0.5, 0.0]])


def test_cross_entropy_of_a_set_label_is_minus_log_the_set_probability() -> None:
    logits = torch.tensor([[0.3, -1.0, 2.0]])
    loss = loss_fn(logits, SET_ROW, loss_function="CrossEntropy", partial=torch.tensor([True]))
    p = F.softmax(logits, dim=1)[0]
    assert float(loss) == pytest.approx(-math.log(float(p[0] + p[1])), rel=1e-6)


def test_a_set_label_does_not_care_how_its_mass_is_shared() -> None:
    """Moving probability between the set's members leaves the loss unchanged, moving it out
    of the set raises it; as a soft target the same row would pull both members to 0.5."""
    a = torch.tensor([[3.0, -3.0, 0.0]])
    b = torch.tensor([[-3.0, 3.0, 0.0]])
    out = torch.tensor([[-3.0, -3.0, 3.0]])
    partial = torch.tensor([True])
    la, lb, lo = (
        float(loss_fn(x, SET_ROW, loss_function="CrossEntropy", partial=partial))
        for x in (a, b, out)
    )
    assert la == pytest.approx(lb, rel=1e-6) and lo > la + 3
    soft_a = float(loss_fn(a, SET_ROW, loss_function="CrossEntropy"))
    assert soft_a > la + 1  # without the mask the row is a 50/50 soft target


def test_in_a_mixed_batch_single_labels_keep_the_ordinary_loss() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 3, requires_grad=True)
    target = torch.tensor([[0, 0, 1.0], [0.5, 0.5, 0], [0, 1.0, 0], [0.5, 0.5, 0]])
    partial = torch.tensor([False, True, False, True])
    weights = torch.tensor([1.0, 2.0, 0.5])
    per_row = [
        loss_fn(
            logits[i : i + 1],
            target[i : i + 1],
            loss_function="CrossEntropy",
            label_smoothing=0.1,
            class_weights=weights,
            partial=partial[i : i + 1],
        )
        for i in range(4)
    ]
    batch = loss_fn(
        logits,
        target,
        loss_function="CrossEntropy",
        label_smoothing=0.1,
        class_weights=weights,
        partial=partial,
    )
    assert batch.item() == pytest.approx(torch.stack(per_row).mean().item(), rel=1e-6)
    plain = loss_fn(
        logits[[0, 2]],
        target[[0, 2]],
        loss_function="CrossEntropy",
        label_smoothing=0.1,
        class_weights=weights,
    )
    assert (per_row[0] + per_row[2]).item() / 2 == pytest.approx(plain.item(), rel=1e-6)
    batch.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_bce_set_label_punishes_classes_outside_and_needs_one_inside() -> None:
    partial = torch.tensor([True])
    one_inside = torch.tensor([[4.0, -4.0, -4.0]])
    none_inside = torch.tensor([[-4.0, -4.0, -4.0]])
    outside_on = torch.tensor([[4.0, -4.0, 4.0]])
    loss = {
        name: float(loss_fn(x, SET_ROW, loss_function="BCE", partial=partial))
        for name, x in (("one", one_inside), ("none", none_inside), ("out", outside_on))
    }
    assert loss["one"] < 0.05
    assert loss["none"] > loss["one"] + 1 and loss["out"] > loss["one"] + 1
    swapped = loss_fn(one_inside[:, [1, 0, 2]], SET_ROW, loss_function="BCE", partial=partial)
    assert swapped.item() == pytest.approx(loss["one"], rel=1e-5)
