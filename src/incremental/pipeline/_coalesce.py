"""Events that can wait a few milliseconds, gathered into fewer Redis calls: a stream sends a text delta
every few milliseconds, a tool reports progress, and each entry written alone is a round trip.

``LogBuffer`` holds what it is given for at most ``window_s`` after the first of it (25 ms by default:
below what a reader sees), then writes it all in one call (``EventLog.append_many``). Text deltas of
one content block that follow each other are joined into one ``text_delta`` entry (the joined texts
equal the deltas' texts, in order); other events are kept as they are.

Order is kept: whoever writes an event that does not wait first writes what is pending (``flush``),
or hands it to its own call (``take``: a tool's result is written with the progress before it). What
is pending when the stream or the tool ends is written then (``close``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..events import RunEventModel, TextDeltaEvent

__all__ = ["LogBuffer"]

logger = logging.getLogger(__name__)


class LogBuffer:
    """One job's pending events. The job's own writes hold ``lock`` (a stream's handling of each chunk);
    the window's timer takes it too, so a timed write never lands in the middle of another's."""

    def __init__(
        self,
        append_many: Callable[[list[RunEventModel]], Awaitable[Any]],
        run_id: str,
        turn: int,
        window_s: float = 0.025,
    ) -> None:
        self.append_many, self.run_id, self.turn, self.window_s = append_many, run_id, turn, window_s
        self.lock = asyncio.Lock()
        # In arrival order: (block index, texts) for text, (None, event) for anything else.
        self._pending: list[tuple[int | None, Any]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._closed = False

    def add_text(self, index: int, text: str) -> None:
        last = self._pending[-1] if self._pending else None
        if last is not None and last[0] == index:
            last[1].append(text)
        else:
            self._pending.append((index, [text]))
        self._arm()

    def add(self, event: RunEventModel) -> None:
        self._pending.append((None, event))
        self._arm()

    def take(self) -> list[RunEventModel]:
        """What is pending, as events, for the caller to write in its own call before its own event (the
        caller holds ``lock``, or is the only writer, and has awaited ``settle``)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        return [
            TextDeltaEvent(run_id=self.run_id, turn=self.turn, index=index, text="".join(item))
            if index is not None
            else item
            for index, item in pending
        ]

    async def settle(self) -> None:
        """Until a timed write under way has landed (what it wrote comes before what the caller writes)."""
        if self._flushing is not None and not self._flushing.done():
            await asyncio.wait([self._flushing])

    async def flush(self) -> None:
        """Write what is pending, in one call (the caller holds ``lock``, or is the only writer). If the
        write fails, what it held is pending again (before anything added since), and the error goes
        to the caller."""
        events = self.take()
        if not events:
            return
        try:
            await self.append_many(events)
        except BaseException:
            self._pending = [(None, event) for event in events] + self._pending
            raise

    def _arm(self) -> None:
        if self._timer is None and not self._closed:
            self._timer = asyncio.get_running_loop().call_later(self.window_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._pending and (self._flushing is None or self._flushing.done()):
            self._flushing = asyncio.create_task(self._flush_locked(), name=f"log:{self.run_id}")

    async def _flush_locked(self) -> None:
        try:
            async with self.lock:
                await self.flush()
        except Exception:
            # Kept (``flush``): the next write of this job, or its close, takes them again.
            logger.warning("a timed log write for %s failed; it is tried again", self.run_id, exc_info=True)
        if self._pending:  # added while that write was under way, or kept by a failed one
            self._arm()

    async def close(self) -> None:
        """The job is over (or was cut): no more timers; what is pending is written now."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.settle()
        if self._pending:
            async with self.lock:
                await self.flush()
