"""Record Messages API exchanges to a folder, so that they can be inspected, replayed and served again.

A ``Recorder`` saves each ``POST /v1/messages`` exchange it is told about; ``RecordingProxy`` is a
loopback HTTP proxy that forwards every request unchanged to an upstream (the real Messages API by
default), streams the answer back as it arrives, and tells its recorder. The built-in model client
takes ``record_to=DIR`` (or a ``Recorder``) and records each attempt it makes, through
``Recorder.begin_request`` and ``Exchange.follow``.

Layout of a recording folder::

    DIR/conv-001/turn-00.request.json    the request: method, path, headers (secrets left out), body
    DIR/conv-001/turn-00.sse             a streamed answer: the bytes as received, with a `: t=SECONDS`
                                         comment before each event (seconds since the request was sent)
    DIR/conv-001/turn-00.response.json   status, headers, timing and how it ended; the body itself when
                                         the answer was not streamed (a non-streaming reply, an error)
    DIR/conv-001/retried/turn-00.1.*     an earlier attempt at the same turn (an error, a cut stream)

``incremental replay DIR/conv-001/turn-*.sse`` and ``FakeMessagesAPI(turn_files(DIR / "conv-001"))``
play a conversation back.

**Conversations.** A request continues a conversation when its ``messages`` begin with the messages of
that conversation's last request and hold more of them (the previous answer and the tool results
after it); it is the next turn. A request with the same messages as a last attempt that failed (an
error status, a stream without ``message_stop``, a cut connection) is a retry of that turn: the earlier
attempt moves to ``retried/``. Anything else starts a new conversation. ``cache_control`` markers and
null values are ignored in this comparison (clients move the one and add the other).

**What is never written.** Request headers whose name holds ``auth``, ``key``, ``token``, ``secret``,
``cookie`` or ``password`` (``x-api-key``, ``authorization``, ...): only their names are listed, under
``redacted_headers``. ``mcp_servers[].authorization_token`` in the body. ``set-cookie`` and
``anthropic-organization-id`` in the response headers.

**Timing.** Each event's ``: t=`` comment is the time its last byte (the blank line that ends it)
arrived, so a reader's clock at that event is when a client could first act on it. Timing comments the
upstream itself sent (a fake API replaying a recording sends them) are replaced by the recorder's own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import httpx
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from ._serving import LoopbackServer, start_server

__all__ = [
    "DEFAULT_UPSTREAM",
    "Exchange",
    "Recorder",
    "RecordingProxy",
    "Saved",
    "TimedSSEWriter",
    "strip_timing",
    "turn_files",
]

logger = logging.getLogger(__name__)

DEFAULT_UPSTREAM = "https://api.anthropic.com"

_TIMING_LINE = re.compile(rb":[ ]?t=\d+(?:\.\d*)?")
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|password", re.IGNORECASE)
_DROPPED_RESPONSE_HEADERS = frozenset({"set-cookie", "anthropic-organization-id"})
_BOM = b"\xef\xbb\xbf"
_DATA_TYPE = re.compile(rb'^data:\s*\{\s*"type"\s*:\s*"(\w+)"')
_STOP_REASON = re.compile(rb'"stop_reason"\s*:\s*"(\w+)"')
_CONVERSATION = re.compile(r"conv-(\d+)")


def strip_timing(data: bytes) -> bytes:
    """``data`` without its ``: t=SECONDS`` timing comment lines (any line ending)."""
    return b"".join(
        line for line in data.splitlines(keepends=True) if not _TIMING_LINE.fullmatch(line.rstrip(b"\r\n"))
    )


def turn_files(conversation: str | Path) -> list[Path]:
    """A recorded conversation's streamed turns, in order (``turn-00.sse``, ``turn-01.sse``, ...)."""
    return sorted(Path(conversation).glob("turn-*.sse"))


# ---------------------------------------------------------------- timed SSE bytes


