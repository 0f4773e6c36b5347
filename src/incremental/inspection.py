"""Read a whole captured stream and report on it: the data behind ``incremental inspect``.

Pure: bytes in, a ``StreamReport`` out. The command line renders it (``incremental.cli``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .core import BlockStatus, StreamParser

__all__ = ["BlockReport", "StreamReport", "inspect_bytes"]


@dataclass(frozen=True, slots=True)
class BlockReport:
    """One content block on the timeline."""

    index: int
    type: str
    status: str
    bytes: int  # UTF-8 bytes of the block's streamed content (text, thinking, or tool input JSON)
    started_at: float | None
    ready_at: float | None  # when its content_block_stop arrived (None: never, or no timing)
    tool_name: str | None = None
    tool_id: str | None = None
    reason: str | None = None
    head_start_s: float | None = None  # how much earlier than message_stop a ready tool could start


@dataclass(frozen=True, slots=True)
class StreamReport:
    """What one stream held, and whether it could be read to its end."""

    file: str
    message: dict[str, Any]
    tool_calls: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    warnings: list[str]
    error: str | None
    blocks: list[BlockReport] = field(default_factory=list)
    stop_reason: str | None = None
    stopped_at: float | None = None  # clock at message_stop
    ended_at: float | None = None  # the last timing comment in the file
    events: int = 0

    def to_json(self) -> dict[str, Any]:
        """The ``inspect --json`` contract: exactly these keys."""
        return {
            "file": self.file,
            "message": self.message,
            "tool_calls": self.tool_calls,
            "rejected": self.rejected,
            "warnings": self.warnings,
            "error": self.error,
        }


def _block_bytes(raw: str) -> int:
    return len(raw.encode("utf-8", "surrogatepass"))


def inspect_bytes(data: bytes, *, file: str = "-", chunk_size: int = 65536) -> StreamReport:
    """Parse a whole captured stream (SSE or JSON Lines, detected) and report on it."""
    parser = StreamParser(format="auto")
    for offset in range(0, len(data), chunk_size):
        parser.feed(data[offset : offset + chunk_size])
        if parser.error is not None:
            break
    parser.end()

    stopped_at = parser.stopped_at
    tool_calls: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    blocks: list[BlockReport] = []
    for block in parser.blocks:
        if block.scanner is not None:
            content = block.raw_input()
        elif block.type in ("text", "thinking"):
            content = "".join(block.chunks)
        else:
            content = ""
        ready_at = block.stopped_at if block.status is not BlockStatus.TRUNCATED else None
        head_start = None
        if block.status is BlockStatus.READY and ready_at is not None and stopped_at is not None:
            head_start = round(stopped_at - ready_at, 3)
        blocks.append(
            BlockReport(
                index=block.index,
                type=block.type,
                status=str(block.status),
                bytes=_block_bytes(content),
                started_at=block.started_at,
                ready_at=ready_at,
                tool_name=block.tool_name if block.scanner is not None else None,
                tool_id=block.tool_id if block.scanner is not None else None,
                reason=block.reason,
                head_start_s=head_start,
            )
        )
        if block.status is BlockStatus.READY:
            tool_calls.append(
                {
                    "index": block.index,
                    "id": block.tool_id,
                    "name": block.tool_name,
                    "input": block.input,
                    "ready_at": ready_at,
                }
            )
        elif block.status in (BlockStatus.INVALID, BlockStatus.TRUNCATED) and block.type == "tool_use":
            rejected.append(
                {"index": block.index, "id": block.tool_id, "name": block.tool_name, "reason": block.reason}
            )
    return StreamReport(
        file=file,
        message=parser.message(),
        tool_calls=tool_calls,
        rejected=rejected,
        warnings=[w.message if w.index is None else f"index {w.index}: {w.message}" for w in parser.warnings],
        error=str(parser.error) if parser.error is not None else None,
        blocks=blocks,
        stop_reason=parser.stop_reason,
        stopped_at=stopped_at,
        ended_at=parser.clock,
        events=parser.event_count,
    )
