"""A connection taken from the pool without a turn of the loop (``adapters._checkout``), on a real Redis."""

from __future__ import annotations

import asyncio
import uuid
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
