"""The typed events a ``StreamParser`` yields.

Every event is a frozen, slotted dataclass whose first field is a ``kind`` tag, so ``event.to_dict()``
(or ``dataclasses.asdict``) serializes straight into a status stream. In stream order, for one message:

    MessageStarted
      BlockStarted(index)                     every block, any type, kept verbatim
        TextDelta / ThinkingDelta             text as it streams
        ToolInputDelta                        a tool's raw JSON fragment (client or server tool)
        ToolFieldCompleted                    a top-level input field's value is complete
        BlockDelta                            signature, citations, and unknown deltas, verbatim
      ToolReady(index)                        a client tool_use block stopped and parsed strictly
      | ToolRejected(index)                   ... or must not run (invalid JSON, not an object, truncated)
      | BlockStopped(index)                   any other block stopped
      MessageDelta                            stop_reason and cumulative usage
    MessageStopped                            the assembled message, API JSON shape

    UnknownEvent, ParserWarning               anywhere; the stream goes on
    StreamFailed                              last event of a failed stream; ``error`` says why
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ._errors import StreamError

__all__ = [
    "BlockDelta",
    "BlockStarted",
    "BlockStopped",
    "Event",
    "MessageDelta",
    "MessageStarted",
    "MessageStopped",
    "ParserWarning",
    "StreamFailed",
    "TextDelta",
    "ThinkingDelta",
    "ToolCall",
    "ToolFieldCompleted",
    "ToolInputDelta",
    "ToolReady",
    "ToolRejected",
    "UnknownEvent",
]


class _Serializable:
    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data (``kind`` first)."""
        return asdict(self)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True, slots=True)
class ToolCall(_Serializable):
    """A client tool call whose input is complete, parsed strictly, and a JSON object."""

    id: str
    name: str
    input: dict[str, Any]
    index: int


@dataclass(frozen=True, slots=True)
class MessageStarted(_Serializable):
    kind: str = field(default="message_started", init=False)
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BlockStarted(_Serializable):
    kind: str = field(default="block_started", init=False)
    index: int
    block_type: str
    block: dict[str, Any]
    tool_id: str | None = None
    tool_name: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta(_Serializable):
    kind: str = field(default="text_delta", init=False)
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta(_Serializable):
    kind: str = field(default="thinking_delta", init=False)
    index: int
    thinking: str


@dataclass(frozen=True, slots=True)
class ToolInputDelta(_Serializable):
    kind: str = field(default="tool_input_delta", init=False)
    index: int
    tool_id: str
    partial_json: str


@dataclass(frozen=True, slots=True)
class ToolFieldCompleted(_Serializable):
    """A top-level field of a tool's input is complete (e.g. ``path`` long before ``content``)."""

    kind: str = field(default="tool_field_completed", init=False)
    index: int
    tool_id: str
    tool_name: str
    field: str
    value: Any


@dataclass(frozen=True, slots=True)
class BlockDelta(_Serializable):
    """A delta kept verbatim: ``signature_delta``, ``citations_delta``, or a type we do not know."""

    kind: str = field(default="block_delta", init=False)
    index: int
    delta: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BlockStopped(_Serializable):
    """A block other than a client tool call stopped. ``status`` is one of ``BlockStatus``."""

    kind: str = field(default="block_stopped", init=False)
    index: int
    block_type: str
    status: str


@dataclass(frozen=True, slots=True)
class ToolReady(_Serializable):
    """Safe to run: the block stopped, its JSON parsed strictly, and it is an object."""

    kind: str = field(default="tool_ready", init=False)
    index: int
    call: ToolCall


@dataclass(frozen=True, slots=True)
class ToolRejected(_Serializable):
    """A client tool_use block that must never run. ``status`` is ``invalid`` or ``truncated``."""

    kind: str = field(default="tool_rejected", init=False)
    index: int
    tool_id: str
    tool_name: str
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class MessageDelta(_Serializable):
    kind: str = field(default="message_delta", init=False)
    delta: dict[str, Any]
    usage: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MessageStopped(_Serializable):
    kind: str = field(default="message_stopped", init=False)
    stop_reason: str | None
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UnknownEvent(_Serializable):
    """An event type we do not know, kept verbatim."""

    kind: str = field(default="unknown_event", init=False)
    event_type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ParserWarning(_Serializable):
    """Something unexpected that did not stop the stream."""

    kind: str = field(default="warning", init=False)
    message: str
    index: int | None = None
    event_type: str | None = None


@dataclass(frozen=True, slots=True)
class StreamFailed(_Serializable):
    """The stream failed; no more events follow. Open tool blocks were rejected just before."""

    kind: str = field(default="stream_failed", init=False)
    error: StreamError

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "error": self.error.to_dict()}


Event = (
    MessageStarted
    | BlockStarted
    | TextDelta
    | ThinkingDelta
    | ToolInputDelta
    | ToolFieldCompleted
    | BlockDelta
    | BlockStopped
    | ToolReady
    | ToolRejected
    | MessageDelta
    | MessageStopped
    | UnknownEvent
    | ParserWarning
    | StreamFailed
)
