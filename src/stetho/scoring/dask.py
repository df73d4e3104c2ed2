"""Score an archive over a Dask distributed cluster: the same groups, the same rows, in order.

The files are cut into the groups :func:`stetho.scoring.batch.predict_files` uses (``batch_size``
recordings each); each group is one task running :func:`stetho.scoring.batch.score_group` on a
worker. A worker loads the model once (a per-process cache keyed on the model and folds),
so a task costs decoding and inference only. The model is a run folder, a pipeline folder or a
ready model ``stetho:NAME`` (each worker finds it in its own install). The client reassembles
the groups in input order and builds the same table as the serial run, bad files included.

Workers read the model folder and the audio files themselves, by absolute path: both must be
on storage every worker sees at the same path (NFS, a shared volume). See ``docs/scoring.md``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from stetho.decision import DecisionRule
from stetho.runs.zoo import is_model_name
from stetho.scoring.backends import Scorer, load_scorer
from stetho.scoring.batch import (
    DEFAULT_BATCH_SIZE,
    InputItem,
    groups,
    results_frame,
    rule_with_threshold,
    score_group,
)
from stetho.scoring.core import Scored

logger = logging.getLogger(__name__)

#: ``--dask local``: a cluster of worker processes on this machine, one thread each.
LOCAL = "local"


@functools.lru_cache(maxsize=4)
def _worker_run(run_dir: str, folds: tuple[int, ...] | None) -> Scorer:
    """The model, loaded once per worker process (and per folds); torch / onnxruntime limited
    to the worker's threads so that several workers on one machine do not oversubscribe its
    cores."""
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except (ImportError, ValueError):  # not inside a Dask worker
        threads = 0
    return load_scorer(
        run_dir, threads=threads or None, folds=None if folds is None else list(folds)
    )


def _score_task(
    run_dir: str,
    folds: tuple[int, ...] | None,
    items: list[InputItem],
    batch_size: int,
    rule: DecisionRule,
) -> list[Scored]:
    """One group, scored on a worker and decided by the client's rule."""
    return score_group(_worker_run(run_dir, folds), items, batch_size=batch_size, rule=rule)


@contextlib.contextmanager
def connect(scheduler: Any) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler``: an existing client (used as is), a scheduler
    address (``tcp://host:8786``), or ``"local"`` (a local cluster of processes, one per core,
    closed on exit)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise RuntimeError("--dask needs dask.distributed: pip install 'stetho[dask]'") from None
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if not isinstance(scheduler, str) or not scheduler:
        raise ValueError(
            f"scheduler={scheduler!r}: expected a Dask Client, a scheduler address "
            "(tcp://host:8786) or 'local'"
        )
    if scheduler == LOCAL:
        n = os.cpu_count() or 1
        with (
            LocalCluster(n_workers=n, threads_per_worker=1, processes=True) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    with Client(scheduler, timeout="30s") as client:
        yield client


def predict_files_dask(
    run_dir: str | Path,
    items: Sequence[InputItem],
    *,
    scheduler: Any,
    folds: list[int] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    threshold: float | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """:func:`stetho.scoring.batch.predict_files` over a Dask cluster; returns the same table.

    Args:
        run_dir: the run or pipeline folder, readable by every worker at the same absolute
            path, or a ready model ``stetho:NAME``.
        items: from :func:`stetho.scoring.batch.collect_inputs` (absolute paths are used).
        scheduler: a ``distributed.Client``, a scheduler address, or ``"local"``.
        folds, batch_size, threshold, progress: as for ``predict_files`` / ``load_run``.
    """
    from distributed import as_completed

    model = str(run_dir) if is_model_name(run_dir) else str(Path(run_dir).resolve())
    # Checked here, before any task is sent: a missing model or fold is a usage error.
    rule = rule_with_threshold(load_scorer(model, threads=None, folds=folds), threshold)
    fold_key = None if folds is None else tuple(folds)
    parts = [list(g) for g in groups(items, batch_size)]
    done: list[list[Scored] | None] = [None] * len(parts)
    with connect(scheduler) as client:
        futures = [
            client.submit(_score_task, model, fold_key, part, batch_size, rule, pure=False)
            for part in parts
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        with tqdm(total=len(items), desc="scoring", unit="file", disable=not progress) as bar:
            for future in as_completed(futures):
                i = index[future.key]
                done[i] = future.result()
                bar.update(len(parts[i]))
                future.release()
    results = [r for part in done if part is not None for r in part]
    n_bad = sum(1 for r in results if r.error)
    if n_bad:
        logger.warning(
            "%d of %d recording(s) could not be scored: see the error column", n_bad, len(results)
        )
    return results_frame(results, rule)