class TimedSSEWriter:
    """Writes SSE bytes as received, with a ``: t=SECONDS`` comment line before each event.

    ``feed(chunk, at)`` takes chunks split anywhere (inside a CRLF pair too); an event is written once
    its blank line has arrived, timed ``at`` of the chunk that completed it. The comment uses the line
    ending of the event's first field line. Groups of lines without a field (only comments or blank
    lines) get no timing comment. ``close(at)`` writes what is left: an event without its blank line
    is written as received, timed by the last chunk.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._line = bytearray()  # the line being received, without its ending
        self._pending_cr = False  # the last chunk ended with CR: an LF next belongs to that line
        self._last = "none"  # where the last line went: "group", "written" or "dropped"
        self._group: list[bytes] = []  # lines (with their endings) of the event being received
        self._has_field = False
        self._head = b""  # the first bytes, held while a UTF-8 byte-order mark may be arriving
        self._started = False
        self.events = 0  # events written, each with its timing comment
        self.bytes = 0  # bytes received
        self.kinds: set[str] = set()  # the event types seen (`event:` lines, else the data's "type")
        self.stop_reason: str | None = None  # from message_delta

    def feed(self, chunk: bytes, at: float) -> None:
        self.bytes += len(chunk)
        if not self._started:
            chunk = self._head + chunk
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._head = chunk
                return
            self._started, self._head = True, b""
            if chunk.startswith(_BOM):
                self._out.write(_BOM)  # the mark stays first, where readers look for it
                chunk = chunk[len(_BOM) :]
        i, n = 0, len(chunk)
        if self._pending_cr and n:
            self._pending_cr = False
            if chunk[0] == 0x0A:  # the LF of a CRLF split between chunks
                if self._last == "group":
                    self._group[-1] += b"\n"
                elif self._last == "written":
                    self._out.write(b"\n")
                i = 1
        cr = lf = -2  # the next CR and LF at or after i (-1: none left); each is searched for once
        while i < n:
            if cr != -1 and cr < i:
                cr = chunk.find(b"\r", i)
            if lf != -1 and lf < i:
                lf = chunk.find(b"\n", i)
            if cr < 0 and lf < 0:
                self._line += chunk[i:]
                return
            j = lf if cr < 0 or (0 <= lf < cr) else cr
            if chunk[j] == 0x0D and j + 1 < n and chunk[j + 1] == 0x0A:
                ending = b"\r\n"
            elif chunk[j] == 0x0D:
                ending = b"\r"
                self._pending_cr = j + 1 == n
            else:
                ending = b"\n"
            self._line += chunk[i:j]
            self._end_line(ending, at)
            i = j + len(ending)

    def _end_line(self, ending: bytes, at: float | None) -> None:
        line = bytes(self._line)
        self._line.clear()
        if line and _TIMING_LINE.fullmatch(line):
            self._last = "dropped"  # the upstream's own timing: the recorder's replaces it
            return
        self._group.append(line + ending)
        self._last = "group"
        if line and not line.startswith(b":"):
            self._has_field = True
            self._note(line)
        if not line:
            self._flush(at)

    def _note(self, line: bytes) -> None:
        """Keep what says how the stream went: its event types and its stop reason."""
        if line.startswith(b"event:"):
            self.kinds.add(line[6:].strip().decode("utf-8", "replace"))
        elif line.startswith(b"data:"):
            if (m := _DATA_TYPE.search(line)) is not None:
                self.kinds.add(m.group(1).decode())
            if b"stop_reason" in line and (m := _STOP_REASON.search(line)) is not None:
                self.stop_reason = m.group(1).decode()

    def _flush(self, at: float | None) -> None:
        if self._has_field and at is not None:
            first = next(x for x in self._group if x.rstrip(b"\r\n") and not x.startswith(b":"))
            eol = first[len(first.rstrip(b"\r\n")) :] or b"\n"
            self._out.write(b": t=%.3f%s" % (max(at, 0.0), eol))
            self.events += 1
        self._out.write(b"".join(self._group))
        self._group.clear()
        self._has_field = False
        self._last = "written"

    def close(self, at: float | None) -> None:
        """The body ended: write the bytes of an unfinished line or event as they came."""
        if self._head:
            self._out.write(self._head)
            self._head = b""
        if self._line:
            line = bytes(self._line)
            self._line.clear()
            if not _TIMING_LINE.fullmatch(line):
                self._has_field = self._has_field or not line.startswith(b":")
                self._group.append(line)
        if self._group:
            self._flush(at)


# ---------------------------------------------------------------- what is written


def _normalised(value: Any) -> Any:
    """For comparing requests: no ``cache_control`` markers, no null values, keys in any order."""
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items() if k != "cache_control" and v is not None}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    return value


def _safe_headers(headers: Iterable[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if _SECRET_HEADER.search(lower):
            if lower not in dropped:
                dropped.append(lower)
            continue
        kept[lower] = f"{kept[lower]}, {value}" if lower in kept else value
    return kept, dropped


def _safe_body(body: Any) -> Any:
    if isinstance(body, dict) and isinstance(body.get("mcp_servers"), list):
        servers = [
            {**s, "authorization_token": "[not recorded]"}
            if isinstance(s, dict) and "authorization_token" in s
            else s
            for s in body["mcp_servers"]
        ]
        return {**body, "mcp_servers": servers}
    return body


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Saved:
    """One exchange, written: what the ``incremental record`` log line says about it."""

    conversation: str  # e.g. "conv-001"
    turn: int
    attempt: int  # 1 for the first attempt at this turn, 2 for the first retry, ...
    status: int | None  # None: no response at all (the upstream could not be reached)
    ok: bool  # a 200 that ended normally (a stream: with message_stop)
    outcome: str  # "complete", or how it ended early
    files: list[Path]
    events: int = 0  # SSE events in a streamed answer
    stop_reason: str | None = None
    duration_s: float = 0.0  # from the request being sent to the last byte
    error: str | None = None  # the API's error type and message, for an error status

    @property
    def body_file(self) -> Path:
        return self.files[1] if len(self.files) > 2 else self.files[-1]


@dataclass
class _Turn:
    messages: Any  # the request's messages, normalised (None: not a Messages API request)
    attempts: int = 1
    done: bool = False
    ok: bool = False


@dataclass
class _Conversation:
    name: str
    path: Path
    key: str | None  # the first message, normalised, as JSON (None: never continued)
    turns: list[_Turn] = field(default_factory=list)


class Exchange:
    """One request and its answer, being written. Make it with ``Recorder.begin`` just before sending.

    Tell it ``response(status, headers)`` when the headers arrive, ``data(chunk)`` for each piece of
    the body (as received, any size), and ``finish()`` (or ``finish("why it ended early")``) once.
    """

    def __init__(self, recorder: Recorder, conversation: _Conversation, turn: int, stem: Path) -> None:
        self._recorder = recorder
        self._conversation = conversation
        self._turn = turn
        self._stem = stem  # .../conv-001/turn-00
        self.sent_at = time.monotonic()
        self._status: int | None = None
        self._headers: dict[str, str] = {}
        self._headers_at: float | None = None
        self._last_at: float | None = None
        self._sse: TimedSSEWriter | None = None
        self._sse_file: BinaryIO | None = None
        self._body = bytearray()
        self._decoder: Any = None  # zlib, when the upstream compressed the body anyway
        self._finished = False

    def _elapsed(self) -> float:
        return time.monotonic() - self.sent_at

    def response(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        self._headers_at = self._elapsed()
        self._status = status
        kept: dict[str, str] = {}
        for name, value in headers:
            lower = name.lower()
            if lower not in _DROPPED_RESPONSE_HEADERS:
                kept[lower] = f"{kept[lower]}, {value}" if lower in kept else value
        self._headers = kept
        encoding = kept.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "deflate"):
            self._decoder = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)
        content_type = kept.get("content-type", "").partition(";")[0].strip().lower()
        if status == 200 and content_type == "text/event-stream":
            self._sse_file = self._stem.with_suffix(".sse").open("wb")
            self._sse = TimedSSEWriter(self._sse_file)

    def data(self, chunk: bytes, *, at: float | None = None) -> None:
        """A piece of the body; ``at``: ``time.monotonic()`` when it arrived (default: now)."""
        if not chunk or self._finished:
            return
        at = self._elapsed() if at is None else at - self.sent_at
        self._last_at = at
        if self._decoder is not None:
            chunk = self._decoder.decompress(chunk)
        if self._sse is None:
            self._body += chunk
            return
        self._sse.feed(chunk, at)

    def finish(self, outcome: str | None = None) -> Saved:
        """The exchange is over; ``outcome`` says why it ended early (None: it ended normally)."""
        if self._finished:
            raise RuntimeError("this exchange is already finished")
        self._finished = True
        end = self._elapsed()
        events, stop_reason, error = 0, None, None
        if self._sse is not None and self._sse_file is not None:
            self._sse.close(self._last_at)
            self._sse_file.close()
            events, stop_reason = self._sse.events, self._sse.stop_reason
            if outcome is None and "error" in self._sse.kinds:
                outcome = "the stream ended with an error event"
            elif outcome is None and "message_stop" not in self._sse.kinds:
                outcome = "the stream ended without message_stop"
        ok = outcome is None and self._status == 200
        if self._status is not None and self._status != 200:
            error = self._error_text()
        record: dict[str, Any] = {
            "status": self._status,
            "headers": self._headers,
            "headers_at_s": None if self._headers_at is None else round(self._headers_at, 3),
            "ended_at_s": round(end, 3),
            "outcome": outcome or "complete",
        }
        files = [self._stem.with_suffix(".request.json")]
        if self._sse is not None:
            record["body_file"] = self._stem.with_suffix(".sse").name
            record["events"] = events
            record["bytes"] = self._sse.bytes
            files.append(self._stem.with_suffix(".sse"))
        else:
            record["body"] = self._decoded_body()
        response_file = self._stem.with_suffix(".response.json")
        _write_json(response_file, record)
        files.append(response_file)
        saved = Saved(
            conversation=self._conversation.name,
            turn=self._turn,
            attempt=self._conversation.turns[self._turn].attempts,
            status=self._status,
            ok=ok,
            outcome=outcome or "complete",
            files=files,
            events=events,
            stop_reason=stop_reason,
            duration_s=round(end, 3),
            error=error,
        )
        self._recorder._finished(self._conversation, self._turn, saved)
        return saved

    def follow(self, response: httpx.Response) -> None:
        """Record an ``httpx`` response opened with ``stream=True``: its headers now, its body as it is read.

        The body is recorded whoever reads it (``aiter_bytes``, ``aiter_lines``, an SSE reader); closing
        the response finishes the exchange, saying so when the body was not read to its end.
        """
        self.response(response.status_code, response.headers.multi_items())
        response.stream = _FollowedStream(response.stream, self)

    def _saw_stop(self) -> bool:
        return self._sse is not None and "message_stop" in self._sse.kinds

    def _decoded_body(self) -> Any:
        raw = bytes(self._body)
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _error_text(self) -> str | None:
        body = self._decoded_body()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
            return f"{err.get('type')}: {err.get('message')}"
        return None


class _FollowedStream(httpx.AsyncByteStream):
    """A response body that tells its exchange each chunk as it is read, and finishes it on close."""

    def __init__(self, inner: Any, exchange: Exchange) -> None:
        self._inner = inner
        self._exchange = exchange
        self._outcome: str | None = "the body was closed before its end"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                self._exchange.data(chunk)
                yield chunk
        except httpx.TransportError as exc:
            self._outcome = f"the upstream connection broke: {type(exc).__name__}: {exc}"
            raise
        self._outcome = None

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if not self._exchange._finished:
                # A reader that stops at message_stop, before the body's end, has read the whole stream.
                self._exchange.finish(None if self._exchange._saw_stop() else self._outcome)


class Recorder:
    """Saves exchanges under ``out`` (created if needed), one folder per conversation (module docstring).

    ``on_saved`` is called with a ``Saved`` after each exchange is written. Conversation folders
    already in ``out`` are left alone: new ones are numbered after them.
    """

    def __init__(
        self, out: str | os.PathLike[str], *, on_saved: Callable[[Saved], None] | None = None
    ) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.on_saved = on_saved
        self.saved: list[Saved] = []
        self._lock = threading.Lock()
        self._conversations: list[_Conversation] = []
        numbers = [
            int(m.group(1))
            for p in self.out.iterdir()
            if p.is_dir() and (m := _CONVERSATION.fullmatch(p.name))
        ]
        self._next = max(numbers, default=0) + 1

    def begin(
        self,
        *,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]] | Mapping[str, str],
        body: bytes,
    ) -> Exchange:
        """Write the request and return its ``Exchange``; its clock starts now (send right after)."""
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        items = headers.items() if isinstance(headers, Mapping) else headers
        kept, dropped = _safe_headers(items)
        with self._lock:
            conversation, turn = self._place(parsed)
            stem = conversation.path / f"turn-{turn:02d}"
            request: dict[str, Any] = {
                "method": method,
                "path": path,
                "headers": kept,
                "redacted_headers": dropped,
            }
            if parsed is not None or not body:
                request["body"] = _safe_body(parsed)
            else:
                request["body_text"] = body.decode("utf-8", "replace")
            _write_json(stem.with_suffix(".request.json"), request)
            return Exchange(self, conversation, turn, stem)

    def begin_request(self, request: httpx.Request) -> Exchange:
        """``begin`` for an ``httpx`` request about to be sent (its body already in memory)."""
        path = request.url.raw_path.decode("ascii", "replace")
        return self.begin(
            method=request.method, path=path, headers=request.headers.multi_items(), body=request.content
        )

    def _place(self, body: Any) -> tuple[_Conversation, int]:
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            return self._new(None, None), 0
        normal = _normalised(messages)
        key = json.dumps(normal[0], sort_keys=True, ensure_ascii=False)
        for conversation in reversed(self._conversations):
            if conversation.key != key:
                continue
            last = conversation.turns[-1]
            if not last.done:
                continue
            n = len(last.messages)
            if not last.ok and normal == last.messages:
                k = len(conversation.turns) - 1
                self._retire(conversation, k, last.attempts)
                last.attempts += 1
                last.done = False
                return conversation, k
            if last.ok and len(normal) > n and normal[:n] == last.messages:
                conversation.turns.append(_Turn(normal))
                return conversation, len(conversation.turns) - 1
        return self._new(key, normal), 0

    def _new(self, key: str | None, messages: Any) -> _Conversation:
        while True:
            name = f"conv-{self._next:03d}"
            self._next += 1
            path = self.out / name
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue  # made by someone else meanwhile: take the next number
        conversation = _Conversation(name, path, key, [_Turn(messages)])
        self._conversations.append(conversation)
        return conversation

    def _retire(self, conversation: _Conversation, turn: int, attempt: int) -> None:
        """Move an earlier attempt's files to ``retried/turn-KK.N.*``."""
        retried = conversation.path / "retried"
        retried.mkdir(exist_ok=True)
        stem = f"turn-{turn:02d}"
        for path in sorted(conversation.path.glob(f"{stem}.*")):
            path.rename(retried / f"{stem}.{attempt}{path.name[len(stem) :]}")

    def _finished(self, conversation: _Conversation, turn: int, saved: Saved) -> None:
        with self._lock:
            state = conversation.turns[turn]
            state.done, state.ok = True, saved.ok and state.messages is not None
            self.saved.append(saved)
        if self.on_saved is not None:
            self.on_saved(saved)


