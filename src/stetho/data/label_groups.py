"""Labels that name a set of classes rather than one (``dataset.label_groups``).

Datasets label at different depths: PASCAL says *murmur* or *extrasystole*, PhysioNet 2016
only *abnormal*. With ``label_groups: {abnormal: [extrahls, extrastole, murmur]}`` a
PhysioNet ``abnormal`` recording tells the model that its class is one of those three,
without saying which; :func:`stetho.training.optim.loss_fn` then asks only that the three
probabilities add up to a high one. Such a *set label* is never a class: the run's classes are
the single-class labels and every group's members.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

Groups = Mapping[str, Sequence[str]]


def run_classes(labels: Iterable[str], groups: Groups | None = None) -> list[str]:
    """The classes a run with these labels learns: labels that are not group names, and
    every group's members, sorted."""
    groups = groups or {}
    classes = {str(label) for label in labels if label not in groups}
    for members in groups.values():
        classes.update(members)
    return sorted(classes)


def check_label_groups(groups: Groups | None, classes: Sequence[str]) -> None:
    """``ValueError`` for a group without members, a group named like a class, or a member
    that is a group itself."""
    for name, members in (groups or {}).items():
        if not members:
            raise ValueError(f"dataset.label_groups.{name}: a group needs at least one class")
        if name in classes:
            raise ValueError(
                f"dataset.label_groups.{name}: {name!r} is also a class of the run; a group "
                "must have a name of its own"
            )
        nested = sorted(set(members) & set(groups or {}))
        if nested:
            raise ValueError(
                f"dataset.label_groups.{name}: members {nested} are groups; list classes"
            )


def is_set_label(labels: Sequence[object], groups: Groups | None) -> np.ndarray:
    """``(n,)`` bool: which labels are group names (set labels)."""
    names = set(groups or {})
    return np.fromiter((label in names for label in labels), dtype=bool, count=len(labels))


def label_targets(
    labels: Sequence[str | None], classes: Sequence[str], groups: Groups | None = None
) -> np.ndarray:
    """``(n, n_classes)`` float32: one-hot for a class, uniform over the members for a set
    label (so that class counts weigh a set label as one recording); an unknown label is an
    error."""
    index = {c: i for i, c in enumerate(classes)}
    groups = groups or {}
    y = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for row, label in enumerate(labels):
        if label is not None and label in groups:
            members = [index[m] for m in groups[label]]
            y[row, members] = 1.0 / len(members)
        elif label in index:
            y[row, index[label]] = 1.0
        else:
            known = list(classes) + sorted(groups)
            raise ValueError(f"label {label!r} is not among the classes or label groups {known}")
    return y
