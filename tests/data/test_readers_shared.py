"""The PhysioNet 2016 and CirCor readers on small slices of the shared copies (FLAC audio).

Each test copies a few recordings of ``/work/shared/data`` into ``tmp_path`` in the published
layout, so that the reader meets the real files (FLAC, real headers, real csv) without reading
the whole set. :func:`physionet_slice` and :func:`circor_slice` are reused by the evaluation
tests.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from shared_data import (
    CIRCOR_PATIENTS,
    PHYSIONET_RECORDS,
    circor_slice,
    needs_circor,
    needs_physionet,
    physionet_slice,
)

from stetho.data import readers as datasets
from stetho.data.manifest import MANIFEST_COLUMNS


def _truth(folder: Path) -> dict[str, str]:
    reference = pd.read_csv(folder / "REFERENCE.csv", header=None, dtype=str)
    codes = {"1": "abnormal", "-1": "normal"}
    return {r: codes[c] for r, c in zip(reference[0], reference[1], strict=True)}


@needs_physionet
def test_physionet2016_reads_flac(tmp_path: Path, caplog) -> None:
    root = physionet_slice(tmp_path / "physionet")
    assert datasets.detect_layout(root) == "physionet2016"
    with caplog.at_level(logging.WARNING):
        df = datasets.read_dataset(root)
    assert caplog.records == []
    assert list(df.columns) == MANIFEST_COLUMNS
    records = [Path(p).stem for p in df["path"]]
    assert sorted(records) == sorted(PHYSIONET_RECORDS)
    assert all(Path(p).suffix == ".flac" for p in df["path"])
    truth = _truth(root / "training-b")
    assert dict(zip(records, df["label"], strict=True)) == truth
    assert set(df["source"]) == {"training-b"}
    assert list(df["patient"]) == records
    for path, seconds, rate in zip(df["path"], df["duration_s"], df["sample_rate"], strict=True):
        info = sf.info(path)
        assert rate == info.samplerate == 2000
        assert seconds == pytest.approx(info.frames / info.samplerate)


@needs_physionet
def test_physionet2016_one_folder_and_a_missing_record(tmp_path: Path, caplog) -> None:
    root = physionet_slice(tmp_path / "physionet")
    (root / "training-b" / "b0013.flac").unlink()
    with caplog.at_level(logging.WARNING):
        df = datasets.read_dataset(root / "training-b")
    assert sorted(Path(p).stem for p in df["path"]) == ["b0001", "b0002", "b0008"]
    assert "b0013" in caplog.text and "no audio file" in caplog.text


@needs_physionet
def test_physionet2016_wav_and_flac_of_one_record(tmp_path: Path, caplog) -> None:
    root = physionet_slice(tmp_path / "physionet")
    folder = root / "training-b"
    samples, rate = sf.read(folder / "b0001.flac", dtype="int16")
    sf.write(folder / "b0001.wav", samples, rate, subtype="PCM_16")
    with caplog.at_level(logging.WARNING):
        df = datasets.read_dataset(root)
    assert len(df) == len(PHYSIONET_RECORDS)
    row = df[df["patient"] == "b0001"].iloc[0]
    assert Path(row["path"]).name == "b0001.wav"
    assert "b0001" in caplog.text and "2 audio files" in caplog.text


@needs_physionet
def test_physionet2016_without_audio_says_so(tmp_path: Path) -> None:
    root = physionet_slice(tmp_path / "physionet")
    for path in (root / "training-b").glob("*.flac"):
        path.unlink()
    with pytest.raises(ValueError, match=r"training-b holds no audio files \(.wav, .flac"):
        datasets.read_dataset(root)


@needs_circor
@pytest.mark.parametrize("new_release", [False, True], ids=["Locations", "Recording locations"])
def test_circor_reads_flac(tmp_path: Path, caplog, new_release: bool) -> None:
    root = circor_slice(tmp_path / "circor", new_release=new_release)
    assert datasets.detect_layout(root) == "circor"
    with caplog.at_level(logging.WARNING):
        df = datasets.read_dataset(root)
    assert caplog.records == []
    table = pd.read_csv(root / "training_data.csv", dtype=str)
    murmur = dict(zip(table["Patient ID"], table["Murmur"].str.lower(), strict=True))
    assert len(df) == 2 * len(CIRCOR_PATIENTS)
    assert all(Path(p).suffix == ".flac" for p in df["path"])
    for path, label, patient, location in zip(
        df["path"], df["label"], df["patient"], df["location"], strict=True
    ):
        pid, site = Path(path).stem.split("_")
        assert (patient, label, location) == (f"circor/{pid}", murmur[pid], site)
    assert sorted(df["label"].unique()) == ["absent", "present", "unknown"]
    assert set(df["sample_rate"]) == {4000}
    if new_release:
        outcome = dict(zip(df["patient"], df["outcome"], strict=True))
        assert outcome["circor/49900"] == "abnormal" and outcome["circor/49873"] == "normal"
    else:
        assert "outcome" not in df.columns


@needs_circor
def test_circor_listed_location_without_audio_is_named(tmp_path: Path, caplog) -> None:
    root = circor_slice(tmp_path / "circor")
    (root / "training_data" / "49900_MV.flac").unlink()
    with caplog.at_level(logging.WARNING):
        df = datasets.read_dataset(root)
    assert len(df) == 2 * len(CIRCOR_PATIENTS) - 1
    assert "49900_MV" in caplog.text
