"""Cancel, pause and resume: on Redis with real arq workers, against the fake API.

Streams that must still be running when the test acts stall (their next event is due 120 s after the
request); tools that must still be running wait on a gate the test opens (``_control_tools``). The
tests wait for events in the run's log and assert on what happened and in which order, never on time.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from incremental import MessagesClient
from incremental.adapters._arq import connect
from incremental.adapters._store import TurnStore
from incremental.events import RunStartedEvent
from incremental.fake_api import FakeMessagesAPI
from incremental.pipeline import (
    Services,
    cancel_run,
    cancel_tool,
    check_request,
    pause_run,
    resume_run,
)
from incremental.pipeline._control import Interrupt, Interrupted
from incremental.pipeline._flow import input_preview
from incremental.pipeline._jobs import monitor_turn
from incremental.testing import FakeMessagesAPIFactory
from incremental.tools import ToolResult

from . import _control_tools
from ._control_tools import LATER_QUEUE, gate
from ._streams import (
    MESSAGE_STOP,
    frame,
    json_delta,
    message_delta,
    message_start,
    stop,
    text_delta,
    text_start,
    tool_start,
)

RESULT_KINDS = {"tool_completed", "tool_failed", "tool_cancelled", "tool_refused"}
STALL_S = 120.0  # how long a stalled stream waits before its next event (far beyond every test's timeout)
TIMEOUT_S = 30.0


# ---------------------------------------------------------------------------------------------- streams


class _Stall:
    """In a turn's parts: the event after it is due ``STALL_S`` seconds after the request."""


STALL = _Stall()


def turn(*parts: dict[str, Any] | _Stall | list[dict[str, Any]]) -> bytes:
    out: list[bytes] = []
    stall = False
    for part in parts:
        if isinstance(part, _Stall):
            stall = True
            continue
        for obj in part if isinstance(part, list) else [part]:
            out.append(frame(obj, t=STALL_S if stall else None))
            stall = False
    return b"".join(out)


def opening() -> list[dict[str, Any]]:
    return [message_start(), text_start(0), text_delta(0, "Working on it."), stop(0)]


def call(index: int, tool_id: str, name: str, value: dict[str, Any]) -> list[dict[str, Any]]:
    text = json.dumps(value)
    return [tool_start(index, tool_id, name), json_delta(index, ""), json_delta(index, text), stop(index)]


def closing(stop_reason: str = "tool_use") -> list[dict[str, Any]]:
    return [message_delta(stop_reason), MESSAGE_STOP]


FINAL = turn(message_start("msg_final"), text_start(0), text_delta(0, "Done."), stop(0), *closing("end_turn"))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------------- benches


class Watch:
    """A run's events as they come; ``until`` waits for one (bounded by the test's timeout)."""

    def __init__(self, svc: Services, run_id: str) -> None:
        self.svc, self.run_id = svc, run_id
        self.events: list[dict[str, Any]] = []
        self._after = "0-0"

    async def until(self, kind: str, **match: Any) -> dict[str, Any]:
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event["kind"] == kind and all(event.get(k) == v for k, v in match.items()):
                    return event
            seen = len(self.events)
            for entry_id, event in await self.svc.events.read(self.run_id, self._after, block_ms=500):
                self._after = entry_id
                self.events.append(event)

    async def all(self) -> list[dict[str, Any]]:
        return await self.svc.events.all(self.run_id)


class Bench:
    """Redis, arq workers whose model client is one fake API, and that API."""

    def __init__(
        self,
        svc: Services,
        api: FakeMessagesAPI,
        turns: int,
        later_worker: Callable[[], Any] | None,
    ) -> None:
        self.svc, self.api, self.turns = svc, api, turns
        self._later_worker = later_worker

    async def start(self, *, paused: bool = False, turn_timeout_s: float = 60) -> Watch:
        """As ``start_run`` (record, ``run_started``, first turn); ``paused``: paused before it streams."""
        messages = [{"role": "user", "content": "go"}]
        config = check_request(
            messages,
            {"model": "claude-sonnet-4-5", "max_tokens": 1024},
            toolset="control",
            max_turns=self.turns,
            turn_timeout_s=turn_timeout_s,
        ).to_dict()
        run_id = f"run_{uuid.uuid4().hex[:20]}"
        await self.svc.store.create_run(run_id, config, messages)
        await self.svc.events.append(RunStartedEvent(run_id=run_id, turn=0, config=config))
        if paused:
            assert await pause_run(self.svc, run_id)
        await self.svc.enqueue_stream_turn(run_id, 0)
        return Watch(self.svc, run_id)

    def later_worker(self) -> Any:
        """Start a worker for ``LATER_QUEUE`` (its tools wait in the queue until then)."""
        assert self._later_worker is not None
        return self._later_worker()


