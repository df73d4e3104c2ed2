"""Mapping a dataset's label vocabulary onto what a run decides.

A dataset the run never saw names its classes its own way: PhysioNet 2016 says
``normal``/``abnormal``, CirCor ``present``/``absent``/``unknown``. Each dataset label maps to

* one of the run's classes (``present=murmur``): multi-class metrics;
* :data:`ABNORMAL` (``present=abnormal``): the run's abnormal decision, i.e. any class but its
  normal one (normal-vs-abnormal metrics; needs a run with a normal class);
* :data:`LEFT_OUT` (``unknown=-``): the recordings are not scored.

Labels that are one of the run's classes map to themselves, and ``abnormal`` maps to the
abnormal decision when the run has a normal class and no class of that name; any other label
must be mapped, or the evaluation is refused naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

#: The target "the run's abnormal decision" (any class but the normal one).
ABNORMAL = "abnormal"
#: The target that leaves a label's recordings out.
LEFT_OUT = "-"

Mode = Literal["binary", "multiclass"]


def parse_label_map(text: str | Sequence[str] | None) -> dict[str, str]:
    """``"present=abnormal,absent=normal,unknown=-"`` (or a list of such pieces) as a dict.

    Labels are compared case-insensitively (as the readers lower-case them). ``ValueError``
    for a piece without ``=``, an empty side or a label given twice.
    """
    if text is None:
        return {}
    pieces = [text] if isinstance(text, str) else list(text)
    out: dict[str, str] = {}
    for piece in (p.strip() for chunk in pieces for p in chunk.split(",")):
        if not piece:
            continue
        source, sep, target = (s.strip() for s in piece.partition("="))
        if not sep or not source or not target:
            raise ValueError(
                f"--label-map: {piece!r} is not FROM=TO; e.g. present=abnormal,absent=normal,"
                f"unknown={LEFT_OUT} (TO is a class of the run, '{ABNORMAL}' for its abnormal "
                f"decision or '{LEFT_OUT}' to leave the recordings out)"
            )
        key = source.lower()
        if key in out:
            raise ValueError(f"--label-map: label {source!r} is mapped twice")
        out[key] = target
    return out


@dataclass(frozen=True)
class LabelMapping:
    """The resolved map of a dataset's labels onto a run's targets, and what it measures."""

    #: dataset label -> run class, :data:`ABNORMAL` or :data:`LEFT_OUT`
    targets: Mapping[str, str]
    #: ``binary``: normal vs the abnormal decision; ``multiclass``: the run's classes
    mode: Mode

    def target(self, label: str | None) -> str | None:
        """The target of one dataset label (``None``: unlabelled or left out)."""
        if label is None:
            return None
        value = self.targets[str(label).lower()]
        return None if value == LEFT_OUT else value

    def to_dict(self) -> dict[str, object]:
        return {"targets": dict(self.targets), "mode": self.mode}


def resolve_label_map(
    labels: Iterable[str],
    classes: Sequence[str],
    normal_class: str | None,
    given: Mapping[str, str] | None = None,
) -> LabelMapping:
    """Map every dataset label in ``labels`` onto the run (``classes``, ``normal_class``).

    ``given`` comes from :func:`parse_label_map`. Raises ``ValueError`` naming the labels that
    map to nothing, targets that are not the run's, and an ``abnormal`` target for a run
    without a normal class.
    """
    given = {k.lower(): v for k, v in (given or {}).items()}
    vocabulary = sorted({str(label).lower() for label in labels})
    by_lower = {c.lower(): c for c in classes}
    abnormal_is_decision = normal_class is not None and ABNORMAL not in by_lower
    unused = sorted(set(given) - set(vocabulary))
    if unused:
        raise ValueError(
            f"--label-map maps {unused}, which the dataset does not have; its labels are "
            f"{vocabulary}"
        )
    targets: dict[str, str] = {}
    unknown: list[str] = []
    for label in vocabulary:
        wanted = given.get(label)
        if wanted is None:
            if label in by_lower:
                targets[label] = by_lower[label]
            elif label == ABNORMAL and abnormal_is_decision:
                targets[label] = ABNORMAL
            else:
                unknown.append(label)
            continue
        key = wanted.lower()
        if wanted == LEFT_OUT:
            targets[label] = LEFT_OUT
        elif key in by_lower:
            targets[label] = by_lower[key]
        elif key == ABNORMAL:
            if normal_class is None:
                raise ValueError(
                    f"--label-map {label}={wanted}: the run's classes {list(classes)} have no "
                    "normal class, so it makes no abnormal decision; map onto its classes"
                )
            targets[label] = ABNORMAL
        else:
            raise ValueError(
                f"--label-map {label}={wanted}: {wanted!r} is not a class of the run "
                f"({', '.join(classes)}), '{ABNORMAL}' or '{LEFT_OUT}'"
            )
    if unknown:
        raise ValueError(
            f"the dataset's label(s) {unknown} are not classes of the run "
            f"({', '.join(classes)}); map each with --label-map FROM=TO, where TO is a class, "
            f"'{ABNORMAL}' (the run's abnormal decision) or '{LEFT_OUT}' (leave out), e.g. "
            f"--label-map {','.join(f'{u}={ABNORMAL}' for u in unknown)}"
        )
    kept = {t for t in targets.values() if t != LEFT_OUT}
    if not kept:
        raise ValueError(f"--label-map leaves every label out ({vocabulary}): nothing to evaluate")
    mode: Mode = "binary" if ABNORMAL in kept and abnormal_is_decision else "multiclass"
    return LabelMapping(targets=targets, mode=mode)
