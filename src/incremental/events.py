"""The schema of a run's event log, as pydantic models and as JSON Schema.

Every step of a run is appended to the run's event log (the Redis Stream ``inc:events:{run_id}``, or
``MemoryEventLog`` in process), by whichever process saw it happen. Each entry is one JSON object with

    v       the schema version (1)
    kind    what happened: ``run_started``, ``tool_ready``, ``tool_completed``, ... (``EVENT_KINDS``)
    ts      wall-clock seconds (``time.time()``) of the process that wrote it
    run_id  the run
    turn    the turn it belongs to (0 for the first model request); every kind has it today

and the fields of its kind, one model per kind below (``ToolReadyEvent`` for ``tool_ready``...).
``RunEvent`` is their union, discriminated by ``kind``; ``event_json_schema()`` is its JSON Schema,
published as ``docs/events.schema.json`` (``scripts/make_event_schema.py`` writes it).

Versioning. Adding a kind, or an optional field to a kind, keeps ``v`` at 1: a field added later is
optional here (old logs lack it). Removing or renaming a field, changing its type or meaning, or making
it required bumps ``v``. Readers must therefore tolerate what they do not know yet:

- the models allow extra fields (a newer producer's field does not break an older reader), and
- ``parse_event(data)`` gives an ``UnknownRunEvent`` for a kind it does not know; with ``strict=True`` it
  raises ``UnknownEventKindError`` instead. A known kind that is malformed raises pydantic's
  ``ValidationError`` either way.

Usage::

    from incremental.events import ToolReadyEvent, parse_event

    for data in await services.events.all(run_id):
        event = parse_event(data)
        if isinstance(event, ToolReadyEvent):
            print(event.name, event.tool_use_id)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter

from .exceptions import UnknownEventKindError

__all__ = [
    "EVENT_KINDS",
    "EVENT_MODELS",
    "EVENT_SCHEMA_ID",
    "RESULT_KIND",
    "RUN_FINAL_KINDS",
    "TOOL_RESULT_KINDS",
    "CancelRequestedEvent",
    "ContinuationPausedEvent",
    "ContinuedEvent",
    "JobFailedEvent",
    "JobHandedOverEvent",
    "MessageStoppedEvent",
    "RequestSentEvent",
    "RunCompletedEvent",
    "RunEndedEvent",
    "RunEvent",
    "RunEventModel",
    "RunFailedEvent",
    "RunPausedEvent",
    "RunResumedEvent",
    "RunStartedEvent",
    "StreamClosedEvent",
    "StreamErrorInfo",
    "StreamFailedEvent",
    "StreamOpenedEvent",
    "StreamRetryEvent",
    "TextDeltaEvent",
    "ToolCancelledEvent",
    "ToolCompletedEvent",
    "ToolDuplicateResultEvent",
    "ToolEnqueuedEvent",
    "ToolFailedEvent",
    "ToolFieldCompletedEvent",
    "ToolHeldEvent",
    "ToolInputStartedEvent",
    "ToolPausedEvent",
    "ToolProgressEvent",
    "ToolReadyEvent",
    "ToolRefusedEvent",
    "ToolRejectedEvent",
    "ToolStartedEvent",
    "ToolWaitingEvent",
    "TurnCompletedEvent",
    "TurnDeadlineEvent",
    "TurnDeadlinePausedEvent",
    "TurnSalvagedEvent",
    "TurnSealedEvent",
    "UnknownEventKindError",
    "UnknownRunEvent",
    "event_json_schema",
    "parse_event",
    "to_entry",
]

EVENT_SCHEMA_ID: Final = "https://incremental.dev/schema/events.v1.json"

ResultStatus = Literal["ok", "error", "timeout", "refused", "cancelled", "missing", "crashed"]


def _always_present(schema: dict[str, Any]) -> None:
    """In the log every entry has these, whatever defaults a producer relied on when it built one."""
    head = [name for name in ("v", "kind", "ts", "run_id") if name in schema.get("properties", {})]
    schema["required"] = head + [name for name in schema.get("required", []) if name not in head]


class RunEventModel(BaseModel):
    """What every entry has. The base of every event model, ``UnknownRunEvent`` included."""

    model_config = ConfigDict(extra="allow", frozen=True, json_schema_extra=_always_present)

    v: Literal[1] = Field(default=1, description="Schema version of the entry.")
    kind: str = Field(description="What happened; selects the entry's model.")
    ts: float = Field(
        default_factory=time.time, description="Wall-clock seconds (time.time()) when the entry was written."
    )
    run_id: str = Field(description="The run the entry belongs to.")
    turn: int | None = Field(
        default=None, description="The turn (0-based model request) it belongs to, if any."
    )
    _entry_id: str | None = PrivateAttr(None)

    @property
    def entry_id(self) -> str | None:
        """The entry's id in the run's log (its offset: resume after it), when it was read from the log."""
        return self._entry_id


class _Turn(RunEventModel):
    turn: int = Field(description="The turn (0-based model request) it belongs to.")


class _Tool(_Turn):
    tool_use_id: str = Field(description="The tool_use block's id.")
    name: str = Field(description="The tool's name.")


class _Result(_Tool):
    """A call's one result is recorded (the first one: a later one is ``tool_duplicate_result``)."""

    status: ResultStatus = Field(description="How the call ended.")
    is_error: bool = Field(description="Whether the model reads the result as an error.")
    content: str = Field(description="The result text the model reads, cut to 500 chars.")
    attempts: int = Field(description="How many times the tool function was started for this call.")
    started_at: float | None = Field(description="Wall time of the first start; null if it never ran.")
    finished_at: float | None = Field(description="Wall time it finished; null if it never ran.")
    after_cancel: bool = Field(
        default=False, description="True when the tool had been told to cancel (absent when false)."
    )


