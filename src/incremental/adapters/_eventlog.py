"""The run's event log: one ordered, capped Redis Stream per run, every entry one JSON object.

Every step of a run (turn started, text, tool ready, enqueued, started, progress, completed, turn
sealed, continued, run finished) is appended here, by whichever process saw it happen; the live views
(the CLI's and the service's) read it back in order. Each entry has ``v`` (schema version), ``kind``,
``ts`` (wall clock seconds) and ``run_id``; ``incremental.events`` documents every kind.

Keys::

    inc:events:{run}       stream  every event; capped at ``maxlen`` entries; expires ``ttl_s`` after
                                   the last append. An entry's stream id is its offset (the SSE id).
    inc:milestones:{run}   stream  the same entry, under the same id, for every kind but the
                                   high-volume ones (text, field previews, progress). Small, so it
                                   outlives the main log's trimming: a reader whose offset was trimmed
                                   away still gets an exact picture of every tool and of the run.

One append is one round trip: a Lua script adds the entry to both streams (so they share its id), and
the metrics the entry feeds (``MetricsStore``) ride in the same pipeline.

A finished run's log follows its ``Retention`` (``_retention``): an append after the run ended keeps
the run's remaining lifetime instead of extending it, and ``trim`` shrinks the log once: the main log
then holds every milestone and the entries its readers fold (``compact``), and the milestones stream
is gone (``milestones`` reads them from the main log from then on; later appends go there only).
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from ..events import RunEventModel, to_entry
from ._metrics import METRICS_LUA, MetricsStore
from ._retention import RUN_TTL_LUA, compact, run_key

__all__ = [
    "EVENT_SCHEMA_VERSION",
    "HIGH_VOLUME_KINDS",
    "LOG_APPEND_LUA",
    "LOG_ENTRY_LUA",
    "EventLog",
    "compare_ids",
    "events_key",
    "milestones_key",
    "parse_id",
]

EVENT_SCHEMA_VERSION = 1

# Kinds kept only in the main log: many per run, and nothing a snapshot of the run needs.
HIGH_VOLUME_KINDS = frozenset({"text_delta", "tool_field_completed", "tool_progress"})

# One append, as a Lua function (``TurnStore`` appends a result's event inside its own script too):
# keys events, milestones, the run's record; then the arguments ``append_args`` gives. A milestone
# goes to the milestones stream too, unless the run was trimmed (that stream is gone: the main log
# holds them); the keys get the run's TTL once it has ended under a retention (``run_ttl``).
LOG_APPEND_LUA = (
    RUN_TTL_LUA
    + METRICS_LUA
    + """
local function log_append(events, milestones, run, maxlen, entry, ttl, milestone, exact, milestones_maxlen)
  ttl = run_ttl(run, ttl)
  local id
  if exact == '1' then
    id = redis.call('XADD', events, 'MAXLEN', maxlen, '*', 'data', entry)
  else
    id = redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'data', entry)
  end
  redis.call('EXPIRE', events, ttl)
  if milestone == '1' and redis.call('HEXISTS', run, 'trimmed') == 0 then
    redis.call('XADD', milestones, 'MAXLEN', '~', milestones_maxlen, id, 'data', entry)
    redis.call('EXPIRE', milestones, ttl)
  end
  return id
end
"""
)

# One entry of several in one call: ARGV from ``i`` holds what ``entry_args`` gives (the append's six
# arguments, the number of metric operations, the operations). Returns its id and where the next starts
# (``entry_end``: where the next starts, for an entry not appended).
LOG_ENTRY_LUA = (
    LOG_APPEND_LUA
    + """
local function log_entry_at(events, milestones, run, i)
  local id = log_append(events, milestones, run, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
                        ARGV[i + 4], ARGV[i + 5])
  local last = i + 6 + 4 * tonumber(ARGV[i + 6])
  apply_ops(i + 7, last)
  return id, last + 1
end
local function entry_end(i)
  return i + 7 + 4 * tonumber(ARGV[i + 6])
end
"""
)

# KEYS events, milestones, the run's record; ARGV: entries as ``log_entry_at`` reads them. The ids.
_APPEND_MANY = (
    LOG_ENTRY_LUA
    + """
