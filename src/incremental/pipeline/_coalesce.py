"""Text deltas, gathered into fewer log entries: a stream sends a delta every few milliseconds, and each
entry is a Redis call and an SSE event for every watcher.

``TextBuffer`` joins the deltas of one content block that arrive within ``window_s`` of the first of
them (25 ms by default: below what a reader sees) into one ``text_delta`` entry. What is gathered is
written when the window closes, or before the stream's next event of any other kind (so the log keeps
the stream's order: a block's text comes before its ``content_block_stop``, a tool's input after the
text before it), or when the stream ends. The joined texts equal the deltas' texts, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..events import TextDeltaEvent

__all__ = ["TextBuffer"]


class TextBuffer:
    """One stream's pending text. The stream's handling of each chunk holds ``lock``; the window's timer
    takes it too, so a timed write never lands in the middle of another event's writes."""

    def __init__(
        self, append: Callable[[Any], Awaitable[Any]], run_id: str, turn: int, window_s: float = 0.025
    ) -> None:
        self.append, self.run_id, self.turn, self.window_s = append, run_id, turn, window_s
        self.lock = asyncio.Lock()
        self._pending: list[tuple[int, list[str]]] = []  # (block index, texts), in arrival order
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._closed = False

    def add(self, index: int, text: str) -> None:
        if self._pending and self._pending[-1][0] == index:
            self._pending[-1][1].append(text)
        else:
            self._pending.append((index, [text]))
        if self._timer is None and not self._closed:
            self._timer = asyncio.get_running_loop().call_later(self.window_s, self._on_timer)

    async def flush(self) -> None:
        """Write what is pending (the caller holds ``lock``, or is the only writer)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        for index, texts in pending:
            event = TextDeltaEvent(run_id=self.run_id, turn=self.turn, index=index, text="".join(texts))
            await self.append(event)

    def _on_timer(self) -> None:
        self._timer = None
        if self._pending and (self._flushing is None or self._flushing.done()):
            self._flushing = asyncio.create_task(self._flush_locked(), name=f"text:{self.run_id}")

    async def _flush_locked(self) -> None:
        async with self.lock:
            await self.flush()

    async def close(self) -> None:
        """The stream is over (or was cut): no more timers; what is pending is written now."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None and not self._flushing.done():
            await asyncio.wait([self._flushing])
        if self._pending:
            async with self.lock:
                await self.flush()
