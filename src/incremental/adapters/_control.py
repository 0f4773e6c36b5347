"""The per-run control channel: how a cancel reaches jobs that are already running, in any process.

::

    inc:control:{run}   stream   entries {"data": JSON}, each one of
                                 {"kind": "cancel_run", "reason": ...}
                                 {"kind": "cancel_tool", "tool_use_id": ..., "reason": ...}

Who listens: ``stream_turn`` (for ``cancel_run``) and ``run_tool`` (``cancel_run``, or ``cancel_tool``
for its own id), each in a side task for as long as the job runs. ``entries`` yields what the stream
already holds first (XREAD from ``0-0`` answers at once when there is anything), then blocks for what
comes next from the last id it saw: an entry added before the listener started is not missed, none is
read twice, and nothing polls.

Blocking reads use a client of their own (with its own connection pool and no socket timeout):
redis-py drops a connection whose read is cancelled, and every listener is cancelled when its job
ends; the jobs' own pool must not pay that reconnect on the way to the next model request.

"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

from redis.asyncio import ConnectionPool, Redis

__all__ = ["RedisControl", "control_key"]

_BLOCK_MS = 30_000  # one blocking read at a time; re-issued, so a half-open connection is noticed


def control_key(run_id: str) -> str:
    return f"inc:control:{run_id}"


class RedisControl:
    """Send an entry to a run's channel; follow a run's entries (the ones already sent first)."""

    def __init__(self, redis: Redis, *, maxlen: int = 1000, ttl_s: int = 7 * 24 * 3600) -> None:
        self.redis = redis
        self.maxlen = maxlen
        self.ttl_s = ttl_s
        self._reader: Redis | None = None

    def _blocking_client(self) -> Redis:
        if self._reader is None:
            pool = self.redis.connection_pool
            kwargs = {**pool.connection_kwargs, "socket_timeout": None}
            self._reader = Redis(
                connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs)
            )
        return self._reader

    async def send(self, run_id: str, kind: str, **fields: Any) -> str:
        key = control_key(run_id)
        data = json.dumps({"kind": kind, **fields}, separators=(",", ":"))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"data": data}, maxlen=self.maxlen, approximate=True)
            pipe.expire(key, self.ttl_s)
            entry_id, _ = await pipe.execute()
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def entries(self, run_id: str) -> AsyncGenerator[dict[str, Any], None]:
        reader, key, after = self._blocking_client(), control_key(run_id), "0-0"
        while True:
            reply = await reader.xread({key: after}, count=100, block=_BLOCK_MS)
            for _key, items in reply or []:
                for entry_id, data in items:
                    after = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                    raw = data.get(b"data") or data.get("data")
                    if raw:
                        yield json.loads(raw)

    async def aclose(self) -> None:
        if self._reader is not None:
            await self._reader.aclose()
            await self._reader.connection_pool.disconnect()
            self._reader = None
