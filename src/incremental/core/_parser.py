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

What is fatal and what is a warning (see ``_states`` for the transitions):

    fatal (StreamFailed, then the parser refuses input)    warning (ParserWarning, the stream goes on)
    -----------------------------------------------------  ----------------------------------------------
    event: error from the API (UpstreamError)              an event type we do not know (kept verbatim)
    data that is not a JSON object / lacks its fields      a block type we do not know (kept verbatim)
    an event before message_start                          a delta type we do not know, or a known delta
    a second message_start                                   on the wrong block type (kept verbatim)
    a delta or stop for an index never started             a block index out of sequence
    a delta, stop or second start for a stopped index      an event after message_stop (ignored)
    a limit crossed (LimitExceededError)                   SSE event name differs from data's type
    bytes ending before message_stop (IncompleteStream)    invalid UTF-8 (replaced, as SSE says)
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable, Mapping
from typing import Any, Literal

from ._blocks import Block, strict_object
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
    MESSAGE_TRANSITIONS,
    BlockStatus,
    MessageState,
    is_known_block,
    is_server_side,
)

__all__ = ["StreamParser"]

Format = Literal["sse", "jsonl", "auto"]

# Events the anthropic SDK's MessageStream adds on top of the raw ones; feeding them would double up.
_SDK_SYNTHETIC_EVENTS = frozenset({"text", "input_json", "thinking", "signature", "citation"})

# The stdlib's C JSON scanner, called directly: json.loads adds a Python-level wrapper per call.
_scan_once: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]

# Event names as they arrive in ``event:`` lines, decoded once.
_EVENT_NAMES: dict[bytes, str] = {n.encode(): n for n in KNOWN_EVENT_TYPES} | {b"": "message"}

