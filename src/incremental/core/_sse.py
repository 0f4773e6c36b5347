"""A byte-level Server-Sent Events decoder, per the WHATWG "event stream interpretation" rules.

Fed bytes in chunks of any size, it returns the events (and comments) completed so far. Lines end with
LF, CR or CRLF; a CR at the end of one chunk and an LF at the start of the next are one line ending.
A UTF-8 byte-order mark at the very start is dropped, even when split across chunks. Field values are
decoded as UTF-8 per line (CR and LF never occur inside a multi-byte sequence, so splitting bytes on
them first is equivalent to decoding the whole stream first).

Per field:

    ``data``   appended to the data buffer (lines joined with LF)
    ``event``  the event type of the event being built (default ``message``)
    ``id``     the last event id (ignored when it contains NUL)
    ``retry``  the reconnection time in ms (ignored unless all ASCII digits)
    other      ignored
    ``:...``   a comment; returned as ``SSEComment`` (the spec ignores them; fixtures keep timing there)

A blank line dispatches the event being built; with an empty data buffer nothing is dispatched and
the event type is reset, as the spec says. At the end of the stream there are two readings:

    ``close``   the spec's: bytes after the last line ending, and an event without its blank line, are
                discarded (returns whether anything was);
    ``finish``  the lenient one real captures need (many end ``data: {...}`` with no blank line, or no
                final newline): the unterminated last line counts as a line and the event still being
                built is dispatched.

Between events (``at_boundary``) the decoder holds no state but ``last_event_id`` and ``retry``: a
caller that recognises whole, plain ``event:``/``data:`` frames itself may skip the decoder for them
and hand it only the rest (the parser's fast path does), with the same result.

Memory is bounded: a line, or one event's data, longer than ``max_line_bytes`` raises
``LimitExceededError``, whatever the chunking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._errors import LimitExceededError

__all__ = ["SSEComment", "SSEDecoder", "SSEEvent"]

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its type, its data (lines joined with LF), and the last event id then."""

    kind: ClassVar[str] = "sse_event"
    event: str
    data: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class SSEComment:
    """One comment line (``: text``), without the colon and one leading space."""

    kind: ClassVar[str] = "sse_comment"
    text: str


def _decode(value: bytes) -> str:
    # Strict first (the common case, and fast); the spec's decoder replaces invalid sequences.
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("utf-8", "replace")


