"""incremental's arq ``Worker`` (push wake-ups, slots by kind, one claim per batch) and the control
channel's one subscription per process, on a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from arq import Retry, func
from arq.connections import RedisSettings
from redis.asyncio import Redis

from incremental import MessagesClient, Runner
from incremental.adapters._arq import _enqueue, connect, job_lease, json_deserializer, json_serializer
from incremental.adapters._control import RedisControl
from incremental.testing import FakeMessagesAPIFactory
from incremental.worker import Worker, _claimed, _unless_running_elsewhere

from . import _toolsets
from ._faults import GO, REQUEST, final_turn, tool_turn

TIMEOUT_S = 30.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def count_run(ctx: dict[str, Any], key: str) -> int:
    return int(await ctx["redis"].incr(key))


@contextlib.asynccontextmanager
async def running(pool: Any, *workers: Worker) -> AsyncIterator[None]:
    """The workers' loops run for the block; then they are closed, and the pool with them."""
    tasks = [asyncio.create_task(worker.main()) for worker in workers]
    try:
        yield
    finally:
        for worker in workers:
            await worker.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.aclose()


def plain_worker(redis_url: str, queue: str, **options: Any) -> Worker:
    return Worker(
        functions=[func(count_run, name="count_run")],
        redis_settings=RedisSettings.from_dsn(redis_url),
        queue_name=queue,
        handle_signals=False,
        job_serializer=json_serializer,
        job_deserializer=json_deserializer,
        **options,
    )


async def test_pushed_and_deferred_jobs_start_without_reading_the_whole_queue(redis_url: str) -> None:
    queue = unique("q")
    pool = await connect(redis_url, queue)
    worker = plain_worker(redis_url, queue, sweep_s=3600)  # after the first: only pushes and due times
    async with running(pool, worker):
        pushed, deferred = unique("pushed"), unique("deferred")
        assert await _enqueue(pool, "count_run", pushed, _job_id=pushed)
        later = await pool.enqueue_job("count_run", deferred, _job_id=deferred, _defer_by=0.5)  # no push
        assert later is not None
        for job_id in (pushed, deferred):
            assert await asyncio.wait_for(_result(pool, job_id), TIMEOUT_S) == 1


async def test_a_job_no_push_announced_is_found_by_the_sweep(redis_url: str) -> None:
    queue = unique("q")
    pool = await connect(redis_url, queue)
    worker = plain_worker(redis_url, queue, sweep_s=0.5)
    async with running(pool, worker):
        plain = unique("plain")
        assert await pool.enqueue_job("count_run", plain, _job_id=plain) is not None  # arq's: no push
        assert await asyncio.wait_for(_result(pool, plain), TIMEOUT_S) == 1


async def _result(pool: Any, job_id: str) -> Any:
    from arq.jobs import Job

    job = Job(job_id, pool, _queue_name=pool.default_queue_name, _deserializer=json_deserializer)
    return await job.result(poll_delay=0.05)


async def test_two_workers_claim_each_of_many_jobs_once(redis_url: str) -> None:
    queue = unique("q")
    pool = await connect(redis_url, queue)
    workers = [plain_worker(redis_url, queue, max_jobs=7) for _ in range(2)]
    async with running(pool, *workers):
        keys = [unique("job") for _ in range(60)]
        for key in keys:
            assert await _enqueue(pool, "count_run", key, _job_id=key)
        results = await asyncio.wait_for(asyncio.gather(*(_result(pool, k) for k in keys)), TIMEOUT_S)
        assert results == [1] * len(keys)  # each ran once: its counter went to 1, never 2
        assert sum(w.jobs_complete for w in workers) == len(keys)