# ---------------------------------------------------------------------------------------------- the run


class RunStartedEvent(_Turn):
    """The run was recorded; its first turn is enqueued. Always the first entry."""

    kind: Literal["run_started"] = "run_started"
    config: dict[str, Any] = Field(description="The run's RunConfig, as a JSON object.")


class RunCompletedEvent(_Turn):
    """The run ended normally (stop_reason end_turn or stop_sequence). A final entry."""

    kind: Literal["run_completed"] = "run_completed"
    state: Literal["completed"] = Field(description="The run's final state.")
    reason: str = Field(description="Why it ended, for people.")


class RunFailedEvent(_Turn):
    """The run failed (stream or API error, a job that raised...). A final entry."""

    kind: Literal["run_failed"] = "run_failed"
    state: Literal["failed"] = Field(description="The run's final state.")
    reason: str = Field(description="What went wrong, for people.")
    error_type: str | None = Field(
        default=None,
        description="The error that failed it (e.g. APIStatusError, UpstreamError), when one did.",
    )


class RunEndedEvent(_Turn):
    """The run ended otherwise: stopped (max_tokens, refusal, turn limit...) or cancelled. A final entry."""

    kind: Literal["run_ended"] = "run_ended"
    state: Literal["stopped", "cancelled"] = Field(description="The run's final state.")
    reason: str = Field(description="Why it ended, for people.")


class RunPausedEvent(_Turn):
    """The run was paused: ready tools are held and the next turn waits until it is resumed."""

    kind: Literal["run_paused"] = "run_paused"


class RunResumedEvent(_Turn):
    """The run was resumed."""

    kind: Literal["run_resumed"] = "run_resumed"
    released: int = Field(description="How many held tool jobs were released.")
    continued: bool = Field(description="Whether a turn completed while paused was continued now.")


class CancelRequestedEvent(_Turn):
    """Someone asked to cancel the run or one of its tools."""

    kind: Literal["cancel_requested"] = "cancel_requested"
    target: Literal["run", "tool"] = Field(description="What is to be cancelled.")
    tool_use_id: str | None = Field(default=None, description="The tool call, when target is tool.")
    reason: str = Field(description="Why, for people.")


class JobFailedEvent(_Turn):
    """A job raised (a bug, not a tool failure), or its payload could not be read (written with another
    serializer, or by another version); its run or tool is failed next."""

    kind: Literal["job_failed"] = "job_failed"
    job_id: str = Field(description="The job's arq id.")
    error: str = Field(description="The exception, as 'Type: message'.")


