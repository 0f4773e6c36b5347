"""A fake Messages API on loopback: plays recorded turns with their timing and checks every request.

::

    async with FakeMessagesAPI(["turn1.sse", "turn2.sse"], speed=10) as api:
        ...  # point a client at api.url (ANTHROPIC_BASE_URL); then look at api.requests

``POST /v1/messages`` answers turn *k*, where *k* is the number of assistant messages in ``messages``
(so a retried request replays the same turn). Turn *k*'s recording is sent event by event, each
event when its ``: t=SECONDS`` comment says, measured from the request's arrival and divided by
``speed`` (0 or infinity: no waiting). Bytes go out exactly as recorded, timing comments and CRLF
line endings included.

Before playing turn *k* > 0 it checks, as a strict API would, and answers 400 with the API's error
body (and a message that says what was expected and what arrived) when:

- ``stream`` is not true, ``messages`` is not a non-empty list, or no turn *k* was recorded;
- ``messages[-2]`` is not the assistant message of turn *k*-1 with its ``content`` echoed verbatim
  (what ``StreamParser`` assembles from that recording, thinking signatures included). As the API
  does, it reads a block's key that is null (or ``citations: []``) as absent, so the SDK's
  ``[b.model_dump() for b in message.content]`` passes; tool inputs are compared exactly;
- ``messages[-1]`` is not a user message that begins with one ``tool_result`` per ``tool_use`` block
  of that content, in the same order, each exactly once.

One echo other than the whole content passes: after a replay of turn *k*-1 ended early (the client went
away mid-stream, or a fault cut it), a salvaged message, whose content is the first blocks of that
content, verbatim, no more than that replay sent whole (up to their ``content_block_stop``); its
tool_results are then those of the tool_use blocks it holds.

``faults`` injects failures per turn: ``Fault("status", status=529)`` answers an error status
``times`` times before playing; ``Fault("drop_after", events=N)`` sends N events and closes the
connection mid-body (the client sees an incomplete chunked body).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import math
import re
import secrets
import string
import threading
import time
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ._serving import LoopbackServer, start_server
from .core import StreamParser

__all__ = ["FakeMessagesAPI", "Fault"]

logger = logging.getLogger(__name__)

# The API's error type for each status (https://docs.anthropic.com/en/api/errors).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ERROR_MESSAGES = {
    429: "Number of request tokens has exceeded your per-minute rate limit",
    500: "Internal server error",
    529: "Overloaded",
}
_TIMING = re.compile(rb":[ ]?t=(\d+(?:\.\d*)?)")
_SHOW = 80  # characters of a value quoted in a rejection message


@dataclass(frozen=True)
class Fault:
    """A failure injected into one turn, ``times`` times, before it plays normally.

    ``kind="status"``: answer ``status`` with the API's error body (and ``retry-after`` when given).
    ``kind="drop_after"``: send ``events`` events of the recording, then close the connection.
    ``kind="stall"``: send ``events`` events, then nothing at all (no byte, no ping) for ``seconds``,
    then the rest.
    """

    kind: Literal["status", "drop_after", "stall"]
    status: int = 529
    retry_after: float | None = None
    times: int = 1
    events: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("status", "drop_after", "stall"):
            raise ValueError(f"Fault.kind must be 'status', 'drop_after' or 'stall', got {self.kind!r}")
        if not 400 <= self.status <= 599:
            raise ValueError(f"Fault.status must be an HTTP error status (400-599), got {self.status}")
        if self.times < 1 or self.events < 0:
            raise ValueError(f"Fault needs times >= 1 and events >= 0, got {self.times} and {self.events}")


# ---------------------------------------------------------------- recordings


@dataclass(frozen=True, slots=True)
class _Event:
    at: float | None  # the `: t=` time, seconds since the request; None: right after the previous one
    data: bytes  # the event as recorded, up to and including its blank line


@dataclass(frozen=True)
class _Turn:
    name: str
    events: list[_Event]
    content: list[Any]  # the assistant content its recording assembles
    tool_uses: list[tuple[str, str]]  # (id, name) of each client tool_use block, in order


def _split_events(data: bytes) -> list[_Event]:
    """The recording cut after each blank line (LF, CRLF or CR endings); a trailing fragment is kept."""
    events: list[_Event] = []
    lines: list[bytes] = []
    at: float | None = None
    for line in data.splitlines(keepends=True):
        bare = line.rstrip(b"\r\n")
        if at is None and (m := _TIMING.fullmatch(bare)):
            at = float(m.group(1))
        lines.append(line)
        if not bare:
            events.append(_Event(at, b"".join(lines)))
            lines, at = [], None
    if lines:
        events.append(_Event(at, b"".join(lines)))
    return events


def _load_turn(source: str | Path | bytes, k: int) -> _Turn:
    if isinstance(source, bytes):
        name, data = f"<turn {k}: {len(source)} bytes>", source
    else:
        name, data = str(source), Path(source).read_bytes()
    parser = StreamParser()
    parser.feed(data)
    parser.end()
    content = list(parser.message().get("content", []))
    tool_uses = [(str(b.get("id")), str(b.get("name"))) for b in content if b.get("type") == "tool_use"]
    return _Turn(name, _split_events(data), content, tool_uses)


# ---------------------------------------------------------------- request checks


class _Rejected(Exception):
    """The request breaks a rule; the message says what was expected and what arrived."""


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHOW else text[: _SHOW - 1] + "…"


def _string_difference(path: str, expected: str, actual: str) -> str:
    i = next((n for n, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b), None)
    i = min(len(expected), len(actual)) if i is None else i
    lo = max(0, i - 20)
    return (
        f"{path} differs at character {i}: expected …{_show(expected[lo : i + 20])}, "
        f"got …{_show(actual[lo : i + 20])} (lengths {len(expected)} and {len(actual)})"
    )


# What a content block's key means when it is absent: the SDK's ``model_dump()`` writes these out (as
# null, or the API's default) and the API reads them as if absent. Any other key absent on one side
# may be null on the other, for the same reason.
_ABSENT_AS: dict[str, tuple[Any, ...]] = {"citations": ([], None)}


def _absent(key: str, value: Any) -> bool:
    """Whether ``key: value`` says the same as no ``key`` at all, to the API."""
    return value is None or value in _ABSENT_AS.get(key, ())


def _difference(path: str, expected: Any, actual: Any, *, lenient: bool = True) -> str | None:
    """The first place where ``actual`` differs from ``expected``, said in words; None when equal.

    ``lenient``: keys of content blocks that the API reads as absent (null, a default) may be absent
    on either side. Tool inputs are compared exactly (``lenient`` is off below an ``input`` key):
    ``{"x": null}`` and ``{}`` are different inputs.
    """
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key, value in expected.items():
            if key not in actual:
                if lenient and _absent(key, value):
                    continue
                return f"{path}.{key} is missing (expected {_show(value)})"
            strict = lenient and key != "input"
            if found := _difference(f"{path}.{key}", value, actual[key], lenient=strict):
                return found
        extra = [key for key in actual if key not in expected and not (lenient and _absent(key, actual[key]))]
        return (
            f"{path}.{extra[0]} was not in the recording (got {_show(actual[extra[0]])})" if extra else None
        )
    if isinstance(expected, list) and isinstance(actual, list):
        for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
            if found := _difference(f"{path}[{i}]", e, a, lenient=lenient):
                return found
        n, m = len(expected), len(actual)
        if m < n:
            return (
                f"{path}[{m}] is missing: expected {n} items, got {m} (first missing: {_show(expected[m])})"
            )
        if m > n:
            return f"{path}[{n}] was not in the recording: expected {n} items, got {m} ({_show(actual[n])})"
        return None
    if isinstance(expected, str) and isinstance(actual, str) and expected != actual:
        return _string_difference(path, expected, actual)
    if isinstance(expected, bool) != isinstance(actual, bool) or expected != actual:
        return f"{path}: expected {_show(expected)}, got {_show(actual)}"
    return None


def _turn_of(body: Any, turns: Sequence[_Turn]) -> int:
    """Check the request's shape and say which turn it asks for."""
    if not isinstance(body, dict):
        raise _Rejected(f"expected a JSON object as the request body, got {_show(body)}")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Rejected(f"messages: expected a non-empty list, got {_show(messages)}")
    if body.get("stream") is not True:
        raise _Rejected(
            f"stream: expected true (this server only streams), got {_show(body.get('stream', None))}"
        )
    k = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")
    if k >= len(turns):
        raise _Rejected(
            f"the request holds {k} assistant message(s), so it asks for turn {k}, "
            f"but only {len(turns)} turn(s) are recorded (turns 0 to {len(turns) - 1})"
        )
    return k


