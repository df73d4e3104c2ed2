"""Experiment tracking: ``logging.logger: MLflow`` (and Hydrogen Torch's ``Neptune``, accepted).

Two pieces, both no-ops unless the config asks for a tracker:

* :func:`epoch_logger` gives ``run_experiment(callbacks=[...])`` a callback that logs every
  epoch's record as it is written (``fold<k>/train_loss``, ``fold<k>/valid_macro_auc``,
  ``fold<k>/valid_auc/<class>`` ... at ``step = epoch``; ``round<r>/fold<k>/...`` with
  pseudo-labelling), so a run can be watched while it trains;
* :func:`after_run`, a hook of :func:`stetho.workflows.hooks.default_after_run`, logs the resolved
  config as parameters, the pooled out-of-fold metrics, and the artifacts (report, out-of-fold
  predictions, summary, per-epoch log, fold models, scoring pipeline), then closes the run.

Both find the same MLflow run through ``mlflow_run.json`` in the run folder, so a resumed run
(``--resume``) keeps logging into the run it started.

Where: ``logging.mlflow_tracking_uri`` when set (a server, ``databricks``, a database...);
else a local store beside the run folders: ``sqlite:///<runs>/mlflow.db`` with artifacts in
``<runs>/mlartifacts``. (MLflow 3 refuses its old ``./mlruns`` file store unless
``MLFLOW_ALLOW_FILE_STORE=true``; a ``file:`` URI still works with that variable set.) The
experiment is ``logging.mlflow_experiment``, else the config's ``experiment_name``.

MLflow is imported only when used (``pip install 'stetho[mlflow]'``);
:func:`check_available` refuses ``logging.logger: MLflow`` without it before any work.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

from stetho.config import Config, load_config
from stetho.io import atomic_write_json
from stetho.runs.folder import RunFolder
from stetho.training.callbacks import TrainingCallback

logger = logging.getLogger(__name__)

MLFLOW_MISSING = (
    "logging.logger=MLflow needs the mlflow package, which is not installed: "
    "pip install 'stetho[mlflow]' (or set logging.logger=None)"
)
NEPTUNE_MISSING = "logging.logger=Neptune: the neptune package is not installed; nothing was logged"
NEPTUNE_UNSUPPORTED = (
    "logging.logger=Neptune: stetho does not log to Neptune yet; nothing was logged "
    "(use logging.logger=MLflow)"
)
#: Record keys that index a metric rather than being one.
_INDEX_KEYS = ("fold", "epoch", "round")
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")
#: MLflow accepts at most this many parameters per call.
_PARAMS_PER_BATCH = 100


def tracking_uri(config: Config, *, runs_dir: Path) -> str:
    """``logging.mlflow_tracking_uri``, else ``sqlite:///<runs_dir>/mlflow.db``."""
    if config.logging.mlflow_tracking_uri:
        return config.logging.mlflow_tracking_uri
    return f"sqlite:///{Path(runs_dir).resolve() / 'mlflow.db'}"


def neptune_warning() -> str:
    """Why nothing goes to Neptune: the package is missing, or stetho has no Neptune logger."""
    return NEPTUNE_MISSING if importlib.util.find_spec("neptune") is None else NEPTUNE_UNSUPPORTED


def check_available(config: Config) -> None:
    """Raise ``RuntimeError`` naming the extra to install when the configured tracker's
    package is missing: before training, not after its first epoch."""
    if config.logging.logger == "MLflow" and importlib.util.find_spec("mlflow") is None:
        raise RuntimeError(MLFLOW_MISSING)


class EpochLogger(TrainingCallback):
    """Logs every epoch's record to this run folder's MLflow run (opened at the first)."""

    def __init__(self, config: Config, *, out_dir: str | Path) -> None:
        self.config = config
        self.work = RunFolder(out_dir).working()
        self._client: Any = None
        self._run: str | None = None

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        if self._run is None:
            self._client, self._run = _open_run(self.work, self.config)
        now = int(time.time() * 1000)
        step = int(record["epoch"])
        metrics = [Metric(k, v, now, step) for k, v in epoch_metrics(record).items()]
        self._client.log_batch(self._run, metrics=metrics)


