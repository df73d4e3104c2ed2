"""Experiment configuration: one validated object that reads H2O Hydrogen Torch YAML unchanged.

Hydrogen Torch writes a few values as strings that mean something else: ``Auto`` (let the tool
choose), ``None`` (nothing), ``Disabled`` (off), ``'No'`` (no normalisation) and fold ids as
quoted strings. They are understood here and normalised to Python values, so the resolved
config that is saved beside every model is plain YAML and loads again unchanged.

Every section refuses unknown keys, and every error names the key, the value received and what
was expected: a typo never passes silently. Values that a published config really uses but that
cannot mean what they say (a mel band above Nyquist) are resolved by :func:`resolve_config`
and reported as warnings, which are written into the run folder and the report.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

AUTO: Final = "Auto"


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names key, value and remedy."""


def _none_string(value: Any) -> Any:
    """Hydrogen Torch writes a missing value as the string ``None``."""
    if isinstance(value, str) and value.strip() in {"None", "none", "null", ""}:
        return None
    return value


def _disabled_to_false(value: Any) -> Any:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in {"disabled", "no", "off", "false"}:
            return False
        if word in {"enabled", "yes", "on", "true", "mix"}:
            return True
    return value


def _auto(value: Any) -> Any:
    """Normalise spellings of ``Auto`` so a field typed ``X | Literal['Auto']`` accepts them."""
    value = _none_string(value)
    if isinstance(value, str) and value.strip().lower() == "auto":
        return AUTO
    return value


def _str_list(value: Any) -> Any:
    """Fold ids and GPU ids arrive as quoted strings, numbers, or a single scalar."""
    value = _none_string(value)
    if value is None:
        return []
    if isinstance(value, str | int):
        return [str(value)]
    if isinstance(value, list):
        return [str(v) for v in value]
    return value


def _whole_to_int(value: int | float) -> int | float:
    """``5.0`` -> ``5``: a count of epochs is written back as the integer it was given as."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


OptStr = Annotated[str | None, BeforeValidator(_none_string)]
OptPath = Annotated[str | None, BeforeValidator(_none_string)]
Flag = Annotated[bool, BeforeValidator(_disabled_to_false)]
AutoInt = Annotated[int | Literal["Auto"], BeforeValidator(_auto)]
AutoFloat = Annotated[float | Literal["Auto"], BeforeValidator(_auto)]
StrList = Annotated[list[str], BeforeValidator(_str_list)]
#: A number of epochs that may be fractional (``0.5``) but is kept an integer when whole.
Epochs = Annotated[int | float, AfterValidator(_whole_to_int)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ArchitectureConfig(Section):
    backbone: str = "heartnet"
    pool: Literal["Average", "Max", "GeM", "Attention"] = "GeM"
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    pretrained: bool = False
    #: A local weights file (safetensors or a state dict) used instead of a download.
    pretrained_weights: OptPath = None
    #: Width multiplier of our own backbones; ignored by timm ones.
    width: int = Field(default=32, ge=4, le=256)
    #: Partial transfer: only backbone parameters under one of these module paths (e.g.
    #: ``[stem, stages.0]``) take the pretrained weights; the rest keep their random
    #: initialisation, to be learnt for this task. ``None``: the whole backbone.
    pretrained_layers: list[str] | None = None


class AudioConfig(Section):
    #: ``Auto`` fills every value left ``Auto`` with a sound one and caps impossible ones with a
    #: warning; ``Manual`` refuses impossible values.
    audio_parameters: Literal["Auto", "Manual"] = "Auto"
    sample_rate: AutoInt = 2000
    stft_window_size: AutoInt = AUTO
    hop_size: AutoInt = AUTO
    mel_frequency_bins: AutoInt = 64
    minimum_frequency: AutoFloat = 25.0
    maximum_frequency: AutoFloat = AUTO
    #: ``No``, ``Recording`` (each log-mel standardised on its own) or ``Global`` (dataset
    #: statistics from the training folds).
    spectrogram_normalization: Literal["No", "Recording", "Global"] = "Recording"
    #: Per-recording waveform scaling before the front end: removes the recorder's gain.
    waveform_normalization: Literal["No", "Peak", "RMS"] = "RMS"
    training_chunk_seconds: float = Field(default=6.0, gt=0)


class AugmentationConfig(Section):
    mix_audio: Flag = False
    mix_concentration: float = Field(default=1.0, gt=0)
    mix_iterations: int = Field(default=1, ge=1)
    mix_probability: float = Field(default=1.0, ge=0, le=1)
    mix_target: Literal["Ratio", "Max"] = "Ratio"
    #: Random gain in +-dB. Zero disables.
    gain_db: float = Field(default=0.0, ge=0)
    #: Probability of a random low-pass (cut-off drawn from ``lowpass_hz``): another stethoscope.
    lowpass_probability: float = Field(default=0.0, ge=0, le=1)
    lowpass_hz: tuple[float, float] = (250.0, 900.0)
    #: Probability of a random spectral tilt / EQ of +-``eq_db`` across the band.
    eq_probability: float = Field(default=0.0, ge=0, le=1)
    eq_db: float = Field(default=6.0, ge=0)
    #: Probability of additive noise at an SNR drawn from ``noise_snr_db``.
    noise_probability: float = Field(default=0.0, ge=0, le=1)
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    #: Random circular time shift of the training chunk.
    time_shift: bool = False
    #: SpecAugment (Park et al., 2019): this many time masks of up to ``spec_time_mask_seconds``
    #: and frequency masks of up to ``spec_freq_mask_bins`` mel bands on each training spectrogram.
    spec_masks: int = Field(default=0, ge=0)
    spec_time_mask_seconds: float = Field(default=0.4, ge=0)
    spec_freq_mask_bins: int = Field(default=8, ge=0)


class SourceConfig(Section):
    """One dataset of a multi-source run (``dataset.sources``): where it is, how to read it
    and how its labels map onto the run's vocabulary (:mod:`stetho.data.sources`)."""

    #: A folder (or table) any registered reader reads.
    path: str
    #: A registered reader (``pascal``, ``physionet2016``, ``circor``, ``table``, ``folder``)
    #: or ``auto``.
    layout: str = "auto"
    #: The value of the manifest's ``dataset`` column; the folder's name by default.
    name: OptStr = None
    #: Dataset label -> run label: a class, a name of ``dataset.label_groups`` (the label says
    #: only that the class is one of the group's) or ``-`` (leave the recordings out). Labels
    #: not listed keep their name. Compared case-insensitively.
    label_map: dict[str, str] = {}
    #: Take patient ids from the file names (``stetho train --patient-regex``).
    patient_regex: OptStr = None


