"""Scoring over a Dask cluster gives the serial table: same rows, order, bad files, numbers."""

from __future__ import annotations

import fixtures_runs
import numpy as np
import pandas as pd
import pytest
from fixtures_runs import BAD_FILES
from typer.testing import CliRunner

from stetho.cli import app
from stetho.runs import load_run
from stetho.scoring.batch import collect_inputs, predict_files

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

# Shared fixtures (session-scoped, built once per test session).
one_torch_thread = fixtures_runs.one_torch_thread
scoring_folder = fixtures_runs.scoring_folder
sharp_run = fixtures_runs.sharp_run
tiny_run = fixtures_runs.tiny_run

#: Small groups, so that the 16 files make 6 tasks spread over both workers.
BATCH = 3


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as lc:
        yield lc


def _assert_identical(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal tables; probabilities equal to float rounding (both sides run the same batches
    through torch on one thread, so in practice they are bit-identical)."""
    prob_cols = [c for c in a.columns if c.startswith("prob_")]
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a.drop(columns=prob_cols), b.drop(columns=prob_cols))
    np.testing.assert_allclose(a[prob_cols], b[prob_cols], rtol=0, atol=1e-7)


def test_dask_output_equals_serial(cluster, sharp_run, scoring_folder):
    from stetho.scoring.dask import predict_files_dask

    items = collect_inputs([scoring_folder])
    serial = predict_files(load_run(sharp_run), items, batch_size=BATCH, progress=False)
    with distributed.Client(cluster) as client:
        spread = predict_files_dask(
            sharp_run, items, scheduler=client, batch_size=BATCH, progress=False
        )
        # Each worker loaded the run at most once, and reused it for all its other tasks.
        loaded = client.run(
            lambda: (
                __import__("stetho.scoring.dask").scoring.dask._worker_run.cache_info()._asdict()
            )
        )
    assert len(loaded) == 2
    assert all(info["misses"] <= 1 and info["currsize"] <= 1 for info in loaded.values())
    n_tasks = -(-len(items) // BATCH)
    assert sum(info["hits"] + info["misses"] for info in loaded.values()) == n_tasks
    _assert_identical(spread, serial)
    assert (spread["error"] != "").sum() == len(BAD_FILES)
    assert spread["path"].tolist() == [i.path for i in items]


def test_cli_predict_dask_address(cluster, sharp_run, scoring_folder, tmp_path):
    out_dask, out_serial = tmp_path / "dask.csv", tmp_path / "serial.csv"
    runner = CliRunner()
    common = ["predict", str(sharp_run), str(scoring_folder), "--batch-size", "4", "--no-progress"]
    res = runner.invoke(app, [*common, "--out", str(out_dask), "--dask", cluster.scheduler_address])
    assert res.exit_code == 1, res.output  # bad files reported, as in the serial run
    res = runner.invoke(app, [*common, "--out", str(out_serial)])
    assert res.exit_code == 1, res.output
    _assert_identical(pd.read_csv(out_dask), pd.read_csv(out_serial))
