"""The per-run feed: one Redis reader, many watchers, and a watcher that stops taking is cut off alone."""

from __future__ import annotations

import asyncio

import pytest

from incremental.adapters._arq import connect
from incremental.adapters._eventlog import EventLog
from incremental.events import TextDeltaEvent
from incremental.service._fanout import Batch, Fanout, Subscriber, SubscriberCutOff, WatchFailed


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


async def test_one_blocking_read_follows_every_watched_run(redis_url: str) -> None:
    pool = await connect(redis_url)
    log = EventLog(pool, metrics=False)
    # A block far longer than the test: a run watched while the reader is blocked only shows up in
    # time if the reader is woken to read again with it.
    fanout = Fanout(log, block_ms=120_000)
    try:
        runs = [f"run_fanout_many_{i}" for i in range(5)]
        subs = []
        for i, run_id in enumerate(runs):
            subs.append(await fanout.subscribe(run_id))
            await log.append(TextDeltaEvent(run_id=run_id, turn=0, index=0, text=f"{i}:first"))
            got = await asyncio.wait_for(subs[-1].next_batch(), 30)
            assert [e.event["text"] for e in got] == [f"{i}:first"]

        async def blocked_reads() -> int:
            clients = await pool.client_list()
            return sum(1 for c in clients if c.get("cmd") == "xread" and "b" in c.get("flags", ""))

        async with asyncio.timeout(30):
            while not await blocked_reads():
                await asyncio.sleep(0.005)
        assert await blocked_reads() == 1  # one blocking read on one connection, for all five runs
        for k in range(20):
            for run_id in runs:
                await log.append(TextDeltaEvent(run_id=run_id, turn=0, index=0, text=f"{run_id}:{k}"))
        for run_id, sub in zip(runs, subs, strict=True):
            got_texts: list[str] = []
            while len(got_texts) < 20:
                got_texts.extend(e.event["text"] for e in await asyncio.wait_for(sub.next_batch(), 30))
            assert got_texts == [f"{run_id}:{k}" for k in range(20)]  # its own run's, in order, once
        for sub in subs:
            fanout.unsubscribe(sub)
        assert fanout.feeds == {}
    finally:
        await fanout.aclose()
        await pool.aclose()


async def test_a_batch_is_encoded_once_and_taken_whole(redis_url: str) -> None:
    pool = await connect(redis_url)
    log = EventLog(pool, metrics=False)
    fanout = Fanout(log, block_ms=200)
    try:
        run_id = "run_fanout_whole"
        a, b = await fanout.subscribe(run_id), await fanout.subscribe(run_id)
        for i in range(30):
            await log.append(TextDeltaEvent(run_id=run_id, turn=0, index=0, text=str(i)))
        got: list[Batch] = []
        while sum(len(batch) for batch in got) < 30:
            got.extend(await asyncio.wait_for(a.next_batches(), 30))
        texts = [e.event["text"] for batch in got for e in batch.entries]
        assert texts == [str(i) for i in range(30)]
        for batch in got:
            assert batch.sse == b"".join(e.sse for e in batch.entries)
            assert batch.milestones == []  # text deltas only
        seen_by_b: list[Batch] = []
        while sum(len(batch) for batch in seen_by_b) < 30:
            seen_by_b.extend(await asyncio.wait_for(b.next_batches(), 30))
        assert all(x is y for x, y in zip(got, seen_by_b, strict=True))  # the same objects, not copies
        fanout.unsubscribe(a)
        fanout.unsubscribe(b)
    finally:
        await fanout.aclose()
        await pool.aclose()


async def test_after_an_outage_a_new_watcher_reads_live_again() -> None:
    from incremental.adapters._redis_server import RedisServer

    server = RedisServer()
    url = server.start()
    pool = await connect(url, outage_s=0)
    log = EventLog(pool, metrics=False)
    fanout = Fanout(log, block_ms=200)
    try:
        first = await fanout.subscribe("run_fanout_outage")
        server.stop()
        with pytest.raises(WatchFailed):
            await asyncio.wait_for(first.next_batch(), 30)
        server = RedisServer(port=server.port)  # back on the same port, empty
        server.start()
        again = await fanout.subscribe("run_fanout_outage")
        await log.append(TextDeltaEvent(run_id="run_fanout_outage", turn=0, index=0, text="back"))
        got = await asyncio.wait_for(again.next_batch(), 30)
        assert [e.event["text"] for e in got] == ["back"]
        fanout.unsubscribe(again)
        assert fanout.feeds == {}
    finally:
        server.stop()
        await fanout.aclose()
        await pool.aclose(close_connection_pool=True)