_EXPECTED = {
    MessageState.AWAITING_START: "message_start",
    MessageState.STREAMING: "a content block event, message_delta or message_stop",
}


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
        self._start: dict[str, Any] = {}
        self._delta: dict[str, Any] = {}
        self._usage: dict[str, Any] = {}
        self._chars = 0
        self._max_block_chars = self.limits.max_block_chars
        self._max_message_chars = self.limits.max_message_chars
        self._ready: list[ToolCall] = []

    # ---------------------------------------------------------------- feeding

    def feed(self, data: bytes) -> list[Event]:
        """Read a chunk of bytes of any size; return the events it completed."""
        self._check_open()
        out: list[Event] = []
        try:
            if self._format == "auto":
                stripped = data.lstrip()
                if not stripped:
                    return out  # undecided: nothing but whitespace so far (harmless to drop)
                self._format = "jsonl" if stripped[:1] == b"{" else "sse"
            if self._format == "jsonl":
                for obj in self._json_lines(data):
                    self._handle(obj, None, out)
                return out
            scan, names, streaming = _scan_once, _EVENT_NAMES, MessageState.STREAMING
            for item in self._sse.feed_raw(data):
                if type(item) is not tuple:
                    assert isinstance(item, SSEComment)
                    self._on_comment(item.text)
                    continue
                name = names.get(item[0]) or item[0].decode("utf-8", "replace")
                raw = item[1]
                try:
                    text = raw.decode("utf-8")
                    obj, end = scan(text, 0)  # the C scanner directly: json.loads wraps it in Python
                    if end != len(text):
                        obj = self._decode_slow(raw, name)
                except (UnicodeDecodeError, StopIteration, ValueError):
                    obj = self._decode_slow(raw, name)
                if (
                    type(obj) is dict
                    and obj.get("type") == "content_block_delta"
                    and self.state is streaming
                    and (name == "content_block_delta" or name == "message")
                    and self._fast_delta(obj, out)
                ):
                    self.event_count += 1  # the hot path: a well-formed text or tool-input delta
                    continue
                self._handle(obj, name, out)
        except StreamError as exc:
            self._fail(exc, out)
        return out

    def feed_event(self, event: object) -> list[Event]:
        """Read one already-decoded event: a dict, or an ``anthropic`` SDK event model."""
        self._check_open()
        out: list[Event] = []
        obj: Any = event
        if not isinstance(event, Mapping):
            to_dict = getattr(event, "to_dict", None)
            if to_dict is None:
                to_dict = getattr(event, "model_dump", None)
            if to_dict is not None:
                if getattr(event, "type", None) in _SDK_SYNTHETIC_EVENTS:
                    return out  # the SDK's convenience events repeat raw ones we also get
                obj = to_dict()
        try:
            self._handle(obj, None, out)
        except StreamError as exc:
            self._fail(exc, out)
        return out

    def end(self) -> list[Event]:
        """The input ended. Reports blocks cut off and, without ``message_stop``, fails the stream."""
        out: list[Event] = []
        if self.state is MessageState.FAILED:
            return out
        discarded = self._sse.close() or bool(self._lines)
        self._lines.clear()
        if discarded:
            self._warn("the stream ended inside an unterminated event; its bytes were discarded", out)
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

    # ---------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self.state is MessageState.FAILED:
            raise ParserClosedError(f"the stream already failed: {self.error}")

    def _decode_slow(self, raw: bytes, name: str) -> Any:
        """A data payload the fast path could not take: whitespace around it, bad UTF-8, or an error."""
        try:
            return json.loads(raw.decode("utf-8", "replace"))
        except ValueError as exc:
            raise MalformedEventError(
                f"expected a JSON object in the data line, got {raw[:80]!r} ({exc})",
                event=name,
                state=self.state,
                event_number=self.event_count,
            ) from None

    def _on_comment(self, text: str) -> None:
        if text.startswith("t="):
            try:
                self.clock = float(text[2:])
            except ValueError:
                pass  # a comment that only looks like timing: comments carry no meaning in SSE

    def _json_lines(self, data: bytes) -> list[Any]:
        if b"\n" not in data:
            self._lines.append(data)
            self._lines_len += len(data)
            if self._lines_len > self.limits.max_line_bytes:
                raise LimitExceededError(f"a JSON line exceeded {self.limits.max_line_bytes} bytes")
            return []
        if self._lines:
            self._lines.append(data)
            data = b"".join(self._lines)
            self._lines.clear()
        lines = data.split(b"\n")
        rest = lines.pop()
        self._lines_len = len(rest)
        if rest:
            self._lines.append(rest)
        objs: list[Any] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                objs.append(json.loads(line))
            except ValueError as exc:
                raise MalformedEventError(
                    f"expected a JSON object per line, got {line[:80]!r} ({exc})",
                    state=self.state,
                    event_number=self.event_count + len(objs),
                ) from None
        return objs

    def _warn(
        self, message: str, out: list[Event], index: int | None = None, event: str | None = None
    ) -> None:
        warning = ParserWarning(message=message, index=index, event_type=event)
        self.warning_count += 1
        if len(self.warnings) < self.limits.max_warnings:
            self.warnings.append(warning)
        out.append(warning)

    def _fail(self, error: StreamError, out: list[Event]) -> None:
        if error.state is None:
            error.state = str(self.state)
        why = f"the stream failed before the block ended: {error.message}"
        self._cut_open_blocks(why, out)
        self.state = MessageState.FAILED
        self.error = error
        out.append(StreamFailed(error=error))

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

    def _handle(self, obj: Any, sse_event: str | None, out: list[Event]) -> None:
        """One event object, through the transition table."""
        if not isinstance(obj, dict):
            raise MalformedEventError(
                f"expected a JSON object, got {type(obj).__name__}",
                event=sse_event,
                state=self.state,
                event_number=self.event_count,
            )
        etype = obj.get("type")
        if not isinstance(etype, str):
            if sse_event is None or sse_event == "message":
                raise MalformedEventError(
                    "expected a 'type' string in the event object",
                    event=sse_event,
                    state=self.state,
                    event_number=self.event_count,
                )
            etype = sse_event  # the SSE event name is the type when the data leaves it out
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
        next_state = MESSAGE_TRANSITIONS.get((self.state, etype))
        if next_state is None:
            raise ProtocolError(
                f"expected {_EXPECTED.get(self.state, 'nothing')}, got {etype}",
                event=etype,
                state=self.state,
                event_number=number,
            )
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
            raise MalformedEventError(
                f"expected a non-negative integer 'index', got {index!r}",
                event=etype,
                state=self.state,
                event_number=self.event_count - 1,
            )
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
        if not isinstance(message, dict):
            raise MalformedEventError(
                "expected a 'message' object in message_start",
                event="message_start",
                state=self.state,
                event_number=self.event_count - 1,
            )
        self._start = message
        usage = message.get("usage")
        self._usage = dict(usage) if isinstance(usage, dict) else {}
        out.append(MessageStarted(message=message))

    def _on_block_start(self, obj: dict[str, Any], out: list[Event]) -> None:
        index = self._index(obj, "content_block_start")
        start = obj.get("content_block")
        if not isinstance(start, dict) or not isinstance(start.get("type"), str):
            raise MalformedEventError(
                "expected a 'content_block' object with a 'type' string",
                index=index,
                event="content_block_start",
                state=self.state,
                event_number=self.event_count - 1,
            )
        if index in self._blocks:
            raise ProtocolError(
                f"expected a new index, got a second content_block_start for index {index}",
                index=index,
                event="content_block_start",
                state=self.state,
                event_number=self.event_count - 1,
            )
        if len(self._blocks) >= self.limits.max_blocks:
            raise LimitExceededError(
                f"expected at most {self.limits.max_blocks} content blocks, got more",
                index=index,
                event="content_block_start",
                state=self.state,
                event_number=self.event_count - 1,
            )
        btype: str = start["type"]
        if index != len(self._blocks):
            self._warn(
                f"expected block index {len(self._blocks)}, got {index}", out, index, "content_block_start"
            )
        block = Block(index=index, type=btype, start=start, started_at=self.clock)
        if btype in INPUT_STREAMING_TYPES:
            block.scanner = JsonScanner()
        if not is_known_block(btype):
            self._warn(f"unknown block type {btype!r}, kept verbatim", out, index, "content_block_start")
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
            scanner = block.scanner
            fragment = delta.get("partial_json")
            if scanner is None or type(fragment) is not str:
                return False
        elif dtype == "text_delta":
            fragment = delta.get("text")
            if block.type != "text" or type(fragment) is not str:
                return False
            scanner = None
        else:
            return False
        n = len(fragment)
        if block.chars + n > self._max_block_chars or self._chars + n > self._max_message_chars:
            return False  # let the full path raise the limit error
        block.chars += n
        self._chars += n
        if scanner is None:
            block.chunks.append(fragment)
            out.append(TextDelta(index=block.index, text=fragment))
            return True
        fields = scanner.feed(fragment)
        tool_id = block.tool_id or ""
        out.append(ToolInputDelta(index=block.index, tool_id=tool_id, partial_json=fragment))
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
        return True

    def _on_delta(self, obj: dict[str, Any], out: list[Event]) -> None:
        block = self._open_block(obj, "content_block_delta")
        delta = obj.get("delta")
        dtype = delta.get("type") if isinstance(delta, dict) else None
        if not isinstance(dtype, str):
            raise MalformedEventError(
                "expected a 'delta' object with a 'type' string",
                index=block.index,
                event="content_block_delta",
                state=self.state,
                event_number=self.event_count - 1,
            )
        assert isinstance(delta, dict)
        targets = DELTA_TARGETS.get(dtype)
        if targets is None or block.type not in targets:
            what = "unknown delta type" if targets is None else "delta type"
            self._warn(
                f"{what} {dtype!r} on a {block.type} block, kept verbatim",
                out,
                block.index,
                "content_block_delta",
            )
            self._grow(block, len(json.dumps(delta)))
            block.extra_deltas.append(delta)
            out.append(BlockDelta(index=block.index, delta=delta))
            return
        if dtype == "input_json_delta":
            fragment = self._string(delta, "partial_json", block)
            self._grow(block, len(fragment))
            scanner = block.scanner
            assert scanner is not None
            fields = scanner.feed(fragment)
            out.append(ToolInputDelta(index=block.index, tool_id=block.tool_id or "", partial_json=fragment))
            for key, value in fields:
                out.append(
                    ToolFieldCompleted(
                        index=block.index,
                        tool_id=block.tool_id or "",
                        tool_name=block.tool_name or "",
                        field=key,
                        value=value,
                    )
                )
        elif dtype == "text_delta":
            text = self._string(delta, "text", block)
            self._grow(block, len(text))
            block.chunks.append(text)
            out.append(TextDelta(index=block.index, text=text))
        elif dtype == "thinking_delta":
            text = self._string(delta, "thinking", block)
            self._grow(block, len(text))
            block.chunks.append(text)
            out.append(ThinkingDelta(index=block.index, thinking=text))
        elif dtype == "signature_delta":
            signature = self._string(delta, "signature", block)
            self._grow(block, len(signature))
            block.signature = signature
            out.append(BlockDelta(index=block.index, delta=delta))
        else:  # citations_delta
            citation = delta.get("citation")
            self._grow(block, len(json.dumps(citation)))
            block.citations.append(citation)
            out.append(BlockDelta(index=block.index, delta=delta))

    def _string(self, delta: dict[str, Any], key: str, block: Block) -> str:
        value = delta.get(key)
        if not isinstance(value, str):
            raise MalformedEventError(
                f"expected a string '{key}' in {delta.get('type')}, got {type(value).__name__}",
                index=block.index,
                event="content_block_delta",
                state=self.state,
                event_number=self.event_count - 1,
            )
        return value

    def _grow(self, block: Block, n: int) -> None:
        block.chars += n
        self._chars += n
        if block.chars > self.limits.max_block_chars:
            raise LimitExceededError(
                f"expected at most {self.limits.max_block_chars} characters in one block, got more",
                index=block.index,
                event="content_block_delta",
                state=self.state,
                event_number=self.event_count - 1,
            )
        if self._chars > self.limits.max_message_chars:
            raise LimitExceededError(
                f"expected at most {self.limits.max_message_chars} characters in one message, got more",
                index=block.index,
                event="content_block_delta",
                state=self.state,
                event_number=self.event_count - 1,
            )

    def _on_block_stop(self, obj: dict[str, Any], out: list[Event]) -> None:
        block = self._open_block(obj, "content_block_stop")
        block.stopped_at = self.clock
        if block.type in CLIENT_TOOL_TYPES:
            self._settle_tool(block, out)
            return
        if block.scanner is not None and block.scanner.size:
            value, _ = strict_object(block.scanner.text())
            block.input = value
        if is_server_side(block.type):
            block.status = BlockStatus.SERVER_SIDE
        elif is_known_block(block.type):
            block.status = BlockStatus.DONE
        else:
            block.status = BlockStatus.UNKNOWN
        out.append(BlockStopped(index=block.index, block_type=block.type, status=block.status))

    def _settle_tool(self, block: Block, out: list[Event]) -> None:
        """A client tool_use block stopped: one strict parse decides whether it may run."""
        assert block.scanner is not None
        if block.scanner.size:
            value, why = strict_object(block.scanner.text())
        else:
            start_input = block.start.get("input", {})
            value, why = (
                (start_input, None) if isinstance(start_input, dict) else (None, "input is not an object")
            )
        tool_id, name = block.tool_id, block.tool_name
        if tool_id is None or name is None:
            value, why = None, "the tool_use block has no string 'id' and 'name'"
        if value is None:
            block.status = BlockStatus.INVALID
            block.reason = why
            out.append(
                ToolRejected(
                    index=block.index,
                    tool_id=tool_id or "",
                    tool_name=name or "",
                    status=BlockStatus.INVALID,
                    reason=why or "invalid input",
                )
            )
            return
        assert tool_id is not None and name is not None
        block.status = BlockStatus.READY
        block.input = value
        call = ToolCall(id=tool_id, name=name, input=value, index=block.index)
        self._ready.append(call)
        out.append(ToolReady(index=block.index, call=call))

    def _on_message_delta(self, obj: dict[str, Any], out: list[Event]) -> None:
        delta = obj.get("delta")
        usage = obj.get("usage")
        if not isinstance(delta, dict):
            raise MalformedEventError(
                "expected a 'delta' object in message_delta",
                event="message_delta",
                state=self.state,
                event_number=self.event_count - 1,
            )
        self._delta.update(delta)
        usage = usage if isinstance(usage, dict) else {}
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
