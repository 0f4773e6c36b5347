"""One Redis reader per watched run, fanned out to every client watching it.

N browsers watching a run cost one blocking ``XREAD`` on Redis, not N. Each watcher has its own bounded
backlog: the reader hands every new batch to every watcher without waiting on any of them, and a watcher
whose backlog is full is cut off (its backlog dropped, its response ended), so one client that stops
reading neither stalls the others nor grows the server's memory. A cut-off client reconnects with
``Last-Event-ID`` and catches up from the log itself.

Gap-free hand-over from history to live: a watcher subscribes *before* it reads the log's history, and
the reader only hands over what it reads after its starting position, which is fixed before the first
subscriber returns. Whatever the watcher reads in history and then receives again live, it drops by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from typing import Any, NamedTuple

from ..adapters._eventlog import EventLog

__all__ = ["Entry", "Fanout", "Subscriber", "SubscriberCutOff", "WatchFailed", "entries_from"]

logger = logging.getLogger(__name__)


class Entry(NamedTuple):
    """One log entry as every watcher needs it: decoded once, and encoded as SSE once, per process."""

    id: str
    event: dict[str, Any]
    sse: bytes


def entries_from(raw: list[tuple[str, str]]) -> list[Entry]:
    out = []
    for entry_id, text in raw:
        event = json.loads(text)
        out.append(
            Entry(entry_id, event, f"id: {entry_id}\nevent: {event.get('kind')}\ndata: {text}\n\n".encode())
        )
    return out


class SubscriberCutOff(Exception):
    """The watcher fell more than its backlog behind; it should reconnect and read from the log."""


class WatchFailed(Exception):
    """The run's reader stopped (Redis went away); the watcher should reconnect later."""


class Subscriber:
    def __init__(self, run_id: str, max_pending: int) -> None:
        self.run_id = run_id
        self.max_pending = max_pending
        self.pending: deque[list[Entry]] = deque()
        self.n_pending = 0
        self.cut = False
        self.error: BaseException | None = None
        self._wake = asyncio.Event()

    def offer(self, batch: list[Entry]) -> bool:
        """Take a batch without ever waiting; False (and cut off) when the backlog would overflow."""
        if self.cut:
            return False
        if self.n_pending + len(batch) > self.max_pending:
            self.cut = True
            self.pending.clear()
            self.n_pending = 0
            self._wake.set()
            return False
        self.pending.append(batch)
        self.n_pending += len(batch)
        self._wake.set()
        return True

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._wake.set()

    async def next_batch(self) -> list[Entry]:
        while not self.pending and not self.cut and self.error is None:
            self._wake.clear()
            await self._wake.wait()
        if self.cut:
            raise SubscriberCutOff(f"more than {self.max_pending} events behind on run {self.run_id}")
        if self.error is not None and not self.pending:
            raise WatchFailed(f"the reader of run {self.run_id} stopped: {self.error}") from self.error
        batch = self.pending.popleft()
        self.n_pending -= len(batch)
        return batch


class _Feed:
    def __init__(self, fanout: Fanout, run_id: str) -> None:
        self.fanout = fanout
        self.run_id = run_id
        self.subscribers: set[Subscriber] = set()
        self.position = "0-0"
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._run(), name=f"incremental-feed-{run_id}")

    async def _run(self) -> None:
        log = self.fanout.log
        try:
            self.position = await log.last_id(self.run_id) or "0-0"
            self.ready.set_result(None)
            while True:
                raw = await log.read_raw(
                    self.run_id,
                    self.position,
                    block_ms=self.fanout.block_ms,
                    count=min(self.fanout.batch, self.fanout.max_pending),  # one read never cuts anyone
                )
                if not raw:
                    continue
                batch = entries_from(raw)
                self.position = batch[-1].id
                self.fanout.batches += 1
                for sub in list(self.subscribers):
                    if not sub.offer(batch):
                        self.fanout.cut_off += 1
                        self.subscribers.discard(sub)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis gone: every watcher is told, none hangs
            logger.warning("reader of run %s stopped: %s: %s", self.run_id, type(exc).__name__, exc)
            if not self.ready.done():
                self.ready.set_exception(WatchFailed(str(exc)))
                self.ready.exception()  # consumed here, so an unawaited future never warns
            for sub in self.subscribers:
                sub.fail(exc)
            self.fanout._drop(self)


class Fanout:
    """The per-process registry of feeds. ``subscribe`` / ``unsubscribe``; ``aclose`` at shutdown."""

    def __init__(
        self, log: EventLog, *, max_pending: int = 2000, block_ms: int = 5000, batch: int = 500
    ) -> None:
        self.log = log
        self.max_pending = max_pending
        self.block_ms = block_ms
        self.batch = batch
        self.feeds: dict[str, _Feed] = {}
        self.cut_off = 0  # watchers cut off for falling behind, since start
        self.batches = 0  # batches read from Redis, since start

    @property
    def subscribers(self) -> int:
        return sum(len(f.subscribers) for f in self.feeds.values())

    async def subscribe(self, run_id: str) -> Subscriber:
        feed = self.feeds.get(run_id)
        if feed is None:
            feed = self.feeds[run_id] = _Feed(self, run_id)
        sub = Subscriber(run_id, self.max_pending)
        feed.subscribers.add(sub)
        try:
            await asyncio.shield(feed.ready)
        except BaseException:
            self.unsubscribe(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        feed = self.feeds.get(sub.run_id)
        if feed is None:
            return
        feed.subscribers.discard(sub)
        if not feed.subscribers:
            self._drop(feed)

    def _drop(self, feed: _Feed) -> None:
        if self.feeds.get(feed.run_id) is feed:
            del self.feeds[feed.run_id]
        if feed.task is not asyncio.current_task():
            feed.task.cancel()

    async def aclose(self) -> None:
        feeds = list(self.feeds.values())
        self.feeds.clear()
        for feed in feeds:
            feed.task.cancel()
        for feed in feeds:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feed.task