_BLOCK_STOP = re.compile(rb'^data:.*"type"\s*:\s*"content_block_stop"', re.MULTILINE)


def _check_echo(messages: list[Any], k: int, turn: _Turn, whole: int | None = None) -> _Turn:
    """``messages[-2]`` is turn k-1's assistant message, its content echoed verbatim; or, ``whole`` given
    (a replay of it ended early, after sending that many blocks whole), its first blocks, up to that
    many. Returns the turn as echoed (its first blocks only, for such a salvaged message)."""
    where = f"turn {k - 1} ({turn.name})"
    previous = messages[-2] if len(messages) >= 2 else None
    if not isinstance(previous, dict) or previous.get("role") != "assistant":
        role = previous.get("role") if isinstance(previous, dict) else None
        raise _Rejected(f"messages[-2]: expected the assistant message of {where}, got role {_show(role)}")
    content = previous.get("content")
    if not isinstance(content, list):
        raise _Rejected(
            f"messages[-2].content: expected the {len(turn.content)} content blocks of {where} verbatim, "
            f"got {_show(content)}"
        )
    if whole is not None and 0 < len(content) < len(turn.content) and len(content) <= whole:
        head = turn.content[: len(content)]
        ids = {b.get("id") for b in head if isinstance(b, dict)}
        turn = _Turn(turn.name, turn.events, head, [(i, n) for i, n in turn.tool_uses if i in ids])
    if found := _difference("messages[-2].content", turn.content, content):
        raise _Rejected(f"the assistant content must echo {where} verbatim: {found}")
    return turn


