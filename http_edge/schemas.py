"""The shapes of the contract as pydantic models: request bodies validated with them,
response documents described by them (the OpenAPI document is built from these).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from aggregates.transitions import Status
from events import Priority, TaskType

TaskId = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")]
Score = Annotated[float, Field(ge=0.0, le=1.0)]


def whole_number(value: Any) -> Any:
    # JSON Schema counts 13.0 as an integer, so the contract must too; 13.5 stays refused.
    return int(value) if isinstance(value, float) and value.is_integer() else value


Language = Annotated[
    str, Field(min_length=2, max_length=35, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class _Document(BaseModel):
    model_config = ConfigDict(frozen=True)


# -- requests -------------------------------------------------------------------


# Text must hold a visible character (pattern ``\S``): blank text cannot be spoken or
# summarised, so accepting it would only fail the task at every miner later.
class TtsRequest(_Request):
    text: str = Field(min_length=1, max_length=5000, pattern=r"\S")
    voice: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_+.\-]*$"
    )
    priority: Priority = "normal"


class SummarizationRequest(_Request):
    text: str = Field(min_length=1, max_length=100_000, pattern=r"\S")
    max_words: Annotated[int, Field(ge=10, le=1000), BeforeValidator(whole_number)] | None = None
    priority: Priority = "normal"


class TranscriptionForm(_Request):
    """The text fields of the transcription form (``file`` travels beside them)."""

    language: Language = "en"
    priority: Priority = "normal"


class TranscriptionUpload(BaseModel):
    """The transcription form as OpenAPI describes it."""

    model_config = ConfigDict(extra="forbid")

    file: bytes = Field(json_schema_extra={"format": "binary"})
    language: Language = "en"
    priority: Priority = "normal"


class MinerResponse(_Request):
    task_id: TaskId
    result: dict[str, Any]


class MinerAudioResponse(BaseModel):
    """The tts answer as multipart/form-data, as OpenAPI describes it."""

    model_config = ConfigDict(extra="forbid")

    task_id: TaskId
    file: bytes = Field(json_schema_extra={"format": "binary"})


class Evaluation(_Request):
    task_id: TaskId
    scores: dict[str, Score] = Field(min_length=1)


# -- responses ------------------------------------------------------------------


class ErrorDetail(_Document):
    code: str
    message: str


class ErrorBody(_Document):
    error: ErrorDetail


class TaskLinks(_Document):
    status: str
    events: str
    stream: str
    result: str


class TaskAccepted(_Document):
    task_id: str
    type: TaskType
    status: Status
    created_at: str
    links: TaskLinks


class Progress(_Document):
    assigned: int
    responded: int
    failed: int


class MinerSlotDocument(_Document):
    hotkey: str
    state: Literal["assigned", "responded", "failed", "timed_out"]
    latency_ms: float | None


class FirstResponseDocument(_Document):
    miner_hotkey: str
    latency_ms: float
    received_at: str
    result: dict[str, Any] = Field(
        description="the miner's result, not yet scored; for tts a link to the audio"
    )


class StatusDocument(_Document):
    task_id: str
    type: TaskType
    status: Status
    priority: Priority
    created_at: str | None
    updated_at: str | None
    version: int = Field(description="the number of the task's events applied")
    progress: Progress
    miners: list[MinerSlotDocument]
    result: dict[str, Any] | None
    error: dict[str, str] | None
    archived: bool
    first_response: FirstResponseDocument | None = Field(
        description="the earliest accepted miner answer, provisional until APPROVED"
    )


class TaskList(_Document):
    tasks: list[StatusDocument]


class EventDocument(_Document):
    sequence: int
    type: str
    version: int
    occurred_at: str
    data: dict[str, Any]
    hash: str
    prev_hash: str
    actor: str
    event_id: str
    causation_id: str | None
    correlation_id: str | None


class EventsPage(_Document):
    task_id: str
    events: list[EventDocument]


class TextResult(_Document):
    task_id: str
    type: TaskType
    result: dict[str, Any]


class ReceiptDocument(_Document):
    task_id: str
    sequence: int
    event_hash: str
    proxy_hotkey: str
    signature: str = Field(
        description="sr25519 by the proxy hotkey over "
        "taskledger-receipt/1\\n<task_id>\\n<sequence>\\n<event_hash> (hex)"
    )


class MinerAccepted(_Document):
    accepted: bool
    status: Status
    receipt: ReceiptDocument | None = None


class CheckpointDocument(_Document):
    log: str
    partition: int
    position: int
    events: int
    log_hash: str
    at: str
    proxy_hotkey: str
    signature: str


class Checkpoints(_Document):
    checkpoints: list[CheckpointDocument]


class ValidatorResponse(_Document):
    miner_hotkey: str
    result: dict[str, Any]
    latency_ms: float | None
    result_url: str | None = Field(
        default=None, description="where to fetch an audio result (btauth/1, as input_url)"
    )


class ValidatorTask(_Document):
    task_id: str
    type: TaskType
    input: dict[str, Any]
    input_url: str | None
    responses: list[ValidatorResponse]


class ValidatorTasks(_Document):
    tasks: list[ValidatorTask]


class Weights(_Document):
    weights: dict[str, float]


class MinersHealth(_Document):
    known: int
    healthy: int
    status: Literal["ok", "unavailable"]


class ComponentHealth(_Document):
    status: Literal["ok", "unavailable"]
    error: str | None = None


class HealthComponents(_Document):
    event_log: ComponentHealth
    read_models: ComponentHealth
    blobs: ComponentHealth
    miners: MinersHealth
    processors: dict[str, Any]


class Health(_Document):
    status: Literal["ok", "degraded", "unavailable"]
    hotkey: str
    components: HealthComponents
    error: ErrorDetail | None = None
