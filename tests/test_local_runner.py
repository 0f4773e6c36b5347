"""The in-process runner: the pipeline's own jobs on asyncio tasks, memory store and log; no Redis.

The same scenarios as ``test_pipeline.py`` (which runs them on Redis and arq workers), asserted on the
order of events and on results, never on timing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

from incremental.pipeline import (
    LocalServices,
    MemoryEventLog,
    MemoryTurnStore,
    RunConfig,
    replay_local,
    run_local,
)
from incremental.testing import FakeMessagesAPIFactory
from incremental.tools import ToolResult

from . import _toolsets
from ._support import FIXTURES, race_results_against_the_seal
from .test_pipeline import final_turn_file, index_of, tool_turn_file


async def play(files: list[Path], **options: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``replay_local`` with the test tools at full speed; the summary and every event, in order."""
    events: list[dict[str, Any]] = []
    options.setdefault("speed", 0.0)
    options.setdefault("toolset_registry", _toolsets.registry)
    async with asyncio.timeout(30):  # a stuck run fails the test instead of hanging it
        summary = await replay_local(files, on_event=events.append, **options)
    return summary, events


def kinds_for(events: list[dict[str, Any]], tool_id: str) -> list[str]:
    return [e["kind"] for e in events if e.get("tool_use_id") == tool_id]


# ---------------------------------------------------------------------------------------------- whole runs