class JobHandedOverEvent(_Turn):
    """A job stopped on a worker that is shutting down, before it could finish: it goes back to the queue
    for another worker, without counting as a try (a stream that had dispatched nothing is requested
    again; a tool call runs again, and a call that is not idempotent is reported, not repeated)."""

    kind: Literal["job_handed_over"] = "job_handed_over"
    job_id: str = Field(description="The job's arq id.")
    tool_use_id: str | None = Field(default=None, description="The tool call, for a tool job.")
    reason: str = Field(description="Why, for people.")


# ---------------------------------------------------------------------------------------------- the stream


class RequestSentEvent(_Turn):
    """The turn's model request is being sent (again, on a retry)."""

    kind: Literal["request_sent"] = "request_sent"
    attempt: int = Field(description="1 for the first request of the turn, 2... for retries.")
    worker: str | None = Field(default=None, description="The worker sending it: host:pid.")
    since_continue_s: float | None = Field(
        default=None, description="Seconds since the previous turn was decided complete (turn > 0 only)."
    )


class StreamOpenedEvent(_Turn):
    """The API answered; the stream is open."""

    kind: Literal["stream_opened"] = "stream_opened"
    request_id: str | None = Field(description="The API's request-id header, if it sent one.")


class StreamRetryEvent(_Turn):
    """Before any tool was dispatched, the stream failed as overloaded, went quiet, gave no headers in
    time, or its worker stopped: the request is sent again (its earlier text and refusals are void)."""

    kind: Literal["stream_retry"] = "stream_retry"
    reason: str = Field(description="The error, for people.")
    attempt: int = Field(description="The attempt that failed (0: the job that started it is gone).")


class StreamErrorInfo(BaseModel):
    """A stream error, as ``StreamError.to_dict()`` gives it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(description="The error class, e.g. UpstreamError.")
    message: str = Field(description="What went wrong.")
    index: int | None = Field(description="The content block involved, if any.")
    event: str | None = Field(description="The SSE event type being handled.")
    state: str | None = Field(description="The parser state at the time.")
    event_number: int | None = Field(description="How many events were read before it.")
    error_type: str | None = Field(default=None, description="The API's error type (UpstreamError only).")


class StreamFailedEvent(_Turn):
    """The parser failed the stream; open tool blocks were rejected just before. The run fails."""

    kind: Literal["stream_failed"] = "stream_failed"
    error: StreamErrorInfo = Field(description="The stream error.")


class StreamClosedEvent(_Turn):
    """The model stream was closed early because the run was cancelled."""

    kind: Literal["stream_closed"] = "stream_closed"
    reason: str = Field(description="Why, for people.")


class TextDeltaEvent(_Turn):
    """A piece of assistant text."""

    kind: Literal["text_delta"] = "text_delta"
    index: int = Field(description="The content block index.")
    text: str = Field(description="The text of this delta.")


class MessageStoppedEvent(_Turn):
    """The model's message is complete (message_stop)."""

    kind: Literal["message_stopped"] = "message_stopped"
    stop_reason: str | None = Field(description="The message's stop_reason.")
    usage: dict[str, Any] | None = Field(description="The message's token usage, as the API sent it.")


# ---------------------------------------------------------------------------------------------- tool calls


class ToolInputStartedEvent(_Turn):
    """A tool_use (or server tool) block started streaming its input."""

    kind: Literal["tool_input_started"] = "tool_input_started"
    index: int = Field(description="The content block index.")
    tool_use_id: str = Field(description="The block's id.")
    name: str | None = Field(description="The tool's name.")
    server_side: bool = Field(description="True for a server tool (run by the API, not here).")


class ToolFieldCompletedEvent(_Tool):
    """A top-level field of a call's input is complete, before the whole input is."""

    kind: Literal["tool_field_completed"] = "tool_field_completed"
    field: str = Field(description="The field's name.")
    value: Any = Field(description="Its value; a string longer than 200 chars is cut.")


