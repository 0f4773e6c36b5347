"""The per-run control channel: how a cancel reaches jobs that are already running, in any process.

::

    inc:control:{run}   stream   entries {"data": JSON}, each one of
                                 {"kind": "cancel_run", "reason": ...}
                                 {"kind": "cancel_tool", "tool_use_id": ..., "reason": ...}
    inc:control         pub/sub  every entry, as it is added: {"run_id", "id", "data"}

Who listens: ``stream_turn`` (for ``cancel_run``) and ``run_tool`` (``cancel_run``, or ``cancel_tool``
for its own id), for as long as the job runs (``follow``). A process holds one subscription to
``inc:control``, whatever the number of jobs it runs, and hands each entry to the jobs of that run: a
job costs no connection and no blocking read of its own, only one read of its run's stream when it
starts. That read, made once the process is subscribed, gets what was sent before the job started; the
subscription gets what comes after; an entry seen both ways is handed over once (ids only go up). When
the subscription's connection is lost, every followed run's stream is read again once it is back, so
nothing sent meanwhile is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.asyncio import ConnectionPool, Redis

__all__ = ["CONTROL_CHANNEL", "RedisControl", "control_key"]

logger = logging.getLogger(__name__)

CONTROL_CHANNEL = "inc:control"
_SUBSCRIBE_WAIT_S = 5.0
Deliver = Callable[[dict[str, Any]], None]


def control_key(run_id: str) -> str:
    return f"inc:control:{run_id}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class _Follower:
    """One job following one run: entries are handed over once each, in id order."""

    def __init__(self, deliver: Deliver) -> None:
        self.deliver = deliver
        self.seen = (0, 0)

    def offer(self, entry_id: str, data: Any) -> None:
        order = _order(entry_id)
        if order <= self.seen:
            return
        self.seen = order
        try:
            self.deliver(json.loads(data))
        except Exception:
            logger.warning("a control entry could not be handed over", exc_info=True)


class RedisControl:
    """Send an entry to a run's channel; follow a run's entries (the ones already sent first)."""

    def __init__(self, redis: Redis, *, maxlen: int = 1000, ttl_s: int = 7 * 24 * 3600) -> None:
        self.redis = redis
        self.maxlen = maxlen
        self.ttl_s = ttl_s
        self._followers: dict[str, set[_Follower]] = {}
        self._hub: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._reader: Redis | None = None

    async def send(self, run_id: str, kind: str, **fields: Any) -> str:
        key = control_key(run_id)
        data = json.dumps({"kind": kind, **fields}, separators=(",", ":"))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"data": data}, maxlen=self.maxlen, approximate=True)
            pipe.expire(key, self.ttl_s)
            entry_id, _ = await pipe.execute()
        entry_id = _text(entry_id)
        message = json.dumps({"run_id": run_id, "id": entry_id, "data": data}, separators=(",", ":"))
        await self.redis.publish(CONTROL_CHANNEL, message)
        return entry_id

    @contextlib.asynccontextmanager
    async def follow(self, run_id: str, deliver: Deliver) -> AsyncIterator[None]:
        """For the block, ``deliver(entry)`` every entry of the run's channel: those already sent, then
        each one as it comes (from any process), once each."""
        follower = _Follower(deliver)
        self._followers.setdefault(run_id, set()).add(follower)
        try:
            if self._hub is None or self._hub.done():
                self._subscribed.clear()
                self._hub = asyncio.create_task(self._listen(), name="control-subscriber")
            # A subscription that cannot be made (Redis down, SUBSCRIBE refused) must not hold the job:
            # it goes on after a bounded wait, with what the catch-up read finds, and hears later
            # entries once the subscription is made.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_SUBSCRIBE_WAIT_S):
                    await self._subscribed.wait()
            if not self._subscribed.is_set():
                logger.warning("no control subscription yet: run %s's job goes on without it", run_id)
            await self._catch_up(run_id, {follower})
            yield
        finally:
            followers = self._followers.get(run_id)
            if followers is not None:
                followers.discard(follower)
                if not followers:
                    del self._followers[run_id]

    async def _catch_up(self, run_id: str, followers: set[_Follower]) -> None:
        for entry_id, data in await self.redis.xrange(control_key(run_id), "-", "+"):
            raw = data.get(b"data") or data.get("data")
            if raw:
                for follower in list(followers):
                    follower.offer(_text(entry_id), raw)

    def _subscriber(self) -> Redis:
        """A client of its own for the subscription (no socket timeout: it waits for as long as it must)."""
        if self._reader is None:
            pool = self.redis.connection_pool
            kwargs = {**pool.connection_kwargs, "socket_timeout": None}
            self._reader = Redis(
                connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs)
            )
        return self._reader

    async def _listen(self) -> None:
        delay = 0.05
        first = True
        while True:
            try:
                async with self._subscriber().pubsub() as pubsub:
                    await pubsub.subscribe(CONTROL_CHANNEL)
                    await pubsub.get_message(timeout=5)  # the subscription's confirmation
                    if not first:  # what was sent while the connection was down
                        for run_id, followers in list(self._followers.items()):
                            await self._catch_up(run_id, set(followers))
                    first = False
                    self._subscribed.set()
                    delay = 0.05
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._dispatch(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("the control subscription failed (%s); subscribing again", exc)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    def _dispatch(self, raw: Any) -> None:
        try:
            message = json.loads(raw)
            followers = self._followers.get(str(message["run_id"]))
            if followers:
                for follower in list(followers):
                    follower.offer(str(message["id"]), message["data"])
        except (ValueError, KeyError, TypeError):
            logger.warning("an unreadable control message was ignored: %r", raw)

    async def aclose(self) -> None:
        if self._hub is not None:
            self._hub.cancel()
            await asyncio.gather(self._hub, return_exceptions=True)
            self._hub = None
        if self._reader is not None:
            await self._reader.aclose()
            await self._reader.connection_pool.disconnect()
            self._reader = None
