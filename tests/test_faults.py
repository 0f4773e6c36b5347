"""Faults around the exactly-once core, each against real parts: streams that stall or run too long, stream
jobs that vanish, workers killed or stopped mid-job, and Redis going away under them.

Nothing here asserts on time: each test waits for events (within a timeout) and checks what happened.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from arq.connections import RedisSettings
from pydantic import BaseModel

from incremental import MessagesClient, Runner, ToolContext, ToolRegistry
from incremental.adapters._arq import connect, stream_job_id
from incremental.adapters._eventlog import EventLog
from incremental.adapters._redis_server import RedisServer
from incremental.adapters._store import TurnStore
from incremental.events import RUN_FINAL_KINDS, RunStartedEvent, ToolCompletedEvent
from incremental.exceptions import RunNotFoundError
from incremental.fake_api import Fault
from incremental.pipeline import Services, check_request
from incremental.pipeline._jobs import _salvage, monitor_turn
from incremental.testing import FakeMessagesAPIFactory
from incremental.tools import ToolResult
from incremental.worker import Worker, drain_worker, serve_worker, worker_options

from . import _toolsets
from ._faults import (
    GO,
    REQUEST,
    exited,
    final_turn,
    stop_process,
    tool_turn,
    wait_event,
    worker_process,
)
from ._streams import frame, json_delta, tool_start

FINAL = set(RUN_FINAL_KINDS)
TIMEOUT_S = 60.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def in_process(api_url: str, redis_url: str, tools: Any = None, **options: Any) -> Runner:
    client = MessagesClient(base_url=api_url, api_key="sk-test")
    runner = Runner(
        tools if tools is not None else {"test": _toolsets.registry},
        redis_url=redis_url,
        workers=1,
        model_client=client,
        **options,
    )
    await runner.open()
    return runner


# ---------------------------------------------------------------------------------------------- deadlines


async def test_a_quiet_stream_is_cut_and_asked_again_when_nothing_was_dispatched(
    redis_url: str, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    turns = [tool_turn([(unique("toolu"), "sleepy", {"seconds": 0})]), final_turn()]
    api = await fake_messages_api(turns, speed=1.0, faults={0: Fault("stall", events=2, seconds=120)})
    runner = await in_process(api.url, redis_url, stream_idle_timeout=0.5)
    try:
        run = await runner.start(GO, **REQUEST, max_turns=2)
        result = await run.result(timeout=TIMEOUT_S)
        events = [e.model_dump() for e in [event async for event in run.events()]]
    finally:
        await runner.aclose()
    assert result.state == "completed", result.reason
    [retry] = [e for e in events if e["kind"] == "stream_retry"]
    assert "went quiet" in retry["reason"] and retry["attempt"] == 1
    assert len(api.requests) == 3  # the stalled one, its retry, the next turn
    assert [t.executions for t in result.tools] == [1]


async def test_a_quiet_stream_after_a_dispatch_fails_the_turn(
    redis_url: str, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    tool_id = unique("toolu")
    stream = tool_turn([(tool_id, "sleepy", {"seconds": 0})])
    events_before_message_delta = stream.count(b"event: ") - 2
    api = await fake_messages_api(
        [stream, final_turn()],
        speed=1.0,
        faults={0: Fault("stall", events=events_before_message_delta, seconds=120)},
    )
    runner = await in_process(api.url, redis_url, stream_idle_timeout=0.5)
    try:
        result = await (await runner.start(GO, **REQUEST, max_turns=2)).result(timeout=TIMEOUT_S)
    finally:
        await runner.aclose()
    assert result.state == "failed" and result.error is not None
    assert result.error.type == "StreamTimeoutError" and "went quiet" in result.error.message
    assert len(api.requests) == 1  # never asked again: the tool had been dispatched
    assert [(t.id, t.status, t.executions) for t in result.tools] == [(tool_id, "ok", 1)]


async def test_a_stream_past_the_turns_deadline_ends_the_run_saying_so(
    redis_url: str, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    # A healthy stream (events keep coming) that takes longer than the turn's streaming may.
    slow = tool_turn([(unique("toolu"), "sleepy", {"seconds": 0})], gap_s=30)
    api = await fake_messages_api([slow, final_turn()], speed=1.0)
    runner = await in_process(api.url, redis_url, stream_timeout=1.0, stream_idle_timeout=60)
    try:
        result = await (await runner.start(GO, **REQUEST, max_turns=2)).result(timeout=TIMEOUT_S)
    finally:
        await runner.aclose()
    assert result.state == "failed" and result.error is not None
    assert result.error.type == "StreamTimeoutError" and "deadline of 1 s" in result.error.message


async def test_a_stream_job_cut_by_its_time_limit_after_a_dispatch_is_salvaged(
    redis_url: str, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    turns = [tool_turn([("toolu_x", "sleepy", {"seconds": 0})], gap_s=60), final_turn()]
    api = await fake_messages_api(turns, speed=1.0)
    runner = await in_process(api.url, redis_url)
    try:
        run = await runner.start(GO, **REQUEST, max_turns=2)
        log = runner._services().events
        async with asyncio.timeout(TIMEOUT_S):
            await wait_event(log, run.id, {"tool_completed"})
            # What arq does at a job's time limit: it cancels the job's task.
            runner._workers[0].job_tasks[stream_job_id(run.id, 0)].cancel()
            _, end = await wait_event(log, run.id, FINAL)
            events = await log.all(run.id)
    finally:
        await runner.aclose()
    assert end["kind"] == "run_completed", end
    [salvaged] = [e for e in events if e["kind"] == "turn_salvaged"]
    assert "time limit" in salvaged["reason"] and salvaged["expected"] == ["toolu_x"]
    assert salvaged["cut_at"] == 2 and salvaged["blocks"] == 2  # the text and the call; nothing after
    assert api.rejections == [] and len(api.requests) == 2


async def test_the_watchdog_fails_a_turn_whose_stream_job_is_gone(redis_url: str) -> None:
    pool = await connect(redis_url)
    svc = Services(pool)
    try:
        config = check_request(GO, dict(REQUEST), toolset="test").to_dict()
        run_id = unique("run")
        await svc.store.create_run(run_id, config, GO)
        await svc.events.append(RunStartedEvent(run_id=run_id, turn=0, config=config))
        assert await svc.store.open_stream(run_id, 0) == "claimed"  # a job started the stream, then vanished
        assert await monitor_turn(svc, run_id, 0, 0) == "stream lost"
        end = (await svc.events.all(run_id))[-1]
        assert end["kind"] == "run_failed" and end["error_type"] == "StreamJobLost"
        assert "ended before the message did" in end["reason"]
        # A turn whose job is still queued is left alone, and a missing one is enqueued again.
        other = unique("run")
        await svc.store.create_run(other, config, GO)
        assert await monitor_turn(svc, other, 0, 0) == "waiting"
        assert await pool.exists(f"arq:job:{stream_job_id(other, 0)}")
        await svc.store.end_run(other, "cancelled", "the test is over")  # its job will do nothing
    finally:
        await svc.aclose()
        await pool.aclose()


async def test_a_run_whose_end_was_decided_by_a_worker_killed_before_making_it_is_ended(
    redis_url: str,
) -> None:
    """The stream job blocked its turn (the message ended, or the stream failed) and was killed before
    it ended the run: the watchdog (and a redelivered stream job) end the run as it would have."""
    pool = await connect(redis_url)
    svc = Services(pool)
    try:
        config = check_request(GO, dict(REQUEST), toolset="test").to_dict()
        ended, failed = unique("run"), unique("run")
        for run_id in (ended, failed):
            await svc.store.create_run(run_id, config, GO)
            assert await svc.store.open_stream(run_id, 0) == "claimed"
        await svc.store.block_continuation(ended, 0, "ended", "end_turn")  # ... and the worker died
        await svc.store.block_continuation(failed, 0, "failed", "the model stream went quiet")
        assert (await svc.store.run(ended)).state == "running"  # type: ignore[union-attr]
        assert "made here" in await monitor_turn(svc, ended, 0, 0)
        assert await _salvage(svc, failed, 0, "its stream job was redelivered") == "already sealed"
        first, second = (await svc.events.all(ended))[-1], (await svc.events.all(failed))[-1]
        assert first["kind"] == "run_completed", first
        assert second["kind"] == "run_failed" and second["error_type"] == "WorkerLost", second
        assert "went quiet" in second["reason"]
        assert await monitor_turn(svc, ended, 0, 1) == "ended"  # once: nothing more to do
    finally:
        await svc.aclose()
        await pool.aclose()


# ---------------------------------------------------------------------------------------------- the ledger


async def test_a_result_and_its_event_are_written_together_and_a_retried_write_is_not_a_duplicate(
    redis_url: str,
) -> None:
    pool = await connect(redis_url)
    store, log = TurnStore(pool), EventLog(pool)
    run_id = unique("run")
    try:
        result = ToolResult("toolu_a", "t", "ok", "done", False, started_at=1.0, finished_at=2.0)
        event = ToolCompletedEvent(
            run_id=run_id, turn=0, tool_use_id="toolu_a", name="t", status="ok", is_error=False,
            content="done", attempts=1, started_at=1.0, finished_at=2.0,
        )  # fmt: skip
        assert await store.seal(run_id, 0, ["toolu_a"], 1e12) == "ok"
        outcome, entry_id = await store.add_result_logged(run_id, 0, result, log, event)
        assert outcome == "continue" and entry_id is not None
        # The same write again (its reply was lost): nothing new, and it still knows it continued.
        assert await store.add_result_logged(run_id, 0, result, log, event) == ("continue", None)
        other = result.with_(content="another run of it")
        assert await store.add_result_logged(run_id, 0, other, log, event) == ("dup", None)
        assert [e["kind"] for e in await log.all(run_id)] == ["tool_completed"]
        # A start counted once per job try, however often the command is sent.
        await store.create_run(run_id, {}, GO)
        assert await store.start_tool(run_id, 1, "toolu_b", 0, "try-1") == "1"
        assert await store.start_tool(run_id, 1, "toolu_b", 0, "try-1") == "1"
        assert await store.start_tool(run_id, 1, "toolu_b", 0, "try-2") == "2"
        # A chain entry added twice is one entry.
        job = {"tool_use_id": "toolu_c"}
        assert await store.chain_add(run_id, "k", job) and await store.chain_add(run_id, "k", job)
        assert await store.chain_next(run_id, "k", "toolu_c") is None
    finally:
        await pool.aclose()


# ---------------------------------------------------------------------------------------------- kills


async def test_a_worker_killed_mid_stream_before_any_dispatch_gets_the_turn_asked_again(
    redis_url: str, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    turns = [tool_turn([(unique("toolu"), "sleepy", {"seconds": 0})]), final_turn()]
    api = await fake_messages_api(turns, speed=1.0, faults={0: Fault("stall", events=2, seconds=120)})
    first = worker_process(redis_url, api.url, supervised=False, INCREMENTAL_JOB_LEASE="1.5")
    second = None
    try:
        async with Runner(redis_url=redis_url) as runner:
            run = await runner.start(GO, **REQUEST, toolset="test", max_turns=2)
            log = runner._services().events
            async with asyncio.timeout(TIMEOUT_S):
                await wait_event(log, run.id, {"stream_opened"})
                first.send_signal(signal.SIGKILL)
                await exited(first)
                second = worker_process(redis_url, api.url, INCREMENTAL_JOB_LEASE="1.5")
                result = await run.result()
            events = [e.model_dump() async for e in run.events()]
    finally:
        for proc in (first, second):
            if proc is not None:
                stop_process(proc)
    assert result.state == "completed", result.reason
    assert [e["attempt"] for e in events if e["kind"] == "stream_retry"] == [0], [e["kind"] for e in events]
    assert len(api.requests) == 3, ([e["kind"] for e in events], api.rejections)


async def test_a_worker_killed_mid_stream_after_a_dispatch_gets_the_turn_salvaged(
    redis_url: str, fake_messages_api: FakeMessagesAPIFactory, tmp_path: Path
) -> None:
    # Turn 0: text, a call that runs at once (its side effect: a line in a file), a call held for the
    # message's end, then a third call whose input is still streaming when the stream stalls.
    side_effects = tmp_path / "appended.txt"
    now_id, held_id, cut_id = unique("toolu"), unique("toolu"), unique("toolu")
    whole = [
        (now_id, "slow_append", {"path": str(side_effects), "line": "once"}),
        (held_id, "charge_card", {"why": "the order"}),
    ]
    body = tool_turn(whole)
    cut = frame(tool_start(3, cut_id, "sleepy")) + frame(json_delta(3, '{"seco'))
    at = body.index(b"event: message_delta")
    turn0 = body[:at] + cut + body[at:]
    stall_after = body[:at].count(b"event: ") + 2  # everything up to the cut call's first fragment
    api = await fake_messages_api(
        [turn0, final_turn()], speed=1.0, faults={0: Fault("stall", events=stall_after, seconds=120)}
    )
    first = worker_process(redis_url, api.url, supervised=False, INCREMENTAL_JOB_LEASE="1.5")
    second = None
    try:
        async with Runner(redis_url=redis_url) as runner:
            run = await runner.start(GO, **REQUEST, toolset="test", max_turns=2)
            log = runner._services().events
            async with asyncio.timeout(TIMEOUT_S):
                await wait_event(log, run.id, {"tool_completed"}, tool_use_id=now_id)
                await wait_event(log, run.id, {"tool_input_started"}, tool_use_id=cut_id)
                first.send_signal(signal.SIGKILL)
                await exited(first)
                second = worker_process(redis_url, api.url, INCREMENTAL_JOB_LEASE="1.5")
                result = await run.result()
            events = await log.all(run.id)
    finally:
        for proc in (first, second):
            if proc is not None:
                stop_process(proc)
    kinds = [e["kind"] for e in events]
    assert result.state == "completed", (result.reason, kinds)
    # Each call ran once; the call held for the message's end was dispatched by the salvage.
    assert side_effects.read_text() == "once\n"
    ran = {t.id: (t.status, t.executions) for t in result.tools if t.id != cut_id}
    assert ran == {now_id: ("ok", 1), held_id: ("ok", 1)}, ran
    [salvaged] = [e for e in events if e["kind"] == "turn_salvaged"]
    assert salvaged["cut_at"] == 3 and salvaged["blocks"] == 3 and not salvaged.get("dropped")
    assert salvaged["expected"] == [now_id, held_id]
    assert kinds.count("turn_sealed") == 1 and kinds.count("continued") == 1
    assert "tool_duplicate_result" not in kinds
    results = Counter(e["tool_use_id"] for e in events if e["kind"] in ("tool_completed", "tool_failed"))
    assert results == {now_id: 1, held_id: 1}
    # The continuation holds the truncated message (the completed blocks only) and one result per call.
    assert api.rejections == [] and len(api.requests) == 2, api.rejections
    *_, assistant, user = api.requests[1]["messages"]
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "On it."},
            *({"type": "tool_use", "id": i, "name": n, "input": v} for i, n, v in whole),
        ],
    }
    assert [b["tool_use_id"] for b in user["content"] if b["type"] == "tool_result"] == [now_id, held_id]


# ---------------------------------------------------------------------------------------------- shutdown


@pytest.mark.parametrize("tool_loop", ["1", "0"])
async def test_sigterm_hands_a_running_tool_over_and_the_run_completes(
    redis_url: str, fake_messages_api: FakeMessagesAPIFactory, tool_loop: str
) -> None:
    """With tools on a loop of their own (the default) and with one loop for everything."""
    tool_id = unique("toolu")
    api = await fake_messages_api([tool_turn([(tool_id, "sleepy", {"seconds": 3})]), final_turn()], speed=0)
    env = {"INCREMENTAL_SHUTDOWN_GRACE": "0.3", "INCREMENTAL_TOOL_LOOP": tool_loop}
    first = worker_process(redis_url, api.url, **env)
    second = None
    try:
        async with Runner(redis_url=redis_url) as runner:
            run = await runner.start(GO, **REQUEST, toolset="test", max_turns=2)
            log = runner._services().events
            async with asyncio.timeout(TIMEOUT_S):
                await wait_event(log, run.id, {"tool_started"})
                first.send_signal(signal.SIGTERM)
                _, handed = await wait_event(log, run.id, {"job_handed_over"})
                assert await exited(first) == 0
                second = worker_process(redis_url, api.url, **env)
                result = await run.result()
    finally:
        log_text = stop_process(first)
        if second is not None:
            stop_process(second)
    assert handed["tool_use_id"] == tool_id, log_text
    assert result.state == "completed", result.reason
    [tool] = result.tools
    assert tool.status == "ok" and tool.executions == 2
    assert ("tools run on a loop of their own" in log_text) == (tool_loop == "1"), log_text


async def test_sigterm_lets_a_stream_that_dispatched_finish_and_hands_over_one_that_did_not(
    redis_url: str, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    # Turn 0 dispatches its tool, then streams on for 2 s more; turn 1 stalls before anything is ready.
    turns = [tool_turn([(unique("toolu"), "sleepy", {"seconds": 0})], gap_s=2), final_turn()]
    api = await fake_messages_api(turns, speed=1.0, faults={1: Fault("stall", events=2, seconds=120)})
    env = {"INCREMENTAL_SHUTDOWN_GRACE": "0.3"}
    first = worker_process(redis_url, api.url, **env)
    workers = [first]
    try:
        async with Runner(redis_url=redis_url) as runner:
            run = await runner.start(GO, **REQUEST, toolset="test", max_turns=2)
            log = runner._services().events
            async with asyncio.timeout(TIMEOUT_S):
                after, _ = await wait_event(log, run.id, {"tool_completed"})
                first.send_signal(signal.SIGTERM)  # mid-stream, after its dispatch: it streams on
                await wait_event(log, run.id, {"turn_sealed"}, after)
                assert await exited(first) == 0
                second = worker_process(redis_url, api.url, **env)
                workers.append(second)
                await wait_event(log, run.id, {"stream_opened"}, after, turn=1)
                second.send_signal(signal.SIGTERM)  # mid-stream, nothing dispatched: handed over
                _, handed = await wait_event(log, run.id, {"job_handed_over"}, after, turn=1)
                assert await exited(second) == 0
                workers.append(worker_process(redis_url, api.url, **env))
                result = await run.result()
    finally:
        for proc in workers:
            stop_process(proc)
    assert handed["job_id"] == stream_job_id(run.id, 1)
    assert result.state == "completed", result.reason
    assert len(api.requests) == 3  # turn 0 once; turn 1 twice (handed over)


class Gate(BaseModel):
    name: str


GATES: dict[str, asyncio.Event] = {}
gated = ToolRegistry()


@gated.tool
async def wait_for_gate(args: Gate, ctx: ToolContext) -> str:
    """Runs until the test opens its gate."""
    await GATES.setdefault(args.name, asyncio.Event()).wait()
    return f"{args.name} opened"


async def test_a_tool_handed_over_again_and_again_keeps_its_tries(
    redis_url: str, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    name, tool_id = unique("gate"), unique("toolu")
    api = await fake_messages_api(
        [tool_turn([(tool_id, "wait_for_gate", {"name": name})]), final_turn()], speed=0
    )
    client = MessagesClient(base_url=api.url, api_key="sk-test")
    options = worker_options({"gated": gated}, model_client=client)
    try:
        async with Runner(redis_url=redis_url) as runner:
            run = await runner.start(GO, **REQUEST, toolset="gated", max_turns=2)
            log = runner._services().events
            after = "0-0"
            async with asyncio.timeout(TIMEOUT_S):
                for _ in range(7):  # more stops than arq's 5 tries
                    worker = Worker(
                        **options, redis_settings=RedisSettings.from_dsn(redis_url), handle_signals=False
                    )
                    served = asyncio.create_task(serve_worker(worker))
                    after, _ = await wait_event(log, run.id, {"tool_started"}, after)
                    await drain_worker(worker, 0.05, 0)
                    await asyncio.gather(served, return_exceptions=True)
                GATES.setdefault(name, asyncio.Event()).set()
                worker = Worker(
                    **options, redis_settings=RedisSettings.from_dsn(redis_url), handle_signals=False
                )
                served = asyncio.create_task(serve_worker(worker))
                result = await run.result()
                await drain_worker(worker, 1, 0)
                await asyncio.gather(served, return_exceptions=True)
            events = [e.model_dump() async for e in run.events()]
    finally:
        GATES.setdefault(name, asyncio.Event()).set()
        await client.aclose()
    assert result.state == "completed", result.reason
    [tool] = result.tools
    assert tool.status == "ok" and tool.executions == 8
    assert Counter(e["kind"] for e in events)["job_handed_over"] == 7


# ---------------------------------------------------------------------------------------------- Redis outages


@pytest.fixture
def aof_redis() -> Any:
    with RedisServer(appendonly=True) as server:
        yield server


@pytest.fixture
def plain_redis() -> Any:
    with RedisServer() as server:
        yield server


async def test_workers_ride_out_a_redis_outage_and_every_run_finishes_with_aof(
    aof_redis: RedisServer, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    url = aof_redis.url
    ids = [unique("toolu"), unique("toolu")]
    turns = [tool_turn([(ids[0], "sleepy", {"seconds": 1.5}), (ids[1], "sleepy", {"seconds": 0})], gap_s=1.5)]
    api = await fake_messages_api([*turns, final_turn()], speed=1.0)
    worker = worker_process(url, api.url)
    try:
        async with Runner(redis_url=url) as runner:
            run = await runner.start(GO, **REQUEST, toolset="test", max_turns=2)
            log = runner._services().events
            async with asyncio.timeout(TIMEOUT_S):
                await wait_event(log, run.id, {"tool_started"}, tool_use_id=ids[0])
                # Down while a tool runs and the stream is still open; then up with its data.
                await asyncio.to_thread(aof_redis.down)
                await asyncio.sleep(1.0)  # the outage's length, not a wait for an outcome
                await asyncio.to_thread(aof_redis.up)
                result = await run.result()
            assert worker.poll() is None  # it survived
            second = await (await runner.start(GO, **REQUEST, toolset="test", max_turns=1)).result(
                timeout=TIMEOUT_S
            )
    finally:
        log_text = stop_process(worker)
    assert result.state == "completed", (result.reason, log_text)
    assert sorted(t.id for t in result.tools if t.status == "ok") == sorted(ids)
    assert all(t.executions == 1 for t in result.tools), log_text
    assert second.state in ("completed", "ended")


async def test_without_persistence_a_run_whose_state_was_lost_ends_and_the_worker_goes_on(
    plain_redis: RedisServer, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    url = plain_redis.url
    turns = [tool_turn([(unique("toolu"), "sleepy", {"seconds": 1.0})], gap_s=1.0), final_turn()]
    api = await fake_messages_api(turns, speed=1.0)
    worker = worker_process(url, api.url)
    try:
        async with Runner(redis_url=url) as runner:
            run = await runner.start(GO, **REQUEST, toolset="test", max_turns=2)
            log = runner._services().events
            async with asyncio.timeout(TIMEOUT_S):
                await wait_event(log, run.id, {"tool_started"})
                await asyncio.to_thread(plain_redis.down)
                await asyncio.to_thread(plain_redis.up)  # empty
                try:
                    lost = await run.result()
                    assert lost.state == "failed" and lost.error is not None
                    assert lost.error.type == "RunStateLost"
                except RunNotFoundError:
                    pass  # nothing of it is left to report on: that is an end too
            assert worker.poll() is None
            again = await (await runner.start(GO, **REQUEST, toolset="test", max_turns=1)).result(
                timeout=TIMEOUT_S
            )
    finally:
        stop_process(worker)
    assert again.state in ("completed", "ended")


# ---------------------------------------------------------------------------------------------- app tools


async def test_edits_through_a_symlink_alias_run_in_order(redis_url: str, tmp_path: Path) -> None:
    from incremental.examples.app_builder.tools import path_key
    from incremental.examples.app_builder.tools import registry as app_registry

    from .test_pipeline import final_turn_file, play, tool_turn_file

    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "App.tsx").write_text("one two three four\n")
    (workspace / "innerlink").symlink_to("src")
    key = path_key(
        app_registry.get("replace_string").input_model(path="innerlink/App.tsx", old="x", new="y"), workspace
    )  # type: ignore[union-attr]
    assert key == "src/App.tsx"
    calls = [
        ("toolu_e1", "replace_string", {"path": "src/App.tsx", "old": "one", "new": "ONE"}),
        ("toolu_e2", "replace_string", {"path": "innerlink/App.tsx", "old": "two", "new": "TWO"}),
        ("toolu_e3", "replace_string", {"path": "./src//App.tsx", "old": "three", "new": "THREE"}),
        ("toolu_e4", "replace_string", {"path": "innerlink/App.tsx", "old": "four", "new": "FOUR"}),
    ]
    files = [tool_turn_file(tmp_path / "t1.sse", calls), final_turn_file(tmp_path / "t2.sse")]
    summary, events = await play(redis_url, files, toolset="app", workspace=str(workspace), workers=2)
    assert summary["state"] == "completed"
    assert (workspace / "src" / "App.tsx").read_text() == "ONE TWO THREE FOUR\n"
    assert {e["concurrency_key"] for e in events if e["kind"] == "tool_waiting"} == {"src/App.tsx"}


async def test_a_tool_whose_every_try_was_cut_short_gets_a_crashed_result_and_the_run_goes_on(
    redis_url: str, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    """arq drops a job at its retry cap without a word; past our own cap the call gets its result."""
    from incremental.worker import TOOL_TRIES

    run_id, tool_id = unique("run"), unique("toolu")
    api = await fake_messages_api([tool_turn([(tool_id, "sleepy", {"seconds": 0})]), final_turn()], speed=0)
    runner = await in_process(api.url, redis_url)
    try:
        # As if the call's job had been delivered TOOL_TRIES times already, each try killed mid-run.
        await runner.pool.set(f"arq:retry:inc:tool:{run_id}:{tool_id}", TOOL_TRIES)
        run = await runner.start(GO, **REQUEST, max_turns=2, run_id=run_id)
        result = await run.result(timeout=TIMEOUT_S)
    finally:
        await runner.aclose()
    assert result.state == "completed", result.reason
    [tool] = result.tools
    assert (tool.status, tool.executions, tool.is_error) == ("crashed", 0, True)
    assert f"stopped {TOOL_TRIES} times" in str(tool.content)
    assert len(api.requests) == 2  # the turn went on with the error result
