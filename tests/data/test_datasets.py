"""Dataset readers and the Manifest: synthetic folders in each layout, and the mission set."""

from __future__ import annotations

import doctest
import logging
from pathlib import Path

import pandas as pd
import pytest
from conftest import MakeWav

from stetho.data import readers as datasets
from stetho.data.folds import assign_folds
from stetho.data.manifest import MANIFEST_COLUMNS, check_manifest, summarize_manifest
from stetho.data.readers import pascal
from stetho.data.readers.table import find_audio_column, table_audio_paths


def _row(df: pd.DataFrame, name: str) -> pd.Series:
    """The manifest row whose file is called ``name``."""
    match = df[df["path"].map(lambda p: Path(p).name) == name]
    assert len(match) == 1, f"{name}: {len(match)} rows"
    return match.iloc[0]


# --- the mission set ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mission(mission_dir: Path) -> pd.DataFrame:
    return datasets.read_dataset(mission_dir)


def test_mission_set_counts(mission: pd.DataFrame) -> None:
    assert list(mission.columns) == [*MANIFEST_COLUMNS, "sublabel"]
    assert len(mission) == 832
    assert mission["label"].notna().sum() == 585
    assert mission["label"].isna().sum() == 247
    counts = mission.groupby(["source", "label"]).size().to_dict()
    assert counts == {
        ("set_a", "artifact"): 40,
        ("set_a", "extrahls"): 19,
        ("set_a", "murmur"): 34,
        ("set_a", "normal"): 31,
        ("set_b", "extrastole"): 46,
        ("set_b", "murmur"): 95,
        ("set_b", "normal"): 320,
    }
    unlabelled = mission[mission["label"].isna()].groupby("source").size().to_dict()
    assert unlabelled == {"set_a": 52, "set_b": 195}
    assert mission.groupby("sublabel").size().to_dict() == {"noisymurmur": 29, "noisynormal": 120}


def test_mission_set_durations_and_rates(mission: pd.DataFrame) -> None:
    stats = mission.groupby("source")["duration_s"].agg(["min", "median", "max"]).round(2)
    assert stats.loc["set_a"].tolist() == [0.94, 8.75, 9.00]
    assert stats.loc["set_b"].tolist() == [0.76, 4.95, 27.87]
    assert mission.groupby("source")["sample_rate"].unique().map(list).to_dict() == {
        "set_a": [44100],
        "set_b": [4000],
    }
    assert (mission["fold"] == -1).all()
    assert mission["path"].map(lambda p: Path(p).is_absolute() and Path(p).is_file()).all()


def test_mission_set_patients(mission: pd.DataFrame) -> None:
    assert _row(mission, "murmur__112_1306243000964_A.wav")["patient"] == "set_b/112"
    assert _row(mission, "Bunlabelledtest__101_1305030823364_A.wav")["patient"] == "set_b/101"
    odd = _row(mission, "murmur_noisymurmur_162_1307101835989_B_1.wav")
    assert (odd["patient"], odd["label"], odd["sublabel"]) == ("set_b/162", "murmur", "noisymurmur")
    first = _row(mission, "artifact__201012172012.wav")
    assert first["patient"] == "set_a/201012172012"
    set_b = mission[mission["source"] == "set_b"]
    assert set_b["patient"].str.fullmatch(r"set_b/\d+").all()
    assert set_b["patient"].nunique() == 171
    # set_a is grouped by recording timestamp: two timestamps are shared by two files each,
    # one pair being the same recording labelled murmur and extrahls.
    assert mission.loc[mission["source"] == "set_a", "patient"].nunique() == 174
    dup = mission[mission["path"].str.contains("201104021355")]
    assert sorted(dup["label"]) == ["extrahls", "murmur"] and dup["patient"].nunique() == 1