class ToolReadyEvent(_Tool):
    """A call's input is complete and valid JSON: it may run now."""

    kind: Literal["tool_ready"] = "tool_ready"
    index: int = Field(description="The content block index.")
    input_preview: str | None = Field(
        default=None, description="The input as compact JSON, cut to 300 chars (with the full length said)."
    )


class ToolRejectedEvent(_Tool):
    """A call's input is invalid or truncated: it never runs (its error result follows)."""

    kind: Literal["tool_rejected"] = "tool_rejected"
    reason: str = Field(description="Why, for people.")


class ToolHeldEvent(_Tool):
    """A ready call waits for message_stop (policy after_message)."""

    kind: Literal["tool_held"] = "tool_held"
    policy: Literal["after_message"] = Field(description="The tool's dispatch policy.")


class ToolPausedEvent(_Tool):
    """A ready call is held because the run is paused; it is released when the run resumes."""

    kind: Literal["tool_paused"] = "tool_paused"


class ToolWaitingEvent(_Tool):
    """A ready call waits behind earlier calls with the same concurrency key."""

    kind: Literal["tool_waiting"] = "tool_waiting"
    concurrency_key: str = Field(description="The key it waits on.")


class ToolEnqueuedEvent(_Tool):
    """A call's job is in the queue."""

    kind: Literal["tool_enqueued"] = "tool_enqueued"
    duplicate: bool = Field(description="True when the job id was already queued (nothing new enqueued).")


class ToolStartedEvent(_Tool):
    """A worker started running the call."""

    kind: Literal["tool_started"] = "tool_started"
    attempt: int = Field(description="1 for the first execution; more after a redelivery.")
    ready_at: float | None = Field(default=None, description="Wall time the call became ready.")
    worker: str | None = Field(default=None, description="The worker running it: host:pid.")


class ToolProgressEvent(_Turn):
    """A running tool reported progress."""

    kind: Literal["tool_progress"] = "tool_progress"
    tool_use_id: str = Field(description="The tool_use block's id.")
    stage: str = Field(description="The step it is at.")
    fraction: float | None = Field(description="How far it is, from 0 to 1, if known.")
    message: str | None = Field(description="A note for people, if any.")


class ToolCompletedEvent(_Result):
    """The call succeeded (status ok)."""

    kind: Literal["tool_completed"] = "tool_completed"
    status: Literal["ok"] = Field(description="How the call ended.")


class ToolFailedEvent(_Result):
    """The call failed: it raised or timed out, its worker died, or its turn's deadline passed."""

    kind: Literal["tool_failed"] = "tool_failed"
    status: Literal["error", "timeout", "missing", "crashed"] = Field(description="How the call ended.")


class ToolCancelledEvent(_Result):
    """The call was cancelled (the run ended or was cancelled, or its message did not end in tool_use)."""

    kind: Literal["tool_cancelled"] = "tool_cancelled"
    status: Literal["cancelled"] = Field(description="How the call ended.")


class ToolRefusedEvent(_Result):
    """The call was refused before running (unknown tool, input not valid for its schema...)."""

    kind: Literal["tool_refused"] = "tool_refused"
    status: Literal["refused"] = Field(description="How the call ended.")


class ToolDuplicateResultEvent(_Turn):
    """A second result for a call that already had one (e.g. after its deadline); it is dropped."""

    kind: Literal["tool_duplicate_result"] = "tool_duplicate_result"
    tool_use_id: str = Field(description="The tool_use block's id.")
    status: ResultStatus = Field(description="The dropped result's status.")


# ---------------------------------------------------------------------------------------------- turns


class TurnSealedEvent(_Turn):
    """The message ended with tool_use: the turn's set of calls is final."""

    kind: Literal["turn_sealed"] = "turn_sealed"
    expected: list[str] = Field(description="The tool_use ids whose results the next request needs.")
    deadline: float = Field(description="Wall time by which missing results are filled in.")


