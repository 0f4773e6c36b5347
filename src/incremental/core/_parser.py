"""``StreamParser``: feed it the bytes (or event objects) of one streamed message, pull typed events.

    parser = StreamParser()
    for chunk in response_chunks:
        for event in parser.feed(chunk):
            if isinstance(event, ToolReady):
                start(event.call)          # whole, strictly parsed, safe to run
    for event in parser.end():             # the bytes ended: report what was cut off
        ...
    parser.message()                       # the assembled message, API JSON shape

The parser does no IO and keeps no clock of its own: times come from ``: t=SECONDS`` comments in
recorded streams (``parser.clock``), so that a recording reads the same on any machine.

What is fatal and what is a warning (see ``_states`` for the transitions and what may come before
``message_start``):

    fatal (StreamFailed, then the parser refuses input)    warning (ParserWarning, the stream goes on)
    -----------------------------------------------------  ----------------------------------------------
    event: error from the API (UpstreamError)              an event type we do not know (kept verbatim)
    data that is not a JSON object, lacks its fields, or   a block type we do not know (kept verbatim)
      has a field of the wrong type (MalformedEventError)  a delta type we do not know, or a known delta
    a content block event before message_start               on the wrong block type (kept verbatim)
    a second message_start                                 a block index out of sequence
    a delta or stop for an index never started             message_delta / message_stop before
    a delta, stop or second start for a stopped index        message_start (ignored)
    a tool id already used by another block                an event without a type before message_start
    a limit crossed (LimitExceededError), but a tool       anything after message_stop (ignored)
      input's own size or depth: that rejects the call     SSE event name differs from data's type
    bytes ending before message_stop (IncompleteStream)    invalid UTF-8 (replaced, as SSE says)
                                                           a last event without its blank line or final
                                                             newline (read at end(), as if it had them)
    A tool input that is invalid JSON, not an object, deeper than ``Limits.max_depth`` or longer than
    ``Limits.max_block_chars`` is neither: that one call is rejected (``ToolRejected``), never run.

Nothing else escapes: every check that could recurse (nesting depth) is made before anything recursive
sees the JSON, and numbers no encoder takes back (NaN, 1e400) are refused where they arrive.

How bytes are read. The SSE rules are ``_sse.SSEDecoder``'s; this module adds two shortcuts that give
exactly what the decoder would, and takes them only between events (``SSEDecoder.at_boundary``):

    runs    whole ``content_block_delta`` frames, as the API writes them (compact JSON, fixed key
            order), for one block and one delta type (``_RUN_HEAD`` is their start, up to the opening
            quote of the string). Split on what lies between two strings, the run gives the strings
            themselves, still escaped (an escape never spans two strings); they are joined and decoded
            once, so a run costs a few C calls whatever its length. ``_take_run`` lists the checks that
            make this exactly what decoding each frame would give; a run that fails one (a frame that
            is not one valid string, escaped surrogates, which decode differently joined than apart,
            invalid UTF-8, a limit it would cross) is read frame by frame instead.
    _FRAME  one whole ``event: X`` + ``data: Y`` frame: decoded directly, without the line decoder.

Everything else (comments, ``id:``, CR line endings, a frame cut by the chunk's end) goes through the
decoder. Consecutive text, thinking and tool-input deltas of one block within one ``feed`` call are
coalesced into one event (and fed to the tool's JSON scanner at once); any other event flushes them
first, so the order of events is kept and their joined text is the same for every chunking.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from ._blocks import Block, finite_float, reject_constant, strict_object
from ._errors import (
    IncompleteStreamError,
    LimitExceededError,
    MalformedEventError,
    ParserClosedError,
    ProtocolError,
    StreamError,
    UpstreamError,
)
from ._events import (
    BlockDelta,
    BlockStarted,
    BlockStopped,
    Event,
    MessageDelta,
    MessageStarted,
    MessageStopped,
    ParserWarning,
    StreamFailed,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolFieldCompleted,
    ToolInputDelta,
    ToolReady,
    ToolRejected,
    UnknownEvent,
)
from ._jsonscan import JsonScanner
from ._limits import Limits
from ._sse import SSEComment, SSEDecoder
from ._states import (
    CLIENT_TOOL_TYPES,
    DELTA_TARGETS,
    INPUT_STREAMING_TYPES,
    KNOWN_EVENT_TYPES,
    MESSAGE_DELTA_FIELDS,
    MESSAGE_TRANSITIONS,
    SDK_HELPER_EVENTS,
    START_FIELDS,
    BlockStatus,
    MessageState,
    is_known_block,
    is_server_side,
)

__all__ = ["StreamParser"]

Format = Literal["sse", "jsonl", "auto"]

# Strict JSON, the C scanner called directly (json.loads adds a Python-level wrapper per call):
# NaN/Infinity and overflowing floats are refused, so whatever is accepted can be sent back.
_STRICT = json.JSONDecoder(parse_constant=reject_constant, parse_float=finite_float)
_scan_once: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(_STRICT)  # type: ignore[arg-type]
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]

# Event names as they arrive in ``event:`` lines, decoded once.
_EVENT_NAMES: dict[bytes, str] = {n.encode(): n for n in KNOWN_EVENT_TYPES} | {b"": "message"}

_EXPECTED = {
    MessageState.AWAITING_START: "message_start",
    MessageState.STREAMING: "a content block event, message_delta or message_stop",
}

# What a run of deltas carries.
_TEXT: Final = 0
_JSON: Final = 1
_THINKING: Final = 2

_DELTA_HEAD_TEXT = 'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
# The start of a delta frame as the API writes it, up to the opening quote of its string: the block
# index (group 1) and the delta type with the name of its string field (group 2).
_RUN_HEAD = re.compile(
    re.escape(_DELTA_HEAD_TEXT.encode())
    + rb'(0|[1-9][0-9]{0,8}),"delta":\{"type":"(text_delta","text|input_json_delta","partial_json'
    + rb'|thinking_delta","thinking)":"'
)
_RUN_KIND: dict[bytes, int] = {
    b'text_delta","text': _TEXT,
    b'input_json_delta","partial_json': _JSON,
    b'thinking_delta","thinking': _THINKING,
}
_RUN_TAIL = b'"}}\n\n'  # what ends each frame of a run, after its string
# Per (index, delta type): what ends a run, a blank line that no frame of the run follows.
_RUN_ENDS: dict[tuple[bytes, bytes], re.Pattern[bytes]] = {}
# One whole plain frame: an optional ``event: X`` line, one ``data: Y`` line, a blank line (LF only).
_FRAME = re.compile(rb"(?:event: ([^\r\n]*)\n)?data: ([^\r\n]*)\n\n")

# For the nesting check: JSON strings (whose brackets do not count), then anything but brackets.
_STRINGS = re.compile(r'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]++")


def _too_deep(text: str, limit: int) -> bool:
    """Whether the JSON text nests arrays/objects deeper than ``limit``, found without recursing."""
    if text.count("{") + text.count("[") <= limit:
        return False  # the common case: too few brackets to be that deep
    depth = 0
    for c in _NOT_BRACKETS.sub("", _STRINGS.sub("", text)):
        if c == "{" or c == "[":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _object_fault(obj: object, limit: int) -> str | None:
    """What strict JSON would refuse in an already-decoded event object, found with a stack, not by
    recursing: nesting deeper than ``limit`` (a cycle counts as too deep), or a NaN or infinite float
    (lenient decoders make them of ``NaN`` and ``1e999``; no encoder takes them back). None if fine."""
    stack: list[tuple[object, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return f"nested at most {limit} levels, got deeper"
        children = value.values() if isinstance(value, dict) else value
        for child in children:  # type: ignore[attr-defined]
            if isinstance(child, dict | list | tuple):
                stack.append((child, depth + 1))
            elif type(child) is float and child - child != 0.0:
                return f"without NaN or infinite numbers, got {child}"
    return None


def _size(value: object) -> int:
    """Characters a kept-verbatim value adds to a block (its JSON length, or its repr's)."""
    try:
        return len(json.dumps(value))
    except (TypeError, ValueError):  # an object from feed_event that is not JSON
        return len(repr(value))


class StreamParser:
    """A sans-IO reader of one streamed Messages API response.

    ``format``: ``"sse"`` (raw bytes as the API sends them), ``"jsonl"`` (one event object per line),
    or ``"auto"`` (JSON Lines when the first non-blank byte is ``{``, else SSE).
    """

    def __init__(self, *, limits: Limits | None = None, format: Format = "sse") -> None:
        self.limits = limits or Limits()
        self.state = MessageState.AWAITING_START
        self.error: StreamError | None = None
        self.clock: float | None = None  # the latest ``: t=SECONDS`` timing comment
        self.event_count = 0
        self.warnings: list[ParserWarning] = []
        self.warning_count = 0
        self.stopped_at: float | None = None  # clock at message_stop
        self._format: Format = format
        self._sse = SSEDecoder(max_line_bytes=self.limits.max_line_bytes)
        self._lines: list[bytes] = []  # JSON Lines: an unterminated line, as chunks
        self._lines_len = 0
        self._blocks: dict[int, Block] = {}
        self._tool_ids: dict[str, int] = {}  # tool id -> the index of the block that has it
        self._start: dict[str, Any] = {}
        self._delta: dict[str, Any] = {}
        self._usage: dict[str, Any] = {}
        self._chars = 0
        self._max_block_chars = self.limits.max_block_chars
        self._max_message_chars = self.limits.max_message_chars
        self._max_depth = self.limits.max_depth
        self._max_line = self.limits.max_line_bytes
        self._ready: list[ToolCall] = []
        # Deltas being coalesced: one block, one kind, their fragments (flushed by any other event).
        self._acc: Block | None = None
        self._acc_kind = _TEXT
        self._acc_parts: list[str] = []

    # ---------------------------------------------------------------- feeding

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Read a chunk of bytes of any size; return the events it completed."""
        self._check_open()
        out: list[Event] = []
        if type(data) is not bytes:
            data = bytes(data)  # the fast paths look bytes up in dicts: bytearray is unhashable
        try:
            if self._format == "auto":
                stripped = data.lstrip()
                if not stripped:
                    return out  # undecided: nothing but whitespace so far (harmless to drop)
                self._format = "jsonl" if stripped[:1] == b"{" else "sse"
            if self._format == "jsonl":
                self._feed_jsonl(data, out)
            else:
                self._feed_sse(data, out)
            self._flush(out)
        except StreamError as exc:
            self._fail(exc, out)
        return out

    def feed_event(self, event: object) -> list[Event]:
        """Read one already-decoded event: a dict, or an ``anthropic`` SDK event model."""
        self._check_open()
        out: list[Event] = []
        try:
            obj = self._event_object(event)
            if obj is not None:
                self._handle(obj, None, out)
            self._flush(out)
        except StreamError as exc:
            self._fail(exc, out)
        return out

    def end(self) -> list[Event]:
        """The input ended. Reads a last event that lacks its blank line, reports blocks cut off and,
        without ``message_stop``, fails the stream."""
        out: list[Event] = []
        if self.state is MessageState.FAILED:
            return out
        try:
            if self._format == "jsonl":
                rest = b"".join(self._lines)
                self._lines.clear()
                if rest.strip():
                    self._jsonl_line(rest, out)  # JSON Lines may omit the last newline: not a fault
            elif self._format == "sse":
                self._end_sse(out)
            self._flush(out)
        except StreamError as exc:
            self._fail(exc, out)
            return out
        if self.state is not MessageState.DONE:
            where = "before message_start" if self.state is MessageState.AWAITING_START else "mid-message"
            self._fail(
                IncompleteStreamError(
                    f"expected message_stop, got the end of the stream ({where})",
                    state=self.state,
                    event_number=self.event_count,
                ),
                out,
            )
        return out

    # ---------------------------------------------------------------- what is known

    @property
    def blocks(self) -> list[Block]:
        """Every block seen so far, in index order."""
        return [self._blocks[i] for i in sorted(self._blocks)]

    @property
    def tool_calls(self) -> list[ToolCall]:
        """Client tool calls that became ready, in the order they did."""
        return list(self._ready)

    @property
    def stop_reason(self) -> str | None:
        value = self._delta.get("stop_reason")
        return value if isinstance(value, str) else None

    @property
    def last_event_id(self) -> str | None:
        return self._sse.last_event_id

    def message(self) -> dict[str, Any]:
        """The message assembled so far, in the API's JSON shape (``{}`` before ``message_start``)."""
        if not self._start:
            return {}
        msg = dict(self._start)
        msg["content"] = [block.assembled() for block in self.blocks]
        msg.update(self._delta)
        if self._usage:
            msg["usage"] = dict(self._usage)
        return msg

    # ---------------------------------------------------------------- bytes to event objects

    def _check_open(self) -> None:
        if self.state is MessageState.FAILED:
            raise ParserClosedError(f"the stream already failed: {self.error}")

    def _feed_sse(self, data: bytes, out: list[Event]) -> None:
        sse = self._sse
        pos = 0
        if not sse.at_boundary:
            data = sse.strip_bom(data)
            if not data or not sse.at_boundary:
                # Finish the event the decoder is building (its end is most likely in this chunk).
                k = sse.boundary_in(data) if data else -1
                if k < 0:
                    self._items(sse.feed_raw(data), out)
                    return
                self._items(sse.feed_raw(data[:k]), out)
                if not sse.at_boundary:  # not LF framing after all: the decoder takes it all
                    self._items(sse.feed_raw(data[k:]), out)
                    return
                pos = k
        n = len(data)
        head = _RUN_HEAD.match
        while pos < n:
            m = head(data, pos)
            if m is not None:
                stop = self._run(data, pos, m, out)
                if stop > 0:
                    pos = stop
                    continue
            pos = self._one(data, pos, out)

    def _one(self, data: bytes, pos: int, out: list[Event]) -> int:
        """Read the frame at ``pos`` (the decoder at a boundary); return where the next one starts."""
        m = _FRAME.match(data, pos)
        if m is not None and m.end() - pos <= self._max_line:
            self._event(m.group(1) or b"", m.group(2), out)
            return m.end()
        # Anything else (a comment, an id or retry field, CR endings, a frame cut by the chunk's end,
        # a line over the limit): the decoder reads up to the next blank line, or to the chunk's end.
        sse = self._sse
        k = data.find(b"\n\n", pos)
        if k < 0:
            self._items(sse.feed_raw(data[pos:]), out)
            return len(data)
        self._items(sse.feed_raw(data[pos : k + 2]), out)
        if not sse.at_boundary:  # CR endings after all: the decoder takes the rest
            self._items(sse.feed_raw(data[k + 2 :]), out)
            return len(data)
        return k + 2

    def _run(self, data: bytes, pos: int, m: re.Match[bytes], out: list[Event]) -> int:
        """Whole delta frames of one block and one type, from ``pos``, read at once. Returns where
        the next frame starts, or -1 when there is no whole frame here.

        Between two frames of a run is the end of one (``"}}`` and the blank line) and the head of
        the next (up to its opening quote, the same for every frame); so splitting the run there
        gives the strings themselves, still escaped. They are joined and decoded once, after the
        checks that make that exactly what decoding each frame would give (else the frames are read
        one by one)."""
        index_b, dtype_b = m.group(1, 2)
        ends = _RUN_ENDS.get((index_b, dtype_b))
        if ends is None:
            ends = re.compile(rb"\n\n(?!" + re.escape(data[pos : m.end()]) + rb")")
            if len(_RUN_ENDS) < 256:  # the usual indices; others compile (re caches them too)
                _RUN_ENDS[(index_b, dtype_b)] = ends
        # The run ends at the first blank line that no frame of it follows (or at the chunk's last one).
        e = ends.search(data, m.end())
        stop = e.start() + 2 if e is not None else data.rfind(b"\n\n", m.end()) + 2
        if stop < m.end() + len(_RUN_TAIL):
            return -1  # not even one whole frame
        if self._take_run(data, m.end(), stop, m.end() - pos, _RUN_KIND[dtype_b], int(index_b), pos, out):
            return stop
        p = pos
        while p < stop:  # frame by frame: the per-event path says exactly what is wrong, if anything
            p = self._one(data, p, out)
        return p

    def _take_run(
        self,
        data: bytes,
        first: int,
        stop: int,
        head: int,
        kind: int,
        index: int,
        pos: int,
        out: list[Event],
    ) -> bool:
        """Coalesce the run's strings into the block's pending delta; False: read it frame by frame."""
        if self.state is not MessageState.STREAMING or stop - pos > self._max_line:
            return False
        block = self._blocks.get(index)
        if block is None or block.status is not BlockStatus.STREAMING or block.dropped:
            return False
        if kind == _JSON:
            if block.scanner is None:
                return False
        elif block.type != ("text" if kind == _TEXT else "thinking"):
            return False
        if data[stop - len(_RUN_TAIL) : stop] != _RUN_TAIL:
            return False  # the last frame does not end its string and objects as a delta does
        region = data[first : stop - len(_RUN_TAIL)]
        if not region.isascii():
            try:
                region.decode("utf-8")  # with the frames' ASCII between them: a cut sequence fails
            except UnicodeDecodeError:
                return False  # each frame is then decoded with replacement, as SSE says
        # Every blank line in the region is followed by a frame of the run (that is where it ends),
        # so each piece after the first is one frame's head (``head`` bytes long) and its string.
        pieces = region.split(_RUN_TAIL)
        if len(pieces) > 1:
            pieces[1:] = [p[head:] for p in pieces[1:]]
        for piece in [p for p in pieces if p[-1:] == b"\\"]:
            if (len(piece) - len(piece.rstrip(b"\\"))) % 2:
                return False  # it escapes its own closing quote: that frame is not valid JSON
        text = (pieces[0] if len(pieces) == 1 else b"".join(pieces)).decode("utf-8")
        if "\\ud" in text or "\\uD" in text:
            return False  # "\ud83d" + "\ude00" is two characters apart, one joined
        try:
            value, end = _scanstring(text + '"', 0)  # checks escapes and control characters too
        except ValueError:
            return False
        if end != len(text) + 1:
            return False  # an unescaped quote: some frame is not one string
        n = len(value)
        if block.chars + n > self._max_block_chars or self._chars + n > self._max_message_chars:
            return False  # frame by frame, to cross the limit exactly where it is crossed
        self.event_count += len(pieces)
        if n:
            block.chars += n
            self._chars += n
            if self._acc is not block or self._acc_kind != kind:
                self._flush(out)
                self._acc, self._acc_kind = block, kind
            self._acc_parts.append(value)
        return True

    def _end_sse(self, out: list[Event]) -> None:
        """End of the bytes: a last event without its blank line (or final newline) is still read."""
        tail = self._sse.partial_line
        items, lenient = self._sse.finish()
        if not lenient:
            return
        read = False
        for item in items:
            if isinstance(item, SSEComment):
                self._on_comment(item.text)
                continue
            name = _EVENT_NAMES.get(item[0]) or item[0].decode("utf-8", "replace")
            try:
                obj = self._decode(item[1], name)
            except StreamError:
                continue  # cut mid-way (a dropped connection): reported below, then as incomplete
            what = "final newline" if tail else "blank line after its last event"
            self._warn(f"the stream ended without the {what}; that event was read anyway", out, None, name)
            read = True
            self._dispatch(obj, name, out)
        if not read:
            self._warn("the stream ended inside an unterminated event; its bytes were discarded", out)

    def _items(self, items: list[tuple[bytes, bytes, str | None] | SSEComment], out: list[Event]) -> None:
        for item in items:
            if type(item) is tuple:
                self._event(item[0], item[1], out)
            else:
                assert isinstance(item, SSEComment)
                self._on_comment(item.text)

    def _event(self, name_b: bytes, raw: bytes, out: list[Event]) -> None:
        """One dispatched SSE event: its name and data, undecoded."""
        name = _EVENT_NAMES.get(name_b) or name_b.decode("utf-8", "replace")
        try:
            obj = self._decode(raw, name)
        except StreamError as exc:
            if self.state is not MessageState.DONE:
                raise
            self._warn(f"expected nothing after message_stop, got bad data ({exc.message}); ignored", out)
            return
        self._dispatch(obj, name, out)

    def _dispatch(self, obj: Any, name: str, out: list[Event]) -> None:
        if (
            type(obj) is dict
            and obj.get("type") == "content_block_delta"
            and self.state is MessageState.STREAMING
            and (name == "content_block_delta" or name == "message")
            and self._fast_delta(obj, out)
        ):
            self.event_count += 1  # a well-formed text or tool-input delta, checks inlined
            return
        self._handle(obj, name, out)

    def _decode(self, raw: bytes, name: str | None, what: str = "the data line") -> Any:
        """An event's JSON, strictly, after checking its nesting (json's decoder recurses)."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")  # as the SSE spec decodes
        if _too_deep(text, self._max_depth):
            raise LimitExceededError(
                f"expected JSON nested at most {self._max_depth} levels in {what}, got deeper",
                event=name,
                state=self.state,
                event_number=self.event_count,
            )
        try:
            try:
                obj, end = _scan_once(text, 0)
                if end == len(text):
                    return obj
            except StopIteration:
                pass
            return _STRICT.decode(text)  # whitespace around the value, or an error to describe
        except (ValueError, StopIteration) as exc:
            raise MalformedEventError(
                f"expected a JSON object in {what}, got {raw[:80]!r} ({exc})",
                event=name,
                state=self.state,
                event_number=self.event_count,
            ) from None

    def _feed_jsonl(self, data: bytes, out: list[Event]) -> None:
        if b"\n" not in data:
            self._lines.append(data)
            self._lines_len += len(data)
            if self._lines_len > self._max_line:
                raise LimitExceededError(f"a JSON line exceeded {self._max_line} bytes")
            return
        if self._lines:
            self._lines.append(data)
            data = b"".join(self._lines)
            self._lines.clear()
        lines = data.split(b"\n")
        rest = lines.pop()
        self._lines_len = len(rest)
        if rest:
            self._lines.append(rest)
        for line in lines:
            self._jsonl_line(line, out)
        if self._lines_len > self._max_line:
            raise LimitExceededError(f"a JSON line exceeded {self._max_line} bytes")

    def _jsonl_line(self, line: bytes, out: list[Event]) -> None:
        if len(line) > self._max_line:
            raise LimitExceededError(f"a JSON line exceeded {self._max_line} bytes")
        if not line.strip():
            return
        try:
            obj = self._decode(line, None, "the line")
        except StreamError as exc:
            if self.state is not MessageState.DONE:
                raise
            self._warn(f"expected nothing after message_stop, got bad data ({exc.message}); ignored", out)
            return
        self._handle(obj, None, out)

    def _event_object(self, event: object) -> Any:
        """What ``feed_event`` was given, as a dict (None: an SDK helper event, skipped)."""
        if isinstance(event, dict):
            obj: Any = event
        elif isinstance(event, Mapping):
            obj = dict(event)
        else:
            to_dict = getattr(event, "to_dict", None) or getattr(event, "model_dump", None)
            if to_dict is None:
                return event  # not an event object: _handle says so
            if getattr(event, "type", None) in SDK_HELPER_EVENTS:
                return None
            try:
                obj = to_dict()
            except Exception as exc:  # a foreign object's own failure, told as ours
                raise MalformedEventError(
                    f"expected an event object, got a {type(event).__name__} that could not be read "
                    f"({type(exc).__name__})",
                    state=self.state,
                    event_number=self.event_count,
                ) from None
        fault = _object_fault(obj, self._max_depth) if isinstance(obj, dict) else None
        if fault is not None:
            error = LimitExceededError if fault.startswith("nested") else MalformedEventError
            raise error(f"expected an event object {fault}", state=self.state, event_number=self.event_count)
        return obj

    def _on_comment(self, text: str) -> None:
        if text.startswith("t="):
            try:
                self.clock = float(text[2:])
            except ValueError:
                pass  # a comment that only looks like timing: comments carry no meaning in SSE

    # ---------------------------------------------------------------- events out

    def _warn(
        self, message: str, out: list[Event], index: int | None = None, event: str | None = None
    ) -> None:
        self._flush(out)
        warning = ParserWarning(message=message, index=index, event_type=event)
        self.warning_count += 1
        if len(self.warnings) < self.limits.max_warnings:
            self.warnings.append(warning)
        out.append(warning)

    def _fail(self, error: StreamError, out: list[Event]) -> None:
        if error.state is None:
            error.state = str(self.state)
        self._flush(out)  # deltas read before the fault are reported before it
        why = f"the stream failed before the block ended: {error.message}"
        self._cut_open_blocks(why, out)
        self.state = MessageState.FAILED
        self.error = error
        out.append(StreamFailed(error=error))

    def _accumulate(self, block: Block, kind: int, fragment: str, out: list[Event]) -> None:
        """One text, thinking or tool-input fragment: counted against the limits, then coalesced."""
        if block.dropped:
            return
        n = len(fragment)
        if block.chars + n > self._max_block_chars:
            if block.scanner is not None:
                self._drop(block, out)
                return
            raise self._limit(block, f"{self._max_block_chars} characters in one block")
        if self._chars + n > self._max_message_chars:
            raise self._limit(block, f"{self._max_message_chars} characters in one message")
        if not n:
            return
        block.chars += n
        self._chars += n
        if self._acc is not block or self._acc_kind != kind:
            self._flush(out)
            self._acc, self._acc_kind = block, kind
        self._acc_parts.append(fragment)

    def _flush(self, out: list[Event]) -> None:
        """Report the coalesced deltas as one event (and feed a tool's scanner once)."""
        block = self._acc
        if block is None:
            return
        self._acc = None
        parts = self._acc_parts
        text = parts[0] if len(parts) == 1 else "".join(parts)
        self._acc_parts = []
        kind = self._acc_kind
        if kind == _JSON:
            scanner = block.scanner
            assert scanner is not None
            fields = scanner.feed(text)
            tool_id = block.tool_id or ""
            out.append(ToolInputDelta(index=block.index, tool_id=tool_id, partial_json=text))
            for key, value in fields:
                out.append(
                    ToolFieldCompleted(
                        index=block.index,
                        tool_id=tool_id,
                        tool_name=block.tool_name or "",
                        field=key,
                        value=value,
                    )
                )
        else:
            block.chunks.append(text)
            out.append(
                TextDelta(index=block.index, text=text)
                if kind == _TEXT
                else ThinkingDelta(index=block.index, thinking=text)
            )

    def _drop(self, block: Block, out: list[Event]) -> None:
        """A tool input grew past the block limit: keep none of it; the call will be rejected."""
        self._flush(out)  # what came before is reported as it would be for any chunking
        limit = self._max_block_chars
        self._chars -= block.chars
        block.chars = 0
        block.dropped = True
        block.reason = f"input exceeded {limit} characters; it was not kept"
        block.scanner = JsonScanner(max_depth=self._max_depth)  # frees the input read so far
        self._warn(
            f"tool input over {limit} characters: dropped, the call will not run",
            out,
            block.index,
            "content_block_delta",
        )

    def _limit(self, block: Block, what: str) -> LimitExceededError:
        return LimitExceededError(
            f"expected at most {what}, got more",
            index=block.index,
            event="content_block_delta",
            state=self.state,
            event_number=self.event_count - 1,
        )

    def _malformed(self, message: str, etype: str, index: int | None = None) -> MalformedEventError:
        return MalformedEventError(
            message, index=index, event=etype, state=self.state, event_number=self.event_count - 1
        )

    def _cut_open_blocks(self, why: str, out: list[Event]) -> None:
        """Blocks still open will never get their stop: none of them may run."""
        for block in self.blocks:
            if block.status is not BlockStatus.STREAMING:
                continue
            block.stopped_at = self.clock
            if block.type in CLIENT_TOOL_TYPES:
                block.status = BlockStatus.TRUNCATED
                block.reason = why
                out.append(
                    ToolRejected(
                        index=block.index,
                        tool_id=block.tool_id or "",
                        tool_name=block.tool_name or "",
                        status=BlockStatus.TRUNCATED,
                        reason=why,
                    )
                )
            else:
                block.status = (
                    BlockStatus.SERVER_SIDE
                    if is_server_side(block.type)
                    else BlockStatus.UNKNOWN
                    if not is_known_block(block.type)
                    else BlockStatus.TRUNCATED
                )
                out.append(BlockStopped(index=block.index, block_type=block.type, status=block.status))

    # ---------------------------------------------------------------- the transition table

    def _handle(self, obj: Any, sse_event: str | None, out: list[Event]) -> None:
        """One event object, through the transition table."""
        if type(obj) is not dict:
            if self.state is MessageState.DONE:
                self._warn(f"expected nothing after message_stop, got a {type(obj).__name__}; ignored", out)
                return
            raise MalformedEventError(
                f"expected a JSON object, got {type(obj).__name__}",
                event=sse_event,
                state=self.state,
                event_number=self.event_count,
            )
        etype = obj.get("type")
        if type(etype) is not str:
            if sse_event is not None and sse_event != "message":
                etype = sse_event  # the SSE event name is the type when the data leaves it out
            elif self.state is MessageState.AWAITING_START:
                # Nothing is built yet that it could corrupt (see _states): kept, with a warning.
                self.event_count += 1
                self._warn("expected a 'type' string in the event object, got none; kept", out)
                out.append(UnknownEvent(event_type="message", data=obj))
                return
            elif self.state is MessageState.DONE:
                self._warn("expected nothing after message_stop, got an event without a type; ignored", out)
                return
            else:
                raise MalformedEventError(
                    "expected a 'type' string in the event object",
                    event=sse_event,
                    state=self.state,
                    event_number=self.event_count,
                )
        if etype in SDK_HELPER_EVENTS:
            return  # the SDK's own summary of raw events that are also here
        number = self.event_count
        self.event_count += 1
        if sse_event is not None and sse_event != etype and sse_event != "message":
            self._warn(
                f"SSE event name {sse_event!r} differs from the data's type {etype!r}", out, None, etype
            )
        if etype == "content_block_delta" and self.state is MessageState.STREAMING:
            if not self._fast_delta(obj, out):
                self._on_delta(obj, out)
            return
        if etype == "ping":
            return
        self._flush(out)
        if self.state is MessageState.DONE:
            self._warn(f"expected nothing after message_stop, got {etype}; ignored", out, None, etype)
            return
        if etype == "error":
            err = obj.get("error")
            err = err if isinstance(err, dict) else {}
            raise UpstreamError(
                str(err.get("type") or "unknown_error"),
                str(err.get("message") or ""),
                event=etype,
                state=self.state,
                event_number=number,
            )
        if etype not in KNOWN_EVENT_TYPES:
            self._warn(f"unknown event type {etype!r}, kept verbatim", out, None, etype)
            out.append(UnknownEvent(event_type=etype, data=obj))
            return
        key = (self.state, etype)
        if key not in MESSAGE_TRANSITIONS:
            raise ProtocolError(
                f"expected {_EXPECTED.get(self.state, 'nothing')}, got {etype}",
                event=etype,
                state=self.state,
                event_number=number,
            )
        next_state = MESSAGE_TRANSITIONS[key]
        if next_state is None:
            self._warn(f"expected message_start, got {etype}; ignored (it names no block)", out, None, etype)
            return
        if etype == "content_block_start":
            self._on_block_start(obj, out)
        elif etype == "content_block_stop":
            self._on_block_stop(obj, out)
        elif etype == "message_delta":
            self._on_message_delta(obj, out)
        elif etype == "message_start":
            self._on_message_start(obj, out)
        elif etype == "message_stop":
            self._on_message_stop(out)
        self.state = next_state

    def _index(self, obj: dict[str, Any], etype: str) -> int:
        index = obj.get("index")
        if type(index) is not int or index < 0:
            raise self._malformed(f"expected a non-negative integer 'index', got {index!r}", etype)
        return index

    def _open_block(self, obj: dict[str, Any], etype: str) -> Block:
        index = self._index(obj, etype)
        block = self._blocks.get(index)
        if block is None:
            raise ProtocolError(
                f"expected a content_block_start for index {index} first, got {etype}",
                index=index,
                event=etype,
                state=self.state,
                event_number=self.event_count - 1,
            )
        if block.status is not BlockStatus.STREAMING:
            raise ProtocolError(
                f"expected no more events for index {index} after its content_block_stop, got {etype}",
                index=index,
                event=etype,
                state=self.state,
                event_number=self.event_count - 1,
            )
        return block

    def _on_message_start(self, obj: dict[str, Any], out: list[Event]) -> None:
        message = obj.get("message")
        if type(message) is not dict:
            raise self._malformed("expected a 'message' object in message_start", "message_start")
        usage = message.get("usage")
        if usage is not None and type(usage) is not dict:
            raise self._malformed(
                f"expected a 'usage' object in message_start, got {type(usage).__name__}", "message_start"
            )
        self._start = message
        self._usage = dict(usage) if usage else {}
        out.append(MessageStarted(message=message))

    def _on_block_start(self, obj: dict[str, Any], out: list[Event]) -> None:
        etype = "content_block_start"
        index = self._index(obj, etype)
        start = obj.get("content_block")
        if type(start) is not dict or type(start.get("type")) is not str:
            raise self._malformed("expected a 'content_block' object with a 'type' string", etype, index)
        btype: str = start["type"]
        for field, types, required in START_FIELDS.get(btype, ()):
            value = start.get(field)
            if (value is not None or required) and not isinstance(value, types):
                raise self._malformed(
                    f"expected {field!r} of a {btype} block to be "
                    f"{' or '.join('null' if t is type(None) else t.__name__ for t in types)}, "
                    f"got {type(value).__name__}",
                    etype,
                    index,
                )
        if index in self._blocks:
            raise ProtocolError(
                f"expected a new index, got a second content_block_start for index {index}",
                index=index,
                event=etype,
                state=self.state,
                event_number=self.event_count - 1,
            )
        if len(self._blocks) >= self.limits.max_blocks:
            raise LimitExceededError(
                f"expected at most {self.limits.max_blocks} content blocks, got more",
                index=index,
                event=etype,
                state=self.state,
                event_number=self.event_count - 1,
            )
        block = Block(index=index, type=btype, start=start, started_at=self.clock)
        if btype in INPUT_STREAMING_TYPES:
            tool_id = block.tool_id
            assert tool_id is not None  # START_FIELDS requires it
            other = self._tool_ids.get(tool_id)
            if other is not None:
                # Two calls, one id: a tool_result could not say which it answers.
                raise ProtocolError(
                    f"expected a new tool id, got {tool_id!r} again (block {other} has it)",
                    index=index,
                    event=etype,
                    state=self.state,
                    event_number=self.event_count - 1,
                )
            self._tool_ids[tool_id] = index
            block.scanner = JsonScanner(max_depth=self._max_depth)
        if index != len(self._blocks):
            self._warn(f"expected block index {len(self._blocks)}, got {index}", out, index, etype)
        if not is_known_block(btype):
            self._warn(f"unknown block type {btype!r}, kept verbatim", out, index, etype)
        self._blocks[index] = block
        out.append(
            BlockStarted(
                index=index,
                block_type=btype,
                block=start,
                tool_id=block.tool_id if block.scanner is not None else None,
                tool_name=block.tool_name if block.scanner is not None else None,
            )
        )

    def _fast_delta(self, obj: dict[str, Any], out: list[Event]) -> bool:
        """The common, well-formed text and tool-input deltas, with the checks inlined.

        Returns False for anything else (or anything wrong), which ``_on_delta`` then handles in full.
        """
        index = obj.get("index")
        block = self._blocks.get(index) if type(index) is int else None
        delta = obj.get("delta")
        if block is None or block.status is not BlockStatus.STREAMING or type(delta) is not dict:
            return False
        dtype = delta.get("type")
        if dtype == "input_json_delta":
            if block.scanner is None:
                return False
            fragment = delta.get("partial_json")
            kind = _JSON
        elif dtype == "text_delta":
            if block.type != "text":
                return False
            fragment = delta.get("text")
            kind = _TEXT
        else:
            return False
        if type(fragment) is not str:
            return False
        self._accumulate(block, kind, fragment, out)
        return True

    def _on_delta(self, obj: dict[str, Any], out: list[Event]) -> None:
        etype = "content_block_delta"
        block = self._open_block(obj, etype)
        delta = obj.get("delta")
        dtype = delta.get("type") if type(delta) is dict else None
        if type(dtype) is not str:
            raise self._malformed("expected a 'delta' object with a 'type' string", etype, block.index)
        assert type(delta) is dict
        targets = DELTA_TARGETS.get(dtype)
        if targets is None or block.type not in targets:
            what = "unknown delta type" if targets is None else "delta type"
            self._warn(f"{what} {dtype!r} on a {block.type} block, kept verbatim", out, block.index, etype)
            self._grow(block, _size(delta))
            block.extra_deltas.append(delta)
            out.append(BlockDelta(index=block.index, delta=delta))
            return
        if dtype == "input_json_delta":
            self._accumulate(block, _JSON, self._string(delta, "partial_json", block), out)
        elif dtype == "text_delta":
            self._accumulate(block, _TEXT, self._string(delta, "text", block), out)
        elif dtype == "thinking_delta":
            self._accumulate(block, _THINKING, self._string(delta, "thinking", block), out)
        elif dtype == "signature_delta":
            signature = self._string(delta, "signature", block)
            self._flush(out)
            self._grow(block, len(signature))
            block.signature = signature
            out.append(BlockDelta(index=block.index, delta=delta))
        else:  # citations_delta
            citation = delta.get("citation")
            if type(citation) is not dict:
                raise self._malformed(
                    f"expected a 'citation' object in citations_delta, got {type(citation).__name__}",
                    etype,
                    block.index,
                )
            self._flush(out)
            self._grow(block, _size(citation))
            block.citations.append(citation)
            out.append(BlockDelta(index=block.index, delta=delta))

    def _string(self, delta: dict[str, Any], key: str, block: Block) -> str:
        value = delta.get(key)
        if type(value) is not str:
            raise self._malformed(
                f"expected a string '{key}' in {delta.get('type')}, got {type(value).__name__}",
                "content_block_delta",
                block.index,
            )
        return value

    def _grow(self, block: Block, n: int) -> None:
        """Count characters kept verbatim (signatures, citations, unknown deltas); they cannot drop."""
        if block.chars + n > self._max_block_chars:
            raise self._limit(block, f"{self._max_block_chars} characters in one block")
        if self._chars + n > self._max_message_chars:
            raise self._limit(block, f"{self._max_message_chars} characters in one message")
        block.chars += n
        self._chars += n

    def _on_block_stop(self, obj: dict[str, Any], out: list[Event]) -> None:
        block = self._open_block(obj, "content_block_stop")
        block.stopped_at = self.clock
        if block.type in CLIENT_TOOL_TYPES:
            self._settle_tool(block, out)
            return
        scanner = block.scanner
        if scanner is not None and scanner.size and scanner.error is None and not block.dropped:
            block.input = scanner.value()
            if block.input is None:
                block.input, _ = strict_object(scanner.text())
        if is_server_side(block.type):
            block.status = BlockStatus.SERVER_SIDE
        elif is_known_block(block.type):
            block.status = BlockStatus.DONE
        else:
            block.status = BlockStatus.UNKNOWN
        out.append(BlockStopped(index=block.index, block_type=block.type, status=block.status))

    def _settle_tool(self, block: Block, out: list[Event]) -> None:
        """A client tool_use block stopped: one strict parse decides whether it may run."""
        scanner = block.scanner
        assert scanner is not None
        value: dict[str, Any] | None
        if block.dropped:
            value, why = None, block.reason
        elif scanner.too_deep:
            # Never handed to json.loads, which recurses: the scanner stopped at the limit.
            value, why = None, f"input is not valid JSON: {scanner.error}"
        elif scanner.error is not None:
            # A syntax error: json.loads stops at it too, so what it reads nests no deeper than the
            # limit; its message is the one callers know.
            value, why = strict_object(scanner.text())
        elif scanner.size:
            # The scanner decoded every member as it completed: when that was strict, those values
            # are the input (no second parse, no second copy); else one strict json.loads decides.
            value = scanner.value()
            why = None
            if value is None:
                value, why = strict_object(scanner.text())
        else:
            start_input = block.start.get("input")
            value, why = (start_input if start_input is not None else {}), None
        tool_id, name = block.tool_id, block.tool_name
        assert tool_id is not None and name is not None  # START_FIELDS requires them
        if value is None:
            block.status = BlockStatus.INVALID
            block.reason = why
            out.append(
                ToolRejected(
                    index=block.index,
                    tool_id=tool_id,
                    tool_name=name,
                    status=BlockStatus.INVALID,
                    reason=why or "invalid input",
                )
            )
            return
        block.status = BlockStatus.READY
        block.input = value
        call = ToolCall(id=tool_id, name=name, input=value, index=block.index)
        self._ready.append(call)
        out.append(ToolReady(index=block.index, call=call))

    def _on_message_delta(self, obj: dict[str, Any], out: list[Event]) -> None:
        etype = "message_delta"
        delta = obj.get("delta")
        usage = obj.get("usage")
        if type(delta) is not dict:
            raise self._malformed("expected a 'delta' object in message_delta", etype)
        if usage is not None and type(usage) is not dict:
            got = type(usage).__name__
            raise self._malformed(f"expected a 'usage' object in message_delta, got {got}", etype)
        for field, types in MESSAGE_DELTA_FIELDS:
            value = delta.get(field)
            if not isinstance(value, types):
                raise self._malformed(
                    f"expected {field!r} in message_delta to be a string or null, got {type(value).__name__}",
                    etype,
                )
        self._delta.update(delta)
        usage = usage or {}
        for key, value in usage.items():
            # Cumulative counts: they replace; an omitted (null) optional count keeps the earlier value.
            if value is not None or key == "output_tokens":
                self._usage[key] = value
        stop = delta.get("stop_reason")
        if stop is not None:
            # No content_block_stop follows a message_delta: whatever is open was cut off.
            self._cut_open_blocks(f"the block was cut off before its end (stop_reason {stop})", out)
        out.append(MessageDelta(delta=delta, usage=usage))

    def _on_message_stop(self, out: list[Event]) -> None:
        self._cut_open_blocks(f"the block was cut off before its end (stop_reason {self.stop_reason})", out)
        self.stopped_at = self.clock
        out.append(MessageStopped(stop_reason=self.stop_reason, message=self.message()))
