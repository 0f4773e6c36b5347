"""Bounds on what one stream may make the parser hold or do."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on what one stream may make the parser hold.

    ``max_line_bytes``: one SSE line (or JSON Lines line) without its ending. Crossing it fails the stream.
    ``max_blocks``: content blocks in one message. Crossing it fails the stream.
    ``max_block_chars``: characters streamed into one block. A text or thinking block over it fails the
        stream; a tool block over it only rejects that call (its input is dropped, the stream goes on).
    ``max_message_chars``: characters held for all blocks of one message together. Fails the stream.
    ``max_depth``: nesting of arrays and objects, in an event's data and in a tool's input. Checked before
        anything recursive sees the JSON: deeper event data fails the stream, a deeper tool input
        rejects that call.
    ``max_warnings``: warnings kept; past it they are counted, not stored.
    """

    max_line_bytes: int = 16 * MiB
    max_blocks: int = 4096
    max_block_chars: int = 32 * MiB
    max_message_chars: int = 64 * MiB
    max_depth: int = 128
    max_warnings: int = 1000