class TurnSalvagedEvent(_Turn):
    """The turn's model stream was cut after it had dispatched tools (its worker was killed, or its job
    stopped): rather than fail the run, the assistant message is rebuilt from the content blocks that had
    completed, and the turn is sealed with their tool calls (``turn_sealed`` follows), so it continues
    once their results are in. The rest of the message, from block ``cut_at`` on, is lost."""

    kind: Literal["turn_salvaged"] = "turn_salvaged"
    cut_at: int = Field(description="The index of the first content block that had not completed.")
    blocks: int = Field(description="How many content blocks the salvaged message has.")
    dropped: list[int] = Field(
        default_factory=list,
        description="Indexes of completed blocks left out: server tool calls without their result block.",
    )
    expected: list[str] = Field(description="The tool_use ids of the salvaged message.")
    reason: str = Field(description="Why the stream was cut, for people.")
    worker: str | None = Field(default=None, description="The worker that salvaged it: host:pid.")


class TurnDeadlineEvent(_Turn):
    """The turn's deadline passed: missing results were filled with errors."""

    kind: Literal["turn_deadline"] = "turn_deadline"
    missing: list[str] = Field(description="The tool_use ids that had no result.")


class TurnDeadlinePausedEvent(_Turn):
    """The turn's deadline passed while the run was paused: nothing was filled in (held tools have not
    had their chance). Logged once per pause; the resume moves the deadline on by the paused time."""

    kind: Literal["turn_deadline_paused"] = "turn_deadline_paused"
    deadline: float = Field(description="The deadline that passed (wall time).")
    waiting: list[str] = Field(description="The tool_use ids that had no result yet.")


class TurnCompletedEvent(_Turn):
    """The turn's tools are all done (logged just before ``continued``, for turns with tool calls)."""

    kind: Literal["turn_completed"] = "turn_completed"
    sealed_at: float = Field(description="Wall time the turn was sealed.")
    last_result_at: float = Field(description="Wall time its last result was recorded.")
    tools: int = Field(description="How many tool calls it had.")
    tool_time_s: float = Field(description="The sum of the tools' durations.")
    parallel_after_stream_end: float = Field(
        description="Wall time the results would have been in, had every tool started at the seal."
    )
    saved_s: float = Field(description="parallel_after_stream_end - last_result_at; may be negative.")
    trigger: str = Field(
        description="What completed it: 'seal', 'deadline' or the last result's tool_use_id."
    )


class ContinuedEvent(_Turn):
    """The previous turn is complete: the next request is enqueued. ``turn`` is the NEXT turn."""

    kind: Literal["continued"] = "continued"
    trigger: str = Field(
        description="What completed it: 'seal', 'deadline', or the last result's tool_use_id; 'resume' "
        "when a resume sent it, 'monitor' when the safety net did (whoever decided it stopped)."
    )
    decided_at: float = Field(description="Wall time of the decision.")


class ContinuationPausedEvent(_Turn):
    """The turn was complete while the run was paused: it continues when the run resumes. Also logged
    by the next turn's job when a pause landed after the continuation was sent (no request went out)."""

    kind: Literal["continuation_paused"] = "continuation_paused"
    next_turn: int = Field(description="The turn that will be requested at resume.")


# ---------------------------------------------------------------------------------------------- the union

RunEvent = Annotated[
    RunStartedEvent
    | RunCompletedEvent
    | RunFailedEvent
    | RunEndedEvent
    | RunPausedEvent
    | RunResumedEvent
    | CancelRequestedEvent
    | JobFailedEvent
    | JobHandedOverEvent
    | RequestSentEvent
    | StreamOpenedEvent
    | StreamRetryEvent
    | StreamFailedEvent
    | StreamClosedEvent
    | TextDeltaEvent
    | MessageStoppedEvent
    | ToolInputStartedEvent
    | ToolFieldCompletedEvent
    | ToolReadyEvent
    | ToolRejectedEvent
    | ToolHeldEvent
    | ToolPausedEvent
    | ToolWaitingEvent
    | ToolEnqueuedEvent
    | ToolStartedEvent
    | ToolProgressEvent
    | ToolCompletedEvent
    | ToolFailedEvent
    | ToolCancelledEvent
    | ToolRefusedEvent
    | ToolDuplicateResultEvent
    | TurnSealedEvent
    | TurnSalvagedEvent
    | TurnDeadlineEvent
    | TurnDeadlinePausedEvent
    | TurnCompletedEvent
    | ContinuedEvent
    | ContinuationPausedEvent,
    Field(discriminator="kind"),
]
"""Any known entry of the event log, told apart by ``kind``."""