@asynccontextmanager
async def arq_workers(
    redis_url: str, count: int, api_url: str, queue: str | None = None
) -> AsyncIterator[None]:
    """``count`` in-process arq workers with the ``control`` tools, streaming from the fake API."""
    from arq.connections import RedisSettings

    from incremental.runner import stop_worker
    from incremental.worker import Worker, worker_options

    client = MessagesClient(base_url=api_url, api_key="test")
    options = worker_options({"control": _control_tools.registry}, model_client=client, queue=queue)
    workers = [
        Worker(**options, redis_settings=RedisSettings.from_dsn(redis_url), handle_signals=False)
        for _ in range(count)
    ]
    tasks = [asyncio.create_task(w.async_run()) for w in workers]
    try:
        yield
    finally:
        _control_tools.open_all()
        for worker in workers:
            await stop_worker(worker)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()


BenchFactory = Callable[[list[bytes]], Awaitable[Bench]]


@pytest.fixture
async def bench(redis_url: str, fake_messages_api: FakeMessagesAPIFactory) -> AsyncIterator[BenchFactory]:
    """``await bench(turns)``: a started fake API playing ``turns``, and two workers streaming from it."""
    pool = await connect(redis_url)
    made: list[Services] = []
    async with AsyncExitStack() as stack:

        async def factory(turns: list[bytes]) -> Bench:
            api = await fake_messages_api(turns, speed=1.0)
            await stack.enter_async_context(arq_workers(redis_url, 2, api.url))
            svc = Services(pool)
            made.append(svc)
            return Bench(svc, api, len(turns), lambda: arq_workers(redis_url, 1, api.url, LATER_QUEUE))

        try:
            yield factory
        finally:
            _control_tools.open_all()
            for svc in made:
                await svc.aclose()
    await pool.aclose()


# ---------------------------------------------------------------------------------------------- checks


def result_events(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event["kind"] in RESULT_KINDS:
            found.setdefault(event["tool_use_id"], []).append(event)
    return found


async def assert_one_result_each(watch: Watch, ids: list[str], turn: int = 0) -> dict[str, dict[str, Any]]:
    """Every id has exactly one recorded result and exactly one result event (and no duplicate)."""
    events = await watch.all()
    ledger = await watch.svc.store.results(watch.run_id, turn)
    assert sorted(ledger) == sorted(ids), ledger
    found = result_events(events)
    assert {i: len(found.get(i, [])) for i in ids} == dict.fromkeys(ids, 1), found
    assert not [e for e in events if e["kind"] == "tool_duplicate_result"]
    return {i: found[i][0] for i in ids}


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


def index_of(events: list[dict[str, Any]], kind: str, **match: Any) -> int:
    return next(
        i for i, e in enumerate(events) if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())
    )


# ---------------------------------------------------------------------------------------------- cancel a run


async def test_cancel_while_streaming_before_any_tool_is_ready(bench: BenchFactory) -> None:
    first = turn(*opening(), tool_start(1, "toolu_a", "quick"), json_delta(1, ""), STALL, json_delta(1, "{}"))
    b = await bench([first + turn(stop(1), *closing()), FINAL])
    async with asyncio.timeout(TIMEOUT_S):
        watch = await b.start()
        await watch.until("tool_input_started", tool_use_id="toolu_a")
        assert await cancel_run(b.svc, watch.run_id, "the user pressed stop") is True
        ended = await watch.until("run_ended")
        closed = await watch.until("stream_closed")  # long before the stalled event was due
    assert ended["state"] == "cancelled" and ended["reason"] == "the user pressed stop"
    assert closed["reason"] == "the user pressed stop"
    run = await b.svc.store.run(watch.run_id)
    assert run is not None and run.state == "cancelled"
    assert (await b.svc.store.turn(watch.run_id, 0))["continued"] == "blocked"
    events = await watch.all()
    requested = index_of(events, "cancel_requested", target="run")
    assert requested < index_of(events, "run_ended") < index_of(events, "stream_closed")
    assert not {"tool_ready", "tool_started", "continued"} & set(kinds(events))
    assert len(b.api.requests) == 1
    assert await cancel_run(b.svc, watch.run_id) is False  # it is not running any more


async def test_cancel_with_tools_running_reports_each_honestly(bench: BenchFactory) -> None:
    stops, stays = unique("stops"), unique("stays")
    first = turn(
        *opening(),
        call(1, "toolu_hold", "hold", {"gate": stops}),
        call(2, "toolu_stub", "stubborn", {"gate": stays}),
        STALL,
        closing(),
    )
    b = await bench([first, FINAL])
    async with asyncio.timeout(TIMEOUT_S):
        watch = await b.start()
        await watch.until("tool_started", tool_use_id="toolu_hold")
        await watch.until("tool_started", tool_use_id="toolu_stub")
        assert await cancel_run(b.svc, watch.run_id, "stop everything")
        stopped = await watch.until("tool_cancelled", tool_use_id="toolu_hold")
        finished = await watch.until("tool_completed", tool_use_id="toolu_stub")
        await watch.until("stream_closed")
    # The tool that stopped says so; the one that finished anyway keeps its own result, and both say
    # they had been told.
    assert stopped["after_cancel"] is True and stopped["status"] == "cancelled" and stopped["is_error"]
    assert "stop everything" in stopped["content"]
    assert finished["after_cancel"] is True and finished["content"] == "finished anyway"
    await assert_one_result_each(watch, ["toolu_hold", "toolu_stub"])
    events = await watch.all()
    assert "continued" not in kinds(events) and len(b.api.requests) == 1


