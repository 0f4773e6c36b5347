"""Commands sent in one turn of the loop go to Redis together (``adapters._batching``), on a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from incremental.adapters._batching import batch_commands


def unique(prefix: str) -> str:
    return f"{prefix}:{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the test's Redis whose commands are batched."""
    batched = batch_commands(Redis.from_url(redis_url))
    yield batched
    await batched.aclose()


class Sends:
    """Counts the pipelines a test's clients execute."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pipelines: list[int] = []
        execute = Pipeline.execute

        async def counted(pipe: Pipeline, raise_on_error: bool = True) -> list[Any]:
            self.pipelines.append(len(pipe.command_stack))
            return await execute(pipe, raise_on_error=raise_on_error)

        monkeypatch.setattr(Pipeline, "execute", counted)


async def test_the_commands_of_many_tasks_in_one_turn_go_in_one_write(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sends = Sends(monkeypatch)
    key = unique("count")
    replies = await asyncio.gather(*(client.incr(key) for _ in range(50)))
    assert sorted(replies) == list(range(1, 51))  # each caller got its own reply
    assert sends.pipelines == [50]
    assert int(await client.get(key)) == 50


async def test_a_commands_error_goes_to_its_caller_only(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sends = Sends(monkeypatch)
    text, number = unique("text"), unique("number")
    await client.set(text, "not a number")
    replies = await asyncio.gather(
        client.incr(number), client.incr(text), client.incr(number), return_exceptions=True
    )
    assert replies[0] == 1 and replies[2] == 2
    assert isinstance(replies[1], ResponseError) and "not an integer" in str(replies[1])
    assert sends.pipelines == [3]


async def test_a_script_unknown_to_redis_is_loaded_and_run_in_a_batch(client: Redis) -> None:
    await client.script_flush()
    script = client.register_script(f"return ARGV[1] .. '{uuid.uuid4().hex}'")
    replies = await asyncio.gather(*(script(args=[str(i)]) for i in range(5)))
    assert [r.decode()[:1] for r in replies] == ["0", "1", "2", "3", "4"]


async def test_a_blocking_command_is_sent_alone_and_holds_up_nothing(client: Redis) -> None:
    waiting, key = unique("list"), unique("key")
    pop = asyncio.create_task(client.blpop([waiting], timeout=30))
    await asyncio.sleep(0)  # the pop is sent
    await client.set(key, "v")
    assert await client.get(key) == b"v"
    assert not pop.done()  # the pop still waits; the other commands did not wait behind it
    await client.rpush(waiting, "x")
    assert await asyncio.wait_for(pop, 30) == (waiting.encode(), b"x")


async def test_a_lost_connection_fails_each_caller_of_the_batch() -> None:
    client = batch_commands(Redis(host="127.0.0.1", port=1, socket_connect_timeout=1))  # nothing listens
    try:
        replies = await asyncio.gather(*(client.get(unique("k")) for _ in range(3)), return_exceptions=True)
        assert [type(r) for r in replies] == [RedisConnectionError] * 3
    finally:
        await client.aclose()


async def test_a_caller_cancelled_before_the_send_is_left_out(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sends = Sends(monkeypatch)
    key = unique("count")
    first = asyncio.create_task(client.incr(key))
    cancelled = asyncio.create_task(client.incr(key))
    third = asyncio.create_task(client.incr(key))
    await asyncio.sleep(0)  # all three are waiting for the batch
    cancelled.cancel()
    assert sorted(await asyncio.gather(first, third)) == [1, 2]
    assert sends.pipelines == [2]
    assert int(await client.get(key)) == 2  # the cancelled one was never sent
