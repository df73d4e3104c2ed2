import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from stetho.io import (
    TEMP_SUFFIX,
    append_jsonl,
    atomic_path,
    atomic_write_json,
    check_not_input,
    check_replaceable_dir,
    remove_stale_temporaries,
    temporary_dir,
    write_table,
)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model.bin"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-written")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_written_files_are_readable_by_others(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    mode = os.stat(tmp_path / "a.json").st_mode
    assert mode & stat.S_IRUSR and mode & stat.S_IRGRP
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}


def test_write_table_by_suffix(tmp_path):
    df = pd.DataFrame({"path": ["a.wav"], "prob": [0.5]})
    write_table(df, tmp_path / "t.parquet")
    write_table(df, tmp_path / "t.csv")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), df)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), df)
    with pytest.raises(ValueError, match=".xlsx"):
        write_table(df, tmp_path / "t.xlsx")


def test_append_jsonl_appends_lines(tmp_path):
    for i in range(3):
        append_jsonl(tmp_path / "m.jsonl", {"epoch": i})
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1, 2]


# --- leftovers of killed writers ------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_are_named_by_host_and_process(tmp_path):
    with atomic_path(tmp_path / "preds.csv") as tmp:
        assert tmp.name.startswith(".preds.csv.") and tmp.name.endswith(TEMP_SUFFIX)
        assert f"-{os.getpid()}." in tmp.name
    folder = temporary_dir(tmp_path / "pipeline")
    assert folder.is_dir() and folder.parent == tmp_path and folder.name.endswith(TEMP_SUFFIX)


def test_next_writer_removes_a_killed_commands_leftovers(tmp_path, caplog):
    # A name of ours (made in another folder) tells this host's spelling.
    probe = temporary_dir(tmp_path / "probe" / "x")
    host_pid = probe.name.split(".")[2]
    host = host_pid.rsplit("-", 1)[0]
    probe.rmdir()
    dead = _dead_pid()
    stale_file = tmp_path / f".preds.csv.{host}-{dead}.ab12cd{TEMP_SUFFIX}"
    stale_dir = tmp_path / f".pipeline.{host}-{dead}.zz9{TEMP_SUFFIX}"
    alive = tmp_path / f".other.csv.{host}-{os.getppid()}.ab12cd{TEMP_SUFFIX}"
    elsewhere = tmp_path / f".preds.csv.otherhost-{dead}.ab12cd{TEMP_SUFFIX}"
    users = tmp_path / ".preds.csv.1234.tmp"
    stale_file.write_text("half")
    stale_dir.mkdir()
    (stale_dir / "model.onnx").write_text("half")
    for keep in (alive, elsewhere, users):
        keep.write_text("keep")
    with caplog.at_level(logging.WARNING, logger="stetho.io"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "preds.csv")
    assert not stale_file.exists() and not stale_dir.exists()
    assert alive.exists() and elsewhere.exists() and users.exists()
    assert "removed 2 leftover temporaries of a killed stetho command" in caplog.text
    assert remove_stale_temporaries(tmp_path) == []


# --- guards ---------------------------------------------------------------------------------


def test_check_not_input_refuses_to_overwrite_an_input(tmp_path, monkeypatch):
    table = tmp_path / "list.csv"
    table.write_text("path\na.wav\n")
    (tmp_path / "alias.csv").symlink_to(table)
    monkeypatch.chdir(tmp_path)
    for out in ("list.csv", "./list.csv", tmp_path / "list.csv", "alias.csv"):
        with pytest.raises(ValueError, match=r"is also an input \(.*list\.csv\).*another output"):
            check_not_input(out, [Path("a.wav"), table])
    check_not_input("preds.csv", [table, "a.wav"])  # a new file
    check_not_input(table, [])


def test_check_replaceable_dir(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "r1"
    (run / "fold0").mkdir(parents=True)
    (run / "fold0" / "model.safetensors").write_text("w")
    guard = {"inputs": [run], "owned_marker": "labels.json"}
    for out, words in (
        (run, "contains the input"),
        (run.parent, "contains the input"),
        (run / "fold0", "lies inside the input"),
        (run / "fold0" / "model.safetensors", "is not a folder"),
    ):
        with pytest.raises(ValueError, match=words):
            check_replaceable_dir(out, **guard)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^\.: contains the input"):
        check_replaceable_dir(".", **guard)

    pipeline = tmp_path / "pipeline"
    check_replaceable_dir(pipeline, **guard)  # missing: fine
    pipeline.mkdir()
    check_replaceable_dir(pipeline, **guard)  # empty: fine
    (pipeline / "thesis.docx").write_text("mine")
    with pytest.raises(ValueError, match=r"not written by this command \(no labels\.json\)"):
        check_replaceable_dir(pipeline, **guard)
    (pipeline / "labels.json").write_text("{}")
    check_replaceable_dir(pipeline, **guard)
    with pytest.raises(ValueError, match=r"holds files this command did not write \(thesis"):
        check_replaceable_dir(pipeline, **guard, owned_files={"model.onnx", "score.py"})
    (pipeline / "thesis.docx").unlink()
    check_replaceable_dir(pipeline, **guard, owned_files={"model.onnx", "score.py"})
