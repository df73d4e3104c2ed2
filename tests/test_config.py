from pathlib import Path

import pytest
from conftest import REPO

from stetho.config import (
    Config,
    ConfigError,
    ResolvedConfig,
    load_config,
    load_resolved_config,
    resolve_config,
    save_config,
)

REFERENCE = REPO.parent / "shared" / "reference" / "hydrogen_torch_heartbeat.yaml"
DEFAULT = REPO / "configs" / "heartbeat.yaml"


@pytest.fixture
def reference() -> Path:
    if not REFERENCE.exists():
        pytest.skip("reference YAML not present")
    return REFERENCE


def test_reference_yaml_loads_unchanged_with_special_values(reference):
    cfg = load_config(reference)
    assert cfg.architecture.backbone == "resnet50"
    assert cfg.dataset.folds == ["0"]
    assert cfg.dataset.test_dataframe is None  # 'None' string
    assert cfg.augmentation.mix_audio is False  # 'Disabled'
    assert cfg.audio.spectrogram_normalization == "No"  # quoted 'No'
    assert cfg.logging.logger is None
    assert cfg.environment.gpus == ["0"]
    assert cfg.dataset.data_sample_choice == ["Train", "Validation"]


def test_reference_resolution_warns_with_both_numbers(reference):
    cfg, warnings = resolve_config(load_config(reference))
    text = "\n".join(warnings)
    assert "16000" in text and "2000" in text  # max frequency vs Nyquist
    assert cfg.audio.maximum_frequency == 2000
    assert "0.512 s" in text  # 2048 samples at 4 kHz
    assert cfg.environment.seed >= 0 and "seed" in text
    assert cfg.dataset.group_fold_column == "patient"


def test_manual_audio_parameters_refuse_impossible_values():
    cfg = load_config(None, ["audio.audio_parameters=Manual", "audio.maximum_frequency=5000"])
    with pytest.raises(ConfigError, match="Nyquist"):
        resolve_config(cfg)


@pytest.mark.parametrize(
    ("override", "key", "fragment"),
    [
        ("training.epohcs=3", "training.epohcs", "unknown key"),
        ("training.epochs=five", "training.epochs", "'five'"),
        ("training.optimizer=adam", "training.optimizer", "AdamW"),
        ("audio.hop_size=-3", "", "positive"),
    ],
)
def test_bad_values_name_key_value_and_expectation(override, key, fragment):
    with pytest.raises(ConfigError) as err:
        resolve_config(load_config(None, [override]))
    assert key in str(err.value)
    assert fragment in str(err.value)


def test_unknown_section_is_refused(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("trainng:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="trainng"):
        load_config(p)


def test_default_config_file_round_trips(tmp_path):
    cfg, _ = resolve_config(load_config(DEFAULT))
    save_config(cfg, tmp_path / "config.yaml")
    again = load_resolved_config(tmp_path / "config.yaml")
    assert again == cfg
    # Resolved audio parameters hold no Auto left.
    audio = cfg.audio.model_dump()
    audio.pop("audio_parameters")
    assert "Auto" not in audio.values()


def test_resolved_reference_round_trips(reference, tmp_path):
    cfg, _ = resolve_config(load_config(reference))
    save_config(cfg, tmp_path / "r.yaml")
    again, warnings = resolve_config(load_config(tmp_path / "r.yaml"))
    assert again == cfg
    assert not any("Nyquist" in w for w in warnings)  # already repaired


def test_overrides_parse_yaml_values():
    cfg = load_config(
        None, ["training.epochs=3", "dataset.folds=[0, 2]", "augmentation.mix_audio=Enabled"]
    )
    assert cfg.training.epochs == 3
    assert cfg.dataset.folds == ["0", "2"]
    assert cfg.augmentation.mix_audio is True
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["training.epochs"])


def test_defaults_equal_the_shipped_default_config():
    # configs/heartbeat.yaml documents our defaults; built-in values may differ only where the
    # file says so, but it must be a valid Config.
    assert isinstance(load_config(DEFAULT), Config)


def test_resolved_config_is_concrete_and_epochs_stay_integers(tmp_path):
    cfg, _ = resolve_config(load_config(None, ["training.evaluation_epochs=5.0"]))
    assert isinstance(cfg, ResolvedConfig)
    assert isinstance(cfg.audio.sample_rate, int) and isinstance(cfg.audio.hop_size, int)
    save_config(cfg, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "evaluation_epochs: 5\n" in text and "5.0" not in text.split("evaluation_epochs")[1]
    assert load_config(None, ["training.evaluation_epochs=0.5"]).training.evaluation_epochs == 0.5
    # A config that still says Auto is not a resolved one.
    save_config(load_config(None, ["audio.hop_size=Auto"]), tmp_path / "auto.yaml")
    with pytest.raises(ConfigError, match="hop_size"):
        load_resolved_config(tmp_path / "auto.yaml")


def test_inert_hydrogen_torch_keys_warn():
    cfg = load_config(
        None,
        [
            "dataset.validation_dataframe=valid.pq",
            "dataset.test_dataframe=test.pq",
            "training.calculate_train_metric=true",
        ],
    )
    _, warnings = resolve_config(cfg)
    for key in ("validation_dataframe", "test_dataframe", "calculate_train_metric"):
        assert any(key in w and "does nothing" in w for w in warnings), key
    _, quiet = resolve_config(load_config(None))
    assert not any("does nothing" in w for w in quiet)