def _check_tool_results(messages: list[Any], k: int, turn: _Turn) -> None:
    """``messages[-1]`` is a user message that begins with one tool_result per tool_use, in order."""
    where = f"turn {k - 1} ({turn.name})"
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        role = last.get("role") if isinstance(last, dict) else None
        raise _Rejected(f"messages[-1]: expected a user message, got role {_show(role)}")
    expected = [tool_id for tool_id, _ in turn.tool_uses]
    if not expected:
        return
    content = last.get("content")
    if not isinstance(content, list):
        raise _Rejected(
            f"messages[-1].content: expected a list that begins with {len(expected)} tool_result block(s) "
            f"for {expected}, got {_show(content)}"
        )
    got: list[str] = []
    leading = True
    for i, block in enumerate(content):
        is_result = isinstance(block, dict) and block.get("type") == "tool_result"
        if not is_result:
            leading = False
            continue
        if not leading:
            raise _Rejected(
                f"messages[-1].content[{i}]: tool_result blocks must come first in the user message, "
                "but this one follows another kind of block"
            )
        tool_use_id = block.get("tool_use_id")
        if not isinstance(tool_use_id, str) or not tool_use_id:
            raise _Rejected(
                f"messages[-1].content[{i}]: expected a tool_use_id string, got {_show(tool_use_id)}"
            )
        if "content" in block and not isinstance(block["content"], str | list):
            raise _Rejected(
                f"messages[-1].content[{i}].content: expected a string or a list, "
                f"got {_show(block['content'])}"
            )
        if "is_error" in block and not isinstance(block["is_error"], bool):
            raise _Rejected(
                f"messages[-1].content[{i}].is_error: expected a boolean, got {_show(block['is_error'])}"
            )
        got.append(tool_use_id)
    names = dict(turn.tool_uses)
    for tool_id in got:
        if got.count(tool_id) > 1:
            raise _Rejected(
                f"duplicate tool_result for {tool_id} ({names.get(tool_id)}): expected exactly one"
            )
        if tool_id not in names:
            raise _Rejected(
                f"tool_result for {tool_id}, which is no tool_use id of {where}; expected {expected}"
            )
    for tool_id in expected:
        if tool_id not in got:
            raise _Rejected(
                f"missing tool_result for {tool_id} ({names[tool_id]}) of {where}: "
                f"expected tool_results for {expected} in this order, got {got}"
            )
    if got != expected:
        raise _Rejected(f"tool_results out of order: expected {expected}, got {got}")


