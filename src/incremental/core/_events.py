"""The typed events a ``StreamParser`` yields.

Every event is a frozen, slotted dataclass with a ``kind`` tag (a class constant, so it costs nothing per
event); ``event.to_dict()`` serializes it straight into a status stream (without recursing: payloads are
the parser's own dicts, shared, not copied). In stream order, for one message:

    MessageStarted
      BlockStarted(index)                     every block, any type, kept verbatim
        TextDelta / ThinkingDelta             text as it streams (consecutive deltas of one block that
        ToolInputDelta                        arrive in one feed() come as one event); a tool's raw
                                              JSON fragment (client or server tool); never empty
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

from dataclasses import dataclass, fields
from typing import Any, ClassVar

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


_FIELDS: dict[type, tuple[str, ...]] = {}  # each event class's field names, looked up once


class _Serializable:
    __slots__ = ()

    kind: ClassVar[str] = ""

    def _fields(self) -> dict[str, Any]:
        cls = type(self)
        names = _FIELDS.get(cls)
        if names is None:
            names = _FIELDS[cls] = tuple(f.name for f in fields(self))  # type: ignore[arg-type]
        out: dict[str, Any] = {}
        for name in names:
            value = getattr(self, name)
            out[name] = value._fields() if isinstance(value, _Serializable) else value
        return out

    def to_dict(self) -> dict[str, Any]:
        """The event as data, ``kind`` first; JSON-ready when its payload is. Never recurses into the
        payload (however deep it is), and a nested ``ToolCall`` becomes a plain dict."""
        return {"kind": self.kind, **self._fields()}


@dataclass(frozen=True, slots=True)
class ToolCall(_Serializable):
    """A client tool call whose input is complete, parsed strictly, and a JSON object."""

    id: str
    name: str
    input: dict[str, Any]
    index: int


@dataclass(frozen=True, slots=True)
class MessageStarted(_Serializable):
    kind: ClassVar[str] = "message_started"
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BlockStarted(_Serializable):
    kind: ClassVar[str] = "block_started"
    index: int
    block_type: str
    block: dict[str, Any]
    tool_id: str | None = None
    tool_name: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta(_Serializable):
    kind: ClassVar[str] = "text_delta"
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta(_Serializable):
    kind: ClassVar[str] = "thinking_delta"
    index: int
    thinking: str


@dataclass(frozen=True, slots=True)
class ToolInputDelta(_Serializable):
    kind: ClassVar[str] = "tool_input_delta"
    index: int
    tool_id: str
    partial_json: str


@dataclass(frozen=True, slots=True)
class ToolFieldCompleted(_Serializable):
    """A top-level field of a tool's input is complete (e.g. ``path`` long before ``content``)."""

    kind: ClassVar[str] = "tool_field_completed"
    index: int
    tool_id: str
    tool_name: str
    field: str
    value: Any


@dataclass(frozen=True, slots=True)
class BlockDelta(_Serializable):
    """A delta kept verbatim: ``signature_delta``, ``citations_delta``, or a type we do not know."""

    kind: ClassVar[str] = "block_delta"
    index: int
    delta: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BlockStopped(_Serializable):
    """A block other than a client tool call stopped. ``status`` is one of ``BlockStatus``."""

    kind: ClassVar[str] = "block_stopped"
    index: int
    block_type: str
    status: str


@dataclass(frozen=True, slots=True)
class ToolReady(_Serializable):
    """Safe to run: the block stopped, its JSON parsed strictly, and it is an object."""

    kind: ClassVar[str] = "tool_ready"
    index: int
    call: ToolCall


@dataclass(frozen=True, slots=True)
class ToolRejected(_Serializable):
    """A client tool_use block that must never run. ``status`` is ``invalid`` or ``truncated``."""

    kind: ClassVar[str] = "tool_rejected"
    index: int
    tool_id: str
    tool_name: str
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class MessageDelta(_Serializable):
    kind: ClassVar[str] = "message_delta"
    delta: dict[str, Any]
    usage: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MessageStopped(_Serializable):
    kind: ClassVar[str] = "message_stopped"
    stop_reason: str | None
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UnknownEvent(_Serializable):
    """An event type we do not know, kept verbatim."""

    kind: ClassVar[str] = "unknown_event"
    event_type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ParserWarning(_Serializable):
    """Something unexpected that did not stop the stream."""

    kind: ClassVar[str] = "warning"
    message: str
    index: int | None = None
    event_type: str | None = None


@dataclass(frozen=True, slots=True)
class StreamFailed(_Serializable):
    """The stream failed; no more events follow. Open tool blocks were rejected just before."""

    kind: ClassVar[str] = "stream_failed"
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