EVENT_KINDS: Final = frozenset(
    {
        "cancel_requested",
        "continuation_paused",
        "continued",
        "job_failed",
        "job_handed_over",
        "message_stopped",
        "request_sent",
        "run_completed",
        "run_ended",
        "run_failed",
        "run_paused",
        "run_resumed",
        "run_started",
        "stream_closed",
        "stream_failed",
        "stream_opened",
        "stream_retry",
        "text_delta",
        "tool_cancelled",
        "tool_completed",
        "tool_duplicate_result",
        "tool_enqueued",
        "tool_failed",
        "tool_field_completed",
        "tool_held",
        "tool_input_started",
        "tool_paused",
        "tool_progress",
        "tool_ready",
        "tool_refused",
        "tool_rejected",
        "tool_started",
        "tool_waiting",
        "turn_completed",
        "turn_deadline",
        "turn_deadline_paused",
        "turn_salvaged",
        "turn_sealed",
    }
)
"""Every kind this version of the schema knows."""

RUN_FINAL_KINDS: Final = frozenset({"run_completed", "run_failed", "run_ended"})
"""The kinds that end a run: exactly one of them is logged per run, and nothing continues after it."""

TOOL_RESULT_KINDS: Final = frozenset({"tool_completed", "tool_failed", "tool_cancelled", "tool_refused"})
"""The kinds that record a call's one result."""

RESULT_KIND: Final[Mapping[str, str]] = {
    "ok": "tool_completed",
    "cancelled": "tool_cancelled",
    "refused": "tool_refused",
}
"""The kind that records a result of each status (any other status: ``tool_failed``)."""


def to_entry(event: RunEventModel) -> dict[str, Any]:
    """The JSON object a log entry holds: ``v``, ``kind``, ``ts``, ``run_id`` first, then the fields (an
    optional field at its default, such as ``after_cancel: false``, is left out)."""
    fields = event.model_dump(mode="json", exclude_defaults=True)
    head = {"v": event.v, "kind": event.kind, "ts": event.ts, "run_id": event.run_id}
    return {**head, **{k: v for k, v in fields.items() if k not in head}}


def _kind_of(model: type[RunEventModel]) -> str:
    [kind] = get_args(model.model_fields["kind"].annotation)
    return str(kind)


EVENT_MODELS: Final[Mapping[str, type[RunEventModel]]] = {
    _kind_of(model): model for model in get_args(get_args(RunEvent)[0])
}
"""The model of each known kind."""

_ADAPTER: TypeAdapter[RunEventModel] = TypeAdapter(RunEvent)


class UnknownRunEvent(RunEventModel):
    """An entry of a kind this version does not know (a newer producer's): its fields are kept as extras."""

    kind: str = Field(description="The kind, not one of EVENT_KINDS.")


def parse_event(
    data: Mapping[str, Any], *, strict: bool = False, entry_id: str | None = None
) -> RunEventModel:
    """One log entry as its model; an unknown kind gives ``UnknownRunEvent`` (``strict``: raises).

    ``entry_id``: the entry's id in the log, kept as the model's ``entry_id``. A known kind with missing
    or ill-typed fields raises ``pydantic.ValidationError``.
    """
    kind = data.get("kind")
    if kind in EVENT_KINDS:
        event = _ADAPTER.validate_python(data)
    elif strict:
        raise UnknownEventKindError(kind)
    else:
        event = UnknownRunEvent.model_validate(data)
    event._entry_id = entry_id
    return event


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``RunEvent`` (what ``docs/events.schema.json`` holds)."""
    schema = _ADAPTER.json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": EVENT_SCHEMA_ID,
        "title": "incremental run event, v1",
        "description": (
            "One entry of a run's event log (Redis Stream inc:events:{run_id}), selected by 'kind'. "
            "Adding a kind or an optional field keeps v=1; removing or renaming a field bumps v. "
            "Readers should accept unknown kinds and extra fields."
        ),
        **schema,
    }