def epoch_logger(config: Config, *, out_dir: str | Path) -> EpochLogger | None:
    """The callback for ``run_experiment(config, out_dir=out_dir)``; ``None`` when
    ``logging.logger`` is not MLflow. Raises (:func:`check_available`) when mlflow is
    missing, so that a run never starts that cannot be logged."""
    if config.logging.logger == "Neptune":
        logger.warning("%s", neptune_warning())
    if config.logging.logger != "MLflow":
        return None
    check_available(config)
    return EpochLogger(config, out_dir=out_dir)


def epoch_metrics(record: dict[str, Any]) -> dict[str, float]:
    """An epoch record of ``metrics.jsonl`` as flat MLflow metric names and values."""
    prefix = f"fold{record['fold']}/"
    if "round" in record:
        prefix = f"round{record['round']}/{prefix}"
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in _INDEX_KEYS:
            continue
        if isinstance(value, dict):
            for sub, v in value.items():
                if _is_number(v):
                    out[_metric_name(f"{prefix}{key}/{sub}")] = float(v)
        elif _is_number(value):
            out[_metric_name(prefix + key)] = float(value)
    return out


def after_run(run_dir: Path) -> None:
    """Hook: log the finished run folder ``run_dir`` to the configured tracker."""
    folder = RunFolder(run_dir)
    config = load_config(folder.config)
    if config.logging.logger == "Neptune":
        folder.add_warning(neptune_warning())
        logger.warning("%s", neptune_warning())
        return
    if config.logging.logger != "MLflow":
        return
    from mlflow.entities import Metric, Param

    client, run_id = _open_run(folder, config)
    params = [Param(k, v) for k, v in flat_params(config.to_dict()).items()]
    for start in range(0, len(params), _PARAMS_PER_BATCH):
        client.log_batch(run_id, params=params[start : start + _PARAMS_PER_BATCH])
    summary = folder.read_json(folder.summary)
    now = int(time.time() * 1000)
    final = {f"oof_{k}": v for k, v in summary["pooled"].items() if _is_number(v)}
    final.update({f"oof_auc/{c}": v["auc"] for c, v in summary["pooled"]["per_class"].items()})
    final["wall_seconds"] = summary.get("seconds", float("nan"))
    metrics = [Metric(_metric_name(k), float(v), now, 0) for k, v in final.items() if _is_number(v)]
    client.log_batch(run_id, metrics=metrics)
    for path in folder.tracked_files():
        client.log_artifact(run_id, str(path))
    for k in folder.trained_folds():
        model = folder.fold_model(k)
        client.log_artifact(run_id, str(model), f"model/{model.parent.name}")
    if folder.scoring.root.is_dir():
        client.log_artifacts(run_id, str(folder.scoring.root), folder.scoring.root.name)
    sealed = folder.final.resolve()
    client.set_tag(run_id, "stetho.run_dir", str(sealed))
    client.set_terminated(run_id, "FINISHED")
    logger.info("logged %s to MLflow run %s at %s", sealed.name, run_id, client.tracking_uri)


def flat_params(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"training": {"epochs": 3}}`` -> ``{"training.epochs": "3"}``."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else str(value)
    return out


def _open_run(folder: RunFolder, config: Config) -> tuple[Any, str]:
    """The MLflow client and the id of this run folder's MLflow run, created on first use."""
    from mlflow import MlflowClient

    stored = folder.mlflow_run
    if stored.is_file():
        info = folder.read_json(stored)
        return MlflowClient(info["tracking_uri"]), info["run_id"]
    final = folder.final.resolve()
    runs_dir = final.parent
    uri = tracking_uri(config, runs_dir=runs_dir)
    client = MlflowClient(uri)
    name = config.logging.mlflow_experiment or config.experiment_name
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        # Our default local store keeps artifacts beside the runs, not in the working directory.
        location = None
        if not config.logging.mlflow_tracking_uri:
            location = (runs_dir.resolve() / "mlartifacts").as_uri()
        experiment_id = client.create_experiment(name, artifact_location=location)
    run = client.create_run(
        experiment_id, run_name=final.name, tags={"stetho.run_dir": str(folder.root)}
    )
    atomic_write_json(
        stored,
        {"tracking_uri": uri, "experiment_id": experiment_id, "run_id": run.info.run_id},
    )
    logger.info("MLflow run %s in experiment %r at %s", run.info.run_id, name, uri)
    return client, run.info.run_id


def _metric_name(name: str) -> str:
    return _UNSAFE.sub("_", name)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not math.isinf(v)
