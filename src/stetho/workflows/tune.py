"""Hyperparameter search with Optuna: ``stetho tune CONFIG --trials N --storage URL``.

A search space is a YAML mapping of config keys (``section.key``) to distributions::

    training.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    training.batch_size: {type: int, low: 8, high: 32, step: 8}
    architecture.pool: {type: categorical, choices: [GeM, Attention]}

Every key must be a key of :class:`~stetho.config.Config` and every bound or choice a value
the config accepts; both are checked before the first trial (:func:`load_search_space`).

Each trial is a whole experiment (:func:`stetho.training.experiment.run_experiment`) written to
``<study_dir>/trial-<n>``; its objective is the pooled out-of-fold macro ROC AUC (maximised).
Each evaluated epoch reports its fold's validation macro AUC at step
``fold * epochs + epoch``, so Optuna's ``MedianPruner`` stops a trial that is worse than the
median of earlier trials at the same fold and epoch (``optuna.TrialPruned``).

The study lives in ``storage`` (``sqlite:///tune.db``) and resumes with ``load_if_exists``:
``--trials N`` means "until the study holds N finished (complete or pruned) trials". A trial
killed outright stops sending Optuna heartbeats and is failed after a grace period; a trial
interrupted by Ctrl-C fails at once. Either way it is retried once with the same parameters,
and the retry continues the interrupted run folder from its last finished epoch (the
``--resume`` of ``stetho train``). The best trial's full config is written to
``<study_dir>/best_config.yaml`` (atomically), ready for ``stetho train``.

Optuna is imported only here (``pip install 'stetho[tune]'``); :func:`check_available`
refuses a study without it before any work.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel

from stetho.config import Config, ConfigError, config_from_dict, save_config
from stetho.io import atomic_write_json, write_table
from stetho.runs.folder import RunFolder, StudyFolder
from stetho.training.callbacks import OnEpochEnd
from stetho.training.plan import check_config

if TYPE_CHECKING:
    import optuna

#: Config sections whose values decide which backbone and weights a trial can build.
_BACKBONE_SECTIONS = ("architecture.", "audio.")

logger = logging.getLogger(__name__)

TYPES = ("float", "int", "categorical")
_SPEC_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
OPTUNA_MISSING = (
    "stetho tune needs the optuna package, which is not installed: pip install 'stetho[tune]'"
)


def check_available() -> None:
    """Raise ``RuntimeError`` naming the extra to install when optuna is missing."""
    if importlib.util.find_spec("optuna") is None:
        raise RuntimeError(OPTUNA_MISSING)


@dataclass(frozen=True)
class Dimension:
    """One searched config key and its distribution."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """Draw this dimension's value for ``trial`` (the Optuna parameter is named by key)."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.low is None or self.high is None:
            raise ValueError(f"{self.key}: a {self.type} dimension needs low and high")
        if self.type == "int":
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)