class SSEDecoder:
    """Feed bytes, get ``SSEEvent`` and ``SSEComment`` items in stream order."""

    def __init__(self, *, max_line_bytes: int = 16 * 1024 * 1024) -> None:
        self.max_line_bytes = max_line_bytes
        self.last_event_id: str | None = None
        self.retry: int | None = None
        self._tail: list[bytes] = []  # bytes of an unterminated line, as chunks (joined once)
        self._tail_len = 0
        self._pending_cr = False  # the previous chunk ended with CR: an LF next belongs to it
        self._bom_checked = False
        self._head = b""  # up to 2 bytes held back while deciding whether a BOM starts the stream
        self._event_type = b""
        self._data: list[bytes] = []  # data lines of the event being built
        self._data_len = 0

    def feed(self, chunk: bytes) -> list[SSEEvent | SSEComment]:
        """Decode one chunk; return what it completed."""
        out: list[SSEEvent | SSEComment] = []
        for item in self.feed_raw(chunk):
            if isinstance(item, SSEComment):
                out.append(item)
            else:
                out.append(
                    SSEEvent(
                        event=_decode(item[0]) or "message",
                        data=_decode(item[1]),
                        id=item[2],
                    )
                )
        return out

    @property
    def at_boundary(self) -> bool:
        """True between events: no partial line, no event being built, no CR waiting for its LF."""
        return (
            self._bom_checked
            and not self._tail
            and not self._data
            and not self._event_type
            and not self._pending_cr
        )

    @property
    def partial_line(self) -> bool:
        """True when bytes after the last line ending are held (a line still without its ending)."""
        return bool(self._tail) or bool(self._head)

    def strip_bom(self, chunk: bytes) -> bytes:
        """Drop a UTF-8 BOM at the very start of the stream (even split across chunks); return the rest.

        Until three bytes have arrived it may hold them back (and return ``b""``)."""
        if self._bom_checked:
            return chunk
        chunk = self._head + chunk
        if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
            self._head = chunk  # could still be the start of a BOM
            return b""
        self._head = b""
        self._bom_checked = True
        return chunk[len(_BOM) :] if chunk.startswith(_BOM) else chunk

    def boundary_in(self, chunk: bytes) -> int:
        """Where in ``chunk`` the event being built would end if the stream uses LF endings: the offset
        just past its blank line, or -1. Feed ``chunk[:offset]`` and check ``at_boundary`` to be sure."""
        if chunk[:1] == b"\n" and not self._tail and not self._pending_cr:
            return 1  # the previous chunk ended a line: this LF is the blank line
        end = chunk.find(b"\n\n")
        return end + 2 if end >= 0 else -1

    def feed_raw(self, chunk: bytes) -> list[tuple[bytes, bytes, str | None] | SSEComment]:
        """Like ``feed``, but events come as (type, data, id) with bytes undecoded: the parser's fast path."""
        if not self._bom_checked:
            chunk = self.strip_bom(chunk)
        if self._pending_cr:
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if not chunk:
            return []
        if b"\n" not in chunk and b"\r" not in chunk:
            # No line ends here: keep the piece without copying what came before.
            self._tail.append(chunk)
            self._tail_len += len(chunk)
            if self._tail_len > self.max_line_bytes:
                raise LimitExceededError(
                    f"an SSE line exceeded {self.max_line_bytes} bytes without a line ending"
                )
            return []
        if self._tail:
            self._tail.append(chunk)
            chunk = b"".join(self._tail)
            self._tail.clear()
            self._tail_len = 0
        lines = chunk.splitlines()  # bytes.splitlines splits on LF, CR and CRLF only
        last = chunk[-1]
        if last == 13:  # CR: the LF that may follow in the next chunk is part of this ending
            self._pending_cr = True
        elif last != 10:  # the last line is not terminated yet
            rest = lines.pop()
            self._tail.append(rest)
            self._tail_len = len(rest)
            if self._tail_len > self.max_line_bytes:
                raise LimitExceededError(
                    f"an SSE line exceeded {self.max_line_bytes} bytes without a line ending"
                )
        return self._lines(lines)

    def close(self) -> bool:
        """End of stream, the spec's way. Returns True if an unterminated event (or line) was discarded."""
        discarded = bool(self._tail) or bool(self._data) or bool(self._event_type) or bool(self._head)
        self._reset()
        return discarded

    def finish(self) -> tuple[list[tuple[bytes, bytes, str | None] | SSEComment], bool]:
        """End of stream, read leniently: the unterminated last line is a line, and the event still being
        built is dispatched as if its blank line had come. Returns (items, whether the spec would have
        discarded anything)."""
        lenient = bool(self._tail) or bool(self._data) or bool(self._event_type) or bool(self._head)
        rest = b"".join([self._head, *self._tail])
        self._head, self._bom_checked = b"", True
        self._tail.clear()
        self._tail_len = 0
        out = self._lines([rest]) if rest else []
        if self._data:
            out += self._lines([b""])  # the missing blank line
        self._reset()
        return out, lenient

    def _reset(self) -> None:
        self._head = b""
        self._tail.clear()
        self._tail_len = 0
        self._data.clear()
        self._data_len = 0
        self._event_type = b""

    def _lines(self, lines: list[bytes]) -> list[tuple[bytes, bytes, str | None] | SSEComment]:
        out: list[tuple[bytes, bytes, str | None] | SSEComment] = []
        data = self._data
        limit = self.max_line_bytes
        for line in lines:
            if len(line) > limit:  # the same bound as on an unterminated line, so chunking cannot matter
                raise LimitExceededError(f"an SSE line exceeded {limit} bytes without a line ending")
            if not line:
                # Blank line: dispatch. No data means no event, and the type is reset.
                if data:
                    out.append(
                        (
                            self._event_type,
                            data[0] if len(data) == 1 else b"\n".join(data),
                            self.last_event_id,
                        )
                    )
                    data.clear()
                    self._data_len = 0
                self._event_type = b""
                continue
            if line.startswith(b"data: "):  # the common cases first
                value = line[6:]
                name = b"data"
            elif line.startswith(b"event: "):
                self._event_type = line[7:]
                continue
            elif line[0] == 58:  # ':' starts a comment
                text = line[1:]
                if text[:1] == b" ":
                    text = text[1:]
                out.append(SSEComment(text=_decode(text)))
                continue
            else:
                name, colon, value = line.partition(b":")
                if colon and value[:1] == b" ":
                    value = value[1:]
            if name == b"data":
                data.append(value)
                self._data_len += len(value) + 1
                if self._data_len > self.max_line_bytes:
                    raise LimitExceededError(f"an SSE event's data exceeded {self.max_line_bytes} bytes")
            elif name == b"event":
                self._event_type = value
            elif name == b"id" and b"\x00" not in value:
                self.last_event_id = _decode(value)
            elif name == b"retry" and value.isdigit() and value.isascii():
                self.retry = int(value)
            # Any other field name is ignored, as the spec says.
        return out
