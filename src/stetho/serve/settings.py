"""Service settings: one validated object, read from ``STETHO_*`` environment variables.

Every field can be set by an environment variable named ``STETHO_<FIELD>`` (for example
``STETHO_API_KEY``, ``STETHO_MAX_UPLOAD_BYTES``); ``stetho serve`` flags override them. The
object is built once, before the model loads, so a bad deployment fails at start-up rather
than on the first request.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServeSettings(BaseSettings):
    """How ``stetho serve`` runs: the model, its limits, streaming alerts and the webhook."""

    model_config = SettingsConfigDict(env_prefix="STETHO_", extra="ignore", frozen=True)

    #: A finished run folder (``config.yaml`` + ``fold-*/model.safetensors``) or an exported
    #: scoring pipeline folder (``model.onnx`` + ``labels.json`` + ``preprocess.json``), or a
    #: ready model ``stetho:NAME`` (:mod:`stetho.runs.zoo`).
    model_path: Path
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    #: When set, ``/v1/*`` needs it in the ``X-API-Key`` header (the WebSocket also accepts an
    #: ``api_key`` query parameter, since browsers cannot set WebSocket headers). Off when unset.
    api_key: SecretStr | None = None
    #: Largest accepted upload, in bytes of the audio file (default 20 MB); larger gives 413.
    max_upload_bytes: int = Field(20_000_000, gt=0)
    #: Longest accepted recording in seconds; longer gives 422 (``too_long``). The model's
    #: acceptance rule (its run's ``dataset.max_duration_seconds``) applies too: a value set
    #: here may only be stricter; the default applies where it is stricter than the model's.
    max_duration_s: float = Field(120.0, gt=0)
    #: Shortest accepted recording in seconds; shorter gives 422 (``too_short``); as
    #: ``max_duration_s``, only ever stricter than the model's.
    min_duration_s: float = Field(1.0, gt=0)
    #: Abnormal probability at or above which a recording is flagged ``abnormal`` and a
    #: streaming window counts towards an alert; unset: the run's
    #: ``prediction.probability_threshold``.
    alert_threshold: float | None = Field(None, ge=0.0, le=1.0)
    #: Consecutive windows at or above the threshold that raise an alert (and below, that
    #: clear it).
    alert_windows: int = Field(3, ge=1)
    #: Alerts are also POSTed (JSON) to this URL when set.
    webhook_url: str | None = None
    webhook_timeout_s: float = Field(5.0, gt=0)
    #: Scoring threads: at most this many recordings or windows are scored at once.
    workers: int = Field(2, ge=1, le=64)
    #: Threads each scoring call may use inside torch / onnxruntime.
    torch_threads: int = Field(1, ge=1, le=64)
    #: A stream that sends nothing for this long is closed.
    stream_idle_timeout_s: float = Field(30.0, gt=0)

    @field_validator("api_key", "webhook_url", "alert_threshold", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """An empty value (``STETHO_API_KEY=``) means unset, not an empty key everyone knows."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"webhook_url={value!r}: expected an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _check_durations(self) -> ServeSettings:
        if self.min_duration_s >= self.max_duration_s:
            raise ValueError(
                f"min_duration_s={self.min_duration_s} must be below "
                f"max_duration_s={self.max_duration_s}"
            )
        return self

    @property
    def auth_required(self) -> bool:
        """Whether ``/v1/*`` asks for an API key."""
        return self.api_key is not None
