"""States and transitions of a streamed message, as data, in one place.

The message
-----------
::

    AWAITING_START --message_start--> STREAMING --message_stop--> DONE
          |                             |  ^
          |                             |  | content_block_start / _delta / _stop, message_delta
          |                             +--+
          +---- error event, a protocol violation, a limit, end of bytes ----> FAILED

``ping`` is allowed in every live state and changes nothing. An event type we do not know is kept
verbatim as ``UnknownEvent`` (with a warning) in every live state: the API adds types without notice.
The anthropic SDK's own helper events (``SDK_HELPER_EVENTS``: ``text``, ``input_json``, ...), found in
JSON Lines dumped from its ``messages.stream()``, repeat raw events the same file also holds: they are
skipped without a word, in every state. Any pair not in ``MESSAGE_TRANSITIONS`` is a ``ProtocolError``;
a pair mapped to ``None`` is ignored with a warning. FAILED is final: the parser refuses more input
(``ParserClosedError``). After DONE every event, even one that is not JSON, is ignored with a warning:
the message is whole and its tools may be running; nothing later can change that.

Before ``message_start`` there is no message and no block, so an event can only be harmful if it claims
block state we never saw. That is the line:

    before message_start                                     what happens
    -------------------------------------------------------  --------------------------------------------
    content_block_start / _delta / _stop (names an index)    ProtocolError: the stream lost its beginning,
                                                             and the block's content cannot be known
    message_delta, message_stop (no index, no block)         ignored, with a warning
    an object with no ``type`` (an unnamed ``message``)      UnknownEvent, with a warning (after
                                                             message_start it is a MalformedEventError:
                                                             it might have been a delta we cannot place)
    an unknown type, ping, an SDK helper event               as in every state (above)
    ``error``                                                UpstreamError, as in every state
    data that is not a JSON object                           MalformedEventError, as in every live state

A block
-------
Each content block is tracked by its ``index``::

    (absent) --content_block_start--> OPEN --content_block_stop--> CLOSED
                                        |  \\
                                        |   content_block_delta (stays OPEN)
                                        +-- message_delta / message_stop / failure / end --> CUT

A delta or stop for an absent or CLOSED index, and a second start for an index, are protocol errors:
a tool may already be running on what that index held.

What a block becomes (``BlockStatus``), decided when it leaves OPEN:

    tool_use, CLOSED, strict JSON parse gives an object      -> READY      (the only runnable status)
    tool_use, CLOSED, parse fails or gives a non-object      -> INVALID
    tool_use, CUT                                            -> TRUNCATED
    server_tool_use, mcp_tool_use, *_tool_result, mcp results -> SERVER_SIDE (Anthropic runs these)
    text, thinking, redacted_thinking, CLOSED                -> DONE
    text, thinking, CUT                                      -> TRUNCATED
    a block type we do not know                              -> UNKNOWN    (kept verbatim, warned)
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CLIENT_TOOL_TYPES",
    "DELTA_TARGETS",
    "INPUT_STREAMING_TYPES",
    "KNOWN_BLOCK_TYPES",
    "MESSAGE_DELTA_FIELDS",
    "MESSAGE_TRANSITIONS",
    "SDK_HELPER_EVENTS",
    "START_FIELDS",
    "BlockStatus",
    "MessageState",
    "is_server_side",
]


class MessageState(StrEnum):
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    DONE = "done"
    FAILED = "failed"


class BlockStatus(StrEnum):
    STREAMING = "streaming"  # started, not stopped yet
    READY = "ready"  # a client tool call, whole and parsed: may run
    INVALID = "invalid"  # a client tool call whose input is not a JSON object
    TRUNCATED = "truncated"  # never got its content_block_stop
    SERVER_SIDE = "server_side"  # run by Anthropic: never dispatched by us
    DONE = "done"  # text / thinking / redacted_thinking, stopped
    UNKNOWN = "unknown"  # a block type this version does not know


# (state, event type) -> next state, or None: ignored with a warning. Any other pair of a known type
# (but ping and error, allowed everywhere) is a ProtocolError. DONE ignores everything (see above).
MESSAGE_TRANSITIONS: dict[tuple[MessageState, str], MessageState | None] = {
    (MessageState.AWAITING_START, "message_start"): MessageState.STREAMING,
    (MessageState.AWAITING_START, "message_delta"): None,  # no block to cut, no message to end yet
    (MessageState.AWAITING_START, "message_stop"): None,
    (MessageState.STREAMING, "content_block_start"): MessageState.STREAMING,
    (MessageState.STREAMING, "content_block_delta"): MessageState.STREAMING,
    (MessageState.STREAMING, "content_block_stop"): MessageState.STREAMING,
    (MessageState.STREAMING, "message_delta"): MessageState.STREAMING,
    (MessageState.STREAMING, "message_stop"): MessageState.DONE,
}

# Event types of the protocol. Anything else is unknown: kept verbatim, warned about, never fatal.
KNOWN_EVENT_TYPES = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    }
)

# Events the anthropic SDK's MessageStream adds on top of the raw ones (its JSON Lines dumps hold both):
# feeding them would double every delta, so they are skipped, silently, in every state.
SDK_HELPER_EVENTS = frozenset({"text", "input_json", "citation", "thinking", "signature", "compaction"})

# Only these are ours to run.
CLIENT_TOOL_TYPES = frozenset({"tool_use"})

# Blocks whose input arrives as input_json_delta fragments.
INPUT_STREAMING_TYPES = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})

KNOWN_BLOCK_TYPES = frozenset(
    {
        "text",
        "thinking",
        "redacted_thinking",
        "tool_use",
        "server_tool_use",
        "mcp_tool_use",
        "mcp_tool_result",
        "container_upload",
    }
)

# Which block types each known delta type applies to. A known delta on another block type is kept
# verbatim with a warning; an unknown delta type likewise.
DELTA_TARGETS: dict[str, frozenset[str]] = {
    "text_delta": frozenset({"text"}),
    "citations_delta": frozenset({"text"}),
    "thinking_delta": frozenset({"thinking"}),
    "signature_delta": frozenset({"thinking"}),
    "input_json_delta": INPUT_STREAMING_TYPES,
}


# What the fields of a known block's content_block_start must be, when present: (field, allowed types,
# required). A field of another type is a MalformedEventError: the block could not be assembled, or
# answered, from it. Other fields, and blocks of other types, are kept verbatim unchecked.
_TOOL_START: tuple[tuple[str, tuple[type, ...], bool], ...] = (
    ("id", (str,), True),  # a tool_result must name it
    ("name", (str,), True),
    ("input", (dict,), False),
)
START_FIELDS: dict[str, tuple[tuple[str, tuple[type, ...], bool], ...]] = {
    "text": (("text", (str,), False), ("citations", (list, type(None)), False)),
    "thinking": (("thinking", (str,), False), ("signature", (str,), False)),
    "redacted_thinking": (("data", (str,), False),),
    "tool_use": _TOOL_START,
    "server_tool_use": _TOOL_START,
    "mcp_tool_use": _TOOL_START,
}

# What the fields of message_delta's ``delta`` must be, when present.
MESSAGE_DELTA_FIELDS: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("stop_reason", (str, type(None))),
    ("stop_sequence", (str, type(None))),
)


def is_server_side(block_type: str) -> bool:
    """Blocks Anthropic runs or returns itself: never dispatched here."""
    return block_type in (
        "server_tool_use",
        "mcp_tool_use",
        "mcp_tool_result",
        "container_upload",
    ) or block_type.endswith("_tool_result")


def is_known_block(block_type: str) -> bool:
    return block_type in KNOWN_BLOCK_TYPES or block_type.endswith("_tool_result")
