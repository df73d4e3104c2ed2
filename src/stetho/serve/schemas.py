"""Request and response schemas of the HTTP API and the streaming protocol.

Inputs (what a client sends) and outputs (what the server answers) are separate classes, so
nothing internal can leak into a response by accident.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from stetho.data.classes import display_name
from stetho.data.classes import display_names as class_display_names

#: Descriptions of the display-name fields.
DISPLAY_NAMES_DOC = "What a person reads for each class, by class name."
DISPLAY_LABEL_DOC = "`label` as a person reads it, e.g. 'extra heart sound' for `extrahls`."

# --- HTTP ---------------------------------------------------------------------------------


class ErrorResponse(BaseModel):
    """Every error answer: a stable machine code and a sentence saying what was wrong."""

    error: str = Field(description="Machine-readable reason, e.g. `decode_error`, `too_large`.")
    detail: str = Field(description="What was wrong, naming the file or field.")


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    model: str = Field(description="Name of the served run or pipeline folder.")
    kind: Literal["run", "pipeline"]
    classes: list[str]
    sample_rate: int = Field(description="Hz: uploads and streams are resampled to this rate.")
    auth_required: bool
    max_upload_bytes: int
    min_duration_s: float = Field(description="Shortest accepted recording, seconds.")
    max_duration_s: float | None = Field(description="Longest accepted recording, seconds.")
    model_acceptance: dict[str, float | int | None] = Field(
        description="The acceptance rule recorded with the model (min/max_duration_s)."
    )
    stricter_than_model: list[str] = Field(
        description="Limits where the service's own setting is stricter than the model's."
    )
    alert_threshold: float
    alert_windows: int
    version: str

    @computed_field(description=DISPLAY_NAMES_DOC)  # type: ignore[prop-decorator]
    @property
    def display_names(self) -> dict[str, str]:
        return class_display_names(self.classes)


class HeartAnalysis(BaseModel):
    """Heart-sound analysis of the recording (:func:`stetho.pcg.analyze`).

    Values the analysis could not estimate are ``null``; further fields it reports are kept.
    """

    model_config = ConfigDict(extra="allow")

    heart_rate_bpm: float | None = None
    quality: float | None = Field(None, description="Signal quality index in [0, 1].")
    usable: bool | None = None
    s1: list[float | None] = Field(default_factory=list, description="S1 onsets in seconds.")
    s2: list[float | None] = Field(default_factory=list, description="S2 onsets in seconds.")
    irregularity: float | None = None


class WaveformEnvelope(BaseModel):
    min: list[float]
    max: list[float]
    seconds_per_point: float


class Spectrogram(BaseModel):
    levels: list[list[int]] = Field(
        description="(frequency rows, frames) levels 0..255 over the top 70 dB; row 0 is 0 Hz."
    )
    seconds_per_frame: float
    max_frequency_hz: float


class Detail(BaseModel):
    """Drawing data for the web page (``?detail=true``)."""

    waveform: WaveformEnvelope
    spectrogram: Spectrogram


class PredictionResponse(BaseModel):
    """One scored recording. Besides these fields there is one ``prob_<class>`` per class."""

    model_config = ConfigDict(extra="allow")

    filename: str | None
    duration_s: float
    sample_rate: int = Field(description="Hz of the uploaded file.")
    classes: list[str] = Field(description="Class order; see the `prob_<class>` fields.")
    label: str = Field(
        description="The decision's label: the normal class unless abnormal, then the most "
        "probable other class (the most probable class without a normal class)."
    )
    abnormal_prob: float | None = Field(
        description="1 - prob_normal when the model has a normal class (see docs/serving.md)."
    )
    abnormal: bool | None = Field(description="abnormal_prob at or above the threshold.")
    outcome: Literal["normal", "abnormal", "re-record"] | None = Field(
        description="re-record when abnormal_prob is inside the model's abstain band."
    )
    analysis: HeartAnalysis
    detail: Detail | None = None
    elapsed_ms: float = Field(
        description="Server time from the parsed upload to the answer, queueing included."
    )

    @computed_field(description=DISPLAY_LABEL_DOC)  # type: ignore[prop-decorator]
    @property
    def display_label(self) -> str:
        return display_name(self.label)

    @computed_field(description=DISPLAY_NAMES_DOC)  # type: ignore[prop-decorator]
    @property
    def display_names(self) -> dict[str, str]:
        return class_display_names(self.classes)


# --- Streaming ----------------------------------------------------------------------------


class StreamStart(BaseModel):
    """The client's first message on ``/v1/stream``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["start"]
    sample_rate: int = Field(ge=1000, le=192_000, description="Hz of the PCM frames that follow.")
    encoding: Literal["pcm_s16le", "float32_le"] = "pcm_s16le"
    window_seconds: float | None = Field(
        None, ge=2.0, le=30.0, description="Scored window; default: the model's chunk length."
    )
    hop_seconds: float = Field(2.0, ge=0.5, le=30.0, description="A prediction every hop.")
    device_id: str | None = Field(
        None, max_length=64, description="Who is streaming; echoed in alerts and the webhook."
    )

    @model_validator(mode="after")
    def _hop_within_window(self) -> StreamStart:
        if self.window_seconds is not None and self.hop_seconds > self.window_seconds:
            raise ValueError(
                f"hop_seconds={self.hop_seconds} exceeds window_seconds={self.window_seconds}"
            )
        return self


class StreamStop(BaseModel):
    """Optional last client message: the server answers ``end`` and closes normally."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["stop"]


class StreamReady(BaseModel):
    type: Literal["ready"] = "ready"
    sample_rate: int
    encoding: str
    model_sample_rate: int
    window_seconds: float
    hop_seconds: float
    classes: list[str]
    alert_threshold: float
    alert_windows: int


class StreamPrediction(BaseModel):
    type: Literal["prediction"] = "prediction"
    t_end_s: float = Field(description="Seconds of streamed audio at the end of this window.")
    probs: dict[str, float]
    label: str
    abnormal_prob: float | None
    abnormal: bool | None = None
    outcome: Literal["normal", "abnormal", "re-record"] | None = None
    heart_rate_bpm: float | None
    quality: float | None
    usable: bool | None
    alert: bool = Field(description="Whether an alert is raised after this window.")


class StreamAlert(BaseModel):
    type: Literal["alert"] = "alert"
    state: Literal["raised", "cleared"]
    t_end_s: float
    abnormal_prob: float
    threshold: float
    windows: int
    label: str
    device_id: str | None
    model: str


class StreamEnd(BaseModel):
    type: Literal["end"] = "end"
    seconds_received: float
    windows: int
    alert: bool


def error_json(error: str, detail: str) -> dict[str, Any]:
    """The body of an error answer (see :class:`ErrorResponse`)."""
    return ErrorResponse(error=error, detail=detail).model_dump()
