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
Any pair not in ``MESSAGE_TRANSITIONS`` is a ``ProtocolError``. DONE and FAILED are final: the parser
refuses more input (``ParserClosedError``) except ``ping``s and blank keep-alives after DONE.

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
    "MESSAGE_TRANSITIONS",
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


# (state, event type) -> next state. Everything else (but ping, error and unknown types) is an error.
MESSAGE_TRANSITIONS: dict[tuple[MessageState, str], MessageState] = {
    (MessageState.AWAITING_START, "message_start"): MessageState.STREAMING,
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
