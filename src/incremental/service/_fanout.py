"""One Redis reader per process for every watched run, fanned out to every client watching each run.

N browsers watching a run cost one read of its log, not N, and M watched runs cost one blocking
``XREAD`` over the M streams, not M: one reader task on one connection follows every run this process
has watchers for. A run that gets its first watcher joins the reader's next read; to make the reader
give up its current block at once, the process appends to a small wake-up stream of its own
(``inc:fanout:{process}``) that every read also follows, so the hand-over has no race (the read names
the wake-up stream's last id, so an append made before the read arrives still ends it at once).

Each batch a read returns for a run is encoded once, as one block of SSE bytes, with what each watcher
needs to take it whole precomputed (its first and last ids, the milestone entries the watcher's view of
the run needs). Each watcher has its own bounded backlog of batches: the reader hands every new batch
to every watcher without waiting on any of them, and a watcher whose backlog is full is cut off (its
backlog dropped, its response ended), so one client that stops reading neither stalls the others nor
grows the server's memory. A cut-off client reconnects with ``Last-Event-ID`` and catches up from the
log itself.

Gap-free hand-over from history to live: a watcher subscribes *before* it reads the log's history, and
the reader only hands over what it reads after its starting position, which is fixed before the first
subscriber returns. Whatever the watcher reads in history and then receives again live, it drops by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from typing import Any, NamedTuple

from ..adapters._eventlog import HIGH_VOLUME_KINDS, EventLog, events_key, parse_id

__all__ = ["Batch", "Entry", "Fanout", "Subscriber", "SubscriberCutOff", "WatchFailed", "entries_from"]

logger = logging.getLogger(__name__)

_WAKE_TTL_S = 300  # the wake-up stream outlives a process that died by this much, no longer


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


class Batch:
    """The entries of one run that one read returned, with what every watcher takes from them made once:
    ``sse``, all of them as one write; ``first`` / ``last``, their ids as comparable pairs (a watcher
    already past ``first`` takes the whole batch without looking at each entry); ``milestones``, the
    entries a watcher's view of the run applies (every kind but the high-volume ones); whether any is
    ``run_started`` (which a watch token gets redacted)."""

    __slots__ = ("entries", "first", "has_run_started", "last", "last_id", "milestones", "sse")

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.first = parse_id(entries[0].id)
        self.last_id = entries[-1].id
        self.last = parse_id(self.last_id)
        self.sse = b"".join(entry.sse for entry in entries)
        self.milestones = [e for e in entries if e.event.get("kind") not in HIGH_VOLUME_KINDS]
        self.has_run_started = any(e.event.get("kind") == "run_started" for e in self.milestones)

    def __len__(self) -> int:
        return len(self.entries)


class SubscriberCutOff(Exception):
    """The watcher fell more than its backlog behind; it should reconnect and read from the log."""


class WatchFailed(Exception):
    """The run's reader stopped (Redis went away); the watcher should reconnect later."""


class Subscriber:
    def __init__(self, run_id: str, max_pending: int) -> None:
        self.run_id = run_id
        self.max_pending = max_pending
        self.pending: deque[Batch] = deque()
        self.n_pending = 0
        self.cut = False
        self.error: BaseException | None = None
        self._wake = asyncio.Event()

    def offer(self, batch: Batch) -> bool:
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

    async def _ready(self) -> None:
        while not self.pending and not self.cut and self.error is None:
            self._wake.clear()
            await self._wake.wait()
        if self.cut:
            raise SubscriberCutOff(f"more than {self.max_pending} events behind on run {self.run_id}")
        if self.error is not None and not self.pending:
            raise WatchFailed(f"the reader of run {self.run_id} stopped: {self.error}") from self.error

    async def next_batch(self) -> list[Entry]:
        """The oldest batch not taken yet, once there is one."""
        await self._ready()
        batch = self.pending.popleft()
        self.n_pending -= len(batch)
        return batch.entries

    async def next_batches(self) -> list[Batch]:
        """Every batch not taken yet, once there is one: a watcher that was busy takes them in one go."""
        await self._ready()
        batches = list(self.pending)
        self.pending.clear()
        self.n_pending = 0
        return batches


