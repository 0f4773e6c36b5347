"""The bounds of a turn's waits for the model (``pipeline._deadlines``), on a model client of its own:
a stream whose items come at the pace the test sets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from incremental.exceptions import StreamTimeoutError
from incremental.pipeline._deadlines import Drain, GuardedClient, HandedOver, StreamLimits


class PacedClient:
    """A model client whose stream yields ``items`` items, waiting ``gaps[i]`` seconds before item i
    (the last gap repeats), or forever when ``gaps`` is empty after ``items`` items."""

    def __init__(self, items: int, gaps: list[float], *, stall_after: int | None = None) -> None:
        self.items, self.gaps, self.stall_after = items, gaps, stall_after

    @contextlib.asynccontextmanager
    async def stream(self, request: Any, *, betas: Any = ()) -> AsyncIterator[AsyncIterator[int]]:
        async def items() -> AsyncIterator[int]:
            for i in range(self.items):
                if self.stall_after is not None and i >= self.stall_after:
                    await asyncio.Event().wait()
                await asyncio.sleep(self.gaps[min(i, len(self.gaps) - 1)])
                yield i

        yield items()


def guarded(
    client: Any, *, idle_s: float, total_s: float = 60.0, drain: Drain | None = None
) -> GuardedClient:
    loop = asyncio.get_running_loop()
    return GuardedClient(
        client,
        StreamLimits(headers_s=5.0, idle_s=idle_s, total_s=total_s),
        deadline=loop.time() + total_s,
        drain=drain or Drain(),
        may_hand_over=lambda: True,
    )


async def read_all(guard: GuardedClient) -> list[int]:
    async with guard.stream({}) as stream:
        return [item async for item in stream]


async def test_a_stream_whose_items_keep_coming_is_never_cut_however_long_it_lasts() -> None:
    """Forty waits of 20 ms add up to far more than the 0.3 s bound of one wait: only each wait counts."""
    guard = guarded(PacedClient(40, [0.02]), idle_s=0.3)
    assert await read_all(guard) == list(range(40))


async def test_a_stream_that_goes_quiet_is_cut_with_an_idle_timeout() -> None:
    guard = guarded(PacedClient(10, [0.01], stall_after=3), idle_s=0.3)
    seen: list[int] = []
    with pytest.raises(StreamTimeoutError) as raised:
        async with guard.stream({}) as stream:
            async for item in stream:
                seen.append(item)
    assert raised.value.kind == "idle" and "went quiet" in str(raised.value)
    assert seen == [0, 1, 2]  # what arrived before the silence was all read


async def test_a_stream_past_the_turns_deadline_is_cut_with_a_total_timeout() -> None:
    guard = guarded(PacedClient(1000, [0.02]), idle_s=30.0, total_s=0.4)
    with pytest.raises(StreamTimeoutError) as raised:
        await read_all(guard)
    assert raised.value.kind == "total"


async def test_handling_an_item_for_longer_than_the_bound_is_not_a_quiet_stream() -> None:
    """Only the waits for the model are bounded: the time spent on what arrived is the worker's."""
    guard = guarded(PacedClient(3, [0.01]), idle_s=0.2)
    seen = []
    async with guard.stream({}) as stream:
        async for item in stream:
            await asyncio.sleep(0.5)  # handling, past the bound: the watchdog finds no wait to cut
            seen.append(item)
    assert seen == [0, 1, 2]


async def test_a_stream_sets_a_few_timers_not_one_a_wait() -> None:
    loop = asyncio.get_running_loop()
    timers = 0
    call_at = loop.call_at

    def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        nonlocal timers
        timers += 1  # the items come with no wait (sleep(0) sets no timer): every timer is the guard's
        return call_at(when, callback, *args, **kwargs)

    guard = guarded(PacedClient(200, [0.0]), idle_s=30.0)
    loop.call_at = counting  # type: ignore[method-assign]
    try:
        assert len(await read_all(guard)) == 200
    finally:
        loop.call_at = call_at  # type: ignore[method-assign]
    assert timers <= 2


async def test_a_hand_over_cuts_the_wait_under_way() -> None:
    drain = Drain()
    guard = guarded(PacedClient(10, [0.01], stall_after=2), idle_s=30.0, drain=drain)
    seen: list[int] = []

    async def read() -> None:
        async with guard.stream({}) as stream:
            async for item in stream:
                seen.append(item)
                if item == 1:
                    asyncio.get_running_loop().call_later(0.05, drain.hand_over)

    with pytest.raises(HandedOver):
        await asyncio.wait_for(read(), 10)
    assert seen == [0, 1]


async def test_a_cancel_from_elsewhere_during_a_wait_stays_a_cancel() -> None:
    guard = guarded(PacedClient(10, [0.01], stall_after=1), idle_s=30.0)
    task = asyncio.create_task(read_all(guard))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
