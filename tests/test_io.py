import json
import os
import stat

import pandas as pd
import pytest

from stetho.io import append_jsonl, atomic_path, atomic_write_json, write_table


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