class DatasetConfig(Section):
    #: Train on several datasets at once (replaces ``--data`` and ``train_dataframe``).
    sources: list[SourceConfig] = []
    #: Labels that name a set of classes rather than one, e.g. PhysioNet 2016's
    #: ``abnormal: [extrahls, extrastole, murmur]``: the loss asks only that the probability
    #: of the set be high (:func:`stetho.training.optim.loss_fn`), and the multi-class metrics
    #: leave such recordings out (normal vs abnormal keeps them).
    label_groups: dict[str, list[str]] = {}
    audio_column: str = "audio"
    data_folder: OptPath = None
    data_folder_test: OptPath = None
    data_sample: float = Field(default=1.0, gt=0, le=1)
    data_sample_choice: list[Literal["Train", "Validation"]] = ["Train", "Validation"]
    #: Which folds to train; an empty list means all of them.
    folds: StrList = []
    #: Hydrogen Torch groups folds by this column. Grouping by the audio file leaks patients
    #: with several recordings; the resolver then groups by ``patient`` and warns.
    group_fold_column: OptStr = "patient"
    label_columns: StrList = ["label"]
    test_dataframe: OptPath = None
    train_dataframe: OptPath = None
    unlabeled_dataframe: OptPath = None
    validation_dataframe: OptPath = None
    validation_size: float = Field(default=0.2, gt=0, lt=1)
    validation_strategy: Literal["kfold", "holdout", "leave_source_out", "fold_column"] = "kfold"
    #: With ``validation_strategy: fold_column``: the manifest column holding each recording's
    #: fold (integers >= 0; a table's ``fold`` column is read into the manifest's own).
    fold_column: str = "fold"
    number_of_folds: int = Field(default=5, ge=2)
    #: Seed of how the data are split: the folds and the ``data_sample`` subsample. ``null``:
    #: ``environment.seed``. Set it to keep the split while ``environment.seed`` draws another
    #: initialisation, augmentation and batch order (the run-to-run noise of one split).
    split_seed: int | None = Field(default=None, ge=0)
    #: Reproduce the Hydrogen Torch run, where unlabelled recordings are a sixth class.
    unlabeled_as_class: bool = False
    #: Recordings shorter or longer than this are skipped with a reason (seconds).
    min_duration_seconds: float = Field(default=0.5, ge=0)
    max_duration_seconds: float = Field(default=600.0, gt=0)


