"""The training plan: everything decided before the first heavy step, separate from running it.

:func:`check_config` fails fast on what can be known without data (an unknown backbone, a
pretrained-weights fall-back); :func:`plan_training` resolves the config, reads the manifest,
assigns the folds and collects every warning into a :class:`TrainingPlan`, which
:mod:`stetho.training.experiment` executes. :func:`resume_plan` reads a killed run's stored
plan back and applies the overrides that ``--resume`` may change.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from stetho.config import (
    DATA_LOCATION_KEYS,
    POST_TRAINING_KEYS,
    Config,
    ConfigError,
    ResolvedConfig,
    flat_config,
    load_resolved_config,
    resolve_config,
    save_config,
    split_seed,
)
from stetho.data.folds import assign_folds
from stetho.data.manifest import apply_patient_regex, patient_warning
from stetho.data.readers import read_dataset, read_table
from stetho.data.sources import read_sources
from stetho.io import atomic_write_json, write_table
from stetho.models import create_backbone
from stetho.models.timm_backbones import PretrainedWeightsUnavailable
from stetho.runs.folder import RunFolder
from stetho.training.loop import select_device
from stetho.training.pseudo import add_unlabeled_table

logger = logging.getLogger(__name__)


@dataclass
class TrainingPlan:
    """What a run trains: its resolved config, the data with folds, which folds, and why."""

    config: ResolvedConfig
    #: the Manifest with the ``fold`` column used
    manifest: pd.DataFrame
    folds: list[int]
    warnings: list[str]

    def save(self, folder: RunFolder) -> None:
        """Store the plan in ``folder`` (before the first epoch: ``--resume`` reads it)."""
        folder.root.mkdir(parents=True, exist_ok=True)
        save_config(self.config, folder.config)
        write_table(self.manifest, folder.manifest)
        atomic_write_json(folder.plan, {"folds": self.folds})
        folder.write_warnings(self.warnings)

    @classmethod
    def load(cls, folder: RunFolder) -> TrainingPlan:
        """The plan stored by :meth:`save`."""
        return cls(
            config=load_resolved_config(folder.config),
            manifest=pd.read_parquet(folder.manifest),
            folds=[int(f) for f in folder.read_json(folder.plan)["folds"]],
            warnings=folder.read_warnings(),
        )


def check_config(config: Config) -> list[str]:
    """Refuse what cannot train before any work is done; return the warnings it can know now.

    The backbone is built once: an unknown name or an impossible pretrained request raises
    ``ValueError`` here, and a fall-back to random weights (no network, no local file) is
    returned as a warning, so that it reaches ``warnings.json`` and not only the log.
    """
    arch = config.architecture
    # A stetho pretrained backbone is checked against the front end the run will use.
    audio = config.audio if isinstance(config, ResolvedConfig) else resolve_config(config)[0].audio
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PretrainedWeightsUnavailable)
        try:
            create_backbone(arch, audio=audio)
        except ValueError as exc:
            raise ConfigError(f"architecture.backbone={arch.backbone!r}: {exc}") from None
    return [str(w.message) for w in caught if issubclass(w.category, PretrainedWeightsUnavailable)]


def plan_training(
    config: Config,
    *,
    data: str | Path | None = None,
    layout: str = "auto",
    patient_regex: str | None = None,
) -> TrainingPlan:
    """Resolve ``config``, read the data (``data`` in ``layout``, else the config's
    ``train_dataframe``), assign folds and collect the warnings of all three.

    ``patient_regex`` takes the patient ids from the file names
    (:func:`stetho.data.manifest.apply_patient_regex`).
    """
    cfg, run_warnings = resolve_config(config)
    run_warnings += check_config(cfg)
    if data is not None and (cfg.dataset.data_folder or cfg.dataset.train_dataframe):
        # --data replaces Hydrogen Torch's data location; the stored config must not claim
        # that the run read it.
        logger.info("--data %s given: dataset.data_folder and train_dataframe are not used", data)
        cfg.dataset.data_folder = None
        cfg.dataset.train_dataframe = None
    check_multi_source(cfg)
    manifest = build_manifest(cfg, data, layout=layout)
    balance_by = cfg.training.balance_by
    if balance_by is not None and balance_by not in manifest.columns:
        raise ConfigError(
            f"training.balance_by={balance_by}: the data has no {balance_by!r} column; "
            "list the datasets in dataset.sources (or use balance_by: source)"
        )
    if patient_regex is not None:
        manifest = apply_patient_regex(manifest, patient_regex, name=f"data {data or ''}".strip())
    manifest, folds, fold_warnings = assign_plan_folds(cfg, manifest)
    run_warnings += fold_warnings + data_warnings(manifest) + runtime_warnings(cfg)
    return TrainingPlan(config=cfg, manifest=manifest, folds=folds, warnings=run_warnings)


def check_multi_source(config: Config) -> None:
    """Refuse what set labels (``dataset.label_groups``) cannot train with."""
    if config.dataset.label_groups and config.augmentation.mix_audio:
        raise ConfigError(
            "augmentation.mix_audio with dataset.label_groups: a mix of two recordings has no "
            "set label; set mix_audio: Disabled"
        )


def resume_plan(folder: RunFolder, config: Config) -> TrainingPlan:
    """The plan a killed run stored in ``folder``, with the changes of ``config`` that do not
    touch the trained result (:data:`stetho.config.POST_TRAINING_KEYS`) applied.

    Any other difference is refused with a :class:`~stetho.config.ConfigError` naming it:
    continuing would mix two experiments in one run folder.
    """
    plan = TrainingPlan.load(folder)
    new, _ = resolve_config(config)
    stored_flat, new_flat = flat_config(plan.config), flat_config(new)
    changed = {k for k in stored_flat if stored_flat[k] != new_flat.get(k)}
    changed -= DATA_LOCATION_KEYS | {"experiment_name"}  # read once, into the stored manifest
    if config.environment.seed == -1:  # a fresh draw, not a request for another seed
        changed.discard("environment.seed")
    refused = sorted(changed - POST_TRAINING_KEYS)
    if refused:
        lines = [f"  {k}: {stored_flat[k]!r} (stored) -> {new_flat.get(k)!r}" for k in refused]
        raise ConfigError(
            f"--resume {folder.final}: the config differs from the one this run started with "
            "in keys that change what is trained:\n"
            + "\n".join(lines)
            + "\nresume with the stored config (drop these overrides), or start a new run "
            "with another --out"
        )
    data = plan.config.to_dict()
    for key in sorted(changed):
        section, name = key.split(".", 1)
        data[section][name] = new_flat[key]
        logger.info("--resume: %s = %r (was %r)", key, new_flat[key], stored_flat[key])
    plan.config = ResolvedConfig.model_validate(data)
    for message in runtime_warnings(plan.config):
        if message not in plan.warnings:
            plan.warnings.append(message)
    return plan


def build_manifest(
    config: Config, data: str | Path | None, *, layout: str = "auto"
) -> pd.DataFrame:
    """The datasets of ``dataset.sources``, else the one named by ``--data`` (read as
    ``layout``), else the config's ``train_dataframe``; plus the recordings of
    ``dataset.unlabeled_dataframe``, unlabelled."""
    ds = config.dataset
    if ds.sources and data is not None:
        raise ConfigError(
            f"--data {data} and dataset.sources both name the training data: drop one"
        )
    if ds.sources:
        manifest = read_sources(ds.sources)
    elif data is not None:
        manifest = read_dataset(data, layout=layout)
    elif ds.train_dataframe and Path(ds.train_dataframe).exists():
        manifest = read_table(
            ds.train_dataframe,
            data_folder=ds.data_folder,
            audio_column=ds.audio_column,
            label_column=ds.label_columns[0] if ds.label_columns else "label",
        )
    else:
        raise FileNotFoundError(
            f"no data: dataset.train_dataframe={ds.train_dataframe!r} does not exist here; "
            "pass --data DIR"
        )
    if ds.unlabeled_dataframe:
        manifest = add_unlabeled_table(manifest, ds)
    return manifest


def assign_plan_folds(
    config: Config, df: pd.DataFrame
) -> tuple[pd.DataFrame, list[int], list[str]]:
    """Assign folds and decide which to train. Returns (manifest, folds to train, warnings)."""
    ds = config.dataset
    warns: list[str] = []
    # With several datasets, a class some sources lack is what the masked loss is for.
    if ds.validation_strategy == "leave_source_out" and not ds.sources:
        labelled = df[df["label"].notna()]
        per_source = labelled.groupby("source")["label"].apply(set)
        shared = set.intersection(*per_source.tolist()) if len(per_source) else set()
        dropped = sorted(set(labelled["label"]) - shared)
        if dropped:
            warns.append(
                f"leave_source_out: classes {dropped} do not occur in every source and are left "
                f"out; shared classes: {sorted(shared)}"
            )
            df = df[df["label"].isna() | df["label"].isin(shared)].reset_index(drop=True)
    if ds.validation_strategy == "fold_column" and ds.fold_column not in df.columns:
        raise ConfigError(
            f"dataset.validation_strategy=fold_column: the data has no column "
            f"{ds.fold_column!r} (dataset.fold_column); its columns are {list(df.columns)}"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = assign_folds(
            df,
            n_splits=ds.number_of_folds,
            seed=split_seed(config),
            group_column=ds.group_fold_column or "patient",
            strategy=ds.validation_strategy,
            validation_size=ds.validation_size,
            fold_column=ds.fold_column,
        )
    warns.extend(str(w.message) for w in caught)
    available = sorted(
        int(f) for f in df.loc[df["label"].notna() & (df["fold"] >= 0), "fold"].unique()
    )
    if ds.validation_strategy == "holdout":
        available = [1]
    if ds.folds:
        wanted = [int(f) for f in ds.folds]
        bad = sorted(set(wanted) - set(available))
        if bad:
            raise ValueError(
                f"dataset.folds={ds.folds}: fold(s) {bad} do not exist; folds: {available}"
            )
        return df, wanted, warns
    return df, available, warns


def data_warnings(df: pd.DataFrame) -> list[str]:
    """Classes that exist in one recording source only can be learnt from the device alone;
    sources that name no patients (every recording its own group) give optimistic folds."""
    out = []
    no_patients = patient_warning(df)
    if no_patients is not None:
        out.append(no_patients)
    labelled = df[df["label"].notna()]
    if labelled["source"].nunique() > 1:
        for label, part in labelled.groupby("label"):
            sources = sorted(part["source"].unique())
            if len(sources) == 1:
                out.append(
                    f"class {label!r} occurs only in source {sources[0]!r}: a model can find it by "
                    "the recording device alone; read its AUC with the per-source metrics"
                )
    return out


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def runtime_warnings(config: ResolvedConfig) -> list[str]:
    """What this machine changes about ``config`` (it is adjusted in place): no GPU, fewer
    cores than data-loading workers; and settings whose scores need a caveat."""
    out = []
    env = config.environment
    if env.gpus and select_device(config).type == "cpu":
        out.append(f"environment.gpus={env.gpus} but no GPU is available: training on CPU")
    cores = available_cores()
    if env.number_of_workers > cores:
        out.append(
            f"environment.number_of_workers={env.number_of_workers} but only {cores} CPU "
            f"core(s) are available: using {cores} data-loading worker(s)"
        )
        env.number_of_workers = cores
    if config.training.train_validation_data:
        out.append(
            "training.train_validation_data=true: validation recordings are also trained on, "
            "so validation metrics are optimistic"
        )
    return out
