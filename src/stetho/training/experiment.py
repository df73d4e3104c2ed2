"""A whole experiment: execute a :class:`~stetho.training.plan.TrainingPlan`.

``run_experiment`` is what ``stetho train`` calls. It checks the config, plans the run
(:mod:`stetho.training.plan`), writes into ``<out>.partial`` and renames it to ``<out>`` once
everything is written; ``resume=True`` continues a killed run from its last finished epoch
(per fold) with the config and folds it started with.

A run that fails before anything was trained leaves nothing behind; one that fails later keeps
``<out>.partial`` for ``--resume``. Every path comes from :class:`stetho.runs.folder.RunFolder`.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stetho.config import Config, ResolvedConfig, split_seed
from stetho.data.label_groups import check_label_groups, is_set_label, run_classes
from stetho.decision import DecisionRule
from stetho.decision.calibration import prior_correction_bias
from stetho.decision.fitting import RunDecision, decision_skip_reason, fit_run_decision
from stetho.features.rhythm import rhythm_extras
from stetho.io import atomic_write_json, atomic_write_text, write_table
from stetho.metrics import classification_metrics, metrics_by_group
from stetho.models import starting_weights
from stetho.runs import save_model
from stetho.runs.environment import package_versions
from stetho.runs.folder import RunFolder
from stetho.training import distributed
from stetho.training.callbacks import TrainingCallback
from stetho.training.data import LoadedAudio, load_waveforms, sample_rows, targets_for
from stetho.training.loop import FoldData, select_device, train_fold
from stetho.training.optim import class_weight_vector
from stetho.training.plan import TrainingPlan, check_config, plan_training, resume_plan
from stetho.training.pseudo import pseudo_labels_for_fold, soft_targets

logger = logging.getLogger(__name__)

UNLABEL = "unlabel"
PACKAGES = (
    "stetho",
    "torch",
    "timm",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "soundfile",
    "soxr",
    "pydantic",
    "onnx",
    "onnxruntime",
    "safetensors",
)

#: A step run after training, before the folder is sealed (``stetho.workflows.hooks``).
AfterRun = Callable[[Path], None]


@dataclass
class ExperimentResult:
    run_dir: Path
    summary: dict[str, Any]
    oof: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    #: Training seconds, summed over every segment of a resumed run (``summary["seconds"]``).
    training_seconds: float = 0.0
    #: Seconds of this call, including the after-training steps (report, export, ...).
    seconds: float = 0.0


def environment_info(config: Config, device: torch.device) -> dict[str, Any]:
    versions = package_versions(PACKAGES)
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "seed": config.environment.seed,
        "pretrained_weights": starting_weights(config.architecture),
        "git_commit": commit,
        "device": str(device),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "command": sys.argv,
    }


def run_experiment(
    config: Config,
    *,
    out_dir: str | Path,
    data: str | Path | None = None,
    layout: str = "auto",
    patient_regex: str | None = None,
    resume: bool = False,
    progress: bool = True,
    after_run: Sequence[AfterRun] = (),
    callbacks: Sequence[TrainingCallback] = (),
) -> ExperimentResult:
    """Train and validate every planned fold and write the run folder (see :mod:`stetho.runs`).

    ``data`` is read as ``layout`` (a name of :func:`stetho.data.readers.list_readers`, or
    ``auto``); ``patient_regex`` takes patient ids from file names
    (:func:`stetho.data.manifest.apply_patient_regex`). ``callbacks`` see every epoch (an
    experiment tracker's live feed, pruning); ``after_run`` steps get the finished, still
    partial folder. Under torchrun every process calls this: all train, rank 0 alone writes
    (see :mod:`stetho.training.distributed`).
    """
    folder = RunFolder(out_dir).sealed()
    check_config(config)  # before any folder is made or any recording decoded
    with distributed.process_group(select_device(config)):
        if distributed.is_main():
            _prepare_folder(folder, resume=resume)
        distributed.barrier()  # every rank has looked at the folder before rank 0 writes
        work = folder.working()
        try:
            if distributed.is_main():
                plan = _make_plan(
                    config,
                    work=work,
                    data=data,
                    layout=layout,
                    patient_regex=patient_regex,
                    resume=resume,
                )
                plan.save(work)
            distributed.barrier()
            if not distributed.is_main():  # the other ranks use what rank 0 planned and wrote
                plan = TrainingPlan.load(work)
            return _execute(
                plan, folder=folder, progress=progress, after_run=after_run, callbacks=callbacks
            )
        except BaseException:
            if distributed.is_main():
                _after_failure(work)
            raise


def _prepare_folder(folder: RunFolder, *, resume: bool) -> None:
    """Refuse to touch a finished run; clear a stale partial that holds nothing trained."""
    work = folder.working()
    if folder.root.exists():
        raise FileExistsError(f"{folder.root} already exists: choose another --out or delete it")
    if not work.root.exists() or resume:
        return
    if work.has_training():
        raise FileExistsError(
            f"{work.root} holds an unfinished run with trained epochs: pass --resume to continue "
            "it, or delete it to start over"
        )
    logger.warning("removing %s: a stale unfinished run with nothing trained", work.root)
    shutil.rmtree(work.root)


def _make_plan(
    config: Config,
    *,
    work: RunFolder,
    data: str | Path | None,
    layout: str,
    patient_regex: str | None,
    resume: bool,
) -> TrainingPlan:
    if resume and work.config.exists():
        logger.info("resuming %s with its stored config and folds", work.root)
        return resume_plan(work, config)
    if resume:
        logger.warning("nothing to resume at %s: starting a new run", work.root)
    return plan_training(config, data=data, layout=layout, patient_regex=patient_regex)


def _after_failure(work: RunFolder) -> None:
    """A failed run keeps its partial folder only when something was trained in it."""
    if not work.root.exists():
        return
    if work.has_training():
        logger.error(
            "training stopped; %s keeps what was trained: continue it with --resume", work.root
        )
    else:
        logger.error("training stopped before anything was trained: removing %s", work.root)
        shutil.rmtree(work.root, ignore_errors=True)


def _execute(
    plan: TrainingPlan,
    *,
    folder: RunFolder,
    progress: bool,
    after_run: Sequence[AfterRun],
    callbacks: Sequence[TrainingCallback],
) -> ExperimentResult:
    t0 = time.monotonic()
    work = folder.working()
    main = distributed.is_main()
    cfg, run_warnings = plan.config, plan.warnings
    progress = progress and main
    for w in run_warnings:
        logger.warning("%s", w)
    if cfg.environment.threads:
        torch.set_num_threads(cfg.environment.threads)
    clock = _Clock(work, t0)

    inputs = _load_inputs(plan, work=work, progress=progress)
    device = select_device(cfg)
    if main:
        atomic_write_json(
            work.labels,
            {
                "classes": inputs.classes,
                "loss_function": cfg.training.loss_function,
                "sample_rate": cfg.audio.sample_rate,
                "n_extra_features": inputs.n_extra,
            },
        )
        work.write_warnings(run_warnings)
        info = environment_info(cfg, device)
        info["world_size"] = distributed.world_size()
        atomic_write_json(work.environment, info)

    # Round 0 is supervised. With pseudo-labelling (stetho.training.pseudo), rounds 0 .. R-1
    # train into pseudo/round-<r>/ and the last round R into the run folder itself.
    n_rounds = cfg.pseudo_labeling.rounds if cfg.pseudo_labeling.enabled else 0
    histories: list[dict[str, Any]] = []
    round_metrics: list[dict[str, Any]] = []
    parts: list[pd.DataFrame] = []
    for r in range(n_rounds + 1):
        log = _EpochLog(work, round_=r if n_rounds else None, callbacks=[*callbacks, clock])
        parts, round_history = _train_folds(
            cfg,
            inputs=inputs,
            folds=plan.folds,
            round_=r,
            root=work if r == n_rounds else work.pseudo_round(r),
            log=log,
            progress=progress,
        )
        histories += round_history
        if n_rounds and main:
            round_metrics.append(_round_summary(r, parts, inputs.classes, work=work, plan=plan))

    if not main:
        distributed.barrier()  # rank 0 writes and seals the run folder
        return _finished_result(folder, t0)
    oof = pd.concat(parts, ignore_index=True)
    write_table(oof, work.oof_predictions)
    # The authoritative per-epoch log: rebuilt from the folds' histories, so lines of an
    # epoch interrupted by a crash never appear twice.
    atomic_write_text(
        work.metrics_log, "".join(json.dumps(h, default=str) + "\n" for h in histories)
    )
    decided = fit_decision_step(cfg, oof, inputs.classes, work=work, warnings=run_warnings)
    summary = summarize_oof(
        oof,
        inputs.classes,
        rule=None if isinstance(decided, str) else decided.rule,
        groups=cfg.dataset.label_groups,
    )
    summary["decision"] = {"skipped": decided} if isinstance(decided, str) else decided.summary
    if round_metrics:
        summary["pseudo_labeling"] = round_metrics
    summary["warnings"] = run_warnings
    summary["folds"] = plan.folds
    #: Training only (not the after-training steps), summed over resumed segments.
    summary["seconds"] = round(clock.total(), 1)
    atomic_write_json(work.summary, summary)
    work.write_warnings(run_warnings)
    for hook in after_run:
        hook(work.root)
    work.elapsed.unlink(missing_ok=True)
    work.root.rename(folder.root)
    logger.info("run folder %s written", folder.root)
    distributed.barrier()
    return ExperimentResult(
        run_dir=folder.root,
        summary=summary,
        oof=oof,
        warnings=work.sealed().read_warnings(),
        training_seconds=summary["seconds"],
        seconds=time.monotonic() - t0,
    )


def _load_inputs(plan: TrainingPlan, *, work: RunFolder, progress: bool) -> _FoldInputs:
    """Decode the recordings the plan trains on (and the pseudo-labelling candidates)."""
    cfg, manifest, run_warnings = plan.config, plan.manifest, plan.warnings
    if cfg.dataset.unlabeled_as_class:
        manifest["label"] = manifest["label"].fillna(UNLABEL)
    labelled = manifest[manifest["label"].notna() & (manifest["fold"] >= 0)].reset_index(drop=True)
    pool = manifest[manifest["label"].isna()].reset_index(drop=True)
    if not cfg.pseudo_labeling.enabled:
        pool = pool.iloc[:0]
    elif pool.empty:
        _add(run_warnings, "pseudo_labeling.enabled=true but there are no unlabelled recordings")
    groups = cfg.dataset.label_groups
    classes = run_classes(labelled["label"].unique().tolist(), groups)
    check_label_groups(groups, classes)
    if len(classes) < 2:
        raise ValueError(f"need at least two classes to train, found {classes}")
    audio = load_waveforms(
        labelled["path"].tolist() + pool["path"].tolist(),
        sample_rate=cfg.audio.sample_rate,
        min_duration_s=cfg.dataset.min_duration_seconds,
        max_duration_s=cfg.dataset.max_duration_seconds,
        progress=progress,
    )
    if audio.errors:
        skipped = pd.DataFrame({"path": list(audio.errors), "reason": list(audio.errors.values())})
        if distributed.is_main():
            write_table(skipped, work.skipped)
        _add(
            run_warnings,
            f"{len(audio.errors)} recording(s) could not be used and were skipped: see "
            f"{work.skipped.name}",
        )
        labelled = labelled[labelled["path"].isin(audio.waves)].reset_index(drop=True)
        pool = pool[pool["path"].isin(audio.waves)].reset_index(drop=True)
    extras = _rhythm_extras(cfg, pd.concat([labelled, pool]), audio)
    return _FoldInputs(
        work=work,
        classes=classes,
        labelled=labelled,
        pool=pool,
        waves=audio.waves,
        extras=extras,
    )


class _Clock(TrainingCallback):
    """Training seconds summed over the segments of a resumed run: what earlier segments
    recorded in ``elapsed.json`` plus this one, written again after every epoch (a kill loses
    at most the epoch it interrupts)."""

    def __init__(self, work: RunFolder, t0: float) -> None:
        self.work, self.t0 = work, t0
        self.before = float(work.read_json(work.elapsed, {}).get("seconds", 0.0))

    def total(self) -> float:
        return self.before + time.monotonic() - self.t0

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.work.elapsed, {"seconds": round(self.total(), 3)})


class _EpochLog(TrainingCallback):
    """Appends each epoch to ``metrics.jsonl`` (tagged with its pseudo-labelling round), then
    hands it to the user's callbacks."""

    def __init__(
        self, work: RunFolder, *, round_: int | None, callbacks: Sequence[TrainingCallback]
    ) -> None:
        self.work, self.round, self.callbacks = work, round_, callbacks

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if self.round is not None:
            record["round"] = self.round
        self.work.append_metrics(record)
        for callback in self.callbacks:
            callback.on_epoch_end(dict(record))


def _finished_result(folder: RunFolder, t0: float) -> ExperimentResult:
    """What a rank other than 0 returns: the run folder rank 0 sealed."""
    summary = folder.read_json(folder.summary)
    return ExperimentResult(
        run_dir=folder.root,
        summary=summary,
        oof=pd.read_parquet(folder.oof_predictions),
        warnings=summary["warnings"],
        training_seconds=summary["seconds"],
        seconds=time.monotonic() - t0,
    )


@dataclass
class _FoldInputs:
    """What every fold of every round trains from."""

    work: RunFolder
    classes: list[str]
    #: labelled rows with a fold, and the unlabelled candidates for pseudo-labels
    labelled: pd.DataFrame
    pool: pd.DataFrame
    waves: dict[str, np.ndarray]
    #: rhythm features by path (``training.rhythm_features``)
    extras: dict[str, np.ndarray] | None

    @property
    def n_extra(self) -> int:
        return 0 if self.extras is None else len(next(iter(self.extras.values()), []))


def _train_folds(
    cfg: ResolvedConfig,
    *,
    inputs: _FoldInputs,
    folds: list[int],
    round_: int,
    root: RunFolder,
    log: _EpochLog,
    progress: bool,
) -> tuple[list[pd.DataFrame], list[dict[str, Any]]]:
    """Train (or, when finished before a crash, reload) each fold of one round into
    ``root``'s fold folders; returns the folds' validation predictions and epoch histories."""
    work, classes, labelled = inputs.work, inputs.classes, inputs.labelled
    main = distributed.is_main()
    tag_round = log.round is not None
    parts = []
    histories: list[dict[str, Any]] = []
    for k in folds:
        if root.fold_model(k).exists() and root.fold_valid_predictions(k).exists():
            parts.append(pd.read_parquet(root.fold_valid_predictions(k)))
            histories += root.read_json(root.fold_history(k))
            continue
        valid_mask = labelled["fold"] == k
        train_mask = ~valid_mask | cfg.training.train_validation_data
        train_df = sample_rows(
            labelled[train_mask],
            cfg.dataset.data_sample if "Train" in cfg.dataset.data_sample_choice else 1.0,
            seed=split_seed(cfg),
        )
        valid_df = sample_rows(
            labelled[valid_mask],
            cfg.dataset.data_sample if "Validation" in cfg.dataset.data_sample_choice else 1.0,
            seed=split_seed(cfg),
        )
        train_paths = train_df["path"].tolist()
        groups = cfg.dataset.label_groups
        train_targets = targets_for(train_df["label"].tolist(), classes, groups)
        train_partial = is_set_label(train_df["label"].tolist(), groups)
        balance_by = cfg.training.balance_by
        balance_keys = None if balance_by is None else train_df[balance_by].to_numpy()
        train_weights = None
        if round_ > 0:
            table = pseudo_labels_for_fold(
                cfg,
                run_dir=work.root,
                fold=k,
                round_=round_,
                classes=classes,
                pool=inputs.pool,
                labelled=labelled,
                waves=inputs.waves,
                extras=inputs.extras,
            )
            pl_paths, pl_targets, pl_weights = soft_targets(table, classes)
            train_weights = np.concatenate([np.ones(len(train_paths), np.float32), pl_weights])
            train_paths += pl_paths
            train_targets = np.concatenate([train_targets, pl_targets])
            train_partial = np.concatenate([train_partial, np.zeros(len(pl_paths), bool)])
            if balance_keys is not None:  # pseudo-labels count with the pool's own groups
                pool_keys = inputs.pool.set_index("path")[balance_by]
                balance_keys = np.concatenate([balance_keys, pool_keys.loc[pl_paths].to_numpy()])
        fold_data = FoldData(
            train_waves=[inputs.waves[p] for p in train_paths],
            train_targets=train_targets,
            valid_waves=[inputs.waves[p] for p in valid_df["path"]],
            valid_labels=valid_df["label"].tolist(),
            train_weights=train_weights,
            train_extras=_stack(inputs.extras, train_paths),
            valid_extras=_stack(inputs.extras, valid_df["path"].tolist()),
            train_partial=train_partial,
            train_balance_keys=balance_keys,
        )
        logger.info(
            "fold %d%s: %d training (%d pseudo-labelled), %d validation recordings",
            k,
            f" round {round_}" if tag_round else "",
            len(train_paths),
            len(train_paths) - len(train_df),
            len(valid_df),
        )
        result = train_fold(
            cfg,
            classes=classes,
            data=fold_data,
            fold=k,
            checkpoint=root.fold_checkpoint(k),
            callbacks=[log],
            progress=progress,
        )
        if tag_round:
            for h in result.history:
                h["round"] = round_
        keep = ["path", "fold", "label", "source", "patient"]
        part = valid_df[keep + (["dataset"] if "dataset" in valid_df else [])].copy()
        for i, c in enumerate(classes):
            part[f"prob_{c}"] = result.valid_probs[:, i]
        if main:
            save_model(
                result.model,
                root.fold_model(k),
                metadata={"fold": str(k), "classes": json.dumps(classes)},
            )
            atomic_write_json(root.fold_history(k), result.history)
            write_table(part, root.fold_valid_predictions(k))
            root.fold_checkpoint(k).unlink(missing_ok=True)
        distributed.barrier()  # the next fold (and a teacher's student) finds this one written
        parts.append(part)
        histories += result.history
    return parts, histories


def _round_summary(
    round_: int,
    parts: list[pd.DataFrame],
    classes: list[str],
    *,
    work: RunFolder,
    plan: TrainingPlan,
) -> dict[str, Any]:
    """Pooled out-of-fold scores of one pseudo-labelling round and its pseudo-label counts."""
    oof = pd.concat(parts, ignore_index=True)
    pooled = classification_metrics(
        oof["label"].to_numpy(),
        oof[[f"prob_{c}" for c in classes]].to_numpy(),
        classes,
        groups=plan.config.dataset.label_groups,
    )
    used = {}
    for k in plan.folds:
        path = work.pseudo_labels(k, round_)
        if path.exists():
            used[str(k)] = int(pd.read_parquet(path)["used"].sum())
    return {
        "round": round_,
        "macro_auc": pooled["macro_auc"],
        "balanced_accuracy": pooled["balanced_accuracy"],
        "pseudo_labels_used": used,
    }


def _stack(by_path: dict[str, np.ndarray] | None, paths: list[str]) -> np.ndarray | None:
    if by_path is None:
        return None
    return np.stack([by_path[p] for p in paths]) if paths else np.zeros((0, 0), np.float32)


def summarize_oof(
    oof: pd.DataFrame,
    classes: list[str],
    *,
    rule: DecisionRule | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Pooled out-of-fold, per-fold, per-source and (with several datasets) per-dataset
    metrics; the pooled normal-vs-abnormal figures are the deployed ``rule``'s
    (``classification_metrics(..., rule=)``); ``groups`` are ``dataset.label_groups``."""
    prob_cols = [f"prob_{c}" for c in classes]
    pooled = classification_metrics(
        oof["label"].to_numpy(), oof[prob_cols].to_numpy(), classes, rule=rule, groups=groups
    )
    out = {
        "classes": classes,
        "pooled": pooled,
        "per_fold": metrics_by_group(oof, classes, group="fold", groups=groups),
        "per_source": metrics_by_group(oof, classes, group="source", groups=groups),
    }
    if "dataset" in oof.columns and oof["dataset"].nunique() > 1:
        out["per_dataset"] = metrics_by_group(oof, classes, group="dataset", groups=groups)
    return out


def fold_prior_offsets(
    cfg: ResolvedConfig, oof: pd.DataFrame, classes: list[str]
) -> dict[int, np.ndarray] | None:
    """Each fold model's prior correction: ``training.class_weights`` as training computed
    them on that fold's training labels (the other folds), through
    :func:`stetho.decision.calibration.prior_correction_bias` (zero under BCE).

    Pseudo-labels and ``dataset.data_sample`` are not counted: their share of a fold's
    training set is not recorded per class, and the calibration fitted after it absorbs
    what is left of the shift.
    """
    if cfg.training.class_weights is None:
        return None
    offsets: dict[int, np.ndarray] = {}
    for k in sorted(int(f) for f in oof["fold"].unique()):
        train = oof.loc[oof["fold"] != k, "label"].tolist()
        if cfg.training.train_validation_data:
            train = oof["label"].tolist()
        onehot = targets_for(train, classes, cfg.dataset.label_groups)
        weights = class_weight_vector(cfg.training, onehot)
        if weights is None:
            return None
        counts = onehot.sum(axis=0) + 1.0  # as the Auto weights count: no class at zero
        offsets[k] = prior_correction_bias(
            counts, class_weights=weights.numpy(), loss_function=cfg.training.loss_function
        )
    return offsets


def fit_decision_step(
    cfg: ResolvedConfig,
    oof: pd.DataFrame,
    classes: list[str],
    *,
    work: RunFolder,
    warnings: list[str],
) -> RunDecision | str:
    """After the folds: fit the run's decision rule (:mod:`stetho.decision.fitting`) and write
    ``decision.json`` and the cross-fitted decisions into the run; when none can be fitted
    (the classes have no ``normal``, every dataset is set-labelled, or the folds cannot be
    fitted on) the default rule applies and the reason is returned (and warned of)."""
    reason = decision_skip_reason(classes)
    if reason:
        logger.info("no decision rule fitted: %s", reason)
        return reason
    oof, note = _decision_rows(oof, cfg.dataset.label_groups)
    if note:
        _add(warnings, note)
    if oof.empty:
        return note or "no out-of-fold predictions to fit a decision rule on"
    try:
        decided = fit_run_decision(
            oof,
            classes,
            cfg.prediction,
            loss_function=cfg.training.loss_function,
            offsets=fold_prior_offsets(cfg, oof, classes),
        )
    except ValueError as exc:  # e.g. a fold whose other folds hold no normal recording
        reason = f"no decision rule fitted ({exc}); the default rule applies"
        _add(warnings, reason)
        return reason
    atomic_write_json(work.decision, decided.rule.to_dict())
    if decided.decisions is not None:
        write_table(decided.decisions, work.decision_oof)
    rule = decided.rule
    logger.info(
        "decision rule: calibration %s, threshold %.3f (%s)%s",
        rule.calibration.method if rule.calibration else "none",
        rule.threshold,
        cfg.prediction.operating_point.target,
        ""
        if rule.abstain_band is None
        else f", re-record in [{rule.abstain_band[0]:.3f}, {rule.abstain_band[1]:.3f})",
    )
    return decided


def _decision_rows(
    oof: pd.DataFrame, groups: Mapping[str, Sequence[str]]
) -> tuple[pd.DataFrame, str | None]:
    """The out-of-fold rows the decision rule is fitted on, and a note of what was left out:
    calibration needs each recording's class, and dropping only a dataset's set-labelled rows
    would keep its normal ones alone and tilt the fit, so a dataset with set labels is left
    out whole."""
    set_rows = is_set_label(oof["label"].tolist(), groups)
    if not set_rows.any():
        return oof, None
    key = "dataset" if "dataset" in oof.columns else "source"
    partial = sorted(str(v) for v in oof.loc[set_rows, key].unique())
    kept = oof[~oof[key].isin(partial)]
    if kept.empty:
        return kept, (
            f"no decision rule fitted: every {key} labels recordings by a group only "
            "(dataset.label_groups); the default rule (arg-max label) applies"
        )
    return kept, (
        f"decision rule fitted on the {key}(s) {sorted(kept[key].astype(str).unique())} "
        f"only: {partial} label recordings by a group (dataset.label_groups), which "
        "calibration cannot use"
    )


def _rhythm_extras(
    cfg: ResolvedConfig, rows: pd.DataFrame, audio: LoadedAudio
) -> dict[str, np.ndarray] | None:
    """Heart-rhythm statistics by path (``training.rhythm_features``), log-compressed."""
    if not cfg.training.rhythm_features:
        return None
    paths = list(rows["path"])
    values = rhythm_extras([audio.waves[p] for p in paths], cfg.audio.sample_rate)
    return dict(zip(paths, values, strict=True))


def _add(warns: list[str], message: str) -> None:
    if message not in warns:
        warns.append(message)
        logger.warning("%s", message)