def load_search_space(path: str | Path, *, base: Config) -> list[Dimension]:
    """Read and check a search space YAML against ``base`` (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"search space {path} not found; write one like configs/search_space.yaml"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"search space {path}: not valid YAML: {exc}") from None
    return parse_search_space(data, base=base, source=str(path))


def parse_search_space(
    data: Any, *, base: Config, source: str = "<search space>"
) -> list[Dimension]:
    """Validate a mapping ``{section.key: spec}``; errors name the key and what is wrong."""
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            f"search space {source}: expected a mapping of config keys to distributions, "
            f"got {data!r}"
        )
    dims = [_dimension(key, spec, source=source) for key, spec in data.items()]
    for dim in dims:
        values = dim.choices if dim.type == "categorical" else (dim.low, dim.high)
        for value in values:
            try:
                config = config_with(base, {dim.key: value})
                if dim.key.startswith(_BACKBONE_SECTIONS):
                    # e.g. a width the pretrained backbone does not have: refused now, not
                    # by a failed trial; other keys cannot change what the backbone accepts.
                    check_config(config)
            except ConfigError as exc:
                raise ConfigError(
                    f"search space {source}: {dim.key} = {value!r} is not a valid config value:"
                    f"\n{exc}"
                ) from None
    return dims


def config_with(base: Config, values: dict[str, Any]) -> Config:
    """A copy of ``base`` with ``{"section.key": value}`` set, validated."""
    data = base.to_dict()
    for key, value in values.items():
        section, name = key.split(".", 1)
        data[section][name] = value
    return config_from_dict(data, source="(search space values)")


def pruning_reporter(trial: optuna.Trial, *, epochs: int) -> Callable[[dict[str, Any]], None]:
    """An ``on_epoch`` callback reporting each evaluated epoch's fold macro AUC to ``trial``
    (step ``fold * epochs + epoch``) and raising ``optuna.TrialPruned`` when the pruner says so."""
    import optuna

    def report(record: dict[str, Any]) -> None:
        value = record.get("valid_macro_auc")
        if value is None or math.isnan(value):
            return
        step = int(record["fold"]) * epochs + int(record["epoch"])
        trial.report(float(value), step)
        if trial.should_prune():
            raise optuna.TrialPruned(
                f"fold {record['fold']} epoch {record['epoch']}: valid macro AUC {value:.4f} "
                "below the median of earlier trials"
            )

    return report


@dataclass
class TuneResult:
    study_dir: Path
    best_number: int
    best_value: float
    best_params: dict[str, Any]
    best_config: Path
    n_finished: int


def tune(
    base: Config,
    *,
    space: list[Dimension],
    trials: int,
    storage: str,
    study_dir: str | Path,
    study_name: str | None = None,
    data: str | Path | None = None,
    pruning: bool = True,
    heartbeat_s: int = 60,
) -> TuneResult:
    """Run (or resume) a study until it holds ``trials`` finished trials; write the best config.

    Args:
        base: the config every trial starts from (unresolved, as loaded).
        space: from :func:`load_search_space`.
        storage: an Optuna storage URL; ``sqlite:///tune.db`` keeps the study in a file.
        study_dir: where ``trial-<n>/`` run folders and ``best_config.yaml`` go.
        study_name: defaults to ``base.experiment_name``.
        heartbeat_s: seconds between a trial's heartbeats; a trial silent for twice as long
            (its process was killed) is failed and retried.
    """
    check_available()
    import optuna
    from optuna.trial import TrialState

    from stetho.training.experiment import run_experiment

    if trials < 1:
        raise ValueError(f"trials={trials}: expected at least 1")
    study = StudyFolder(study_dir)
    study.root.mkdir(parents=True, exist_ok=True)
    seed = base.environment.seed
    store: Any = storage
    with warnings.catch_warnings():  # heartbeats and retries are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
        if storage.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql"):
            store = optuna.storages.RDBStorage(
                storage,
                heartbeat_interval=heartbeat_s,
                grace_period=2 * heartbeat_s,
                heartbeat_stale_trial_callback=retry,
            )
    optuna_study = optuna.create_study(
        study_name=study_name or base.experiment_name,
        storage=store,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=None if seed < 0 else seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2)
        if pruning
        else optuna.pruners.NopPruner(),
    )
    _retry_interrupted(optuna_study, retry)

    def objective(trial: optuna.Trial) -> float:
        cfg = config_with(base, {d.key: d.suggest(trial) for d in space})
        out = study.trial(trial.number)
        # A retried trial carries the interrupted one's user attributes: continue its folder.
        previous = trial.user_attrs.get("run_dir")
        resume = previous is not None and RunFolder(previous).working().root.exists()
        if previous is not None and resume:
            RunFolder(previous).working().root.rename(out.working().root)
            logger.info("trial %d continues the interrupted run %s", trial.number, previous)
        trial.set_user_attr("run_dir", str(out.root))
        result = run_experiment(
            cfg,
            out_dir=out.root,
            data=data,
            resume=resume,
            progress=False,
            callbacks=[OnEpochEnd(pruning_reporter(trial, epochs=cfg.training.epochs))],
        )
        return float(result.summary["pooled"]["macro_auc"])

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    remaining = trials - len(optuna_study.get_trials(deepcopy=False, states=finished))
    if remaining > 0:
        logger.info("study %r: running %d more trial(s)", optuna_study.study_name, remaining)
        optuna_study.optimize(objective, n_trials=remaining)
    else:
        logger.info("study %r already holds %d finished trials", optuna_study.study_name, trials)
    complete = optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise RuntimeError(
            f"study {optuna_study.study_name!r}: no trial completed (all pruned or failed); "
            "widen the search space, add trials or pass --no-pruning"
        )
    best = optuna_study.best_trial
    if best.value is None:
        raise RuntimeError(f"study {optuna_study.study_name!r}: the best trial has no value")
    best_config = config_with(base, best.params)
    save_config(best_config, study.best_config)
    atomic_write_json(
        study.best_trial,
        {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "run_dir": best.user_attrs.get("run_dir"),
        },
    )
    write_table(optuna_study.trials_dataframe(), study.trials)
    return TuneResult(
        study_dir=study.root,
        best_number=best.number,
        best_value=float(best.value),
        best_params=dict(best.params),
        best_config=study.best_config,
        n_finished=len(optuna_study.get_trials(deepcopy=False, states=finished)),
    )


def _retry_interrupted(study: optuna.Study, retry: Callable[..., None]) -> None:
    """Queue a retry of each failed trial whose run folder was left unfinished (Ctrl-C, or
    a kill the heartbeat caught in an earlier session), unless one is queued already."""
    from optuna.trial import TrialState

    queued = {
        t.user_attrs.get("run_dir")
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    }
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        run_dir = t.user_attrs.get("run_dir")
        if run_dir and run_dir not in queued and RunFolder(run_dir).working().root.exists():
            logger.info("trial %d was interrupted: queueing a retry", t.number)
            retry(study, t)


def _dimension(key: Any, spec: Any, *, source: str) -> Dimension:
    where = f"search space {source}: {key}"
    _check_key(key, source=source)
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        raise ConfigError(f"{where}: expected {{type: float|int|categorical, ...}}, got {spec!r}")
    kind = spec["type"]
    unknown = sorted(set(spec) - _SPEC_KEYS[kind])
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {unknown} for type {kind}; "
            f"allowed: {sorted(_SPEC_KEYS[kind])}"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: categorical needs a non-empty list of choices")
        bad = [c for c in choices if c is not None and not isinstance(c, bool | int | float | str)]
        if bad:
            raise ConfigError(
                f"{where}: choices must be numbers, strings, booleans or null; got {bad}"
            )
        return Dimension(key=key, type=kind, choices=tuple(choices))
    number = int if kind == "int" else (int, float)
    for name in ("low", "high"):
        value = spec.get(name)
        if not isinstance(value, number) or isinstance(value, bool):
            raise ConfigError(
                f"{where}: {name} = {value!r}, expected a{'n' * (kind == 'int')} {kind}"
            )
    low, high = float(spec["low"]), float(spec["high"])
    if kind == "int":
        low, high = int(spec["low"]), int(spec["high"])
    if not low < high:
        raise ConfigError(f"{where}: low = {low!r} must be below high = {high!r}")
    log, step = bool(spec.get("log", False)), spec.get("step")
    if log and low <= 0:
        raise ConfigError(f"{where}: log: true needs low > 0, got low = {low!r}")
    if log and step is not None:
        raise ConfigError(f"{where}: use log or step, not both")
    if step is not None and (not isinstance(step, int | float) or step <= 0):
        raise ConfigError(f"{where}: step = {step!r}, expected a positive number")
    return Dimension(key=key, type=kind, low=low, high=high, log=log, step=step)


def _check_key(key: Any, *, source: str) -> None:
    """``section.key`` naming a field of :class:`Config`; an unknown one is named with the
    keys that exist."""
    if not isinstance(key, str) or key.count(".") != 1:
        raise ConfigError(
            f"search space {source}: {key!r} is not a config key; expected section.key, "
            "e.g. training.learning_rate"
        )
    section, name = key.split(".")
    sections = {
        s: f.annotation
        for s, f in Config.model_fields.items()
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
    }
    if section not in sections:
        raise ConfigError(
            f"search space {source}: unknown key {key!r}: no section {section!r}; sections: "
            f"{', '.join(sorted(sections))}"
        )
    fields = sections[section].model_fields
    if name not in fields:
        raise ConfigError(
            f"search space {source}: unknown key {key!r}: {section} has no {name!r}; its keys: "
            f"{', '.join(sorted(fields))}"
        )
