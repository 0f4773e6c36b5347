"""A connection taken from the pool without a turn of the loop (``adapters._checkout``), on a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis._parsers.hiredis import _AsyncHiredisParser
from redis.asyncio import Redis

from incremental.adapters._checkout import quick_checkout


def unique(prefix: str) -> str:
    return f"{prefix}:{uuid.uuid4().hex[:12]}"


def count_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts redis-py's own check of a connection (the read with a zero timeout)."""
    checks: list[int] = []
    check = _AsyncHiredisParser.can_read_destructive

    async def counted(parser: Any) -> Any:
        checks.append(1)
        return await check(parser)

    monkeypatch.setattr(_AsyncHiredisParser, "can_read_destructive", counted)
    return checks


async def test_a_clean_idle_connection_is_handed_out_without_redis_pys_check(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = quick_checkout(Redis.from_url(redis_url))
    try:
        await client.set(unique("k"), 1)  # makes the pool's first connection
        checks = count_checks(monkeypatch)
        for _ in range(20):
            assert await client.ping()
        assert checks == []
        assert len(client.connection_pool._available_connections) == 1  # the one, used again
    finally:
        await client.aclose()


async def test_a_connection_left_with_data_goes_through_redis_pys_checkout_and_is_mended(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = quick_checkout(Redis.from_url(redis_url))
    try:
        key = unique("k")
        await client.set(key, "v")
        [connection] = client.connection_pool._available_connections
        connection._reader.feed_data(b"+stale reply\r\n")  # a reply nobody read
        checks = count_checks(monkeypatch)
        assert await client.get(key) == b"v"  # not the stale reply
        assert checks  # redis-py checked it (and made it anew)
    finally:
        await client.aclose()


async def test_the_connections_of_a_burst_are_made_side_by_side_and_kept(redis_url: str) -> None:
    client = quick_checkout(Redis.from_url(redis_url))
    try:
        keys = [unique("list") for _ in range(20)]
        pops = [asyncio.create_task(client.blpop([key], timeout=30)) for key in keys]
        await asyncio.sleep(0)
        for key in keys:
            await client.rpush(key, "x")
        assert [popped[1] for popped in await asyncio.wait_for(asyncio.gather(*pops), 30)] == [b"x"] * 20
        assert len(client.connection_pool._available_connections) >= 20  # back in the pool, for later
    finally:
        await client.aclose()


def spare_makers() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "redis-spare-connections"]


async def spares_made() -> None:
    await asyncio.gather(*spare_makers())


def gate_connects(pool: Any) -> tuple[asyncio.Event, list[Any]]:
    """New connections of ``pool`` wait for the returned event to connect; the list holds them."""
    gate, made = asyncio.Event(), []
    make = pool.make_connection

    def gated() -> Any:
        connection = make()
        connect = connection.connect

        async def connect_when_let() -> None:
            await gate.wait()
            await connect()

        connection.connect = connect_when_let
        made.append(connection)
        return connection

    pool.make_connection = gated
    return gate, made


@contextlib.asynccontextmanager
async def six_in_use(client: Redis) -> AsyncIterator[None]:
    """Six blocking pops hold six connections; then a ping's checkout asks for spares, which are
    made before the block runs; the pops end after it."""
    pool = client.connection_pool
    keys = [unique("list") for _ in range(6)]
    pops = [asyncio.create_task(client.blpop([key], timeout=30)) for key in keys]
    while len([c for c in pool._in_use_connections if c.is_connected]) < 6:
        await asyncio.sleep(0.01)  # waits for a state; asserts nothing about time
    await spares_made()
    assert await client.ping()  # a checkout with 6 in use
    await spares_made()
    yield
    for key in keys:
        await client.rpush(key, "x")
    await asyncio.wait_for(asyncio.gather(*pops), 30)


async def test_spare_connections_are_made_ahead_of_need_and_used(redis_url: str) -> None:
    client = quick_checkout(Redis.from_url(redis_url), spare=4)
    pool = client.connection_pool
    try:
        await client.set(unique("k"), 1)  # the first connection; its checkout left none idle
        await spares_made()
        assert len(pool._available_connections) == 5  # the first one back, and 4 spares
        assert all(c.is_connected for c in pool._available_connections)
        # A burst of 5 commands at once takes them, while new ones cannot connect (the gate is shut).
        idle = set(pool._available_connections)
        gate, made = gate_connects(pool)
        keys = [unique("list") for _ in range(5)]
        pops = [asyncio.create_task(client.blpop([key], timeout=30)) for key in keys]
        await asyncio.sleep(0)
        assert pool._in_use_connections - set(made) == idle  # the 5 pops are on the 5 spares
        assert spare_makers()  # and more spares are on their way, for what comes next
        gate.set()
        for key in keys:
            await client.rpush(key, "x")
        assert len(await asyncio.wait_for(asyncio.gather(*pops), 30)) == 5
    finally:
        await client.aclose()


async def test_more_spares_as_more_are_in_use(redis_url: str) -> None:
    """The pool keeps as many idle as are in use, when that is more than ``spare``."""
    client = quick_checkout(Redis.from_url(redis_url), spare=1)
    pool = client.connection_pool
    try:
        async with six_in_use(client):
            assert len(pool._available_connections) >= 6
    finally:
        await client.aclose()


async def test_closing_the_pool_stops_spares_being_made_and_leaves_none_open(redis_url: str) -> None:
    client = quick_checkout(Redis.from_url(redis_url), spare=8)
    pool = client.connection_pool
    await client.set(unique("k"), 1)
    await spares_made()
    gate, made = gate_connects(pool)
    taken = [pool._available_connections.pop() for _ in range(len(pool._available_connections))]
    pool._in_use_connections.update(taken)  # as if all were in use: the next checkout asks for spares
    busy = asyncio.create_task(client.ping())
    while not made:
        await asyncio.sleep(0.01)
    [maker] = spare_makers()
    assert not maker.done()  # held at the gate
    busy.cancel()
    await asyncio.gather(busy, return_exceptions=True)
    await client.aclose()  # while the spares are being made
    assert maker.done()
    gate.set()
    await asyncio.sleep(0)
    assert not any(c.is_connected for c in made)
    assert not any(c.is_connected for c in [*pool._available_connections, *pool._in_use_connections])


async def test_spares_that_fail_to_connect_are_dropped(redis_url: str) -> None:
    client = quick_checkout(Redis.from_url(redis_url), spare=3)
    pool = client.connection_pool
    try:
        await client.set(unique("k"), 1)
        await spares_made()
        good = set(pool._available_connections)
        pool.connection_kwargs["port"] = 1  # the next ones cannot connect
        taken = [pool._available_connections.pop() for _ in range(len(pool._available_connections) - 1)]
        pool._in_use_connections.update(taken)
        assert await client.ping()  # on the one left idle; asks for spares, which fail
        await spares_made()  # the failures are logged, not raised
        assert set(pool._available_connections) <= good  # none of the failed ones is kept
        assert all(c in good for c in pool._in_use_connections)
        for connection in taken:
            await pool.release(connection)
    finally:
        await client.aclose()


async def test_a_pool_with_a_bound_keeps_no_spares(redis_url: str) -> None:
    client = quick_checkout(Redis.from_url(redis_url, max_connections=10), spare=4)
    try:
        await client.set(unique("k"), 1)
        assert spare_makers() == []
        assert len(client.connection_pool._available_connections) == 1
    finally:
        await client.aclose()


async def test_spares_are_capped(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import incremental.adapters._checkout as checkout

    monkeypatch.setattr(checkout, "MAX_SPARE", 3)
    client = quick_checkout(Redis.from_url(redis_url), spare=1)
    pool = client.connection_pool
    try:
        async with six_in_use(client):
            assert len(pool._available_connections) == 4  # the ping's and 3 spares: the cap, not 6
    finally:
        await client.aclose()


async def test_a_closed_pool_makes_no_spares(redis_url: str) -> None:
    client = quick_checkout(Redis.from_url(redis_url), spare=4)
    await client.set(unique("k"), 1)
    await spares_made()
    await client.aclose()
    assert await client.ping()  # used again after its close: it connects, and makes no spares
    assert spare_makers() == []
    await client.aclose()


async def test_after_a_spare_fails_none_is_made_for_a_while(redis_url: str) -> None:
    """A Redis that refuses connections (at its maxclients, say) is not asked again at every checkout."""
    client = quick_checkout(Redis.from_url(redis_url), spare=6)
    pool = client.connection_pool
    try:
        assert await client.ping()
        await spares_made()
        attempts: list[int] = []

        class Refused(Exception):
            pass

        kind = type(pool._available_connections[0])

        def refusing() -> Any:
            connection = kind(**pool.connection_kwargs)

            async def connect() -> None:
                attempts.append(1)
                raise Refused("max number of clients reached")

            connection.connect = connect
            return connection

        pool.make_connection = refusing  # type: ignore[method-assign]

        async def checkout_leaving_fewer_idle() -> None:
            taken = pool._available_connections.pop()
            pool._in_use_connections.add(taken)
            assert await client.ping()  # on an idle one: the checkout asks for spares
            await spares_made()

        while not attempts:  # until a top-up has tried (the idle ones run out before that)
            await checkout_leaving_fewer_idle()
        tried = len(attempts)
        await checkout_leaving_fewer_idle()
        assert len(attempts) == tried  # the next checkout tried none
    finally:
        await client.aclose()