class EnvironmentConfig(Section):
    gpus: StrList = []
    mixed_precision_inference: bool = False
    mixed_precision_training: bool = False
    number_of_workers: int = Field(default=0, ge=0)
    #: ``-1`` draws a random seed; the seed used is recorded in the resolved config.
    seed: int = 0
    #: Torch intra-op threads; 0 leaves torch's default.
    threads: int = Field(default=0, ge=0)


class LoggingConfig(Section):
    logger: Annotated[Literal["Neptune", "MLflow"] | None, BeforeValidator(_none_string)] = None
    neptune_project: str = ""
    number_of_audios: int = Field(default=8, ge=0)
    mlflow_tracking_uri: OptStr = None
    mlflow_experiment: OptStr = None


OperatingTarget = Literal["abnormal_sensitivity", "specificity", "macc", "youden", "fixed"]


class OperatingPointConfig(Section):
    """``prediction.operating_point: {target: ..., value: ...}``: where on the ROC curve the
    abnormal threshold sits (:mod:`stetho.decision.operating_point`).

    ``abnormal_sensitivity`` / ``specificity`` need ``value`` (the least sensitivity /
    specificity to keep); ``macc`` and ``youden`` (the same point) take none; ``fixed`` uses
    ``value`` itself as the threshold.
    """

    target: OperatingTarget = "fixed"
    value: float | None = Field(0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _value_fits_target(self) -> Self:
        if self.target in {"abnormal_sensitivity", "specificity", "fixed"} and self.value is None:
            raise ValueError(
                f"prediction.operating_point.target={self.target!r} needs a value in [0, 1] "
                "(e.g. value: 0.9)"
            )
        return self


#: Calibration fitted after training (:mod:`stetho.decision.calibration`); ``auto`` picks
#: prior / temperature / vector by inner cross-validated log loss.
CalibrationMethod = Literal["none", "auto", "prior", "temperature", "vector"]


class PredictionConfig(Section):
    """How validation predictions are scored and how a run decides (issue #13).

    The decision fields (``operating_point``, ``calibration``, ``abstain_coverage``,
    ``patient_aggregation``) are fitted after the folds into the run's ``decision.json``.
    ``probability_threshold`` (Hydrogen Torch's key) is the threshold of a run that has no
    ``decision.json`` (trained before it existed, or without a ``normal`` class); a config
    that sets it and no ``operating_point`` asks for ``{target: fixed, value: <it>}``.
    """

    inference_chunk_method: Literal["Fix", "Dynamic"] = "Fix"
    inference_chunk_seconds: float = Field(default=6.0, gt=0)
    max_inference_chunk_seconds: float = Field(default=600.0, gt=0)
    metric: Literal["ROC_AUC", "AUC", "LogLoss", "BalancedAccuracy"] = "ROC_AUC"
    probability_threshold: float = Field(default=0.5, ge=0, le=1)
    #: Default ``macc``: PhysioNet 2016's score, and the best cross-fitted MAcc and accuracy
    #: of the operating points compared in benchmarks/results/decisions.md.
    operating_point: OperatingPointConfig = OperatingPointConfig(target="macc", value=None)
    calibration: CalibrationMethod = "auto"
    #: Fraction of recordings that get a decision; the rest, nearest the threshold, get
    #: "re-record". ``None``: no band.
    abstain_coverage: float | None = Field(default=None, gt=0, le=1)
    #: One decision per patient from several recordings (:mod:`stetho.decision.patients`).
    patient_aggregation: Literal["any", "mean", "max"] = "any"

    @model_validator(mode="before")
    @classmethod
    def _threshold_means_fixed(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and "probability_threshold" in data
            and "operating_point" not in data
        ):
            value = _none_string(data["probability_threshold"])
            if value is not None:
                data = {**data, "operating_point": {"target": "fixed", "value": value}}
        return data


class TrainingConfig(Section):
    automatically_adjust_batch_size: bool = False
    batch_size: int = Field(default=32, ge=1)
    build_scoring_pipelines: bool = False
    calculate_train_metric: bool = False
    differential_learning_rate: float = Field(default=0.001, gt=0)
    differential_learning_rate_layers: StrList = []
    drop_last_batch: bool = True
    epochs: int = Field(default=30, ge=0)
    evaluation_epochs: Epochs = Field(default=1, gt=0)
    grad_accumulation: int = Field(default=1, ge=1)
    gradient_clip: float = Field(default=0.0, ge=0)
    learning_rate: float = Field(default=0.003, gt=0)
    loss_function: Literal["BCE", "CrossEntropy"] = "CrossEntropy"
    optimizer: Literal["AdamW", "Adam", "SGD"] = "AdamW"
    run_interpretations: bool = False
    save_best_checkpoint: bool = False
    schedule: Literal["Cosine", "Linear", "Constant"] = "Cosine"
    train_validation_data: bool = False
    warmup_epochs: Epochs = Field(default=1, ge=0)
    weight_decay: float = Field(default=0.01, ge=0)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    #: ``None``, ``Auto`` (inverse class frequency) or one weight per class.
    class_weights: Annotated[Literal["Auto"] | list[float] | None, BeforeValidator(_auto)] = None
    #: Draw each training chunk's recording so that every ``dataset`` (each of
    #: ``dataset.sources``) or every ``source`` (recording device) is equally likely, instead
    #: of every recording: the largest dataset must not decide what the model hears.
    balance_by: Annotated[Literal["dataset", "source"] | None, BeforeValidator(_none_string)] = None
    #: Our heart-rhythm features (RR statistics) fed beside the spectrogram.
    rhythm_features: bool = False
    #: Seconds the interpretations (and the report's explanations) may take; ``None``: no
    #: limit (``stetho.explain.budget``).
    interpretation_budget_s: float | None = Field(default=600.0, gt=0)
    #: Fine-tuning: for the first N epochs the backbone keeps its weights and its BatchNorm
    #: statistics (only pooling and head train); then everything trains.
    freeze_backbone_epochs: int = Field(default=0, ge=0)
    #: The backbone is frozen for the whole run: a linear probe of its features.
    linear_probe: bool = False


class PseudoLabelingConfig(Section):
    enabled: bool = False
    rounds: int = Field(default=1, ge=1)
    confidence_threshold: float = Field(default=0.8, ge=0, le=1)
    #: Loss weight of a pseudo-labelled recording relative to a labelled one.
    weight: float = Field(default=0.5, gt=0, le=1)


class Config(BaseModel):
    """The whole experiment. Sections and keys follow Hydrogen Torch's audio classification."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    experiment_name: str = "stetho"
    architecture: ArchitectureConfig = ArchitectureConfig()
    audio: AudioConfig = AudioConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    dataset: DatasetConfig = DatasetConfig()
    environment: EnvironmentConfig = EnvironmentConfig()
    logging: LoggingConfig = LoggingConfig()
    prediction: PredictionConfig = PredictionConfig()
    training: TrainingConfig = TrainingConfig()
    pseudo_labeling: PseudoLabelingConfig = PseudoLabelingConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def split_seed(config: Config) -> int:
    """The seed of the folds and the subsample: ``dataset.split_seed``, else
    ``environment.seed`` (of a resolved config, so never -1)."""
    seed = config.dataset.split_seed
    return config.environment.seed if seed is None else seed


class ResolvedAudioConfig(AudioConfig):
    """Audio parameters after :func:`resolve_config`: every ``Auto`` replaced by a number."""

    sample_rate: int = Field(gt=0)
    stft_window_size: int = Field(gt=0)
    hop_size: int = Field(gt=0)
    mel_frequency_bins: int = Field(gt=0)
    minimum_frequency: float = Field(ge=0)
    maximum_frequency: float = Field(gt=0)


class ResolvedConfig(Config):
    """A config after :func:`resolve_config`: concrete values only, what a run trains with.

    It is the type everything downstream of resolution takes; loading the YAML of a finished
    run gives one through :func:`load_resolved_config`.
    """

    audio: ResolvedAudioConfig


#: Keys that decide nothing about the trained weights and validation predictions: what runs
#: after training (report, interpretations, scoring pipeline, tracking) and how fast.
#: ``--resume`` applies a change to them; any other change is refused.
POST_TRAINING_KEYS = frozenset(
    {
        "training.run_interpretations",
        "training.build_scoring_pipelines",
        "training.interpretation_budget_s",
        "prediction.operating_point",
        "prediction.operating_point.target",
        "prediction.operating_point.value",
        "prediction.calibration",
        "prediction.abstain_coverage",
        "prediction.patient_aggregation",
        "environment.number_of_workers",
        "environment.threads",
        "logging.logger",
        "logging.neptune_project",
        "logging.number_of_audios",
        "logging.mlflow_tracking_uri",
        "logging.mlflow_experiment",
    }
)
#: Keys that only say where the data is: a run reads them once, into its stored manifest.
DATA_LOCATION_KEYS = frozenset(
    {
        "dataset.data_folder",
        "dataset.train_dataframe",
        "dataset.data_folder_test",
        "dataset.test_dataframe",
        "dataset.validation_dataframe",
        "dataset.sources",
    }
)
#: Hydrogen Torch keys that are read (so its YAML loads unchanged) but change nothing here,
#: with their do-nothing value and what to use instead.
UNUSED_KEYS = {
    "dataset.validation_dataframe": (
        None,
        "validation recordings come from dataset.validation_strategy (e.g. fold_column)",
    ),
    "dataset.test_dataframe": (None, "score test recordings with `stetho predict`"),
    "dataset.data_folder_test": (None, "score test recordings with `stetho predict`"),
    "training.calculate_train_metric": (False, "only the training loss is logged per epoch"),
    "training.automatically_adjust_batch_size": (
        False,
        "batch_size is used as given",
    ),
    "logging.neptune_project": ("", "stetho logs to MLflow (logging.logger=MLflow)"),
}


def flat_config(config: Config | dict[str, Any]) -> dict[str, Any]:
    """``{"training.epochs": 3, ...}``: every leaf key of ``config`` (a config or its dict)."""
    data = config.to_dict() if isinstance(config, Config) else config
    out: dict[str, Any] = {}
    for section, values in data.items():
        if isinstance(values, dict):
            out.update({f"{section}.{key}": value for key, value in values.items()})
        else:
            out[section] = values
    return out


def trained_result_keys(config: Config | dict[str, Any]) -> dict[str, Any]:
    """The keys of ``config`` that decide the trained weights and validation predictions
    (all but :data:`POST_TRAINING_KEYS` and :data:`DATA_LOCATION_KEYS`)."""
    skip = POST_TRAINING_KEYS | DATA_LOCATION_KEYS | {"experiment_name"}
    return {k: v for k, v in flat_config(config).items() if k not in skip}


def unused_key_warnings(config: Config) -> list[str]:
    """One warning per Hydrogen Torch key set to something that stetho does not do."""
    flat = flat_config(config)
    out = []
    for key, (inert, instead) in UNUSED_KEYS.items():
        if flat[key] != inert:
            out.append(
                f"{key}={flat[key]!r} is accepted for Hydrogen Torch compatibility but does "
                f"nothing in stetho: {instead}"
            )
    return out


def fine_tuning_warnings(config: Config) -> list[str]:
    """Refuse a backbone freeze longer than the run or one that holds random layers still, and
    a partial transfer with nothing to transfer; warn about a probe of random features."""
    t, arch = config.training, config.architecture
    if t.freeze_backbone_epochs > t.epochs:
        raise ConfigError(
            f"training.freeze_backbone_epochs={t.freeze_backbone_epochs} is more than "
            f"training.epochs={t.epochs}: the backbone would never train; lower it, or set "
            "training.linear_probe: true to keep the backbone frozen for the whole run"
        )
    if arch.pretrained_layers is not None:
        if not arch.pretrained and not arch.pretrained_weights:
            raise ConfigError(
                "architecture.pretrained_layers selects layers of the pretrained weights, but "
                "architecture.pretrained is false and no pretrained_weights is named: set "
                "architecture.pretrained: true, or drop pretrained_layers"
            )
        if not arch.pretrained_layers:
            raise ConfigError(
                "architecture.pretrained_layers: [] transfers no layer; set "
                "architecture.pretrained: false to train from random initialisation, or list "
                "the layers to transfer (e.g. [stem, stages.0])"
            )
        if t.linear_probe or t.freeze_backbone_epochs:
            raise ConfigError(
                "architecture.pretrained_layers leaves the other backbone layers at random "
                "weights, and training.linear_probe / freeze_backbone_epochs would hold them "
                "there; drop the freeze, or drop pretrained_layers to transfer the whole backbone"
            )
    if t.linear_probe and not arch.pretrained and not arch.pretrained_weights:
        return [
            f"training.linear_probe: true with architecture.pretrained: false and no "
            f"pretrained_weights: the {arch.backbone} backbone stays at its random "
            "initialisation, so only the head learns, on random features; set "
            "architecture.pretrained: true or name a backbone file in "
            "architecture.pretrained_weights"
        ]
    return []


def _field_path(loc: tuple[Any, ...]) -> str:
    """Keep the parts of a pydantic error location that are config keys (drop union members)."""
    model: type[BaseModel] | None = Config
    parts: list[str] = []
    for part in loc:
        if model is not None and isinstance(part, str) and part in model.model_fields:
            parts.append(part)
            ann = model.model_fields[part].annotation
            model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        elif model is None and isinstance(part, int):
            parts.append(f"[{part}]")
        elif model is not None and part not in model.model_fields and isinstance(part, str):
            parts.append(part)  # an unknown key: report it as written
            model = None
    return ".".join(parts).replace(".[", "[")


def _format_errors(exc: ValidationError, source: str) -> str:
    """One line per key: the key, the value received and what was expected."""
    by_key: dict[str, tuple[Any, list[str]]] = {}
    for err in exc.errors():
        key = _field_path(err["loc"])
        if err["type"] == "extra_forbidden":
            by_key[key] = (err["input"], ["a known key (unknown key: check the spelling)"])
            continue
        expected = err["msg"]
        if err.get("ctx", {}).get("expected"):
            expected = f"one of {err['ctx']['expected']}"
        expected = expected.removeprefix("Input should be ")
        value, msgs = by_key.setdefault(key, (err["input"], []))
        if expected not in msgs:
            msgs.append(expected)
    lines = [f"invalid config {source}:"]
    for key, (value, msgs) in by_key.items():
        lines.append(f"  {key} = {value!r}: expected {' or '.join(msgs)}")
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any], *, source: str = "<dict>") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: expected a mapping of sections, got {data!r}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (ours or Hydrogen Torch's) and apply ``section.key=value`` overrides.

    ``path=None`` gives the built-in defaults, which equal ``configs/heartbeat.yaml``.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    data = apply_overrides(data, overrides or [])
    return config_from_dict(data, source=source)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``training.epochs=3``-style overrides; values are parsed as YAML scalars/lists."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"override {item!r}: expected section.key=value, e.g. training.epochs=3"
            )
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def load_resolved_config(path: str | Path) -> ResolvedConfig:
    """Read a config written by :func:`save_config` after :func:`resolve_config` (a run's
    ``config.yaml``): every value concrete, so no ``Auto`` is accepted."""
    path = Path(path)
    config = load_config(path)
    try:
        return ResolvedConfig.model_validate(config.to_dict())
    except ValidationError as exc:
        raise ConfigError(
            _format_errors(exc, f"{path} (a resolved config: no Auto values)")
        ) from None


def save_config(config: Config, path: str | Path) -> None:
    from stetho.io import atomic_write_text

    atomic_write_text(Path(path), config.to_yaml())


# --- resolution ---------------------------------------------------------------------------

#: Heart sounds and murmurs carry their energy below ~600 Hz; artifacts and the recorder's
#: own colouring live above. 2 kHz keeps the whole clinically useful band (Nyquist 1 kHz).
AUTO_SAMPLE_RATE = 2000
#: S1/S2 last 50-150 ms; a window of ~64 ms resolves them in time while still separating
#: 15-30 Hz mel bands at the bottom of the range.
AUTO_WINDOW_SECONDS = 0.064
AUTO_HOP_SECONDS = 0.016
MAX_SENSIBLE_WINDOW_SECONDS = 0.25


def _pow2_at_least(n: float) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def resolve_config(config: Config) -> tuple[ResolvedConfig, list[str]]:
    """Fill every ``Auto`` and repair values that cannot mean what they say.

    Returns the resolved copy and human-readable warnings (both numbers in each), including
    one per Hydrogen Torch key that is set but does nothing here. With
    ``audio_parameters: Manual`` impossible values are refused instead of repaired.
    """
    cfg = config.model_copy(deep=True)
    warnings: list[str] = unused_key_warnings(config) + fine_tuning_warnings(config)
    a = cfg.audio
    manual = a.audio_parameters == "Manual"

    # Concrete values first (``Auto`` filled in), checked and repaired below.
    sr = AUTO_SAMPLE_RATE if a.sample_rate == AUTO else a.sample_rate
    nyquist = sr / 2
    win = (
        _pow2_at_least(AUTO_WINDOW_SECONDS * sr)
        if a.stft_window_size == AUTO
        else a.stft_window_size
    )
    hop = max(1, round(AUTO_HOP_SECONDS * sr)) if a.hop_size == AUTO else a.hop_size
    n_mels = 64 if a.mel_frequency_bins == AUTO else a.mel_frequency_bins
    f_min = 25.0 if a.minimum_frequency == AUTO else a.minimum_frequency
    f_max = nyquist if a.maximum_frequency == AUTO else a.maximum_frequency

    for name, v in (("stft_window_size", win), ("hop_size", hop), ("sample_rate", sr)):
        if v <= 0:
            raise ConfigError(f"audio.{name} = {v}: expected a positive number of samples")
    if f_max > nyquist:
        msg = (
            f"audio.maximum_frequency={f_max:g} Hz is above the Nyquist frequency "
            f"({nyquist:g} Hz) for sample_rate={sr}"
        )
        if manual:
            raise ConfigError(msg + "; lower it or use audio_parameters: Auto")
        warnings.append(msg + f": mel bands capped at {nyquist:g} Hz")
        f_max = nyquist
    if f_min >= f_max:
        raise ConfigError(
            f"audio.minimum_frequency={f_min:g} Hz must be below maximum_frequency={f_max:g} Hz"
        )
    if win / sr > MAX_SENSIBLE_WINDOW_SECONDS:
        warnings.append(
            f"audio.stft_window_size={win} samples is {win / sr:.3g} s at {sr} Hz, longer than "
            f"a heart sound (S1/S2 last 50-150 ms): timing detail is smeared"
        )
    if hop > win:
        warnings.append(
            f"audio.hop_size={hop} is larger than stft_window_size={win}: samples are skipped"
        )
    n_freqs = win // 2 + 1
    if n_mels > n_freqs:
        warnings.append(
            f"audio.mel_frequency_bins={n_mels} exceeds the {n_freqs} STFT bins of "
            f"a {win}-sample window: some mel filters are empty"
        )
    a.sample_rate, a.stft_window_size, a.hop_size = sr, win, hop
    a.mel_frequency_bins, a.minimum_frequency, a.maximum_frequency = n_mels, f_min, f_max

    if cfg.environment.seed == -1:
        seed = random.SystemRandom().randrange(0, 2**31 - 1)
        warnings.append(f"environment.seed=-1: drew seed {seed} (recorded in this config)")
        cfg.environment.seed = seed

    if cfg.prediction.inference_chunk_seconds < a.training_chunk_seconds / 4:
        warnings.append(
            f"prediction.inference_chunk_seconds={cfg.prediction.inference_chunk_seconds:g} is "
            f"much shorter than training_chunk_seconds={a.training_chunk_seconds:g}"
        )
    if cfg.dataset.group_fold_column in (cfg.dataset.audio_column, "path"):
        warnings.append(
            f"dataset.group_fold_column={cfg.dataset.group_fold_column!r} groups folds by file, "
            "which puts recordings of one patient on both sides of a fold and inflates "
            "validation scores: grouping by 'patient' instead"
        )
        cfg.dataset.group_fold_column = "patient"
    if cfg.dataset.group_fold_column is None:
        cfg.dataset.group_fold_column = "patient"
    return ResolvedConfig.model_validate(cfg.to_dict()), warnings
