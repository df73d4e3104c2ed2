"""Several datasets as one manifest: label maps, set labels, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stetho.config import SourceConfig
from stetho.data.label_groups import (
    check_label_groups,
    is_set_label,
    label_targets,
    run_classes,
)
from stetho.data.sources import read_sources

GROUPS = {"abnormal": ["extrastole", "murmur"]}


def write_folder(root: Path, counts: dict[str, int]) -> Path:
    """A ``folder`` dataset: ``counts[label]`` one-second recordings in ``root/label``."""
    rng = np.random.default_rng(len(str(root)))
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            sf.write(root / label / f"{label}{i}.wav", 0.1 * rng.standard_normal(2000), 2000)
    return root


def test_sources_join_with_a_dataset_column_and_mapped_labels(tmp_path: Path) -> None:
    fine = write_folder(tmp_path / "pascal_like", {"normal": 2, "murmur": 3})
    coarse = write_folder(tmp_path / "physio_like", {"normal": 2, "sick": 4, "unsure": 1})
    frame = read_sources(
        [
            SourceConfig(path=str(fine)),
            SourceConfig(
                path=str(coarse),
                name="physio",
                label_map={"SICK": "abnormal", "unsure": "-"},
            ),
        ]
    )
    assert sorted(frame["dataset"].unique()) == ["pascal_like", "physio"]
    physio = frame[frame["dataset"] == "physio"]
    assert sorted(physio["label"]) == ["abnormal"] * 4 + ["normal"] * 2  # unsure left out
    assert frame.loc[frame["dataset"] == "pascal_like", "label"].value_counts().to_dict() == {
        "murmur": 3,
        "normal": 2,
    }


def test_sources_refuse_typos_duplicate_names_and_shared_files(tmp_path: Path) -> None:
    a = write_folder(tmp_path / "a", {"normal": 1, "murmur": 1})
    with pytest.raises(ValueError, match=r"label_map names label\(s\) \['mumur'\]"):
        read_sources([SourceConfig(path=str(a), label_map={"mumur": "murmur"})])
    with pytest.raises(ValueError, match="two sources are named 'x'"):
        read_sources([SourceConfig(path=str(a), name="x"), SourceConfig(path=str(a), name="x")])
    with pytest.raises(ValueError, match="listed by two sources"):
        read_sources([SourceConfig(path=str(a), name="x"), SourceConfig(path=str(a), name="y")])


def test_set_labels_are_not_classes_and_spread_over_their_members() -> None:
    labels = ["normal", "abnormal", "murmur", "abnormal"]
    classes = run_classes(labels, GROUPS)
    assert classes == ["extrastole", "murmur", "normal"]  # a member never seen alone counts
    y = label_targets(labels, classes, GROUPS)
    np.testing.assert_allclose(y[1], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(y[2], [0.0, 1.0, 0.0])
    assert is_set_label(labels, GROUPS).tolist() == [False, True, False, True]
    with pytest.raises(ValueError, match="not among the classes or label groups"):
        label_targets(["artifact"], classes, GROUPS)


def test_label_groups_are_checked_against_the_classes() -> None:
    with pytest.raises(ValueError, match="also a class"):
        check_label_groups({"murmur": ["murmur"]}, ["murmur", "normal"])
    with pytest.raises(ValueError, match="at least one class"):
        check_label_groups({"abnormal": []}, ["normal"])
