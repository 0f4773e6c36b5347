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
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from redis.asyncio import ConnectionPool, Redis

__all__ = ["quick_checkout"]

R = TypeVar("R", bound=Redis)


def _idle_and_clean(connection: Any) -> bool:
    reader = getattr(connection, "_reader", None)
    if reader is None or getattr(connection, "_writer", None) is None:
        return False
    if reader.at_eof() or getattr(reader, "_buffer", b"x"):
        return False
    # hiredis's reader says whether it holds bytes; with any other parser, redis-py's checkout decides.
    has_data = getattr(getattr(getattr(connection, "_parser", None), "_reader", None), "has_data", None)
    return has_data is not None and not has_data()


def quick_checkout(client: R) -> R:
    """Make ``client``'s pool hand out a clean idle connection without waiting (see the module
    docstring); returns ``client``."""
    pool: ConnectionPool = client.connection_pool
    if getattr(pool, "_quick_checkout", False):
        return client
    checkout = pool.get_connection
    available: list[Any] | None = getattr(pool, "_available_connections", None)
    in_use: set[Any] | None = getattr(pool, "_in_use_connections", None)
    if not isinstance(available, list) or not isinstance(in_use, set):
        return client  # not the pool this was written for: redis-py's own checkout stays

    async def get_connection(*args: Any, **options: Any) -> Any:
        if available:
            connection = available.pop()
            if _idle_and_clean(connection):
                in_use.add(connection)
                return connection
            available.append(connection)  # redis-py's checkout takes it next, and mends it
            return await checkout(*args, **options)
        if len(in_use) >= pool.max_connections:
            return await checkout(*args, **options)  # redis-py says why not
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

    pool.get_connection = get_connection
    pool._quick_checkout = True  # type: ignore[attr-defined]
    return client