def test_mission_set_reads_without_warnings(mission_dir: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        datasets.read_dataset(mission_dir, layout="pascal")
    assert caplog.records == []


def test_csv_name_mapping_doctests() -> None:
    result = doctest.testmod(pascal)
    assert result.attempted >= 4 and result.failed == 0


# --- pascal traps on a synthetic copy -------------------------------------------------------


def _pascal_layout(root: Path, make_wav: MakeWav) -> Path:
    for name in (
        "artifact__201012172012.wav",
        "normal__201101070538.wav",
        "murmur__201101051104.wav",  # the csv calls it normal: disagreement
        "extrahls__201101091153.wav",  # on disk, not in the csv
        "Aunlabelledtest__201012172010.wav",  # not in the csv, as in the real set
    ):
        make_wav(root / "set_a" / name, 0.6, 4000)
    for name in (
        "murmur__112_1306243000964_A.wav",
        "normal_noisynormal_112_1306243000964_B.wav",
        "Bunlabelledtest__113_1306244002866_A.wav",
        "extrastole__127_1306764300147_C2.wav",
    ):
        make_wav(root / "set_b" / name, 0.6, 2000)
    (root / "set_a.csv").write_text(
        "dataset,fname,label,sublabel\n"
        "a,set_a/artifact__201012172012.wav,artifact,\n"
        "a,set_a/normal__201101070538.wav,normal,\n"
        "a,set_a/murmur__201101051104.wav,normal,\n"
        "a,set_a/normal__209912312359.wav,normal,\n"  # listed, not on disk
    )
    (root / "set_b.csv").write_text(
        "dataset,fname,label,sublabel\n"
        "b,set_b/Btraining_murmur_112_1306243000964_A.wav,murmur,\n"
        "b,set_b/Btraining_normal_Btraining_noisynormal_112_1306243000964_B.wav,normal,noisynormal\n"
        "b,set_b/Bunlabelledtest_113_1306244002866_A.wav,,\n"
        "b,set_b/Btraining_extrastole_127_1306764300147_C2.wav,extrastole,\n"
    )
    return root


def test_pascal_traps(tmp_path: Path, make_wav: MakeWav, caplog) -> None:
    root = _pascal_layout(tmp_path / "pascal", make_wav)
    assert datasets.detect_layout(root) == "pascal"
    with caplog.at_level(logging.WARNING):
        df = datasets.read_dataset(root)
    assert len(df) == 9
    assert pd.isna(_row(df, "Aunlabelledtest__201012172010.wav")["label"])
    assert _row(df, "murmur__201101051104.wav")["label"] == "normal"  # csv wins, with a warning
    assert _row(df, "extrahls__201101091153.wav")["label"] == "extrahls"
    noisy = _row(df, "normal_noisynormal_112_1306243000964_B.wav")
    assert (noisy["label"], noisy["sublabel"], noisy["patient"]) == (
        "normal",
        "noisynormal",
        "set_b/112",
    )
    assert pd.isna(_row(df, "Bunlabelledtest__113_1306244002866_A.wav")["label"])
    assert _row(df, "extrastole__127_1306764300147_C2.wav")["sample_rate"] == 2000
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "normal__209912312359.wav" in messages  # listed but missing
    assert "murmur__201101051104.wav (csv 'normal', file name 'murmur')" in messages
    assert "extrahls__201101091153.wav" in messages  # on disk, not listed
    assert "Aunlabelledtest" not in messages  # expected to be unlisted


# --- physionet 2016 -------------------------------------------------------------------------


def _physionet_layout(root: Path, make_wav: MakeWav) -> Path:
    for folder, records in {
        "training-a": ["a0001", "a0002", "a0003"],
        "training-b": ["b0001"],
    }.items():
        for record in records:
            make_wav(root / folder / f"{record}.wav", 0.6, 2000)
            (root / folder / f"{record}.hea").write_text(f"{record} 1 2000 1200\n")
    (root / "training-a" / "REFERENCE.csv").write_text("a0001,1\na0002,-1\na0004,-1\n")
    (root / "training-b" / "REFERENCE.csv").write_text("b0001,-1\n")
    return root


def test_physionet2016(tmp_path: Path, make_wav: MakeWav, caplog) -> None:
    root = _physionet_layout(tmp_path / "physionet", make_wav)
    assert datasets.detect_layout(root) == "physionet2016"
    assert datasets.detect_layout(root / "training-a") == "physionet2016"
    with caplog.at_level(logging.WARNING):
        df = datasets.read_dataset(root)
    assert df["patient"].tolist() == ["a0001", "a0002", "a0003", "b0001"]
    assert df["label"].tolist()[:2] == ["abnormal", "normal"] and pd.isna(df["label"][2])
    assert df["source"].tolist() == ["training-a"] * 3 + ["training-b"]
    assert df["sample_rate"].eq(2000).all() and df["duration_s"].eq(0.6).all()
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "a0004" in messages and "a0003" in messages
    assert len(datasets.read_dataset(root / "training-b")) == 1


def test_physionet2016_bad_label(tmp_path: Path, make_wav: MakeWav) -> None:
    root = _physionet_layout(tmp_path / "physionet", make_wav)
    (root / "training-b" / "REFERENCE.csv").write_text("b0001,0\n")
    with pytest.raises(ValueError, match=r"b0001 have \['0'\]"):
        datasets.read_dataset(root)


# --- circor ---------------------------------------------------------------------------------


@pytest.mark.parametrize("release", ["2022", "early"])
def test_circor(tmp_path: Path, make_wav: MakeWav, caplog, release: str) -> None:
    root = tmp_path / "circor"
    for name in ("2530_AV", "2530_MV", "2530_MV_1", "9979_PV", "50782_Phc", "77777_TV", "notes"):
        make_wav(root / "training_data" / f"{name}.wav", 0.6, 4000)
    (root / "training_data" / "2530_AV.tsv").write_text("0\t0.1\t1\n")
    if release == "2022":
        header = "Patient ID,Recording locations:,Age,Murmur,Outcome\n"
        body = (
            "2530,AV+MV+MV,Child,Present,Abnormal\n9979,PV+TV,Child,Absent,Normal\n"
            "50782,Phc,Infant,Unknown,Normal\n"
        )
    else:
        header = "Patient ID,Locations,Age,Murmur\n"
        body = "2530,AV+MV+MV,Child,Present\n9979,PV+TV,Child,Absent\n50782,Phc,Infant,Unknown\n"
    (root / "training_data.csv").write_text(header + body)
    assert datasets.detect_layout(root) == "circor"
    with caplog.at_level(logging.WARNING):
        df = datasets.read_dataset(root)
    assert len(df) == 6
    assert _row(df, "2530_MV_1.wav")[["label", "patient", "location"]].tolist() == [
        "present",
        "circor/2530",
        "MV",
    ]
    assert _row(df, "50782_Phc.wav")["label"] == "unknown"
    assert pd.isna(_row(df, "77777_TV.wav")["label"])
    assert set(df["source"]) == {"circor"}
    assert ("outcome" in df.columns) == (release == "2022")
    if release == "2022":
        assert _row(df, "9979_PV.wav")["outcome"] == "normal"
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "9979_TV" in messages  # listed location without a file
    assert "77777_TV.wav" in messages and "notes.wav" in messages


# --- tables and folders ---------------------------------------------------------------------


def test_hydrogen_torch_table(tmp_path: Path, make_wav: MakeWav) -> None:
    audio = tmp_path / "Heartbeat_Sound"
    for name in ("a.wav", "b.wav", "sub/c.wav"):
        make_wav(audio / name, 0.6, 4000)
    table = tmp_path / "train.pq"
    pd.DataFrame(
        {
            "audio": ["a.wav", "b.wav", "sub/c.wav"],
            "class": ["normal", "unlabel", "murmur"],
            "fold": [0, 1, 1],
            "note": ["x", "y", "z"],
        }
    ).to_parquet(table)
    assert datasets.detect_layout(table) == "table"
    df = datasets.read_dataset(table, data_folder=audio)
    assert df["path"].tolist() == [str(audio / n) for n in ("a.wav", "b.wav", "sub/c.wav")]
    assert df["label"].tolist()[::2] == ["normal", "murmur"] and pd.isna(df["label"][1])
    assert df["fold"].tolist() == [0, 1, 1]
    assert df["patient"].tolist() == ["train/a", "train/b", "train/sub/c"]
    assert df["source"].eq("train").all() and df["note"].tolist() == ["x", "y", "z"]
    with pytest.raises(ValueError, match=r"no label column\(s\) \['target'\].*'audio', 'class'"):
        datasets.read_table(table, data_folder=audio, label_column="target")


def test_table_with_one_hot_labels_and_patients(tmp_path: Path, make_wav: MakeWav) -> None:
    for name in ("a.wav", "b.wav", "c.wav"):
        make_wav(tmp_path / name, 0.6, 4000)
    pd.DataFrame(
        {
            "audio": ["a.wav", "b.wav", "c.wav"],
            "normal": [1, 0, 0],
            "murmur": [0, 1, 0],
            "patient": ["p1", "p1", "p2"],
        }
    ).to_csv(tmp_path / "t.csv", index=False)
    df = datasets.read_dataset(tmp_path / "t.csv", label_column=["normal", "murmur"])
    assert df["label"].tolist()[:2] == ["normal", "murmur"] and pd.isna(df["label"][2])
    assert df["patient"].tolist() == ["p1", "p1", "p2"]
    assert df["fold"].eq(-1).all()


def test_folder_with_class_subfolders(tmp_path: Path, make_wav: MakeWav) -> None:
    for name in ("normal/a.wav", "normal/b.flac", "murmur/c.wav"):
        make_wav(tmp_path / "rec" / name, 0.6, 4000)
    assert datasets.detect_layout(tmp_path / "rec") == "folder"
    df = datasets.read_dataset(tmp_path / "rec")
    assert df["label"].tolist() == ["murmur", "normal", "normal"]
    assert df["patient"].tolist() == ["rec/murmur/c", "rec/normal/a", "rec/normal/b"]
    flat = datasets.read_dataset(tmp_path / "rec" / "normal")
    assert flat["label"].isna().all() and len(flat) == 2


def test_unreadable_files_are_left_out_with_a_warning(
    tmp_path: Path, make_wav: MakeWav, caplog
) -> None:
    make_wav(tmp_path / "ok.wav", 0.6, 4000)
    (tmp_path / "broken.wav").write_text("not audio")
    with caplog.at_level(logging.WARNING):
        df = datasets.read_dataset(tmp_path)
    assert [Path(p).name for p in df["path"]] == ["ok.wav"]
    assert "broken.wav: cannot decode" in caplog.text


# --- registry -------------------------------------------------------------------------------


def test_registry() -> None:
    assert datasets.list_readers() == [
        "circor",
        "folder",
        "manifest",
        "pascal",
        "physionet2016",
        "table",
    ]
    with pytest.raises(ValueError, match="unknown dataset layout 'kaggle'.*pascal, physionet2016"):
        datasets.read_dataset(".", layout="kaggle")
    with pytest.raises(ValueError, match="already registered"):
        datasets.register_reader("pascal")(lambda root: pd.DataFrame())
    with pytest.raises(FileNotFoundError):
        datasets.detect_layout("/nonexistent/folder")


def test_registered_reader_is_validated(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(datasets, "_READERS", dict(datasets._READERS))

    @datasets.register_reader("broken")
    def _broken(root: Path) -> pd.DataFrame:
        return pd.DataFrame({"path": ["x.wav"]})

    assert "broken" in datasets.list_readers()
    with pytest.raises(ValueError, match=r"broken dataset .*lacks column\(s\) \['label'"):
        datasets.read_dataset(tmp_path, layout="broken")


# --- check_manifest and summarize_manifest --------------------------------------------------


def _manifest(**changes: list) -> pd.DataFrame:
    base = {
        "path": ["/d/a.wav", "/d/b.wav", "/d/c.wav"],
        "label": ["normal", "", None],
        "patient": ["p1", "p1", "p2"],
        "source": ["s1", "s1", "s2"],
        "duration_s": [1.0, 2.0, 4.0],
        "sample_rate": [4000, 4000, 2000],
        "fold": [-1, -1, -1],
        "extra": [1, 2, 3],
    }
    return pd.DataFrame({**base, **changes})


def test_check_manifest_normalises() -> None:
    df = check_manifest(_manifest()[["extra", *MANIFEST_COLUMNS]], name="toy")
    assert list(df.columns) == [*MANIFEST_COLUMNS, "extra"]
    assert df["label"].notna().tolist() == [True, False, False]  # "" is unlabelled
    assert df["sample_rate"].dtype == "int64" and df["fold"].dtype == "int64"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"path": ["/d/a.wav", "/d/a.wav", "/d/c.wav"]},
            r"toy: each file must appear once.*a\.wav",
        ),
        ({"path": ["a.wav", "/d/b.wav", "/d/c.wav"]}, r"toy: paths must be absolute, got a\.wav"),
        ({"duration_s": [1.0, 0.0, float("nan")]}, r"positive number of seconds.*b\.wav \(0\.0\)"),
        ({"sample_rate": [4000, 0, 4000]}, r"sample_rate must be a positive.*b\.wav \(0\)"),
        ({"fold": [0, -2, 1]}, r"fold must be an integer >= -1.*b\.wav \(-2\)"),
        ({"patient": ["p1", None, "p2"]}, r"'patient' is missing for /d/b\.wav"),
        ({"label": ["normal", 3, None]}, r"'label' must hold text.*b\.wav \(3\)"),
    ],
)
def test_check_manifest_errors_name_the_file(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_manifest(_manifest(**changes), name="toy")


def test_check_manifest_missing_columns() -> None:
    with pytest.raises(ValueError, match=r"toy: manifest lacks column\(s\) \['duration_s'\]"):
        check_manifest(_manifest().drop(columns="duration_s"), name="toy")


def test_summarize_manifest() -> None:
    facts = summarize_manifest(check_manifest(_manifest(), name="toy"))
    assert facts["totals"] == {
        "recordings": 3,
        "labelled": 1,
        "unlabelled": 2,
        "patients": 2,
        "sources": 2,
        "hours": 0.002,
    }
    assert facts["counts"] == {"(unlabelled)": {"s1": 1, "s2": 1}, "normal": {"s1": 1}}
    assert facts["duration_s"]["s1"] == {"min": 1.0, "median": 1.5, "max": 2.0, "total": 3.0}
    assert facts["sample_rates"] == {"s1": [4000], "s2": [2000]}


# --- table rules: one audio column rule, empty tables ----------------------------------------


def test_table_audio_column_is_path_or_audio(tmp_path: Path, make_wav: MakeWav) -> None:
    """``stetho train`` takes the table ``stetho predict`` takes: ``path`` works as well as
    ``audio``, relative to the table's folder."""
    for name in ("a.wav", "b.wav"):
        make_wav(tmp_path / "rec" / name, 0.6, 4000)
    table = tmp_path / "list.csv"
    pd.DataFrame({"path": ["rec/a.wav", "rec/b.wav"], "class": ["normal", "murmur"]}).to_csv(
        table, index=False
    )
    df = datasets.read_table(table)  # audio_column="audio" (the config's default) is absent
    assert df["path"].tolist() == [str(tmp_path / "rec" / n) for n in ("a.wav", "b.wav")]
    assert table_audio_paths(table) == [
        ("rec/a.wav", str(tmp_path / "rec" / "a.wav")),
        ("rec/b.wav", str(tmp_path / "rec" / "b.wav")),
    ]
    frame = pd.DataFrame({"audio": ["x.wav"], "path": ["y.wav"], "file": ["z.wav"]})
    assert find_audio_column(frame, table) == "path"
    assert find_audio_column(frame, table, "audio") == "audio"
    assert find_audio_column(frame, table, "file") == "file"
    with pytest.raises(ValueError, match=r"list\.csv has no audio column; expected one of \['wav'"):
        find_audio_column(frame, table, "wav")
    with pytest.raises(ValueError, match=r"expected one of \['path', 'audio'\]"):
        find_audio_column(frame[["file"]], table)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("", "empty file (0 bytes)"),
        ("\n\n", "the file is empty (no header row, no rows)"),
        ("path,class\n", "has a header row (path, class) but no rows"),
    ],
)
def test_empty_tables_name_the_file(tmp_path: Path, content: str, words: str) -> None:
    table = tmp_path / "train.csv"
    table.write_text(content)
    for read in (datasets.read_table, table_audio_paths):
        with pytest.raises(ValueError) as info:
            read(table)
        assert str(table) in str(info.value) and words in str(info.value)


def test_single_class_folder_says_what_was_found(tmp_path: Path, make_wav: MakeWav) -> None:
    for name in ("a.wav", "b.wav", "c.wav"):
        make_wav(tmp_path / "rec" / "normal" / name, 0.6, 4000)
    df = datasets.read_dataset(tmp_path / "rec")
    assert df["label"].tolist() == ["normal"] * 3
    with pytest.raises(ValueError, match=r"found one class, 'normal' \(3 recording\(s\)\)") as info:
        assign_folds(df)
    assert "at least two classes" in str(info.value) and "one subfolder per class" in str(
        info.value
    )
