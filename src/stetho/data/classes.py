"""What a person reads for a class name: ``extrahls`` is "extra heart sound".

Class names stay as the datasets spell them everywhere data is stored or exchanged (labels,
``prob_<class>`` columns, run files); only what is shown to a person uses :func:`display_name`.
"""

from __future__ import annotations

#: Display names of the class names our readers produce (PASCAL, PhysioNet 2016, CirCor 2022).
DISPLAY_NAMES: dict[str, str] = {
    # PASCAL / Kaggle heartbeat-sounds
    "normal": "normal",
    "murmur": "murmur",
    "extrahls": "extra heart sound",
    "extrastole": "extrasystole",
    "artifact": "artifact",
    # PhysioNet/CinC 2016
    "abnormal": "abnormal",
    # CirCor DigiScope 2022 (patient-level murmur grade)
    "present": "murmur present",
    "absent": "murmur absent",
    "unknown": "murmur unclear",
}


def display_name(class_name: str) -> str:
    """The display name of ``class_name``; unknown names are title-cased (``a_b`` -> ``A B``)."""
    known = DISPLAY_NAMES.get(class_name.lower())
    if known is not None:
        return known
    return " ".join(class_name.replace("_", " ").split()).title()


def display_names(class_names: list[str]) -> dict[str, str]:
    """``{class name: display name}`` for ``class_names``, in their order."""
    return {c: display_name(c) for c in class_names}