async def test_tools_run_while_streams_are_open_even_with_one_tool_slot(
    redis_url: str, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    """Two runs stream at once on a worker with a single tool slot: each stream stays open long after
    its call was dispatched, and both calls still run. With streams and tools in one pool of slots,
    the first stream would hold the only slot and nothing else could start."""
    turns = [tool_turn([(unique("toolu"), "sleepy", {"seconds": 0})], gap_s=600), final_turn()]
    api = await fake_messages_api(turns, speed=1.0)
    client = MessagesClient(base_url=api.url, api_key="test")
    queue = unique("q")
    runner = Runner(
        tools={"test": _toolsets.registry},
        redis_url=redis_url,
        workers=1,
        model_client=client,
        queue=queue,
        max_jobs=1,
        turn_slots=4,
    )
    await runner.open()
    try:
        runs = [await runner.start(GO, **REQUEST, max_turns=2) for _ in range(2)]

        async def completed_while_streaming(run: Any) -> bool:
            async for event in run.events():
                if event.kind == "tool_completed":
                    return True
                if event.kind in ("message_stopped", "stream_closed"):
                    return False
            return False

        done = await asyncio.wait_for(
            asyncio.gather(*(completed_while_streaming(r) for r in runs)), TIMEOUT_S
        )
        assert done == [True, True]
        for run in runs:
            await run.cancel()
    finally:
        await runner.aclose()
        await client.aclose()


async def test_a_cancel_sent_while_the_subscription_is_down_still_arrives_once(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    control = RedisControl(redis)
    run_id = unique("run")
    got: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    def deliver(entry: dict[str, Any]) -> None:
        got.append(entry)
        arrived.set()

    try:
        await control.send(run_id, "cancel_tool", tool_use_id="before", reason="sent before")
        async with control.follow(run_id, deliver):
            await asyncio.wait_for(arrived.wait(), TIMEOUT_S)  # what was sent before is read first
            assert [e["tool_use_id"] for e in got] == ["before"]
            arrived.clear()
            await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            await control.send(run_id, "cancel_run", reason="sent while cut off")
            await asyncio.wait_for(arrived.wait(), TIMEOUT_S)
            assert [e["kind"] for e in got] == ["cancel_tool", "cancel_run"]
            arrived.clear()
            await control.send(run_id, "cancel_tool", tool_use_id="after", reason="sent after")
            await asyncio.wait_for(arrived.wait(), TIMEOUT_S)
        assert [e.get("tool_use_id") for e in got] == ["before", None, "after"]  # each once, in order
    finally:
        await control.aclose()
        await redis.aclose()


def test_a_bad_slot_count_or_wake_flag_is_refused_naming_its_variable(monkeypatch: Any) -> None:
    import pytest

    from incremental.worker import worker_options

    for variable, value in (
        ("INCREMENTAL_TURN_SLOTS", "lots"),
        ("INCREMENTAL_MAX_JOBS", "0"),
        ("INCREMENTAL_WAKE", "maybe"),
        ("INCREMENTAL_BATCH", "sometimes"),
        ("INCREMENTAL_ADMIT_LAG_MS", "-5"),
        ("INCREMENTAL_ADMIT_LAG_MS", "soon"),
    ):
        with monkeypatch.context() as patch:
            patch.setenv(variable, value)
            with pytest.raises(ValueError, match=variable):
                worker_options({"test": _toolsets.registry})
    assert worker_options({"test": _toolsets.registry}, turn_slots=0)["turn_slots"] == 0
    # 1000 tool slots by default; 100 when streams share them (as many streams could take them).
    assert worker_options({"test": _toolsets.registry})["max_jobs"] == 1000
    assert worker_options({"test": _toolsets.registry}, turn_slots=0)["max_jobs"] == 100
    assert worker_options({"test": _toolsets.registry}, turn_slots=0, max_jobs=7)["max_jobs"] == 7
    monkeypatch.setenv("INCREMENTAL_BATCH", "0")
    assert worker_options({"test": _toolsets.registry})["batch"] is False


def test_a_worker_process_runs_on_uvloop_unless_told_not_to(monkeypatch: Any) -> None:
    import pytest
    import uvloop

    from incremental.worker import _loop_factory

    assert _loop_factory() is uvloop.new_event_loop
    monkeypatch.setenv("INCREMENTAL_UVLOOP", "0")
    assert _loop_factory() is None  # asyncio's own loop
    monkeypatch.setenv("INCREMENTAL_UVLOOP", "perhaps")
    with pytest.raises(ValueError, match="INCREMENTAL_UVLOOP"):
        _loop_factory()


def test_a_worker_process_tunes_its_garbage_collector_unless_told_not_to(monkeypatch: Any) -> None:
    import gc

    import pytest

    from incremental.worker import _tune_gc

    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    try:
        monkeypatch.setenv("INCREMENTAL_GC", "0")
        assert not _tune_gc()
        assert gc.get_threshold() == thresholds and gc.get_freeze_count() == frozen
        monkeypatch.setenv("INCREMENTAL_GC", "1")
        assert _tune_gc()
        assert gc.get_threshold() == (20_000, 20, 20)
        assert gc.get_freeze_count() > frozen  # what existed is out of the collector's scans
        monkeypatch.setenv("INCREMENTAL_GC", "often")
        with pytest.raises(ValueError, match="INCREMENTAL_GC"):
            _tune_gc()
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_a_worker_process_splits_its_loops_unless_told_not_to(monkeypatch: Any) -> None:
    import pytest

    from incremental.worker import _splits, settings

    worker_settings = settings({"test": _toolsets.registry})
    assert _splits(worker_settings, {})
    assert not _splits(worker_settings, {"turn_slots": 0})  # streams share the tool slots: one loop
    monkeypatch.setenv("INCREMENTAL_TOOL_LOOP", "0")
    assert not _splits(worker_settings, {})
    monkeypatch.setenv("INCREMENTAL_TOOL_LOOP", "two")
    with pytest.raises(ValueError, match="INCREMENTAL_TOOL_LOOP"):
        _splits(worker_settings, {})


async def test_a_job_goes_on_when_the_control_subscription_cannot_be_made(
    redis_url: str, monkeypatch: Any
) -> None:
    """The subscriber's connection is refused (nothing listens there): ``follow`` still returns, with
    what was sent before read from the run's stream."""
    import incremental.adapters._control as control_module

    monkeypatch.setattr(control_module, "_SUBSCRIBE_WAIT_S", 0.2)
    redis = Redis.from_url(redis_url)
    control = RedisControl(redis)
    control._reader = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)  # nothing listens
    run_id = unique("run")
    got: list[dict[str, Any]] = []
    try:
        await control.send(run_id, "cancel_run", reason="sent before")
        async with asyncio.timeout(TIMEOUT_S):
            async with control.follow(run_id, got.append):
                pass
        assert [e["kind"] for e in got] == ["cancel_run"]
    finally:
        await control.aclose()
        await redis.aclose()


# ---------------------------------------------------------------- the job protocol: start in the claim,
# end in one call, with arq's meaning


async def retry_once(ctx: dict[str, Any], key: str) -> int:
    """Asks to be run again 0.3 s later on its first try; returns its try the second time."""
    await ctx["redis"].rpush(key, ctx["job_try"])
    if ctx["job_try"] == 1:
        raise Retry(defer=0.3)
    return int(ctx["job_try"])


async def retry_now_once(ctx: dict[str, Any], key: str) -> int:
    """Asks to be run again at once (no defer) on its first try; returns its try the second time."""
    if ctx["job_try"] == 1:
        raise Retry()
    return int(ctx["job_try"])


async def sleeps_briefly(ctx: dict[str, Any], key: str) -> str:
    await asyncio.sleep(0.2)
    return key


async def always_fails(ctx: dict[str, Any], key: str) -> int:
    raise RuntimeError(f"{key} failed on purpose")


async def hogs_the_loop(ctx: dict[str, Any], key: str) -> int:
    """Blocks its worker's event loop 60 ms at a time (as a process with too many streams would be)
    until ``key:stop`` is set; says it is at it on ``key`` after two rounds."""
    rounds = 0
    while not await ctx["redis"].exists(f"{key}:stop"):
        time.sleep(0.06)
        rounds += 1
        if rounds == 2:
            await ctx["redis"].rpush(key, "hogging")
    return rounds


async def waits_forever(ctx: dict[str, Any], key: str) -> int:
    await ctx["redis"].rpush(key, ctx["job_try"])
    await asyncio.Event().wait()
    return 0


LEASE_S = 3.0


async def holds_its_lease(ctx: dict[str, Any], key: str) -> int:
    """A job held as incremental's jobs hold theirs: under a lease, stepping back while another
    execution of it is alive. Each execution that runs says so on ``key``, then waits for ``key:go``."""
    async with job_lease(ctx["redis"], ctx["job_id"], LEASE_S, claimed=_claimed(ctx, LEASE_S)) as held:
        await _unless_running_elsewhere(ctx, held)
        await ctx["redis"].rpush(key, ctx["job_try"])
        while not await ctx["redis"].exists(f"{key}:go"):
            await asyncio.sleep(0.02)
    return int(ctx["job_try"])


def protocol_worker(redis_url: str, queue: str, **options: Any) -> Worker:
    functions = [
        func(holds_its_lease, name="holds_its_lease"),
        func(count_run, name="count_run"),
        func(retry_once, name="retry_once"),
        func(always_fails, name="always_fails"),
        func(retry_now_once, name="retry_now_once"),
        func(sleeps_briefly, name="sleeps_briefly"),
        func(waits_forever, name="waits_forever", max_tries=3),
        func(hogs_the_loop, name="hogs_the_loop"),
    ]
    return Worker(
        functions=functions,
        redis_settings=RedisSettings.from_dsn(redis_url),
        queue_name=queue,
        handle_signals=False,
        job_serializer=json_serializer,
        job_deserializer=json_deserializer,
        **options,
    )


async def _job_keys(pool: Any, job_id: str) -> list[int]:
    return [
        int(await pool.exists(f"{prefix}{job_id}"))
        for prefix in ("arq:job:", "arq:retry:", "arq:in-progress:")
    ]


async def test_a_job_ends_as_arq_ends_it_its_result_kept_and_its_keys_gone(redis_url: str) -> None:
    queue = unique("q")
    pool = await connect(redis_url, queue)
    worker = protocol_worker(redis_url, queue, sweep_s=3600)
    async with running(pool, worker):
        ok, bad = unique("ok"), unique("bad")
        assert await _enqueue(pool, "count_run", ok, _job_id=ok)
        assert await _enqueue(pool, "always_fails", bad, _job_id=bad)
        assert await asyncio.wait_for(_result(pool, ok), TIMEOUT_S) == 1
        try:
            await asyncio.wait_for(_result(pool, bad), TIMEOUT_S)
        except RuntimeError as exc:  # arq's Job.result raises what the job raised
            assert "failed on purpose" in str(exc)
        else:
            raise AssertionError("a failed job's result must say it failed")
        for job_id in (ok, bad):
            assert await _job_keys(pool, job_id) == [0, 0, 0]
            assert await pool.zscore(queue, job_id) is None
            assert 0 < await pool.pttl(f"arq:result:{job_id}") <= worker.keep_result_s * 1000
        assert (worker.jobs_complete, worker.jobs_failed) == (1, 1)


async def test_a_deferred_retry_is_announced_and_runs_again_without_the_sweep(redis_url: str) -> None:
    queue = unique("q")
    pool = await connect(redis_url, queue)
    worker = protocol_worker(redis_url, queue, sweep_s=3600)
    async with running(pool, worker):
        job_id, tries = unique("retry"), unique("tries")
        assert await _enqueue(pool, "retry_once", tries, _job_id=job_id)
        assert await asyncio.wait_for(_result(pool, job_id), TIMEOUT_S) == 2
        assert [int(t) for t in await pool.lrange(tries, 0, -1)] == [1, 2]
        assert worker.jobs_retried == 1 and worker.jobs_complete == 1


async def test_a_job_its_closing_worker_cancelled_is_announced_and_another_worker_runs_it(
    redis_url: str,
) -> None:
    """Stopped by its worker's close, the job goes back to the queue (arq's meaning) and is pushed again:
    a second worker that only listens for pushes starts it at once, as its second try."""
    queue = unique("q")
    pool = await connect(redis_url, queue)
    first = protocol_worker(redis_url, queue, sweep_s=3600)
    second = protocol_worker(redis_url, queue, sweep_s=3600)
    first_task = asyncio.create_task(first.main())
    second_task: asyncio.Task[None] | None = None
    try:
        job_id, tries = unique("forever"), unique("tries")
        assert await _enqueue(pool, "waits_forever", tries, _job_id=job_id)
        assert await asyncio.wait_for(pool.blpop([tries], timeout=TIMEOUT_S), TIMEOUT_S) is not None
        await first.close()
        first_task.cancel()
        await asyncio.gather(first_task, return_exceptions=True)
        assert await _job_keys(pool, job_id) == [1, 1, 0]  # queued again, its try counted, not claimed
        second_task = asyncio.create_task(second.main())
        popped = await asyncio.wait_for(pool.blpop([tries], timeout=TIMEOUT_S), TIMEOUT_S)
        assert popped is not None and int(popped[1]) == 2
    finally:
        await second.close()
        if second_task is not None:
            second_task.cancel()
            await asyncio.gather(second_task, return_exceptions=True)
        await pool.aclose()


async def test_a_job_past_its_tries_ends_failed_without_running(redis_url: str) -> None:
    queue = unique("q")
    pool = await connect(redis_url, queue)
    worker = protocol_worker(redis_url, queue, sweep_s=3600)
    async with running(pool, worker):
        job_id, tries = unique("spent"), unique("tries")
        await pool.set(f"arq:retry:{job_id}", 3)  # three tries were made (and cut short) before
        assert await _enqueue(pool, "waits_forever", tries, _job_id=job_id)
        try:
            await asyncio.wait_for(_result(pool, job_id), TIMEOUT_S)
        except Exception as exc:
            assert "max 3 retries exceeded" in str(exc)
        else:
            raise AssertionError("a job past its tries must end failed")
        assert await pool.llen(tries) == 0  # it never ran
        assert await _job_keys(pool, job_id) == [0, 0, 0]


def test_arqs_abort_is_refused_with_what_to_use_instead(redis_url: str) -> None:
    try:
        protocol_worker(redis_url, unique("q"), allow_abort_jobs=True)
    except ValueError as exc:
        assert "Run.cancel" in str(exc)
    else:
        raise AssertionError("allow_abort_jobs must be refused")


async def _blpops(pool: Any) -> int:
    stats = await pool.info("commandstats")
    return int(stats.get("cmdstat_blpop", {}).get("calls", 0))


async def test_a_worker_with_its_turn_slots_full_waits_for_tools_only(redis_url: str) -> None:
    """Turn jobs announced while every turn slot is taken stay announced for a worker with room; this
    one keeps taking tools, and does not pop (and give back) the turn jobs it cannot run."""
    queue = unique("q")
    pool = await connect(redis_url, queue)
    worker = protocol_worker(redis_url, queue, sweep_s=3600, turn_slots=1, max_jobs=2)
    async with running(pool, worker):
        held = unique("held")
        assert await _enqueue(pool, "waits_forever", held, _job_id=f"inc:stream:{held}")
        assert await asyncio.wait_for(pool.blpop([held], timeout=TIMEOUT_S), TIMEOUT_S) is not None
        waiting = [f"inc:stream:{unique('later')}" for _ in range(2)]
        for job_id in waiting:
            assert await _enqueue(pool, "count_run", unique("n"), _job_id=job_id)
        first = unique("tool")
        assert await _enqueue(pool, "count_run", first, _job_id=first)
        assert await asyncio.wait_for(_result(pool, first), TIMEOUT_S) == 1
        before = await _blpops(pool)
        second = unique("tool")
        assert await _enqueue(pool, "count_run", second, _job_id=second)
        assert await asyncio.wait_for(_result(pool, second), TIMEOUT_S) == 1
        assert await _blpops(pool) - before <= 4  # a pop or two per tool, not a loop over the turn jobs
        announced = await pool.lrange(f"inc:wake:{queue}:turns", 0, -1)
        assert {j.encode() for j in waiting} <= set(announced)  # still announced, for a worker with room
        assert [await pool.exists(f"arq:job:{j}") for j in waiting] == [1, 1]  # still queued, not run


async def test_a_worker_whose_loop_lags_takes_tools_but_no_new_stream_until_it_catches_up(
    redis_url: str,
) -> None:
    queue = unique("q")
    pool = await connect(redis_url, queue)
    worker = protocol_worker(redis_url, queue, sweep_s=3600, admit_lag_ms=20)
    async with running(pool, worker):
        hog = unique("hog")  # a stream of the worker's own, which keeps its loop busy
        assert await _enqueue(pool, "hogs_the_loop", hog, _job_id=f"inc:stream:{hog}")
        assert await asyncio.wait_for(pool.blpop([hog], timeout=TIMEOUT_S), TIMEOUT_S) is not None
        stream, tool = f"inc:stream:{unique('s')}", unique("tool")
        assert await _enqueue(pool, "count_run", unique("n"), _job_id=stream)
        assert await _enqueue(pool, "count_run", tool, _job_id=tool)
        assert await asyncio.wait_for(_result(pool, tool), TIMEOUT_S) == 1  # tools are still taken
        assert await _job_keys(pool, stream) == [1, 0, 0]  # the stream was not: queued, never claimed
        await pool.set(f"{hog}:stop", 1)
        assert await asyncio.wait_for(_result(pool, stream), TIMEOUT_S) == 1  # caught up: it runs


async def test_a_retry_without_defer_runs_again_at_once_on_the_same_worker(redis_url: str) -> None:
    queue = unique("q")
    pool = await connect(redis_url, queue)
    worker = protocol_worker(redis_url, queue, sweep_s=3600, idle_s=3600)  # only pushes start jobs
    async with running(pool, worker):
        job_id = unique("again")
        assert await _enqueue(pool, "retry_now_once", job_id, _job_id=job_id)
        assert await asyncio.wait_for(_result(pool, job_id), TIMEOUT_S) == 2


async def test_a_freed_slot_takes_the_next_announced_job_of_its_kind(redis_url: str) -> None:
    """One tool slot, two tools announced together: the second starts when the first ends, not at the
    next sweep (there is none here) nor when the worker's wait runs out (it never does)."""
    queue = unique("q")
    pool = await connect(redis_url, queue)
    worker = protocol_worker(redis_url, queue, sweep_s=3600, idle_s=3600, max_jobs=1)
    async with running(pool, worker):
        first, second = unique("first"), unique("second")
        assert await _enqueue(pool, "sleeps_briefly", first, _job_id=first)
        assert await _enqueue(pool, "sleeps_briefly", second, _job_id=second)
        results = await asyncio.wait_for(
            asyncio.gather(_result(pool, first), _result(pool, second)), TIMEOUT_S
        )
        assert results == [first, second]


async def test_a_try_redelivered_before_its_first_execution_renewed_steps_back(redis_url: str) -> None:
    """A Redis outage outlasts a job's lease before its execution has renewed it even once, and another
    worker is given the job. The claim wrote the first execution's heartbeat, so the second try sees an
    execution that is alive, steps back, and the call runs once."""
    queue = unique("q")
    pool = await connect(redis_url, queue)
    first = protocol_worker(redis_url, queue, sweep_s=3600, max_jobs=1, lease_s=LEASE_S)
    second = protocol_worker(redis_url, queue, sweep_s=3600, max_jobs=1, lease_s=LEASE_S)
    async with running(pool, first):
        job_id, key = unique("held"), unique("ran")
        assert await _enqueue(pool, "holds_its_lease", key, _job_id=job_id)
        assert await asyncio.wait_for(pool.blpop([key], timeout=TIMEOUT_S), TIMEOUT_S) is not None
        assert await pool.hlen(f"inc:alive:{job_id}") == 1  # the claim's heartbeat, before any renewal
        await pool.delete(f"arq:in-progress:{job_id}")  # the lease ran out while Redis was away
        async with running(await connect(redis_url, queue), second):

            async def stepped_back_or_ran() -> None:
                while second.jobs_retried == 0 and await pool.llen(key) == 0:
                    await asyncio.sleep(0.02)

            await asyncio.wait_for(stepped_back_or_ran(), TIMEOUT_S)
            assert await pool.llen(key) == 0  # it stepped back without running
            assert second.jobs_retried == 1
            assert await pool.hlen(f"inc:alive:{job_id}") == 1  # and took its own heartbeat back
            await pool.set(f"{key}:go", 1)
            assert await asyncio.wait_for(_result(pool, job_id), TIMEOUT_S) == 1
        assert await pool.llen(key) == 0
        assert await pool.exists(f"inc:alive:{job_id}") == 0  # a job done takes its heartbeats
        assert await _job_keys(pool, job_id) == [0, 0, 0]


async def test_a_job_enqueued_after_the_claims_clock_was_read_is_claimed_by_that_claim(
    redis_url: str,
) -> None:
    """A busy worker reads its clock, then sends its claim a while later; a job enqueued in between is
    popped by that claim (the rest of a burst), and must be claimed by it, not left for the sweep."""
    from incremental.adapters._arq_worker import _TAKE, wake_key

    queue = unique("q")
    pool = await connect(redis_url, queue)
    try:
        job_id = unique("late")
        before = int(time.time() * 1000) - 300  # the worker's clock, read before the enqueue
        assert await _enqueue(pool, "count_run", job_id, _job_id=job_id)
        take = pool.register_script(_TAKE)
        claimed, _ = await take(
            keys=[queue, wake_key(queue), wake_key(queue, "inc:stream:x")],
            args=[before, 30_000, "", 5, 0, "beat"],
        )
        assert claimed[0].decode() == job_id and claimed[1] != 0  # popped and claimed, in one call
        assert await pool.exists(f"arq:in-progress:{job_id}") == 1
    finally:
        await pool.aclose()


async def test_a_worker_of_one_kind_takes_only_its_kind_and_waits_long_when_idle(redis_url: str) -> None:
    """The two loops of a worker process: one of tools only (``serve_turns=False``), one of turns only
    (``max_jobs=0``). Each leaves the other's jobs queued, and an idle one is not woken every few ms by
    the kind it has no slots for."""
    queue = unique("q")
    pool = await connect(redis_url, queue)
    tools = protocol_worker(redis_url, queue, sweep_s=3600, idle_s=1.0, serve_turns=False)
    async with running(pool, tools):
        stream, tool = f"inc:stream:{unique('s')}", unique("tool")
        assert await _enqueue(pool, "count_run", unique("n"), _job_id=stream)
        assert await _enqueue(pool, "count_run", tool, _job_id=tool)
        assert await asyncio.wait_for(_result(pool, tool), TIMEOUT_S) == 1
        assert await _job_keys(pool, stream) == [1, 0, 0]  # a turn job: queued, not claimed
        before = await _blpops(pool)
        await asyncio.sleep(1.5)
        assert await _blpops(pool) - before <= 3  # waits of up to idle_s, not of 50 ms
    turns = protocol_worker(redis_url, queue, sweep_s=0.2, max_jobs=0, turn_slots=5)
    other = unique("tool")
    pool = await connect(redis_url, queue)
    async with running(pool, turns):
        assert await asyncio.wait_for(_result(pool, stream), TIMEOUT_S) == 1  # the one tools left
        assert await _enqueue(pool, "count_run", other, _job_id=other)
        swept = turns._next_sweep

        async def swept_twice() -> None:
            nonlocal swept
            for _ in range(2):
                while turns._next_sweep == swept:
                    await asyncio.sleep(0.02)
                swept = turns._next_sweep

        await asyncio.wait_for(swept_twice(), TIMEOUT_S)  # it read the whole queue since the enqueue
        assert await _job_keys(pool, other) == [1, 0, 0]  # a tool: left for a worker of tools


def test_a_worker_needs_a_slot_for_some_kind() -> None:
    import pytest

    with pytest.raises(ValueError, match="needs a slot"):
        protocol_worker("redis://127.0.0.1:1", unique("q"), max_jobs=0, serve_turns=False)


async def test_an_execution_that_steps_back_after_its_job_was_done_elsewhere_leaves_no_trace(
    redis_url: str,
) -> None:
    """The second try of a job steps back (``Retry`` with a defer) just after the first one finished the
    job: the job is not queued again (a due time with no job would be claimed as an expired one)."""
    from incremental.adapters._arq_worker import _FINISH, wake_key

    queue = unique("q")
    pool = await connect(redis_url, queue)
    try:
        job_id = unique("done")
        finish = pool.register_script(_FINISH)
        ended = await finish(
            keys=[queue, wake_key(queue, job_id)], args=[job_id, "again", "", 0, 3000, 0, "b"]
        )
        assert ended == 0
        assert await pool.zscore(queue, job_id) is None
        assert await pool.llen(wake_key(queue, job_id)) == 0
    finally:
        await pool.aclose()
