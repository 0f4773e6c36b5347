"""Every wait for the model has a deadline, and a worker that is shutting down can hand a stream over.

``GuardedClient`` wraps a turn's model client. Each wait it makes for the model is bounded:

    headers_s   until the response's headers (the client's own retries of a 429 or 529 included)
    idle_s      between two things the stream yields (an event, a ping, or a chunk of bytes)
    total_s     the turn's whole streaming, every attempt included (``deadline``, on the loop's clock)

A wait past its bound raises ``StreamTimeoutError`` (``kind`` says which); ``stream_turn`` sends the
turn again when nothing was dispatched yet, and fails it otherwise.

The waits between items are the stream's many small ones (one an SSE chunk), so they are not each given
a timer: a wait notes when it began, and one watchdog timer per stream looks at the wait under way when
it fires. It cuts a wait that is past its bound, and otherwise sets itself for when the current wait (or
the next one, at the earliest) would be. A stream costs a timer per ``idle_s``, not one per chunk.

``Drain`` is the worker's shutdown as its jobs see it: ``begin`` when the worker stops taking jobs, then
``hand_over`` when the grace period is over. From then on a stream that has dispatched nothing is cut at
its current wait (``HandedOver``): its job gives the turn back, and another worker requests it afresh. A
stream that has dispatched a call cannot be asked again without risking running tools twice, so it keeps
streaming to its end on this worker. Only a wait is ever cut, never the handling of what arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..exceptions import StreamTimeoutError

__all__ = ["Drain", "GuardedClient", "HandedOver", "StreamLimits"]

T = TypeVar("T")


@dataclass(frozen=True)
class StreamLimits:
    """The bounds of a turn's waits for the model, in seconds (see the module docstring)."""

    headers_s: float = 90.0
    idle_s: float = 45.0
    total_s: float = 1200.0

    def __post_init__(self) -> None:
        for name in ("headers_s", "idle_s", "total_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


class HandedOver(Exception):
    """This job stops here so that another worker does it: its worker is shutting down."""


class Drain:
    """A worker's shutdown, as its jobs see it: ``draining`` once it takes no new jobs, ``handing_over``
    once its grace period is over."""

    def __init__(self) -> None:
        self.draining = False
        self.handing_over = False
        self._waits: set[GuardedClient] = set()

    def begin(self) -> None:
        self.draining = True

    def hand_over(self) -> None:
        """Cut the current wait of every stream that may be handed over."""
        self.draining = self.handing_over = True
        for guard in list(self._waits):
            guard.wake()


class GuardedClient:
    """A model client whose waits are bounded (``limits``, ``deadline`` on the loop's clock) and which a
    ``drain`` may cut, while ``may_hand_over()`` says the turn can still be asked again."""

    def __init__(
        self,
        client: Any,
        limits: StreamLimits,
        *,
        deadline: float,
        drain: Drain,
        may_hand_over: Callable[[], bool],
    ) -> None:
        self._client = client
        self.limits = limits
        self.deadline = deadline
        self._drain = drain
        self._may_hand_over = may_hand_over
        self._timeout: asyncio.Timeout | None = None
        self._woken = False
        # The waits for items (``wait_item``), watched by one timer (``_watch``).
        self._task: asyncio.Task[Any] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._began: float | None = None  # when the wait under way began (None: not waiting)
        self._cut: str | None = None  # why the watchdog cancelled that wait: "idle", "total", "handover"
        self._cancelling = 0

    def wake(self) -> None:
        """Called by ``Drain.hand_over`` while this guard waits: end the wait now, if it may hand over."""
        if not self._may_hand_over():
            return
        if self._timeout is not None:
            self._woken = True
            self._timeout.reschedule(asyncio.get_running_loop().time())
        elif self._began is not None:
            self._cut_wait("handover")

    async def wait(self, start: Callable[[], Awaitable[T]], kind: str, limit: float) -> T:
        """``await start()``, bounded by ``limit`` and by the turn's deadline."""
        if self._drain.handing_over and self._may_hand_over():
            raise HandedOver("the worker is shutting down")
        loop = asyncio.get_running_loop()
        now = loop.time()
        left = self.deadline - now
        if left <= 0:
            raise self._expired("total", self.limits.total_s)
        bounded_by_total = left <= limit
        self._woken = False
        try:
            async with asyncio.timeout_at(now + min(limit, left)) as timeout:
                self._timeout = timeout
                self._drain._waits.add(self)
                try:
                    return await start()
                finally:
                    self._drain._waits.discard(self)
                    self._timeout = None
        except TimeoutError:
            if not timeout.expired():
                raise
            if self._woken:
                raise HandedOver("the worker is shutting down") from None
            if bounded_by_total:
                raise self._expired("total", self.limits.total_s) from None
            raise self._expired(kind, limit) from None

    async def wait_item(self, items: Any) -> Any:
        """``await anext(items)``, bounded by ``idle_s`` and by the turn's deadline (see the module
        docstring: the watchdog, not a timer of its own, bounds it)."""
        if self._drain.handing_over and self._may_hand_over():
            raise HandedOver("the worker is shutting down")
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= self.deadline:
            raise self._expired("total", self.limits.total_s)
        task = self._task
        if task is None:
            task = self._task = asyncio.current_task()
            assert task is not None
        self._cancelling = task.cancelling()
        self._began = now
        if self._watchdog is None:
            self._watch_at(min(now + self.limits.idle_s, self.deadline))
        try:
            return await anext(items)
        except asyncio.CancelledError:
            cut, self._cut = self._cut, None
            if cut is None or task.uncancel() > self._cancelling:
                raise  # not the watchdog's cancel, or cancelled from elsewhere too
            if cut == "handover":
                raise HandedOver("the worker is shutting down") from None
            if cut == "total":
                raise self._expired("total", self.limits.total_s) from None
            raise self._expired("idle", self.limits.idle_s) from None
        finally:
            self._began = None

    def _watch_at(self, when: float) -> None:
        self._watchdog = asyncio.get_running_loop().call_at(when, self._watch)

    def _watch(self) -> None:
        """The watchdog: cut the wait under way if it is past its bound, else look again when it (or a
        wait that begins now) would be."""
        self._watchdog = None
        now = asyncio.get_running_loop().time()
        if self._began is None:  # handling what arrived: no wait to cut; the next one begins later
            if now < self.deadline:  # (past the deadline, the next wait ends before it begins)
                self._watch_at(min(now + self.limits.idle_s, self.deadline))
            return
        due = min(self._began + self.limits.idle_s, self.deadline)
        if now >= due:
            self._cut_wait("total" if due >= self.deadline else "idle")
        else:
            self._watch_at(due)

    def _cut_wait(self, why: str) -> None:
        if self._cut is None and self._task is not None:
            self._cut = why
            self._task.cancel()

    def _stop_watching(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._drain._waits.discard(self)

    @staticmethod
    def _expired(kind: str, seconds: float) -> StreamTimeoutError:
        messages = {
            "headers": f"no response headers from the model within {seconds:g} s",
            "idle": f"the model stream went quiet: nothing arrived (not even a ping) for {seconds:g} s",
            "total": f"the turn's model stream ran past its deadline of {seconds:g} s",
        }
        return StreamTimeoutError(kind, seconds, messages[kind])

    @contextlib.asynccontextmanager
    async def stream(
        self, request: Mapping[str, Any], *, betas: Sequence[str] = ()
    ) -> AsyncIterator[_GuardedStream]:
        async with contextlib.AsyncExitStack() as stack:
            opened = self._client.stream(request, betas=betas)
            inner = await self.wait(
                lambda: stack.enter_async_context(opened), "headers", self.limits.headers_s
            )
            self._drain._waits.add(self)  # for the waits between items, for the stream's life
            try:
                yield _GuardedStream(self, inner)
            finally:
                self._stop_watching()

    async def aclose(self) -> None:
        """The wrapped client is its owner's to close."""


class _GuardedStream:
    """The wrapped stream: every item is waited for through the guard."""

    def __init__(self, guard: GuardedClient, inner: Any) -> None:
        self._guard = guard
        self._inner = inner
        self._items: Any = None

    def __getattr__(self, name: str) -> Any:  # request_id and anything else the stream offers
        return getattr(self._inner, name)

    def __aiter__(self) -> _GuardedStream:
        self._items = aiter(self._inner)
        return self

    async def __anext__(self) -> Any:
        return await self._guard.wait_item(self._items)