local ids, i = {}, 1
while i <= #ARGV do
  ids[#ids + 1], i = log_entry_at(KEYS[1], KEYS[2], KEYS[3], i)
end
return ids
"""
)

_APPEND = (
    LOG_APPEND_LUA
    + """
local id = log_append(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
apply_metrics(7)
return id
"""
)
_TRIM_BATCH = 1000


def events_key(run_id: str) -> str:
    return f"inc:events:{run_id}"


def milestones_key(run_id: str) -> str:
    return f"inc:milestones:{run_id}"


def parse_id(entry_id: str) -> tuple[int, int]:
    """A stream id as a comparable pair; ``ValueError`` when it is not one (``"5"`` means ``5-0``)."""
    ms, _, seq = entry_id.strip().partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()):
        raise ValueError(f"not a stream id: {entry_id!r} (expected MS-SEQ, e.g. 1700000000000-0)")
    return int(ms), int(seq or 0)


def compare_ids(a: str, b: str) -> int:
    """-1, 0 or 1 as stream id ``a`` is before, equal to or after ``b``."""
    pa, pb = parse_id(a), parse_id(b)
    return (pa > pb) - (pa < pb)


def _raw(entries: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for entry_id, data in entries or []:
        raw = data.get(b"data") or data.get("data")
        ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        out.append((ident, raw.decode() if isinstance(raw, bytes) else str(raw)))
    return out


def _decode(entries: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(ident, json.loads(raw)) for ident, raw in _raw(entries)]


async def _range_all(redis: Any, key: str) -> list[tuple[str, str]]:
    """Every entry of a stream, read in batches."""
    out: list[tuple[str, str]] = []
    start = "-"
    while True:
        batch = _raw(await redis.xrange(key, start, "+", count=_TRIM_BATCH))
        out.extend(batch)
        if len(batch) < _TRIM_BATCH:
            return out
        start = f"({batch[-1][0]}"


class EventLog:
    """Append to and read a run's log. ``exact_trim`` trims to exactly ``maxlen`` (Redis otherwise
    trims in whole internal nodes, about 100 entries at a time, which is cheaper)."""

    def __init__(
        self,
        redis: Redis,
        *,
        maxlen: int = 100_000,
        ttl_s: int = 7 * 24 * 3600,
        exact_trim: bool = False,
        milestones_maxlen: int = 20_000,
        metrics: bool = True,
    ) -> None:
        self.redis = redis
        self.maxlen = maxlen
        self.ttl_s = ttl_s
        self.exact_trim = exact_trim
        self.milestones_maxlen = milestones_maxlen
        self.metrics = MetricsStore(redis) if metrics else None
        self._append = redis.register_script(_APPEND)
        self._append_many = redis.register_script(_APPEND_MANY)

    def append_args(self, event: RunEventModel) -> tuple[dict[str, Any], list[str], list[str | int]]:
        """The entry, and the keys and arguments of the append script for it (``TurnStore`` appends a
        result's event in the same script that records the result)."""
        entry = to_entry(event)
        kind, run_id = entry["kind"], entry["run_id"]
        args: list[str | int] = [
            self.maxlen,
            json.dumps(entry, separators=(",", ":")),
            self.ttl_s,
            "0" if kind in HIGH_VOLUME_KINDS else "1",
            "1" if self.exact_trim else "0",
            self.milestones_maxlen,
        ]
        if self.metrics is not None:
            args += self.metrics.ops(entry)  # applied in the same call (``apply_metrics``)
        return entry, self.keys(run_id), args

    def entry_args(self, event: RunEventModel) -> list[str | int]:
        """One event as ``LOG_ENTRY_LUA`` reads it among others: the append's arguments, then its metric
        operations, counted."""
        _entry, _keys, args = self.append_args(event)
        ops = args[6:]
        return [*args[:6], len(ops) // 4, *ops]

    async def append_many(self, events: list[RunEventModel]) -> list[str]:
        """Append events of one run, in order, in one call; returns their ids."""
        if not events:
            return []
        args: list[str | int] = []
        for event in events:
            args += self.entry_args(event)
        ids = await self._append_many(keys=self.keys(events[0].run_id), args=args)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    def keys(self, run_id: str) -> list[str]:
        """The append script's keys for a run: its log, its milestones, its record."""
        return [events_key(run_id), milestones_key(run_id), run_key(run_id)]

    async def append(self, event: RunEventModel) -> str:
        """Append one event (a model of ``incremental.events``); returns its stream id (its offset)."""
        _entry, keys, args = self.append_args(event)
        entry_id = await self._append(keys=keys, args=args)
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def read(
        self, run_id: str, after: str = "0-0", *, block_ms: int | None = None, count: int = 1000
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events after ``after`` (a stream id), waiting up to ``block_ms`` for the first one."""
        return [
            (ident, json.loads(raw))
            for ident, raw in await self.read_raw(run_id, after, block_ms=block_ms, count=count)
        ]

    async def read_raw(
        self, run_id: str, after: str = "0-0", *, block_ms: int | None = None, count: int = 1000
    ) -> list[tuple[str, str]]:
        """As ``read``, with each event still its JSON text (for passing on without re-encoding)."""
        reply = await self.redis.xread({events_key(run_id): after}, count=count, block=block_ms)
        out: list[tuple[str, str]] = []
        for _key, entries in reply or []:
            out.extend(_raw(entries))
        return out

    async def milestones(self, run_id: str, upto: str = "+") -> list[tuple[str, dict[str, Any]]]:
        """The run's milestone entries (every kind but the high-volume ones), up to ``upto``; read from
        the main log once the run was trimmed (its milestones stream is gone, the log holds them)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(milestones_key(run_id))
            pipe.xrange(milestones_key(run_id), "-", upto)
            kept, entries = await pipe.execute()
        if kept:
            return _decode(entries)
        entries = await self.redis.xrange(events_key(run_id), "-", upto)
        return [(i, e) for i, e in _decode(entries) if e.get("kind") not in HIGH_VOLUME_KINDS]

    async def trim(self, run_id: str, ttl_s: int | None = None) -> tuple[int, int] | None:
        """Shrink a finished run's log, in one step: the main log becomes its milestones plus what
        readers fold of the rest (``compact``), under the same ids; the milestones stream goes. The
        log keeps its TTL (``ttl_s``: this one instead). Returns the entries (before, after), or None
        when there was nothing to trim (trimmed before, or gone).

        Call it after ``TurnStore`` marked the run trimmed (appends then leave the milestones stream
        alone); an append while it reads makes it read again."""
        main, miles = events_key(run_id), milestones_key(run_id)
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(main, miles)
                    if not await pipe.exists(miles):
                        return None
                    ttl_ms = await pipe.pttl(main)
                    entries = await _range_all(pipe, main)
                    milestones = await _range_all(pipe, miles)
                    known = {ident for ident, _ in entries}
                    merged = entries + [m for m in milestones if m[0] not in known]
                    merged.sort(key=lambda item: parse_id(item[0]))
                    kept = compact(merged)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.delete(main, miles)
                    for ident, raw in kept:
                        pipe.xadd(main, {"data": raw}, id=ident)
                    if entries:  # ids go on after the last one ever given, even if it was not kept
                        pipe.execute_command("XSETID", main, entries[-1][0])
                    if kept and ttl_s is not None:
                        pipe.expire(main, ttl_s)
                    elif kept and ttl_ms > 0:
                        pipe.pexpire(main, ttl_ms)
                    await pipe.execute()
                    return len(entries), len(kept)
                except WatchError:
                    continue

    async def first(self, run_id: str) -> tuple[str, dict[str, Any]] | None:
        """The oldest entry still in the main log."""
        entries = _decode(await self.redis.xrange(events_key(run_id), "-", "+", count=1))
        return entries[0] if entries else None

    async def first_id(self, run_id: str) -> str | None:
        """The oldest entry still in the main log (None when the log is empty or gone)."""
        entries = await self.redis.xrange(events_key(run_id), "-", "+", count=1)
        return _decode(entries)[0][0] if entries else None

    async def last_id(self, run_id: str) -> str | None:
        entries = await self.redis.xrevrange(events_key(run_id), "+", "-", count=1)
        return _decode(entries)[0][0] if entries else None

    async def all(self, run_id: str) -> list[dict[str, Any]]:
        """Every event of the run still in the log, in order."""
        return [event for _, event in await self.entries(run_id)]

    async def entries(self, run_id: str, after: str = "0-0") -> list[tuple[str, dict[str, Any]]]:
        """Every entry after ``after`` still in the log, with its id, in order."""
        out: list[tuple[str, dict[str, Any]]] = []
        while True:
            batch = await self.read(run_id, after)
            if not batch:
                return out
            after = batch[-1][0]
            out.extend(batch)
