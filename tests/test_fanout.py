"""The per-run feed: one Redis reader, many watchers, and a watcher that stops taking is cut off alone."""

from __future__ import annotations

import asyncio

import pytest

from incremental.adapters._arq import connect
from incremental.adapters._eventlog import EventLog
from incremental.events import TextDeltaEvent
from incremental.service._fanout import Fanout, Subscriber, SubscriberCutOff, WatchFailed


async def test_a_stalled_watcher_is_cut_off_and_the_others_get_everything(redis_url: str) -> None:
    pool = await connect(redis_url)
    log = EventLog(pool, metrics=False)
    fanout = Fanout(log, max_pending=50, block_ms=200, batch=10)
    try:
        run_id = "run_fanout_cut"
        stalled = await fanout.subscribe(run_id)
        readers = [await fanout.subscribe(run_id) for _ in range(3)]
        assert len(fanout.feeds) == 1  # one reader of Redis for all four

        async def drain(sub: Subscriber, n: int) -> list[str]:
            got: list[str] = []
            while len(got) < n:
                got.extend(entry.event["text"] for entry in await sub.next_batch())
            return got

        draining = [asyncio.create_task(drain(sub, 300)) for sub in readers]
        for i in range(300):
            await log.append(TextDeltaEvent(run_id=run_id, turn=0, index=0, text=str(i)))
        results = await asyncio.wait_for(asyncio.gather(*draining), 30)
        assert all(r == [str(i) for i in range(300)] for r in results)
        assert stalled.cut and stalled.n_pending == 0  # its backlog was dropped, not kept
        assert fanout.cut_off == 1
        with pytest.raises(SubscriberCutOff):
            await stalled.next_batch()
        for sub in [stalled, *readers]:
            fanout.unsubscribe(sub)
        assert fanout.feeds == {}
    finally:
        await fanout.aclose()
        await pool.aclose()


async def test_watchers_are_told_when_redis_goes_away() -> None:
    from incremental.adapters._redis_server import RedisServer

    server = RedisServer()
    url = server.start()
    pool = await connect(url, outage_s=0)  # the service's feeds read on a client that does not retry
    fanout = Fanout(EventLog(pool, metrics=False), block_ms=200)
    try:
        sub = await fanout.subscribe("run_fanout_gone")
        server.stop()
        with pytest.raises(WatchFailed):
            await asyncio.wait_for(sub.next_batch(), 30)
        assert fanout.feeds == {}
    finally:
        server.stop()
        await fanout.aclose()
        await pool.aclose(close_connection_pool=True)
