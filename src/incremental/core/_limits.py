"""Bounds on memory per stream. Crossing one fails the stream with ``LimitExceededError``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on what one stream may make the parser hold.

    ``max_line_bytes``: one SSE line (or JSON Lines line) without its ending.
    ``max_blocks``: content blocks in one message.
    ``max_block_chars``: characters streamed into one block (text, thinking or tool input).
    ``max_message_chars``: characters streamed into all blocks of one message together.
    ``max_warnings``: warnings kept; past it they are counted, not stored.
    """

    max_line_bytes: int = 16 * MiB
    max_blocks: int = 4096
    max_block_chars: int = 32 * MiB
    max_message_chars: int = 64 * MiB
    max_warnings: int = 1000