async def test_cancel_after_the_message_stopped_while_a_tool_runs(bench: BenchFactory) -> None:
    first = turn(*opening(), call(1, "toolu_h", "hold", {"gate": unique("never")}), closing())
    b = await bench([first, FINAL])
    async with asyncio.timeout(TIMEOUT_S):
        watch = await b.start()
        await watch.until("turn_sealed")
        await watch.until("tool_started", tool_use_id="toolu_h")
        assert await cancel_run(b.svc, watch.run_id)
        stopped = await watch.until("tool_cancelled", tool_use_id="toolu_h")
        await watch.until("run_ended", state="cancelled")
    assert stopped["after_cancel"] is True
    # Its cancelled result was the turn's last one, and still nothing continued.
    assert (await b.svc.store.turn(watch.run_id, 0))["continued"] == "blocked"
    await assert_one_result_each(watch, ["toolu_h"])
    events = await watch.all()
    assert not {"continued", "stream_closed", "turn_completed"} & set(kinds(events))
    assert len(b.api.requests) == 1


async def test_cancel_while_paused_cancels_held_and_chained_tools(bench: BenchFactory) -> None:
    first = turn(
        *opening(),
        call(1, "toolu_q", "quick", {}),
        call(2, "toolu_k1", "keyed", {"key": "same"}),
        call(3, "toolu_k2", "keyed", {"key": "same"}),
        STALL,
        closing(),
    )
    b = await bench([first, FINAL])
    async with asyncio.timeout(TIMEOUT_S):
        watch = await b.start(paused=True)
        await watch.until("tool_paused", tool_use_id="toolu_q")
        await watch.until("tool_paused", tool_use_id="toolu_k1")  # the head of its key's chain, held
        await watch.until("tool_waiting", tool_use_id="toolu_k2")  # behind it
        assert await cancel_tool(b.svc, watch.run_id, "toolu_q", "not this one") == "cancelled"
        await watch.until("tool_cancelled", tool_use_id="toolu_q")
        assert await cancel_run(b.svc, watch.run_id, "never mind")
        for tool_id in ("toolu_q", "toolu_k1", "toolu_k2"):
            await watch.until("tool_cancelled", tool_use_id=tool_id)
        await watch.until("stream_closed")
    results = await assert_one_result_each(watch, ["toolu_q", "toolu_k1", "toolu_k2"])
    assert "cancelled before it started (not this one)" in results["toolu_q"]["content"]
    assert "while a pause held this tool" in results["toolu_k1"]["content"]
    assert "never mind" in results["toolu_k2"]["content"]
    run = await b.svc.store.run(watch.run_id)
    assert run is not None and run.state == "cancelled" and not run.paused
    events = await watch.all()
    assert not {"tool_started", "continued"} & set(kinds(events)) and len(b.api.requests) == 1


