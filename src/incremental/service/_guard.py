"""What keeps slow, idle or too many clients from using up the service: time limits on each connection,
a cap on connections, a bound on request nesting, and a log that an accept storm cannot flood.

- ``header_timeout_s``: from a connection's opening (or the first byte of its next request) to the end of
  the request's headers. A client that sends nothing, or its headers a byte at a time, is closed.
- ``body_timeout_s``: from the end of the headers to the end of the body.
- ``idle_timeout_s``: between two requests on a kept-alive connection (uvicorn's ``timeout_keep_alive``).
- ``max_connections``: open connections at most. Over it, the oldest connection that has not finished
  sending its request's headers is closed at once (a well-behaved client is past that within
  milliseconds; slow and idle ones wait there), or the new one if there is none. The default stays
  below the process's file limit (``RLIMIT_NOFILE``), leaving room for Redis and the model client, so
  accept() does not run out of descriptors.
- Once a request's headers and body are in, the connection has no limit: an event stream stays open for
  as long as its watcher reads (the service's heartbeats and send timeout look after it).

``json_nesting_ok`` bounds a body's nesting before it is parsed, so a deep one gets a 400 rather than a
recursion error, and nothing is stored for it.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "ConnectionLimits",
    "default_max_connections",
    "guarded_protocol",
    "install_log_guard",
    "json_nesting_ok",
    "uvicorn_options",
]

logger = logging.getLogger("incremental.service")

_FD_RESERVE = 256  # descriptors left for Redis connections, the model client, files, the listener


def default_max_connections() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        soft = 65536
    return max(16, min(10_000, soft - _FD_RESERVE))


@dataclass(frozen=True)
class ConnectionLimits:
    """See the module docstring. ``max_connections`` None: from the file limit."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    idle_timeout_s: float = 5.0
    max_connections: int | None = None

    def cap(self) -> int:
        return self.max_connections if self.max_connections is not None else default_max_connections()


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the time limits and the connection cap of ``limits``.

    Over the cap, the oldest connection still waiting for its request's headers is closed to make room
    (slow and idle clients wait there; a well-behaved client sends its headers at once and is past it);
    only when every connection is serving a request is the new one closed instead."""
    cap = limits.cap()
    shed = _RateLimited("over the cap of %d connections: closed one that had sent no request", 10.0)
    waiting: dict[H11Protocol, None] = {}  # connections before their headers' end, oldest first

    class GuardedH11Protocol(H11Protocol):
        _guard_timer: asyncio.TimerHandle | None = None
        _guard_phase: str = ""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > cap:
                shed.log(cap)
                oldest = next(iter(waiting), None)
                if oldest is None:
                    transport.abort()
                    return
                waiting.pop(oldest, None)
                oldest.transport.abort()
            self._guard_arm("headers", limits.header_timeout_s)

        def data_received(self, data: bytes) -> None:
            if self._guard_timer is None and self.conn.their_state is h11.IDLE:
                self._guard_arm("headers", limits.header_timeout_s)  # the next request on this connection
            super().data_received(data)
            state = self.conn.their_state
            if state is h11.SEND_BODY:
                if self._guard_phase != "body":
                    self._guard_arm("body", limits.body_timeout_s)
            elif state is not h11.IDLE:
                self._guard_disarm()  # the request is in (or the connection is done with)

        def connection_lost(self, exc: Exception | None) -> None:
            self._guard_disarm()
            super().connection_lost(exc)

        def _guard_arm(self, phase: str, seconds: float) -> None:
            self._guard_disarm()
            self._guard_phase = phase
            self._guard_timer = self.loop.call_later(seconds, self._guard_expired)
            if phase == "headers":
                waiting[self] = None

        def _guard_disarm(self) -> None:
            if self._guard_timer is not None:
                self._guard_timer.cancel()
            self._guard_timer = None
            self._guard_phase = ""
            waiting.pop(self, None)

        def _guard_expired(self) -> None:
            self._guard_timer = None
            waiting.pop(self, None)
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol


def uvicorn_options(limits: ConnectionLimits) -> dict[str, Any]:
    """The options for ``uvicorn.Config`` that go with ``guarded_protocol``."""
    return {
        "http": guarded_protocol(limits),
        "timeout_keep_alive": max(1, round(limits.idle_timeout_s)),
        "h11_max_incomplete_event_size": 16 * 1024,  # the request line and headers, at most
        # asyncio accepts up to this many connections in one go: kept small, an accept storm takes
        # few descriptors beyond the cap before the cap closes them.
        "backlog": 128,
    }


def json_nesting_ok(body: bytes, limit: int) -> bool:
    """Whether the JSON text ``body`` nests at most ``limit`` arrays and objects deep (a linear scan that
    skips strings; it does not check the rest of the syntax)."""
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return True


class _RateLimited:
    """A warning logged at most once per ``every_s`` seconds, with how many times it was held back."""

    def __init__(self, message: str, every_s: float) -> None:
        self.message, self.every_s = message, every_s
        self._last = 0.0
        self._held = 0

    def log(self, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            self._held += 1
            return
        held, self._held, self._last = self._held, 0, now
        logger.warning(self.message + (f" ({held} more since the last warning)" if held else ""), *args)


class _AcceptStormFilter(logging.Filter):
    """asyncio logs each accept() that fails for want of descriptors; let one through per ``every_s``."""

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._last = 0.0
        self.held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("socket.accept() out of system resource"):
            return True
        now = time.monotonic()
        if now - self._last < self.every_s:
            self.held += 1
            return False
        self._last = now
        if self.held:
            record.msg = f"{record.msg} ({self.held} more since the last one)"
            self.held = 0
        return True


def install_log_guard() -> logging.Filter:
    """Rate-limit asyncio's accept-error messages (once per process); returns the filter."""
    target = logging.getLogger("asyncio")
    for existing in target.filters:
        if isinstance(existing, _AcceptStormFilter):
            return existing
    guard = _AcceptStormFilter()
    target.addFilter(guard)
    return guard
