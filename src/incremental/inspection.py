"""Read a whole captured stream and report on it: the data behind ``incremental inspect``.

``inspect_bytes`` is pure: bytes in, a ``StreamReport`` out; ``inspect_file`` reads a file (or standard
input) first. The command line renders the report (``incremental.cli``).

A report's ``error_kind`` says what kind of failure its ``error`` is, each with its own message:

- ``"unreadable"``: no such file, a directory, or the file could not be read;
- ``"empty"``: no bytes at all, or nothing but whitespace;
- ``"not_a_stream"``: bytes, but no SSE or JSON Lines event in them (binary, compressed, a JSON
  document, plain text);
- ``"stream"``: a stream that could not be read to its end (the parser's error).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .core import BlockStatus, IncompleteStreamError, MalformedEventError, StreamParser

__all__ = ["BlockReport", "ErrorKind", "StreamReport", "inspect_bytes", "inspect_file"]

ErrorKind = Literal["unreadable", "empty", "not_a_stream", "stream"]


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
    text: str | None = None  # a text or thinking block's text
    input: Any = None  # a tool block's input as parsed (None: not a tool block, or invalid JSON)
    raw_input: str | None = None  # a tool block's input JSON as streamed


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
    error_kind: ErrorKind | None = None  # what kind of failure ``error`` is (module docstring)
    timed: bool = False  # the capture has ``: t=SECONDS`` timing comments

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


def _failed(file: str, kind: ErrorKind, error: str) -> StreamReport:
    return StreamReport(file, {}, [], [], [], error, error_kind=kind)


def _what_it_is(data: bytes, file: str) -> str:
    """A short guess at what bytes that hold no stream events are."""
    if data[:2] == b"\x1f\x8b":
        source = "FILE" if file == "-" else file
        return f"it is gzip-compressed: decompress it first (gunzip -c {source} | incremental inspect -)"
    for magic, name in (
        (b"PK\x03\x04", "a zip archive"),
        (b"BZh", "bzip2-compressed"),
        (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    ):
        if data.startswith(magic):
            return f"it looks {name}" if name.endswith("compressed") else f"it looks like {name}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "it is binary, not UTF-8 text"
    if "\x00" in text:
        return "it is binary (it holds NUL bytes)"
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    else:
        if isinstance(document, dict) and document.get("type") == "message":
            return "it is one whole Messages API response (a non-streaming answer), not a stream of events"
        if isinstance(document, dict) and {"status", "headers"} <= document.keys():
            return "it is a recorded response's record; its streamed body is the .sse file beside it"
        return f"it is one JSON document ({type(document).__name__}), not one event object per line"
    first = text.strip().splitlines()[0]
    shown = first if len(first) <= 60 else first[:59] + "…"
    return f"it is text that starts {shown!r}"


def inspect_bytes(data: bytes, *, file: str = "-", chunk_size: int = 65536) -> StreamReport:
    """Parse a whole captured stream (SSE or JSON Lines, detected) and report on it."""
    if not data.strip():
        what = "no bytes" if not data else f"only whitespace ({len(data):,} bytes)"
        source = "standard input" if file == "-" else "the file"
        return _failed(file, "empty", f"empty input: {source} holds {what}")
    parser = StreamParser(format="auto")
    for offset in range(0, len(data), chunk_size):
        parser.feed(data[offset : offset + chunk_size])
        if parser.error is not None:
            break
    parser.end()
    if (parser.event_count == 0 or _one_document(parser, data)) and _no_events(parser, data):
        return _failed(
            file,
            "not_a_stream",
            f"no SSE or JSON Lines events found in {len(data):,} bytes: {_what_it_is(data, file)}",
        )

    stopped_at = parser.stopped_at
    tool_calls: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    blocks: list[BlockReport] = []
    for block in parser.blocks:
        text: str | None = None
        raw_input: str | None = None
        if block.scanner is not None:
            content = raw_input = block.raw_input()
        elif block.type in ("text", "thinking"):
            content = text = "".join(block.chunks)
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
                text=text,
                input=block.input if block.scanner is not None else None,
                raw_input=raw_input,
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
        error_kind="stream" if parser.error is not None else None,
        timed=parser.clock is not None,
    )


def _one_document(parser: StreamParser, data: bytes) -> bool:
    """No message started, and the bytes are one JSON document (read as a JSON Lines line, it is one
    unknown event): a saved response or record, not a stream."""
    if parser.message():
        return False
    try:
        return isinstance(json.loads(data), dict)
    except ValueError:
        return False


def _no_events(parser: StreamParser, data: bytes) -> bool:
    """No event was read, and the failure (if any) is only that: nothing in ``data`` was an event."""
    error = parser.error
    if error is None or isinstance(error, IncompleteStreamError):
        return True
    if not isinstance(error, MalformedEventError) or data.lstrip()[:1] != b"{":
        return False  # an SSE data line that is not JSON is a malformed event: the parser says so
    # Read as JSON Lines (the first byte is `{`): is the first line an object at all?
    first = data.lstrip().split(b"\n", 1)[0]
    try:
        return not isinstance(json.loads(first), dict)
    except ValueError:
        return True


def inspect_file(name: str | Path) -> StreamReport:
    """Read a file (``"-"``: standard input) and report on it; a file that cannot be read is a report too."""
    file = str(name)
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except FileNotFoundError:
        return _failed(file, "unreadable", "no such file")
    except IsADirectoryError:
        inside = sorted(p.name for p in Path(file).glob("*.sse"))
        hint = (
            f" (it holds {len(inside)} .sse file(s): give them, e.g. {file.rstrip('/')}/*.sse)"
            if inside
            else ""
        )
        return _failed(file, "unreadable", f"is a directory{hint}")
    except PermissionError:
        return _failed(file, "unreadable", "cannot read it: permission denied")
    except OSError as exc:
        return _failed(file, "unreadable", f"cannot read it: {exc.strerror or exc}")
    return inspect_bytes(data, file=file)
