"""A connection taken from a redis-py pool without a turn of the event loop.

redis-py 5's asyncio ``ConnectionPool.get_connection`` checks every connection it hands out by reading
from it with a zero timeout (``can_read_destructive``): the task waits for that timeout, so each
command waits one full turn of the event loop before it is even written, and the pool's lock makes
the commands of concurrent tasks take those turns one after another. On a worker whose loop is busy
with hundreds of streams a turn lasts tens of milliseconds, and a tool's enqueue waited that long
behind the check.

``quick_checkout`` makes the pool hand out an idle connection at once when nothing unread is on it:
it is connected, its stream has not ended, and neither its read buffer nor its parser's holds bytes.
With no idle connection, the task that needs one makes its own, outside the pool's lock, so the
connections a burst needs are made side by side rather than one after another. An idle connection
that is closed or holds data goes through redis-py's own checkout, which checks and reconnects it.
A reply left unread on the socket itself, not yet in the buffer, is not seen here; redis-py drops a
connection whose command was cut before its reply was read, so a connection back in the pool has none.

Making a connection costs its task several round trips (connect, then redis-py's handshake), each a
turn of that busy loop: 155 ms on average, 320 ms at worst, on a worker of 100 streams; a tool's
enqueue that needed one reached Redis that late. So, with ``spare``, the pool keeps connections
ahead of need: when a checkout leaves fewer idle than ``spare``, or fewer idle than in use (up to
``MAX_SPARE``), a background task makes the missing ones. A command then finds one ready, unless a
burst outruns them; the pool keeps what it made, as it keeps the connections of any burst. A pool
given a ``max_connections`` keeps no spares (its bound is its owner's); after a spare fails to connect
(Redis down, at its ``maxclients``, refusing the password) none is made for 1 s, doubling to 30 s; a
closed pool makes none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, TypeVar, cast

from redis.asyncio import ConnectionPool, Redis

__all__ = ["SPARE", "quick_checkout"]

R = TypeVar("R", bound=Redis)

logger = logging.getLogger(__name__)

SPARE = 8  # idle connections this project's pools keep ahead of need, at least
MAX_SPARE = 64  # and at most, however many are in use
_BOUNDED = 2**20  # a pool with a lower max_connections keeps no spares: its bound is its owner's
_BACKOFF_S = (1.0, 30.0)  # after a spare failed to connect, no more are made for this long (doubling)


def _idle_and_clean(connection: Any) -> bool:
    reader = getattr(connection, "_reader", None)
    if reader is None or getattr(connection, "_writer", None) is None:
        return False
    if reader.at_eof() or getattr(reader, "_buffer", b"x"):
        return False
    # hiredis's reader says whether it holds bytes; with any other parser, redis-py's checkout decides.
    has_data = getattr(getattr(getattr(connection, "_parser", None), "_reader", None), "has_data", None)
    return has_data is not None and not has_data()


def quick_checkout(client: R, spare: int = 0) -> R:
    """Make ``client``'s pool hand out a clean idle connection without waiting, and keep ``spare``
    idle connections ahead of need (see the module docstring); returns ``client``."""
    pool: ConnectionPool = client.connection_pool
    if getattr(pool, "_quick_checkout", False):
        return client
    checkout = pool.get_connection
    available: list[Any] | None = getattr(pool, "_available_connections", None)
    in_use: set[Any] | None = getattr(pool, "_in_use_connections", None)
    if not isinstance(available, list) or not isinstance(in_use, set):
        return client  # not the pool this was written for: redis-py's own checkout stays
    if cast(Any, pool).max_connections < _BOUNDED:
        spare = 0
    making: set[asyncio.Task[None]] = set()  # at most one: the top-up under way
    connecting: set[Any] = set()  # its connections, not yet in the pool
    state = {"closed": False, "retry_at": 0.0, "delay": 0.0}

    async def make_spares(made: list[Any]) -> None:
        try:
            outcomes = await asyncio.gather(*(c.connect() for c in made), return_exceptions=True)
        except BaseException:  # cancelled: the pool is being closed
            connecting.difference_update(made)
            for connection in made:
                with contextlib.suppress(Exception):
                    await connection.disconnect()
            raise
        connecting.difference_update(made)
        failed = []
        for connection, outcome in zip(made, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failed.append((connection, outcome))
            else:
                available.insert(0, connection)  # the idle ones are taken from the end: these last
        if failed:
            # No more for a while: a Redis that refuses connections (at maxclients, a bad password)
            # is not asked again at every checkout.
            delay = min(max(state["delay"] * 2, _BACKOFF_S[0]), _BACKOFF_S[1])
            state["delay"], state["retry_at"] = delay, asyncio.get_running_loop().time() + delay
            logger.debug("%d spare Redis connection(s) failed: %r", len(failed), failed[0][1])
        else:
            state["delay"] = 0.0
        for connection, _ in failed:
            with contextlib.suppress(Exception):
                await connection.disconnect()

    def top_up() -> None:
        if spare <= 0 or making or state["closed"]:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < state["retry_at"]:
            return
        count = min(max(spare, len(in_use)), MAX_SPARE) - len(available)
        if count <= 0:
            return
        made = [cast(Any, pool).make_connection() for _ in range(count)]
        connecting.update(made)  # closed by disconnect(), if it comes first
        task = loop.create_task(make_spares(made), name="redis-spare-connections")
        making.add(task)
        task.add_done_callback(making.discard)

    async def get_connection(*args: Any, **options: Any) -> Any:
        if available:
            connection = available.pop()
            if _idle_and_clean(connection):
                in_use.add(connection)
                top_up()
                return connection
            available.append(connection)  # redis-py's checkout takes it next, and mends it
            mended = await checkout(*args, **options)
            top_up()
            return mended
        if len(in_use) >= pool.max_connections:
            return await checkout(*args, **options)  # redis-py says why not
        top_up()
        # A new one, connected by this task alone: not under the pool's lock, where the connections
        # of a burst would be made one after another, a few turns of the loop each.
        connection = cast(Any, pool).make_connection()
        in_use.add(connection)
        try:
            await connection.connect()
        except BaseException:
            in_use.discard(connection)
            await connection.disconnect()
            raise
        return connection

    disconnect = pool.disconnect

    async def disconnect_all(*args: Any, **options: Any) -> None:
        state["closed"] = True  # no spare is made, nor left open, once the pool is closed
        for task in list(making):
            task.cancel()
        await asyncio.gather(*making, return_exceptions=True)
        for connection in list(connecting):
            with contextlib.suppress(Exception):
                await connection.disconnect()
        await disconnect(*args, **options)

    pool.get_connection = get_connection
    pool.disconnect = disconnect_all  # type: ignore[method-assign]
    pool._quick_checkout = True  # type: ignore[attr-defined]
    return client