async def test_two_turn_app_builder_conversation_in_process(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    files = [FIXTURES / "app_builder_8_tools.sse", FIXTURES / "app_builder_turn2.sse"]
    summary, events = await play(files, toolset_registry=None, workspace=str(workspace))
    assert summary["state"] == "completed", summary
    assert summary["requests"] == 2 and summary["rejected_requests"] == []
    assert [t["status"] for t in summary["tools"]] == ["ok"] * 8
    assert all(t["executions"] == 1 for t in summary["tools"])
    assert (workspace / "src" / "App.tsx").is_file()
    assert json.loads((workspace / "app.json").read_text())["name"]
    kinds = [e["kind"] for e in events]
    assert kinds.count("continued") == 1 and kinds[0] == "run_started" and kinds[-1] == "run_completed"
    assert summary["run_id"] and all(e["run_id"] == summary["run_id"] for e in events)


async def test_simulated_tools_on_a_given_registry(tmp_path: Path) -> None:
    files = [FIXTURES / "app_builder_8_tools.sse", FIXTURES / "app_builder_turn2.sse"]
    summary, _ = await play(files, toolset_registry=None, simulate_s=0.0, workspace=str(tmp_path))
    assert summary["state"] == "completed" and summary["rejected_requests"] == []
    assert [t["status"] for t in summary["tools"]] == ["ok"] * 8
    assert not (tmp_path / "app.json").exists()  # simulated tools only take time


async def test_poison_tool_gives_an_error_result_and_the_turn_continues(tmp_path: Path) -> None:
    files = [
        tool_turn_file(tmp_path / "t1.sse", [("toolu_poison", "poison", {"why": "kaput"})]),
        final_turn_file(tmp_path / "t2.sse"),
    ]
    summary, events = await play(files)
    assert summary["state"] == "completed" and summary["rejected_requests"] == []
    [tool] = summary["tools"]
    assert tool["status"] == "error"
    [failed] = [e for e in events if e["kind"] == "tool_failed"]
    assert "kaput" in failed["content"]


async def test_truncated_and_invalid_inputs_never_run(tmp_path: Path) -> None:
    summary, events = await play(
        [FIXTURES / "max_tokens_in_tool.sse"], toolset_registry=None, workspace=str(tmp_path)
    )
    assert summary["state"] == "stopped" and "max_tokens" in summary["reason"]
    started = {e["tool_use_id"] for e in events if e["kind"] == "tool_started"}
    rejected = {e["tool_use_id"] for e in events if e["kind"] == "tool_rejected"}
    assert len(rejected) == 1 and not (started & rejected)

    files = [FIXTURES / "invalid_tool_json.sse", final_turn_file(tmp_path / "t2.sse")]
    summary, _ = await play(files, toolset_registry=None, workspace=str(tmp_path))
    refused = [t for t in summary["tools"] if t["status"] == "refused"]
    assert len(refused) == 1 and refused[0]["executions"] == 0
    assert summary["state"] == "completed"


async def test_unknown_tool_and_schema_failure_are_refused_before_enqueue(tmp_path: Path) -> None:
    files = [
        tool_turn_file(
            tmp_path / "t1.sse",
            [("toolu_unknown", "launch_rockets", {}), ("toolu_schema", "sleepy", {"seconds": "soon"})],
        ),
        final_turn_file(tmp_path / "t2.sse"),
    ]
    summary, events = await play(files)
    assert [t["status"] for t in summary["tools"]] == ["refused", "refused"]
    assert not [e for e in events if e["kind"] in ("tool_enqueued", "tool_started")]
    assert summary["state"] == "completed" and summary["rejected_requests"] == []


async def test_deadline_fills_missing_results_and_continues(
    tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    files = [
        tool_turn_file(
            tmp_path / "t1.sse",
            [("toolu_slow", "sleepy", {"seconds": 1.5}), ("toolu_fast", "sleepy", {"seconds": 0})],
        ),
        final_turn_file(tmp_path / "t2.sse"),
    ]
    api = await fake_messages_api(files, speed=0)
    config = RunConfig(toolset="test", api_base_url=api.url, max_turns=2, turn_timeout_s=0.3)
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        summary = await run_local(
            config, [{"role": "user", "content": "go"}], registry=_toolsets.registry, on_event=events.append
        )
    assert summary["state"] == "completed"
    deadline = [e for e in events if e["kind"] == "turn_deadline"]
    assert len(deadline) == 1 and deadline[0]["missing"] == ["toolu_slow"]
    assert index_of(events, "tool_completed", tool_use_id="toolu_fast") < index_of(events, "turn_deadline")
    assert index_of(events, "turn_deadline") < index_of(events, "continued", trigger="deadline")
    results = {b["tool_use_id"]: b for b in api.requests[1]["messages"][-1]["content"]}
    assert results["toolu_slow"]["is_error"] and "deadline" in results["toolu_slow"]["content"]
    assert "is_error" not in results["toolu_fast"] and api.rejections == []


async def test_same_concurrency_key_runs_in_stream_order(tmp_path: Path) -> None:
    out = tmp_path / "ordered.txt"
    calls = [
        ("toolu_a", "slow_append", {"path": str(out), "line": "first", "delay": 0.3}),
        ("toolu_b", "slow_append", {"path": str(out), "line": "second", "delay": 0.0}),
        ("toolu_c", "slow_append", {"path": str(tmp_path / "other.txt"), "line": "x", "delay": 0.0}),
    ]
    files = [tool_turn_file(tmp_path / "t1.sse", calls), final_turn_file(tmp_path / "t2.sse")]
    summary, events = await play(files)
    assert summary["state"] == "completed"
    assert out.read_text() == "first\nsecond\n"
    assert index_of(events, "tool_waiting", tool_use_id="toolu_b") < index_of(
        events, "tool_completed", tool_use_id="toolu_a"
    )
    assert index_of(events, "tool_completed", tool_use_id="toolu_a") < index_of(
        events, "tool_started", tool_use_id="toolu_b"
    )
    # The call on another key did not wait for them.
    assert index_of(events, "tool_started", tool_use_id="toolu_c") < index_of(
        events, "tool_completed", tool_use_id="toolu_a"
    )


async def test_after_message_tool_waits_for_message_stop(tmp_path: Path) -> None:
    files = [
        tool_turn_file(
            tmp_path / "t1.sse", [("toolu_pay", "charge_card", {}), ("toolu_s", "sleepy", {"seconds": 0})]
        ),
        final_turn_file(tmp_path / "t2.sse"),
    ]
    summary, events = await play(files)
    assert summary["state"] == "completed"
    assert index_of(events, "message_stopped") < index_of(events, "tool_enqueued", tool_use_id="toolu_pay")
    assert index_of(events, "tool_enqueued", tool_use_id="toolu_s") < index_of(events, "message_stopped")

    # ... and never runs when the message does not end with tool_use.
    files = [tool_turn_file(tmp_path / "t3.sse", [("toolu_pay2", "charge_card", {})], stop_reason="end_turn")]
    summary, events = await play(files)
    assert [t["status"] for t in summary["tools"]] == ["cancelled"]
    assert "tool_started" not in kinds_for(events, "toolu_pay2")


async def test_overloaded_stream_fails_the_run_and_continues_nothing(tmp_path: Path) -> None:
    files = [FIXTURES / "overloaded_midstream.sse", final_turn_file(tmp_path / "t2.sse")]
    summary, events = await play(files, toolset_registry=None, workspace=str(tmp_path))
    assert summary["state"] == "failed" and "overloaded_error" in summary["reason"]
    assert summary["requests"] == 1 and "continued" not in [e["kind"] for e in events]


async def test_max_concurrent_runs_tools_one_at_a_time(
    tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    ids = ["toolu_1", "toolu_2", "toolu_3"]
    calls = [(i, "sleepy", {"seconds": 0.01}) for i in ids]
    api = await fake_messages_api(
        [tool_turn_file(tmp_path / "t1.sse", calls), final_turn_file(tmp_path / "t2.sse")], speed=0
    )
    seen: list[dict[str, Any]] = []

    async def on_event(event: dict[str, Any]) -> None:  # an async callback is awaited
        seen.append(event)

    config = RunConfig(toolset="test", api_base_url=api.url, max_turns=2)
    async with asyncio.timeout(30):
        summary = await run_local(
            config, [{"role": "user", "content": "go"}], registry=_toolsets.registry, max_concurrent=1
        )
        again = await run_local(
            config,
            [{"role": "user", "content": "go"}],
            registry=_toolsets.registry,
            on_event=on_event,
            max_concurrent=1,
        )
    assert summary["state"] == again["state"] == "completed"
    for first, second in itertools.pairwise(ids):
        assert index_of(seen, "tool_completed", tool_use_id=first) < index_of(
            seen, "tool_started", tool_use_id=second
        )
    assert seen[0]["kind"] == "run_started" and seen[-1]["kind"] == "run_completed"
    assert [t["status"] for t in again["tools"]] == ["ok"] * 3 and api.rejections == []


async def test_a_job_that_raises_fails_the_run_instead_of_leaving_it_waiting(tmp_path: Path) -> None:
    # No tool set "nope": stream_turn raises KeyError before any request is sent.
    config = RunConfig(toolset="nope", api_base_url="http://127.0.0.1:9", max_turns=1)
    async with asyncio.timeout(30):
        summary = await run_local(config, [{"role": "user", "content": "go"}])
    assert summary["state"] == "failed" and "unknown toolset 'nope'" in summary["reason"]

    # A data line that is not a JSON object: the client raises MalformedEventError out of stream_turn.
    bad = tmp_path / "bad.sse"
    bad.write_bytes(b"event: message_start\ndata: [1, 2]\n\n")
    summary, events = await play([bad])
    assert summary["state"] == "failed" and "MalformedEventError" in summary["reason"]
    assert "run_failed" in {e["kind"] for e in events}


# ---------------------------------------------------------------------------------------------- the parts


async def test_exactly_one_continuation_when_results_race_the_seal() -> None:
    await race_results_against_the_seal(MemoryTurnStore(), "race")


async def test_memory_store_mirrors_the_redis_scripts() -> None:
    store = MemoryTurnStore()
    assert await store.run("r") is None and await store.end_run("r", "failed", "x") is False
    await store.create_run("r", {"toolset": "test"}, [{"role": "user", "content": "hi"}])
    run = await store.run("r")
    assert run is not None and run.state == "running" and run.config == {"toolset": "test"}
    assert await store.claim_stream("r", 0) and not await store.claim_stream("r", 0)
    assert await store.expire_turn("r", 0, []) == "unsealed"
    assert await store.seal("r", 0, ["a", "b"], 1e12) == "ok"
    assert await store.seal("r", 0, ["a"], 1e12) == "already"
    missing = ToolResult.failure("b", "t", "missing", "late")
    assert await store.add_result("r", 0, ToolResult("a", "t", "ok", "done", False)) == "ok"
    assert await store.expire_turn("r", 0, [missing]) == "continue"
    assert {k: v.status for k, v in (await store.results("r", 0)).items()} == {"a": "ok", "b": "missing"}
    assert await store.add_result("r", 0, ToolResult("b", "t", "ok", "done", False)) == "dup"
    assert await store.block_continuation("r", 1, "failed", "boom") is True
    assert (await store.turn("r", 1))["continued"] == "blocked"
    assert [await store.count_execution("r", "a") for _ in range(2)] == [1, 2]
    assert await store.executions("r", "a") == 2 and await store.executions("r", "z") == 0
    assert await store.chain_add("r", "k", {"tool_use_id": "x"}) is True
    assert await store.chain_add("r", "k", {"tool_use_id": "y"}) is False
    assert await store.chain_next("r", "k", "y") is None  # only the head may finish
    assert await store.chain_next("r", "k", "x") == {"tool_use_id": "y"}
    assert await store.chain_next("r", "k", "y") is None
    assert await store.end_run("r", "completed", "done") and not await store.end_run("r", "failed", "x")
    messages = await store.messages("r")
    messages.append({"role": "assistant", "content": "mutated"})  # a copy, as from Redis
    assert len(await store.messages("r")) == 1
    store.drop_run("r")
    assert await store.run("r") is None and await store.turn("r", 0) == {}


async def test_memory_event_log_ids_shape_and_blocking_read() -> None:
    log = MemoryEventLog()
    assert await log.read("r", block_ms=1) == []  # nothing within the time: empty, no error
    assert await log.append("r", "run_started", turn=0) == "1-0"
    assert await log.append("r", "text_delta", turn=0, text="hi") == "2-0"
    first = (await log.all("r"))[0]
    assert set(first) == {"v", "kind", "ts", "run_id", "turn"} and first["run_id"] == "r"
    assert [i for i, _ in await log.read("r")] == ["1-0", "2-0"]
    assert [e["kind"] for _, e in await log.read("r", "1-0")] == ["text_delta"]
    assert len(await log.read("r", count=1)) == 1

    # A blocked reader wakes on the append, whichever comes first of it and the time limit.
    reader = asyncio.create_task(log.read("r", "2-0", block_ms=60_000))
    await asyncio.sleep(0)  # let the reader start waiting
    assert not reader.done()
    await log.append("r", "run_completed", turn=0)
    async with asyncio.timeout(5):
        [(entry_id, event)] = await reader
    assert entry_id == "3-0" and event["kind"] == "run_completed"
    assert await log.read("r", "$") == [] and await log.read("other") == []


async def test_memory_event_log_trims_to_maxlen() -> None:
    log = MemoryEventLog(maxlen=10)
    for i in range(50):
        await log.append("r", "tick", n=i)
    kept = await log.read("r")
    assert 10 <= len(kept) < 50 and kept[-1] == ("50-0", (await log.all("r"))[-1])
    assert [e["n"] for _, e in kept] == list(range(50 - len(kept), 50))


async def test_same_job_id_runs_once_and_aclose_cancels_deferred_monitors() -> None:
    async with asyncio.timeout(10):
        async with LocalServices() as services:
            assert await services.enqueue_stream_turn("no-run", 0) is True
            assert await services.enqueue_stream_turn("no-run", 0) is False
            assert await services.enqueue_monitor("no-run", 0, 0, defer_s=3600) is True
            assert await services.enqueue_monitor("no-run", 0, 0, defer_s=3600) is False
            assert services.busy
        assert not services.busy
        assert await services.enqueue_stream_turn("no-run", 1) is False  # closed: takes no more jobs
