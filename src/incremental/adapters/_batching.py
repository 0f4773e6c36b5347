"""Commands that many tasks send in one turn of the event loop go to Redis together, in one write.

A worker runs hundreds of jobs at once (streams, tools, their leases and logs), each making its own
Redis calls. Sent one by one, every call costs a socket write, a wake-up of Redis and a read of its own;
on a busy worker those round trips are a large part of its CPU. ``batch_commands`` makes a client
collect the commands its tasks send during one turn of the loop and send them as one pipeline (not a
transaction: each command means what it meant alone) at the start of the next. Each caller gets its own
reply, or its own error, as if it had sent the command alone:

- A command's ``ResponseError`` (a script's ``NOSCRIPT`` included, which redis-py's ``AsyncScript``
  answers by loading the script) goes to that caller only.
- A lost connection fails, or is retried for, the whole batch, as it would each command: the client's
  own ``Retry`` policy applies to the batch.
- A caller cancelled while its batch is out gets nothing; its command may still run, as a command cut
  by a cancel may.

A command someone is waiting for (a tool's enqueue, whose worker waits on it) goes at once instead,
inside ``with sent_at_once():``, so a loop busy with many streams does not hold it for a turn.

Only commands that answer at once are batched. A blocking one (``BLPOP``, ``XREAD ... BLOCK``, ``WAIT``),
pub/sub, transactions and connection state go as before, on a connection of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from redis.asyncio import Redis

__all__ = ["BATCHED", "batch_commands", "sent_at_once"]

R = TypeVar("R", bound=Redis)

# Commands that never block and carry no connection state, by the names redis-py sends (``incr`` sends
# INCRBY). Anything else is sent on its own.
BATCHED = frozenset(
    {
        "DECRBY",
        "DEL",
        "EVAL",
        "EVALSHA",
        "EXISTS",
        "EXPIRE",
        "EXPIREAT",
        "GET",
        "GETDEL",
        "HDEL",
        "HEXISTS",
        "HGET",
        "HGETALL",
        "HINCRBY",
        "HKEYS",
        "HLEN",
        "HMGET",
        "HSET",
        "HVALS",
        "INCRBY",
        "LINDEX",
        "LLEN",
        "LPOP",
        "LPUSH",
        "LRANGE",
        "LTRIM",
        "MGET",
        "MSET",
        "PEXPIRE",
        "PEXPIREAT",
        "PING",
        "PSETEX",
        "PTTL",
        "PUBLISH",
        "RPOP",
        "RPUSH",
        "SADD",
        "SCARD",
        "SET",
        "SETEX",
        "SETNX",
        "SISMEMBER",
        "SMEMBERS",
        "SREM",
        "STRLEN",
        "TTL",
        "TYPE",
        "XADD",
        "XDEL",
        "XLEN",
        "XRANGE",
        "XREVRANGE",
        "XTRIM",
        "ZADD",
        "ZCARD",
        "ZCOUNT",
        "ZINCRBY",
        "ZRANGE",
        "ZRANGEBYSCORE",
        "ZREM",
        "ZREVRANGE",
        "ZSCORE",
    }
)


_AT_ONCE: ContextVar[bool] = ContextVar("incremental_sent_at_once", default=False)


@contextmanager
def sent_at_once() -> Iterator[None]:
    """The commands this task sends in the block go to Redis at once, each on its own, not with the
    next batch: for a command another process waits on."""
    token = _AT_ONCE.set(True)
    try:
        yield
    finally:
        _AT_ONCE.reset(token)


class _Batcher:
    def __init__(self, client: Redis) -> None:
        self._client = client
        # The client's own (bound before it is replaced).
        self._send_alone: Callable[..., Awaitable[Any]] = client.execute_command
        self._waiting: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        name = args[0]
        if name not in BATCHED or _AT_ONCE.get():
            return await self._send_alone(*args, **options)
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._flush)  # after every task that is ready in this turn has had its go
        self._waiting.append((args, options, reply))
        return await reply

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]]) -> None:
        live = [item for item in batch if not item[2].done()]  # a caller cancelled before the send
        if not live:
            return
        try:
            if len(live) == 1:
                args, options, _ = live[0]
                replies = [await self._send_alone(*args, **options)]
            else:
                pipe = self._client.pipeline(transaction=False)
                for args, options, _ in live:
                    pipe.execute_command(*args, **options)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection (or the send) failed: every caller hears of it
            for _, _, reply in live:
                if reply.done():
                    continue
                if isinstance(exc, Exception):
                    reply.set_exception(exc)
                else:
                    reply.cancel()  # the send itself was cancelled (the loop is closing): so are they
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, reply), value in zip(live, replies, strict=True):
            if reply.done():
                continue
            if isinstance(value, Exception):
                reply.set_exception(value)
            else:
                reply.set_result(value)


def batch_commands(client: R) -> R:
    """Make ``client`` send the commands of one turn of the loop together (see the module docstring);
    returns it. Its pipelines, pub/sub and blocking commands are unchanged."""
    if not isinstance(getattr(client, "_batcher", None), _Batcher):
        batcher = _Batcher(client)
        client._batcher = batcher  # type: ignore[attr-defined]
        client.execute_command = batcher.execute_command  # type: ignore[method-assign]
    return client