def _check(body: Any, turns: Sequence[_Turn], cut: Mapping[int, int] | None = None) -> int:
    """The turn the request asks for, once it passes every check (else ``_Rejected``). ``cut``: for a
    turn a replay of which ended early, how many blocks it had sent whole."""
    k = _turn_of(body, turns)
    if k > 0:
        echoed = _check_echo(body["messages"], k, turns[k - 1], (cut or {}).get(k - 1))
        _check_tool_results(body["messages"], k, echoed)
    return k


# ---------------------------------------------------------------- HTTP


def _request_id() -> str:
    return "req_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    error_type = _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return JSONResponse(body, status_code=status, headers={"request-id": _request_id(), **(headers or {})})


# uvicorn logs an error when a response ends unfinished; ours do on purpose (a drop fault, stop()).
_UNFINISHED = "ASGI callable returned without completing response."
_cut_on_purpose = contextvars.ContextVar("cut_on_purpose", default=False)  # set in the request's task


class _QuietDeliberateCuts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_cut_on_purpose.get() and record.getMessage() == _UNFINISHED)


def _quiet_deliberate_cuts() -> None:
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDeliberateCuts) for f in uvicorn_errors.filters):
        uvicorn_errors.addFilter(_QuietDeliberateCuts())


class _Replay:
    """An ASGI response playing one turn's events at their recorded times.

    A client that disconnects ends it early. Dropped (``limit``) or cancelled by ``stop()``, it returns
    without the final empty body part, so uvicorn closes the connection mid-body.
    """

    def __init__(
        self,
        api: FakeMessagesAPI,
        turn: _Turn,
        arrival: float,
        limit: int | None,
        stall: tuple[int, float] | None = None,
        k: int = 0,
    ) -> None:
        self._api, self._turn, self._arrival, self._limit = api, turn, arrival, limit
        self._stall = stall  # (after this many events, go quiet for this many seconds)
        self._k = k  # the turn's number
        self._whole = 0  # blocks sent whole (up to their content_block_stop) so far

    async def _paced(self) -> AsyncGenerator[bytes, None]:
        """The events as they fall due; events already due go out together."""
        speed = self._api.speed
        events = self._turn.events if self._limit is None else self._turn.events[: self._limit]
        batch: list[bytes] = []
        stops = 0  # block stops in the batch
        for i, event in enumerate(events):
            if self._stall is not None and i == self._stall[0]:
                if batch:
                    yield b"".join(batch)
                    self._count(stops)
                    batch, stops = [], 0
                await asyncio.sleep(self._stall[1])
                self._arrival += self._stall[1]
            if event.at is not None and 0 < speed < math.inf:
                delay = self._arrival + event.at / speed - time.monotonic()
                if delay > 0:
                    if batch:
                        yield b"".join(batch)
                        self._count(stops)
                        batch, stops = [], 0
                    await asyncio.sleep(delay)
            batch.append(event.data)
            stops += bool(_BLOCK_STOP.search(event.data))
        if batch:
            yield b"".join(batch)
            self._count(stops)

    def _count(self, stops: int) -> None:
        """``stops`` more blocks went out whole: what a salvaged message of this turn may hold, while
        this replay has not played to its end."""
        self._whole += stops
        self._api._unfinished.setdefault(self._k, {})[id(self)] = self._whole

    async def _play(self, send: Send) -> bool:
        async with contextlib.aclosing(self._paced()) as chunks:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        return self._limit is None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"request-id", _request_id().encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        ended: str | None = None  # how the body ended early, if it did

        async with anyio.create_task_group() as group:
            self._api._live.add(group.cancel_scope)

            async def until_disconnect() -> None:
                nonlocal ended
                while (await receive())["type"] != "http.disconnect":
                    pass
                ended = "the client disconnected"
                group.cancel_scope.cancel()

            try:
                group.start_soon(until_disconnect)
                ended = "stop()"  # unless the body plays to its end (or its limit)
                complete = await self._play(send)
                ended = None if complete else f"a drop_after fault, after {self._limit} events"
                group.cancel_scope.cancel()
            finally:
                self._api._live.discard(group.cancel_scope)
        if ended is None:
            self._api._unfinished.get(self._k, {}).pop(id(self), None)  # played whole: nothing to salvage
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        logger.info("%s: the body ended early: %s", self._turn.name, ended)
        _cut_on_purpose.set(ended != "the client disconnected")