# ---------------------------------------------------------------- the proxy

# Hop-by-hop headers (RFC 9110 7.6.1) and those httpx or uvicorn set themselves.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED_UP = _HOP_BY_HOP | {"host", "content-length", "accept-encoding"}
_NOT_FORWARDED_DOWN = _HOP_BY_HOP
_UNFINISHED = "ASGI callable returned without completing response."


class _QuietCuts(logging.Filter):
    """uvicorn logs an error when a response ends unfinished; the proxy cuts on purpose, and says so."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _UNFINISHED


def _error_body(status: int, message: str) -> bytes:
    error_type = "api_error" if status >= 500 else "invalid_request_error"
    return json.dumps({"type": "error", "error": {"type": error_type, "message": message}}).encode()


class RecordingProxy:
    """A loopback HTTP proxy in front of ``upstream`` that records every ``POST /v1/messages``.

    ::

        async with RecordingProxy("recordings", upstream="https://api.anthropic.com") as proxy:
            client = anthropic.AsyncAnthropic(base_url=proxy.url)  # its API key is forwarded, not saved

    Every request (any path) is forwarded with its headers and body unchanged, except the hop-by-hop
    headers and ``accept-encoding``: the proxy asks for an uncompressed body, so the recording holds
    the bytes the client gets. The answer is sent back piece by piece as it arrives. An upstream that
    cannot be reached gets the client a 502 in the API's error shape (recorded as such); an upstream
    that breaks mid-body breaks the client's connection the same way.
    """

    def __init__(
        self,
        out: str | Path,
        *,
        upstream: str = DEFAULT_UPSTREAM,
        host: str = "127.0.0.1",
        port: int = 0,
        on_saved: Callable[[Saved], None] | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
    ) -> None:
        parts = httpx.URL(upstream)
        if parts.scheme not in ("http", "https") or not parts.host:
            raise ValueError(f"upstream must be an http(s) URL, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self.host = host
        self.port = port
        self.recorder = Recorder(out, on_saved=on_saved)
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._http: httpx.AsyncClient | None = None
        self._server: LoopbackServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._live: set[anyio.CancelScope] = set()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("RecordingProxy.url is known once start() has run")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("this RecordingProxy is already started")
        uvicorn_errors = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, _QuietCuts) for f in uvicorn_errors.filters):
            uvicorn_errors.addFilter(_QuietCuts())
        self._http = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        try:
            self._server, self._task, self.port = await start_server(
                self,
                self.host,
                self.port,
                name="the recording proxy",
                lifespan="off",
                log_level="warning",
                access_log=False,
                server_header=False,  # the upstream's own `server` and `date` headers go through
                date_header=False,
                timeout_graceful_shutdown=2,
            )
        except BaseException:
            await self._http.aclose()
            self._http = None
            raise

    async def stop(self) -> None:
        """Cut exchanges in flight (each is saved, saying so), stop listening. Idempotent."""
        server, task, http = self._server, self._task, self._http
        if server is None or task is None:
            return
        self._server = self._task = None
        for scope in list(self._live):
            scope.cancel()
        server.should_exit = True
        await task
        if http is not None:
            await http.aclose()
            self._http = None

    async def __aenter__(self) -> RecordingProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        method = scope["method"]
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        target = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in _NOT_FORWARDED_UP
        ]
        headers.append(("accept-encoding", "identity"))
        recorded = method == "POST" and scope["path"].rstrip("/") == "/v1/messages"
        exchange = None
        if recorded:
            exchange = self.recorder.begin(method=method, path=target, headers=headers, body=body)
        http = self._http
        assert http is not None
        upstream_request = http.build_request(method, self.upstream + target, headers=headers, content=body)
        try:
            upstream = await http.send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            message = f"incremental record: could not reach {self.upstream}: {type(exc).__name__}: {exc}"
            data = _error_body(502, message)
            if exchange is not None:
                exchange.response(502, [("content-type", "application/json")])
                exchange.data(data)
                exchange.finish(f"the upstream could not be reached: {type(exc).__name__}: {exc}")
            await send(
                {
                    "type": "http.response.start",
                    "status": 502,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": data, "more_body": False})
            return
        await self._relay(upstream, exchange, receive, send)

    async def _relay(
        self, upstream: httpx.Response, exchange: Exchange | None, receive: Receive, send: Send
    ) -> None:
        if exchange is not None:
            exchange.response(upstream.status_code, upstream.headers.multi_items())
        headers = [
            (k.lower(), v)
            for k, v in upstream.headers.raw
            if k.decode("latin-1").lower() not in _NOT_FORWARDED_DOWN
        ]
        outcome: str | None = "the recorder stopped"
        try:
            async with anyio.create_task_group() as group:
                self._live.add(group.cancel_scope)

                async def until_disconnect() -> None:
                    nonlocal outcome
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    outcome = "the client disconnected"
                    group.cancel_scope.cancel()

                group.start_soon(until_disconnect)
                try:
                    start = {
                        "type": "http.response.start",
                        "status": upstream.status_code,
                        "headers": headers,
                    }
                    await send(start)
                    async for chunk in upstream.aiter_raw():
                        arrived = time.monotonic()
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        if exchange is not None:  # after the client has it: recording never delays it
                            exchange.data(chunk, at=arrived)
                    outcome = None
                except httpx.HTTPError as exc:
                    outcome = f"the upstream connection broke: {type(exc).__name__}: {exc}"
                except OSError:
                    outcome = "the client disconnected"
                finally:
                    self._live.discard(group.cancel_scope)
                    group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await upstream.aclose()
            if exchange is not None:
                exchange.finish(outcome)
        if outcome is None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            logger.info("%s %s: ended early: %s", upstream.request.method, upstream.request.url, outcome)


def describe(saved: Saved, *, root: Path | None = None) -> str:
    """One line about a saved exchange, as ``incremental record`` prints it."""
    where = saved.body_file if root is None else saved.body_file.relative_to(root)
    attempt = f" (attempt {saved.attempt})" if saved.attempt > 1 else ""
    status = "no response" if saved.status is None else str(saved.status)
    parts = [f"{saved.conversation} turn {saved.turn}{attempt}: {status}"]
    if saved.events:
        parts.append(f"{saved.events} events")
    if saved.stop_reason:
        parts.append(f"stop_reason {saved.stop_reason}")
    if saved.error:
        parts.append(saved.error[:120])
    if saved.outcome != "complete":
        parts.append(saved.outcome[:160])
    parts.append(f"{saved.duration_s:.2f}s")
    return ", ".join(parts) + f" -> {where}"
