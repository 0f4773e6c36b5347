"""The run's event log: one ordered, capped Redis Stream per run, every entry one JSON object.

Every step of a run (turn started, text, tool ready, enqueued, started, progress, completed, turn
sealed, continued, run finished) is appended here, by whichever process saw it happen; the live views
read it back in order. Each entry has ``v`` (schema version), ``kind``, ``ts`` (wall clock seconds) and
``run_id``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

__all__ = ["EVENT_SCHEMA_VERSION", "EventLog", "events_key"]

EVENT_SCHEMA_VERSION = 1


def events_key(run_id: str) -> str:
    return f"inc:events:{run_id}"


class EventLog:
    def __init__(self, redis: Redis, *, maxlen: int = 100_000, ttl_s: int = 7 * 24 * 3600) -> None:
        self.redis = redis
        self.maxlen = maxlen
        self.ttl_s = ttl_s

    async def append(self, run_id: str, kind: str, **fields: Any) -> str:
        """Append one event; returns its stream id."""
        event = {"v": EVENT_SCHEMA_VERSION, "kind": kind, "ts": time.time(), "run_id": run_id, **fields}
        key = events_key(run_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(
                key, {"data": json.dumps(event, separators=(",", ":"))}, maxlen=self.maxlen, approximate=True
            )
            pipe.expire(key, self.ttl_s)
            entry_id, _ = await pipe.execute()
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def read(
        self, run_id: str, after: str = "0-0", *, block_ms: int | None = None, count: int = 1000
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events after ``after`` (a stream id), waiting up to ``block_ms`` for the first one."""
        reply = await self.redis.xread({events_key(run_id): after}, count=count, block=block_ms)
        out: list[tuple[str, dict[str, Any]]] = []
        for _key, entries in reply or []:
            for entry_id, data in entries:
                raw = data.get(b"data") or data.get("data")
                ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                out.append((ident, json.loads(raw)))
        return out

    async def all(self, run_id: str) -> list[dict[str, Any]]:
        """Every event of the run, in order."""
        events: list[dict[str, Any]] = []
        after = "0-0"
        while True:
            batch = await self.read(run_id, after)
            if not batch:
                return events
            after = batch[-1][0]
            events.extend(e for _, e in batch)