class FakeMessagesAPI:
    """A loopback HTTP server that plays recorded turns and checks the requests (module docstring)."""

    def __init__(
        self,
        turns: Sequence[str | Path | bytes],
        *,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Mapping[int, Fault] | None = None,
    ) -> None:
        if not turns:
            raise ValueError("FakeMessagesAPI needs at least one recorded turn")
        if math.isnan(speed) or speed < 0:
            raise ValueError(f"speed must be >= 0 (0 or inf: no waiting), got {speed}")
        self.speed = speed
        self.host = host
        self.port = port  # the bound port once started
        self.faults = dict(faults or {})
        self.requests: list[dict[str, Any]] = []  # JSON bodies received, in order
        self.request_times: list[float] = []  # time.monotonic() when each of them arrived
        self.rejections: list[str] = []  # the messages of the 400s sent, in order
        self._turns = [_load_turn(source, k) for k, source in enumerate(turns)]
        self._faults_left = {k: fault.times for k, fault in self.faults.items()}
        # turn -> {replay: the blocks it sent whole}, for replays not played to their end (in flight, or
        # ended early): how many blocks a salvaged echo of the turn may hold
        self._unfinished: dict[int, dict[int, int]] = {}
        self._live: set[anyio.CancelScope] = set()  # replays in flight, cancelled by stop()
        self._server: LoopbackServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/healthz", self._healthz, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_error},
        )

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:PORT``; known once started."""
        if self._server is None:
            raise RuntimeError("FakeMessagesAPI.url is known once start() has run")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------ endpoints

    async def _healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _error(status, f"{request.method} {request.url.path}: {exc}")

    def _reject(self, message: str) -> Response:
        self.rejections.append(message)
        logger.info("400: %s", message)
        return _error(400, message)

    async def _messages(self, request: Request) -> Response | _Replay:
        arrival = time.monotonic()
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return self._reject(f"expected a JSON request body, got {raw[:40]!r} ({exc})")
        if isinstance(body, dict):
            self.requests.append(body)
            self.request_times.append(arrival)
        try:
            cut = {turn: max(sent.values()) for turn, sent in self._unfinished.items() if sent}
            k = _check(body, self._turns, cut)
        except _Rejected as exc:
            return self._reject(str(exc))
        turn, fault = self._turns[k], self.faults.get(k)
        if fault is not None and self._faults_left[k] > 0:
            self._faults_left[k] -= 1
            if fault.kind == "status":
                logger.info("turn %d: fault %d", k, fault.status)
                headers = {} if fault.retry_after is None else {"retry-after": f"{fault.retry_after:g}"}
                return _error(fault.status, _ERROR_MESSAGES.get(fault.status, "Injected fault"), headers)
            if fault.kind == "stall":
                logger.info("turn %d: stalling %g s after %d events", k, fault.seconds, fault.events)
                return _Replay(self, turn, arrival, None, (fault.events, fault.seconds), k=k)
            logger.info(
                "turn %d: playing %s, dropping the connection after %d events", k, turn.name, fault.events
            )
            return _Replay(self, turn, arrival, fault.events, k=k)
        logger.info("turn %d: playing %s (%d events)", k, turn.name, len(turn.events))
        return _Replay(self, turn, arrival, None, k=k)

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Listen on ``host:port`` (port 0: a free one) and serve until ``stop()``."""
        if self._server is not None:
            raise RuntimeError("this FakeMessagesAPI is already started")
        _quiet_deliberate_cuts()
        self._server, self._task, self.port = await start_server(
            self.app,
            self.host,
            self.port,
            name="the fake Messages API",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )

    async def stop(self) -> None:
        """Cut replays in flight, stop listening, close connections. Idempotent."""
        server, task = self._server, self._task
        if server is None or task is None:
            return
        self._server = self._task = None
        for scope in list(self._live):
            scope.cancel()
        server.should_exit = True
        await task

    async def __aenter__(self) -> FakeMessagesAPI:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[FakeMessagesAPI]:
        """Serve from a background thread with its own event loop, for synchronous code."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-messages-api", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result()
            yield self
        finally:
            try:
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result()
                asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result()
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                loop.close()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"<FakeMessagesAPI {where} {len(self._turns)} turn(s) speed={self.speed:g}>"