class _Feed:
    """A watched run: its watchers, and the position the reader has handed over up to."""

    def __init__(self, fanout: Fanout, run_id: str) -> None:
        self.run_id = run_id
        self.key = events_key(run_id)
        self.key_arg = _arg(self.key)  # the read's arguments for this run, encoded once each
        self.subscribers: set[Subscriber] = set()
        self.position = "0-0"
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.start = asyncio.create_task(fanout._start(self), name=f"incremental-feed-{run_id}")

    @property
    def position(self) -> str:
        return self._position

    @position.setter
    def position(self, entry_id: str) -> None:
        self._position = entry_id
        self.position_arg = _arg(entry_id)

    def fail(self, exc: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(WatchFailed(str(exc)))
            self.ready.exception()  # consumed here, so an unawaited future never warns
        for sub in self.subscribers:
            sub.fail(exc)


class Fanout:
    """The per-process registry of watched runs and their one reader. ``subscribe`` / ``unsubscribe``;
    ``aclose`` at shutdown."""

    def __init__(
        self, log: EventLog, *, max_pending: int = 2000, block_ms: int = 5000, batch: int = 500
    ) -> None:
        self.log = log
        self.max_pending = max_pending
        self.block_ms = block_ms
        self.batch = batch
        self.feeds: dict[str, _Feed] = {}  # by run: every watched run, reading or still starting
        self.cut_off = 0  # watchers cut off for falling behind, since start
        self.batches = 0  # batches read from Redis, since start
        self.reads = 0  # blocking reads made, since start
        self._reading: dict[str, _Feed] = {}  # by stream key: the runs the reader follows
        self._reader: asyncio.Task[None] | None = None
        self._wake_key = f"inc:fanout:{secrets.token_hex(8)}"
        self._wake_position = "0-0"

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
        if self._reading.get(feed.key) is feed:
            del self._reading[feed.key]  # the reader leaves it out of its next read
        if not feed.start.done() and feed.start is not asyncio.current_task():
            feed.start.cancel()

    async def _start(self, feed: _Feed) -> None:
        """Fix the run's starting position, then have the reader follow it."""
        try:
            feed.position = await self.log.last_id(feed.run_id) or "0-0"
        except Exception as exc:  # Redis gone: the subscribers are told, none hangs
            logger.warning("reader of run %s stopped: %s: %s", feed.run_id, type(exc).__name__, exc)
            feed.fail(exc)
            self._drop(feed)
            return
        feed.ready.set_result(None)
        if self.feeds.get(feed.run_id) is not feed:
            return  # every subscriber left meanwhile
        self._reading[feed.key] = feed
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="incremental-fanout-reader")
            return
        try:  # the reader is blocked on the runs it had: make it read again, with this one
            pipe = self.log.redis.pipeline(transaction=False)
            pipe.xadd(self._wake_key, {"w": "1"}, maxlen=1, approximate=False)
            pipe.expire(self._wake_key, _WAKE_TTL_S)
            await pipe.execute()
        except Exception as exc:  # the reader's own read fails too, and tells every watcher
            logger.warning("could not wake the reader for %s: %s: %s", feed.run_id, type(exc).__name__, exc)

    async def _read(self) -> None:
        """The reader: one blocking read over every run followed, until none is left (or Redis fails).

        It holds one connection of the pool for itself and writes each ``XREAD`` as one block of bytes
        made from arguments encoded once per run (and once per new position): redis-py encodes every
        argument of every command anew, which for a read over a hundred runs costs more than the read."""
        pool = self.log.redis.connection_pool
        count = min(self.batch, self.max_pending)  # per stream: one read never cuts anyone
        options = b"".join(_arg(a) for a in ("XREAD", "COUNT", str(count), "BLOCK", str(self.block_ms)))
        streams_arg = _arg("STREAMS")
        wake_key_arg = _arg(self._wake_key)
        conn: Any = None
        idle = True  # no reply is still to come on the connection
        try:
            try:
                connecting = pool.get_connection()
            except TypeError:  # redis-py before 5.3 wants a command name
                connecting = pool.get_connection("XREAD")
            conn = await connecting
            while self._reading:
                feeds = list(self._reading.values())
                command = b"".join(
                    (
                        b"*%d\r\n" % (8 + 2 * len(feeds)),
                        options,
                        streams_arg,
                        *(feed.key_arg for feed in feeds),
                        wake_key_arg,
                        *(feed.position_arg for feed in feeds),
                        _arg(self._wake_position),
                    )
                )
                self.reads += 1
                idle = False
                await conn.send_packed_command(command, check_health=False)
                reply = await conn.read_response()
                idle = True
                self._hand_over(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis gone: every watcher is told, none hangs
            logger.warning("the event reader stopped: %s: %s", type(exc).__name__, exc)
            for feed in list(self._reading.values()):
                feed.fail(exc)
                self._drop(feed)
        finally:
            if self._reader is asyncio.current_task():
                self._reader = None
            if conn is not None:
                if not idle:  # a read still in flight: the connection cannot be used again
                    await conn.disconnect(nowait=True)
                await pool.release(conn)

    def _hand_over(self, reply: Any) -> None:
        """One read's entries, as one batch per run, to every watcher of the run."""
        streams = reply.items() if isinstance(reply, dict) else reply or []
        for raw_key, items in streams:
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            if key == self._wake_key:
                last = items[-1][0]
                self._wake_position = last.decode() if isinstance(last, bytes) else str(last)
                continue
            feed = self._reading.get(key)
            if feed is None or not items:
                continue  # no one watches it any more
            entries = entries_from(_raw(items))
            after = parse_id(feed.position)
            if parse_id(entries[0].id) <= after:  # read for an earlier feed of the run, now replaced
                entries = [e for e in entries if parse_id(e.id) > after]
                if not entries:
                    continue
            batch = Batch(entries)
            feed.position = batch.last_id
            self.batches += 1
            for sub in list(feed.subscribers):
                if not sub.offer(batch):
                    self.cut_off += 1
                    feed.subscribers.discard(sub)

    async def aclose(self) -> None:
        feeds = list(self.feeds.values())
        self.feeds.clear()
        self._reading.clear()
        for feed in feeds:  # a watcher still waiting is told, rather than left to hang
            feed.fail(WatchFailed("the service is shutting down"))
        tasks = [feed.start for feed in feeds]
        if self._reader is not None:
            tasks.append(self._reader)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _arg(value: str) -> bytes:
    """One argument of a command in the Redis protocol."""
    data = value.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _raw(items: Any) -> list[tuple[str, str]]:
    """Entries as the server sent them (``[id, [field, value, ...]]``) as (id, the event's JSON)."""
    out: list[tuple[str, str]] = []
    for entry_id, fields in items:
        data = fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2], strict=True))
        raw = data.get(b"data") or data.get("data")
        ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        out.append((ident, raw.decode() if isinstance(raw, bytes) else str(raw)))
    return out