async def test_cancel_with_tools_queued_gives_them_cancelled_results_when_their_jobs_run(
    redis_url: str, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    # Redis only: the tools wait on a queue no worker serves until the run is cancelled.
    first = turn(
        *opening(), call(1, "toolu_l1", "later", {}), call(2, "toolu_l2", "later", {}), STALL, closing()
    )
    api = await fake_messages_api([first, FINAL], speed=1.0)
    pool = await connect(redis_url)
    svc = Services(pool)
    try:
        async with arq_workers(redis_url, 1, api.url), asyncio.timeout(TIMEOUT_S):
            b = Bench(svc, api, 2, lambda: arq_workers(redis_url, 1, api.url, LATER_QUEUE))
            watch = await b.start()
            await watch.until("tool_enqueued", tool_use_id="toolu_l1")
            await watch.until("tool_enqueued", tool_use_id="toolu_l2")
            assert await cancel_run(svc, watch.run_id, "too slow")
            await watch.until("stream_closed")
            async with b.later_worker():
                for tool_id in ("toolu_l1", "toolu_l2"):
                    await watch.until("tool_cancelled", tool_use_id=tool_id)
        results = await assert_one_result_each(watch, ["toolu_l1", "toolu_l2"])
        assert all("ended before this tool started (too slow)" in r["content"] for r in results.values())
        assert all("after_cancel" not in r for r in results.values())  # never told: never started
        assert "tool_started" not in kinds(await watch.all())
        assert await svc.store.executions(watch.run_id, "toolu_l1") == 0
        assert len(api.requests) == 1
    finally:
        await svc.aclose()
        await pool.aclose()


# ---------------------------------------------------------------------------------------------- cancel a tool


async def test_cancel_one_tool_queued_or_running_then_the_turn_continues(bench: BenchFactory) -> None:
    head_gate = unique("head")
    first = turn(
        *opening(),
        call(1, "toolu_head", "keyed", {"key": "f", "gate": head_gate}),
        call(2, "toolu_wait", "keyed", {"key": "f"}),
        call(3, "toolu_run", "hold", {"gate": unique("never")}),
        call(4, "toolu_quick", "quick", {}),
        call(5, "toolu_after", "keyed", {"key": "f"}),  # behind the cancelled call: must still run
        closing(),
    )
    b = await bench([first, FINAL])
    async with asyncio.timeout(TIMEOUT_S):
        watch = await b.start()
        await watch.until("tool_started", tool_use_id="toolu_head")
        await watch.until("tool_waiting", tool_use_id="toolu_wait")
        await watch.until("tool_started", tool_use_id="toolu_run")
        await watch.until("tool_completed", tool_use_id="toolu_quick")
        assert await cancel_tool(b.svc, watch.run_id, "toolu_wait", "not needed") == "cancelled"
        assert await cancel_tool(b.svc, watch.run_id, "toolu_run", "taking too long") == "signalled"
        assert await cancel_tool(b.svc, watch.run_id, "toolu_quick") == "finished"
        assert await cancel_tool(b.svc, watch.run_id, "toolu_nope") == "unknown"
        stopped = await watch.until("tool_cancelled", tool_use_id="toolu_run")
        gate(head_gate).set()  # the head finishes; the chain reaches the cancelled call, which stays so
        await watch.until("run_completed")
    assert stopped["after_cancel"] is True
    ids = ["toolu_head", "toolu_wait", "toolu_run", "toolu_quick", "toolu_after"]
    results = await assert_one_result_each(watch, ids)
    assert "after_cancel" not in results["toolu_wait"] and results["toolu_after"]["status"] == "ok"
    events = await watch.all()
    assert "tool_started" not in [e["kind"] for e in events if e.get("tool_use_id") == "toolu_wait"]
    assert index_of(events, "tool_completed", tool_use_id="toolu_head") < index_of(
        events, "tool_started", tool_use_id="toolu_after"
    )
    assert Counter(e.get("tool_use_id") for e in events if e["kind"] == "cancel_requested") == {
        "toolu_wait": 1,
        "toolu_run": 1,
    }
    # The model reads both cancelled calls as errors; the others as they were.
    assert len(b.api.requests) == 2 and b.api.rejections == []
    blocks = {r["tool_use_id"]: r for r in b.api.requests[1]["messages"][-1]["content"]}
    assert (
        blocks["toolu_wait"]["is_error"]
        and "cancelled before it started (not needed)" in (blocks["toolu_wait"]["content"])
    )
    assert (
        blocks["toolu_run"]["is_error"]
        and "stopped while running (taking too long)" in (blocks["toolu_run"]["content"])
    )
    assert all("is_error" not in blocks[i] for i in ("toolu_head", "toolu_quick", "toolu_after"))


# ---------------------------------------------------------------------------------------------- pause


async def test_pause_holds_every_tool_until_resume(bench: BenchFactory) -> None:
    first = turn(
        *opening(),
        call(1, "toolu_a", "quick", {}),
        call(2, "toolu_b", "keyed", {"key": "y"}),
        call(3, "toolu_c", "keyed", {"key": "y"}),
        closing(),
    )
    b = await bench([first, FINAL])
    async with asyncio.timeout(TIMEOUT_S):
        watch = await b.start(paused=True)
        await watch.until("turn_sealed")  # the model streamed on; every call was held or queued behind
        held = [e for e in watch.events if e["kind"] == "tool_paused"]
        assert [e["tool_use_id"] for e in held] == ["toolu_a", "toolu_b"]
        assert "tool_started" not in kinds(watch.events)
        assert await resume_run(b.svc, watch.run_id) is True
        resumed = await watch.until("run_resumed")
        await watch.until("run_completed")
    assert resumed["released"] == 2 and resumed["continued"] is False
    events = await watch.all()
    paused_at, resumed_at = index_of(events, "run_paused"), index_of(events, "run_resumed")
    assert "tool_started" not in kinds(events[paused_at:resumed_at])
    assert all(index_of(events, "tool_started", tool_use_id=t) > resumed_at for t in ("toolu_a", "toolu_b"))
    assert index_of(events, "tool_completed", tool_use_id="toolu_b") < index_of(
        events, "tool_started", tool_use_id="toolu_c"
    )
    results = await assert_one_result_each(watch, ["toolu_a", "toolu_b", "toolu_c"])
    assert {r["status"] for r in results.values()} == {"ok"}
    assert len(b.api.requests) == 2 and b.api.rejections == []


async def test_a_held_tool_cancelled_before_resume_never_runs_and_its_chain_moves_on(
    bench: BenchFactory,
) -> None:
    first = turn(
        *opening(),
        call(1, "toolu_b", "keyed", {"key": "z"}),
        call(2, "toolu_c", "keyed", {"key": "z"}),
        closing(),
    )
    b = await bench([first, FINAL])
    async with asyncio.timeout(TIMEOUT_S):
        watch = await b.start(paused=True)
        await watch.until("tool_paused", tool_use_id="toolu_b")
        await watch.until("turn_sealed")
        assert await cancel_tool(b.svc, watch.run_id, "toolu_b") == "cancelled"
        assert await resume_run(b.svc, watch.run_id)
        await watch.until("run_completed")
    results = await assert_one_result_each(watch, ["toolu_b", "toolu_c"])
    assert results["toolu_b"]["status"] == "cancelled" and results["toolu_c"]["status"] == "ok"
    events = await watch.all()
    assert "tool_started" not in [e["kind"] for e in events if e.get("tool_use_id") == "toolu_b"]
    assert len(b.api.requests) == 2 and b.api.rejections == []


async def test_pause_holds_the_continuation_until_resume(bench: BenchFactory) -> None:
    release = unique("release")
    first = turn(*opening(), call(1, "toolu_h", "hold", {"gate": release}), closing())
    b = await bench([first, FINAL])
    async with asyncio.timeout(TIMEOUT_S):
        watch = await b.start()
        await watch.until("tool_started", tool_use_id="toolu_h")
        await watch.until("turn_sealed")
        assert await pause_run(b.svc, watch.run_id) is True
        assert await pause_run(b.svc, watch.run_id) is False  # already paused
        gate(release).set()  # the tool finishes while paused: the turn is complete
        pending = await watch.until("continuation_paused")
        assert pending["next_turn"] == 1 and pending["turn"] == 0
        assert "continued" not in kinds(watch.events) and len(b.api.requests) == 1
        run = await b.svc.store.run(watch.run_id)
        assert run is not None and run.paused
        assert await resume_run(b.svc, watch.run_id) is True
        assert await resume_run(b.svc, watch.run_id) is False  # not paused any more
        await watch.until("run_completed")
    events = await watch.all()
    resumed = events[index_of(events, "run_resumed")]
    assert resumed["continued"] is True and resumed["released"] == 0
    continued = events[index_of(events, "continued")]
    assert continued["trigger"] == "resume" and continued["turn"] == 1
    completed = events[index_of(events, "turn_completed")]
    assert completed["turn"] == 0 and completed["trigger"] == "toolu_h"
    assert index_of(events, "run_resumed") < index_of(events, "continued")
    assert len(b.api.requests) == 2 and b.api.rejections == []


async def test_a_job_queued_before_the_pause_holds_itself_and_runs_once_after_resume(
    redis_url: str, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    # Redis only: the job is in arq's queue (no worker for it yet) when the run is paused.
    api = await fake_messages_api(
        [turn(*opening(), call(1, "toolu_l", "later", {}), closing()), FINAL], speed=1.0
    )
    pool = await connect(redis_url)
    svc = Services(pool)
    try:
        async with arq_workers(redis_url, 1, api.url), asyncio.timeout(TIMEOUT_S):
            b = Bench(svc, api, 2, lambda: arq_workers(redis_url, 1, api.url, LATER_QUEUE))
            watch = await b.start()
            await watch.until("tool_enqueued", tool_use_id="toolu_l")
            await watch.until("turn_sealed")
            assert await pause_run(svc, watch.run_id)
            async with b.later_worker():
                await watch.until("tool_paused", tool_use_id="toolu_l")  # run_tool held itself
                assert await resume_run(svc, watch.run_id)
                await watch.until("run_completed")
        events = await watch.all()
        tool_kinds = [e["kind"] for e in events if e.get("tool_use_id") == "toolu_l"]
        assert tool_kinds.count("tool_started") == 1 and tool_kinds.count("tool_enqueued") == 2
        assert index_of(events, "run_resumed") < index_of(events, "tool_started", tool_use_id="toolu_l")
        assert await svc.store.executions(watch.run_id, "toolu_l") == 1
        await assert_one_result_each(watch, ["toolu_l"])
        assert len(api.requests) == 2 and api.rejections == []
    finally:
        await svc.aclose()
        await pool.aclose()


async def test_a_long_pause_does_not_expire_the_tools_it_holds(bench: BenchFactory) -> None:
    first = turn(
        *opening(),
        call(1, "toolu_a", "quick", {}),
        call(2, "toolu_b", "keyed", {"key": "p"}),
        call(3, "toolu_c", "keyed", {"key": "p"}),
        closing(),
    )
    b = await bench([first, FINAL])
    async with asyncio.timeout(TIMEOUT_S):
        watch = await b.start(paused=True, turn_timeout_s=1)
        sealed = await watch.until("turn_sealed")
        # The monitor finds the deadline passed while the run is paused: it fills nothing in.
        held = await watch.until("turn_deadline_paused")
        assert held["turn"] == 0 and held["deadline"] == sealed["deadline"]
        assert held["waiting"] == ["toolu_a", "toolu_b", "toolu_c"]
        assert not {"tool_started", "turn_deadline"} & set(kinds(watch.events))
        assert await b.svc.store.results(watch.run_id, 0) == {}
        assert await resume_run(b.svc, watch.run_id)
        await watch.until("run_completed")
    events = await watch.all()
    assert "turn_deadline" not in kinds(events)
    assert kinds(events).count("turn_deadline_paused") == 1  # once per pause, however often it looks
    results = await assert_one_result_each(watch, ["toolu_a", "toolu_b", "toolu_c"])
    assert {r["kind"] for r in results.values()} == {"tool_completed"}
    resumed = index_of(events, "run_resumed")
    assert all(index_of(events, "tool_started", tool_use_id=t) > resumed for t in results)
    record = await b.svc.store.turn(watch.run_id, 0)
    assert record["status"] == "complete" and float(record["deadline"]) > sealed["deadline"]
    assert len(b.api.requests) == 2 and b.api.rejections == []


def _hook_next_turn_enqueue(
    monkeypatch: pytest.MonkeyPatch,
    svc: Services,
    step: Callable[[Services, str], Awaitable[None]],
    *,
    before: bool,
) -> None:
    """Run ``step(services, run_id)`` once, right before (or right after) turn 1's job is enqueued: in
    ``continue_run``, after it decided to send the continuation. Patched on the class, so that arq
    workers running in this process (each with its own ``Services``) take the step too."""
    cls = type(svc)
    original = cls.enqueue_stream_turn
    done: set[str] = set()

    async def enqueue(
        self: Services, run_id: str, turn: int, generation: int = 0, *, queue: str | None = None
    ) -> bool:
        first = turn == 1 and run_id not in done
        if first:
            done.add(run_id)
        if first and before:
            await step(self, run_id)
        created = await original(self, run_id, turn, *([generation] if generation else []), queue=queue)
        if first and not before:
            await step(self, run_id)
        return created

    monkeypatch.setattr(cls, "enqueue_stream_turn", enqueue)


async def test_a_pause_after_the_continuation_was_sent_holds_the_next_request(
    bench: BenchFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = await bench([turn(*opening(), call(1, "toolu_q", "quick", {}), closing()), FINAL])
    paused: list[bool] = []

    async def pause(svc: Services, run_id: str) -> None:
        paused.append(await pause_run(svc, run_id))

    _hook_next_turn_enqueue(monkeypatch, b.svc, pause, before=True)
    async with asyncio.timeout(TIMEOUT_S):
        watch = await b.start()
        held = await watch.until("continuation_paused")  # turn 1's job found the run paused
        await watch.until("continued", turn=1)
        assert paused == [True] and held["turn"] == 0 and held["next_turn"] == 1
        assert not [e for e in watch.events if e["kind"] == "request_sent" and e["turn"] == 1]
        assert len(b.api.requests) == 1
        assert await resume_run(b.svc, watch.run_id)
        resumed = await watch.until("run_resumed")
        await watch.until("run_completed")
    assert resumed["continued"] is True
    events = await watch.all()
    assert index_of(events, "run_resumed") < index_of(events, "request_sent", turn=1)
    assert [e["turn"] for e in events if e["kind"] == "continued"] == [1]
    assert [e["turn"] for e in events if e["kind"] == "turn_completed"] == [0]
    assert kinds(events).count("continuation_paused") == 1
    assert len(b.api.requests) == 2 and b.api.rejections == []


async def test_a_resume_never_repeats_a_continuation_already_sent(
    bench: BenchFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = await bench([turn(*opening(), call(1, "toolu_q", "quick", {}), closing()), FINAL])
    checks: list[str] = []

    async def pause_then_monitor(svc: Services, run_id: str) -> None:
        # Paused right after turn 1 was enqueued, and the monitor looks before turn 1's job starts.
        assert await pause_run(svc, run_id)
        checks.append(await monitor_turn(svc, run_id, 0, 1000))

    _hook_next_turn_enqueue(monkeypatch, b.svc, pause_then_monitor, before=False)
    async with asyncio.timeout(TIMEOUT_S):
        watch = await b.start()
        await watch.until("continued", turn=1)
        assert checks == ["continued"]  # it saw the continuation sent: nothing to keep for resume
        assert await resume_run(b.svc, watch.run_id)
        await watch.until("run_completed")
    events = await watch.all()
    assert [e["turn"] for e in events if e["kind"] == "continued"] == [1]
    assert [e["turn"] for e in events if e["kind"] == "turn_completed"] == [0]
    assert [e["turn"] for e in events if e["kind"] == "request_sent"] == [0, 1]
    assert len(b.api.requests) == 2 and b.api.rejections == []


async def test_control_of_unknown_and_finished_runs(bench: BenchFactory) -> None:
    b = await bench([turn(*opening(), call(1, "toolu_q", "quick", {}), closing()), FINAL])
    assert await cancel_run(b.svc, "run_nope") is False
    assert await pause_run(b.svc, "run_nope") is False
    assert await resume_run(b.svc, "run_nope") is False
    assert await cancel_tool(b.svc, "run_nope", "toolu_q") == "unknown"
    async with asyncio.timeout(TIMEOUT_S):
        watch = await b.start()
        await watch.until("run_completed")
    assert await resume_run(b.svc, watch.run_id) is False  # running but not paused: nothing to resume
    assert await cancel_run(b.svc, watch.run_id) is False
    assert await pause_run(b.svc, watch.run_id) is False
    assert await cancel_tool(b.svc, watch.run_id, "toolu_q") == "finished"
    assert "cancel_requested" not in kinds(await watch.all())


# ---------------------------------------------------------------------------------------------- event fields


async def test_event_fields_for_timing_and_previews(bench: BenchFactory) -> None:
    big = {"key": "x" * 400}
    first = turn(*opening(), call(1, "toolu_big", "keyed", big), call(2, "toolu_q", "quick", {}), closing())
    b = await bench([first, FINAL])
    async with asyncio.timeout(TIMEOUT_S):
        watch = await b.start()
        await watch.until("run_completed")
    events = await watch.all()
    ready = {e["tool_use_id"]: e for e in events if e["kind"] == "tool_ready"}
    compact = json.dumps(big, separators=(",", ":"))
    assert ready["toolu_big"]["input_preview"] == compact[:300] + f"… ({len(compact)} chars)"
    assert ready["toolu_q"]["input_preview"] == "{}"
    for started in (e for e in events if e["kind"] == "tool_started"):
        assert ready[started["tool_use_id"]]["ts"] >= started["ready_at"] > 0
    sent = {e["turn"]: e for e in events if e["kind"] == "request_sent"}
    assert sent[0].get("since_continue_s") is None and sent[1]["since_continue_s"] >= 0
    [completed] = [e for e in events if e["kind"] == "turn_completed"]
    results = [e for e in events if e["kind"] == "tool_completed"]
    durations = [r["finished_at"] - r["started_at"] for r in results]
    assert completed["turn"] == 0 and completed["tools"] == 2
    assert completed["tool_time_s"] == pytest.approx(sum(durations), abs=1e-5)
    assert completed["last_result_at"] == max(r["finished_at"] for r in results)
    assert completed["parallel_after_stream_end"] == pytest.approx(completed["sealed_at"] + max(durations))
    assert completed["saved_s"] == pytest.approx(
        completed["parallel_after_stream_end"] - completed["last_result_at"], abs=1e-5
    )
    assert completed["trigger"] in {"seal", "toolu_big", "toolu_q"}
    assert index_of(events, "turn_completed") < index_of(events, "continued")


def test_input_preview_cuts_long_inputs_and_says_their_length() -> None:
    assert input_preview({"a": 1, "b": [1, 2]}) == '{"a":1,"b":[1,2]}'
    assert input_preview({"s": "é" * 10}) == '{"s":"' + "é" * 10 + '"}'
    long = input_preview({"s": "y" * 1000})
    assert long.startswith('{"s":"yyy') and long.endswith("… (1008 chars)") and len(long) == 300 + 14


# ---------------------------------------------------------------------------------------------- the parts


async def _control_steps(store: TurnStore, run_id: str) -> list[Any]:
    """The control scripts, step by step: what each answers, in a sequence that visits every branch."""
    out: list[Any] = []
    await store.create_run(run_id, {}, [])
    await store.claim_stream(run_id, 0)
    out.append(await store.pause(run_id))
    out.append(await store.pause(run_id))
    out.append(await store.is_paused(run_id))
    out.append(await store.hold_if_paused(run_id, {"tool_use_id": "a"}))
    out.append(await store.start_tool(run_id, 0, "b", 0))
    out.append(await store.hold_if_paused(run_id, {"tool_use_id": "b", "generation": 1}))
    out.append(await store.start_tool(run_id, 0, "b", 0))
    await store.note_tool(run_id, 0, "c", "quick")
    out.append(await store.tool_info(run_id, "c"))
    out.append(await store.tool_info(run_id, "zzz"))
    out.append(await store.pend_continuation(run_id, 1, "toolu_x"))
    out.append(await store.pend_continuation(run_id, 1, "monitor"))
    out.append(await store.release(run_id, resume=True))
    out.append(await store.release(run_id, resume=True))
    out.append(await store.hold_if_paused(run_id, {"tool_use_id": "d"}))
    out.append(await store.is_paused(run_id))
    out.append(await store.pend_continuation(run_id, 1, "resume"))
    out.append(await store.pend_continuation(run_id, 1, "monitor"))
    out.append(await store.start_tool(run_id, 0, "b", 1))
    out.append(await store.cancel_tool(run_id, 0, "b", "why"))
    out.append(await store.cancel_tool(run_id, 0, "c", "why"))
    out.append(await store.start_tool(run_id, 0, "c", 0))
    await store.add_result(run_id, 0, ToolResult("c", "quick", "cancelled", "no", True))
    out.append(await store.start_tool(run_id, 0, "c", 0))
    out.append(await store.cancel_tool(run_id, 0, "c", "why"))
    # The next turn's job meets a pause that landed after its continuation was sent.
    out.append(await store.pause(run_id))
    out.append(await store.open_stream(run_id, 1, 0, hold=True))
    out.append(await store.pend_continuation(run_id, 1, "monitor"))
    out.append((await store.run(run_id) or {}).get("turn"))
    out.append(await store.release(run_id, resume=True))
    out.append(await store.next_stream_generation(run_id, 1))
    out.append(await store.open_stream(run_id, 1, 0, hold=True))
    out.append(await store.open_stream(run_id, 1, 1, hold=True))
    out.append(await store.open_stream(run_id, 1, 1))
    out.append(await store.claim_stream(run_id, 1))
    # A paused run's deadline: nothing expires; the resume moves it on.
    out.append(await store.pause(run_id))
    out.append(await store.open_stream(run_id, 2, 0))  # not a continuation's job: it goes on
    out.append(await store.pend_continuation(run_id, 2, "toolu_y"))
    out.append(await store.seal(run_id, 2, ["x"], 1.0))
    missing = [ToolResult.failure("x", "quick", "missing", "late")]
    out.append(await store.expire_turn(run_id, 2, missing))
    out.append(await store.expire_turn(run_id, 2, missing))
    out.append(await store.release(run_id, resume=True))
    deadline = (await store.turn(run_id, 2))["deadline"]
    out.append(deadline != "1.0" and float(deadline) > 1.0)
    out.append(await store.expire_turn(run_id, 2, missing, seen_deadline="1.0"))
    out.append(await store.expire_turn(run_id, 2, missing, seen_deadline=deadline))
    out.append({k: v.status for k, v in (await store.results(run_id, 2)).items()})
    await store.end_run(run_id, "cancelled", "by request")
    out.append(await store.start_tool(run_id, 0, "e", 0))
    out.append(await store.pause(run_id))
    out.append(await store.release(run_id, resume=True))
    out.append(await store.release(run_id, resume=False))
    out.append(await store.pend_continuation(run_id, 3, "toolu_x"))
    return out


async def test_the_control_scripts_step_by_step(redis_url: str) -> None:
    expected = [
        0,  # pause: the run's turn
        None,  # already paused
        True,
        True,  # held
        "paused",  # a job queued before the pause is told to hold itself...
        True,  # ... as its next generation...
        "stale",  # ... and the old generation never runs
        {"turn": 0, "name": "quick"},
        None,
        "pending",
        "waiting",  # a second caller does not replace the pending continuation
        ({"turn": 1, "trigger": "toolu_x"}, 0, [{"tool_use_id": "a"}, {"tool_use_id": "b", "generation": 1}]),
        None,  # not paused any more
        False,  # not paused: not held
        False,
        "go",  # the continuation is sent...
        "sent",  # ... once
        "1",  # generation 1 starts: attempt 1
        "signalled",  # it is running
        "cancelled",  # c never started
        "cancelled",  # ... and never will
        "done",  # once its result is recorded
        "finished",
        0,  # paused again, still in turn 0 (turn 1 has not started)
        "paused",  # turn 1's job sends nothing: its continuation is pending...
        "sent",  # ... and nobody sends it a second time
        "0",
        ({"turn": 1, "trigger": "stream", "sent": True}, 0, []),
        1,  # resume enqueues turn 1's job again, as generation 1
        "stale",
        "claimed",
        "taken",
        False,
        1,  # paused in turn 1
        "claimed",
        "started",  # turn 2 already streams: nothing to hold
        "ok",
        "held",  # the deadline passed while paused: nothing is filled in (logged once)...
        "paused",  # ... however often the monitor looks
        (None, 2, []),
        True,  # the resume moved the deadline on
        "moved",
        "continue",
        {"x": "missing"},
        "ended",
        None,
        None,
        (None, 2, []),
        "ended",
    ]
    pool = await connect(redis_url)
    try:
        assert await _control_steps(TurnStore(pool), unique("steps")) == expected
    finally:
        await pool.aclose()


async def test_interrupt_cuts_only_marked_waits_and_lets_other_cancels_through() -> None:
    async with asyncio.timeout(TIMEOUT_S):  # a point that fails to cut its wait fails, not hangs
        await _interrupt_cases()


async def _interrupt_cases() -> None:
    task = asyncio.current_task()
    assert task is not None

    # A cancel while the task waits inside a point ends that wait with Interrupted...
    interrupt = Interrupt()
    asyncio.get_running_loop().call_soon(interrupt.fire, "stop")
    with pytest.raises(Interrupted, match="stop"), interrupt.point():
        await asyncio.Event().wait()
    assert task.cancelling() == 0  # ... and the task is not left half-cancelled

    # A cancel while it waits elsewhere does not cut that wait; the next point raises at once.
    interrupt = Interrupt()
    done = asyncio.Event()

    def fire_then_finish() -> None:
        interrupt.fire("later")
        done.set()

    asyncio.get_running_loop().call_soon(fire_then_finish)
    await done.wait()
    with pytest.raises(Interrupted, match="later"), interrupt.point():
        raise AssertionError("a point after a cancel must not start waiting")

    # A cancel from elsewhere (a job timeout, a shutdown) is a CancelledError, not an Interrupted.
    async def waits() -> None:
        with Interrupt().point():
            await asyncio.Event().wait()

    waiting = asyncio.create_task(waits())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
