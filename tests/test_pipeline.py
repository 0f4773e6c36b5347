"""The dispatch pipeline end to end: real Redis, real arq workers, the fake Messages API over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from incremental import MessagesClient, Runner
from incremental.adapters._arq import connect
from incremental.adapters._eventlog import EventLog
from incremental.adapters._store import TurnStore
from incremental.core import BlockStopped, MessageStopped, StreamParser, ToolReady, ToolRejected
from incremental.events import RUN_FINAL_KINDS
from incremental.examples.app_builder.tools import registry as app_registry
from incremental.examples.app_builder.tools import seed_vite_starter
from incremental.fake_api import FakeMessagesAPI
from incremental.pipeline import summarize
from incremental.pipeline._jobs import salvaged_content
from incremental.replay import ReplayOptions, replay

from . import _toolsets
from ._streams import (
    MESSAGE_STOP,
    json_delta,
    message_delta,
    message_start,
    stop,
    stream,
    text_delta,
    text_start,
    tool_start,
)
from ._support import APP_BUILDER, FIXTURES, race_results_against_the_seal

ROOT = Path(__file__).resolve().parent.parent


def tool_turn_file(
    path: Path, calls: list[tuple[str, str, dict[str, Any]]], stop_reason: str = "tool_use"
) -> Path:
    """A recorded turn: a text block, then each (id, name, input) as a tool_use streamed in pieces."""
    objs = [message_start(), text_start(0), text_delta(0, "Working on it."), stop(0)]
    for i, (tool_id, name, value) in enumerate(calls, start=1):
        text = json.dumps(value)
        objs.append(tool_start(i, tool_id, name))
        objs += [json_delta(i, "")] + [json_delta(i, text[j : j + 7]) for j in range(0, len(text), 7)]
        objs.append(stop(i))
    objs += [message_delta(stop_reason), MESSAGE_STOP]
    path.write_bytes(stream(*objs))
    return path


def final_turn_file(path: Path) -> Path:
    objs = [
        message_start("msg_final"),
        text_start(0),
        text_delta(0, "Done."),
        stop(0),
        message_delta("end_turn"),
    ]
    path.write_bytes(stream(*objs, MESSAGE_STOP))
    return path


async def play(
    redis_url: str, files: list[Path], **options: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    options.setdefault("workers", 2)
    options.setdefault("speed", 0.0)
    options.setdefault("toolset", "test")
    if options["toolset"] == "app":
        options.update(tools=app_registry, prepare_workspace=seed_vite_starter)
    else:
        options.setdefault("tools", _toolsets.registry)
    summary = await replay(ReplayOptions(files=files, redis_url=redis_url, **options))
    pool = await connect(redis_url)
    try:
        events = await EventLog(pool).all(summary["run_id"])
    finally:
        await pool.aclose()
    return summary, events


def kinds_for(events: list[dict[str, Any]], tool_id: str) -> list[str]:
    return [e["kind"] for e in events if e.get("tool_use_id") == tool_id]


def index_of(events: list[dict[str, Any]], kind: str, **match: Any) -> int:
    return next(
        i for i, e in enumerate(events) if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())
    )


async def test_two_turn_app_builder_conversation_through_real_workers(redis_url: str, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    files = list(APP_BUILDER)
    summary, events = await play(redis_url, files, toolset="app", workspace=str(workspace))
    assert summary["state"] == "completed", summary
    assert summary["requests"] == 2 and summary["rejected_requests"] == []
    assert [t["status"] for t in summary["tools"]] == ["ok"] * 8
    assert all(t["executions"] == 1 for t in summary["tools"])
    assert (workspace / "src" / "App.tsx").is_file()
    assert json.loads((workspace / "app.json").read_text())["name"]
    assert [e["kind"] for e in events].count("continued") == 1


async def test_a_tools_start_progress_and_result_are_logged_whole_and_in_order(
    redis_url: str, tmp_path: Path
) -> None:
    """A tool's start and progress wait a few milliseconds to be written together, and the progress
    still pending at its result goes in the result's own call: every entry is there, in order."""
    summary, events = await play(redis_url, list(APP_BUILDER), toolset="app", simulate_s=0.05)
    assert summary["state"] == "completed", summary
    for tool in summary["tools"]:
        kinds = kinds_for(events, tool["id"])
        ran = kinds[kinds.index("tool_started") :]
        assert ran == ["tool_started", *["tool_progress"] * 5, "tool_completed"], kinds
        assert kinds.index("tool_ready") < kinds.index("tool_enqueued") < kinds.index("tool_started")
        fractions = [e["fraction"] for e in events if e.get("tool_use_id") == tool["id"] and "fraction" in e]
        assert fractions == [0.0, 0.25, 0.5, 0.75, 1.0]


async def test_tools_start_before_message_stop(redis_url: str, tmp_path: Path) -> None:
    # Recorded at realistic pace; speed 10 keeps the test short. Order of events, not timing, is asserted.
    files = list(APP_BUILDER)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    summary, events = await play(redis_url, files, toolset="app", workspace=str(workspace), speed=10.0)
    stopped = index_of(events, "message_stopped", turn=0)
    first = summary["tools"][0]["id"]
    assert index_of(events, "tool_completed", tool_use_id=first) < stopped
    early = [t for t in summary["tools"] if t["finished_at"] < summary["stream_end_at"]]
    assert len(early) >= 6  # all but the last calls finished while the model was still streaming


async def test_poison_tool_gives_an_error_result_and_the_turn_continues(
    redis_url: str, tmp_path: Path
) -> None:
    files = [
        tool_turn_file(tmp_path / "t1.sse", [("toolu_poison", "poison", {"why": "kaput"})]),
        final_turn_file(tmp_path / "t2.sse"),
    ]
    summary, _ = await play(redis_url, files)
    assert summary["state"] == "completed"
    [tool] = summary["tools"]
    assert tool["status"] == "error"


async def test_truncated_and_invalid_inputs_never_run(redis_url: str, tmp_path: Path) -> None:
    summary, events = await play(
        redis_url, [FIXTURES / "max_tokens_in_tool.sse"], toolset="app", workspace=str(tmp_path)
    )
    assert summary["state"] == "stopped" and "max_tokens" in summary["reason"]
    started = {e["tool_use_id"] for e in events if e["kind"] == "tool_started"}
    rejected = {e["tool_use_id"] for e in events if e["kind"] == "tool_rejected"}
    assert len(rejected) == 1 and not (started & rejected)

    files = [FIXTURES / "invalid_tool_json.sse", final_turn_file(tmp_path / "t2.sse")]
    summary, events = await play(redis_url, files, toolset="app", workspace=str(tmp_path))
    refused = [t for t in summary["tools"] if t["status"] == "refused"]
    assert len(refused) == 1 and refused[0]["executions"] == 0
    assert summary["state"] == "completed"


async def test_unknown_tool_and_schema_failure_are_refused_before_enqueue(
    redis_url: str, tmp_path: Path
) -> None:
    files = [
        tool_turn_file(
            tmp_path / "t1.sse",
            [("toolu_unknown", "launch_rockets", {}), ("toolu_schema", "sleepy", {"seconds": "soon"})],
        ),
        final_turn_file(tmp_path / "t2.sse"),
    ]
    summary, events = await play(redis_url, files)
    assert [t["status"] for t in summary["tools"]] == ["refused", "refused"]
    assert not [e for e in events if e["kind"] in ("tool_enqueued", "tool_started")]
    assert summary["state"] == "completed"


async def test_deadline_fills_missing_results_and_continues(redis_url: str, tmp_path: Path) -> None:
    files = [
        tool_turn_file(
            tmp_path / "t1.sse",
            [("toolu_slow", "sleepy", {"seconds": 5}), ("toolu_fast", "sleepy", {"seconds": 0})],
        ),
        final_turn_file(tmp_path / "t2.sse"),
    ]
    summary, events = await play(redis_url, files, turn_timeout_s=0.5)
    assert summary["state"] == "completed"
    deadline = [e for e in events if e["kind"] == "turn_deadline"]
    assert len(deadline) == 1 and deadline[0]["missing"] == ["toolu_slow"]


async def test_same_concurrency_key_runs_in_stream_order(redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "ordered.txt"
    calls = [
        ("toolu_a", "slow_append", {"path": str(out), "line": "first", "delay": 0.3}),
        ("toolu_b", "slow_append", {"path": str(out), "line": "second", "delay": 0.0}),
        ("toolu_c", "slow_append", {"path": str(tmp_path / "other.txt"), "line": "x", "delay": 0.0}),
    ]
    files = [tool_turn_file(tmp_path / "t1.sse", calls), final_turn_file(tmp_path / "t2.sse")]
    summary, events = await play(redis_url, files)
    assert summary["state"] == "completed"
    assert out.read_text() == "first\nsecond\n"
    assert index_of(events, "tool_completed", tool_use_id="toolu_a") < index_of(
        events, "tool_started", tool_use_id="toolu_b"
    )
    # The call on another key did not wait for them.
    assert index_of(events, "tool_started", tool_use_id="toolu_c") < index_of(
        events, "tool_completed", tool_use_id="toolu_a"
    )


async def test_exactly_one_continuation_when_results_race_the_seal(redis_url: str) -> None:
    pool = await connect(redis_url)
    try:
        await race_results_against_the_seal(TurnStore(pool), f"race-{uuid.uuid4().hex}")
    finally:
        await pool.aclose()


async def test_after_message_tool_waits_for_message_stop(redis_url: str, tmp_path: Path) -> None:
    files = [
        tool_turn_file(
            tmp_path / "t1.sse", [("toolu_pay", "charge_card", {}), ("toolu_s", "sleepy", {"seconds": 0})]
        ),
        final_turn_file(tmp_path / "t2.sse"),
    ]
    summary, events = await play(redis_url, files)
    assert summary["state"] == "completed"
    assert index_of(events, "message_stopped") < index_of(events, "tool_enqueued", tool_use_id="toolu_pay")
    assert index_of(events, "tool_enqueued", tool_use_id="toolu_s") < index_of(events, "message_stopped")

    # ... and never runs when the message does not end with tool_use.
    files = [tool_turn_file(tmp_path / "t3.sse", [("toolu_pay2", "charge_card", {})], stop_reason="end_turn")]
    summary, events = await play(redis_url, files)
    assert [t["status"] for t in summary["tools"]] == ["cancelled"]
    assert "tool_started" not in kinds_for(events, "toolu_pay2")


async def test_overloaded_stream_fails_the_run_and_continues_nothing(redis_url: str, tmp_path: Path) -> None:
    files = [FIXTURES / "overloaded_midstream.sse", final_turn_file(tmp_path / "t2.sse")]
    summary, events = await play(redis_url, files, toolset="app", workspace=str(tmp_path))
    assert summary["state"] == "failed" and "overloaded_error" in summary["reason"]
    assert summary["requests"] == 1 and "continued" not in [e["kind"] for e in events]


async def wait_for(
    log: EventLog, run_id: str, kinds: set[str], after: str = "0-0"
) -> tuple[str, dict[str, Any]]:
    """The next event of one of these kinds (bounded by the caller's timeout)."""
    while True:
        for entry_id, event in await log.read(run_id, after, block_ms=1000):
            after = entry_id
            if event["kind"] in kinds:
                return entry_id, event


def start_worker(redis_url: str, api_url: str) -> subprocess.Popen[bytes]:
    """A worker process of a user's own module (``tests/_user_worker.py``), started by ``arq``."""
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "ANTHROPIC_BASE_URL": api_url,
        "ANTHROPIC_API_KEY": "sk-test",
        "INCREMENTAL_JOB_LEASE": "2",  # arq redelivers a dead worker's job this long after its last renewal
    }
    env.pop("INCREMENTAL_TOOLSETS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "arq", "tests._user_worker.WorkerSettings"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_worker_killed_mid_tool_redelivers_and_the_side_effect_happens_once(
    redis_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "once.txt"
    files = [
        tool_turn_file(
            tmp_path / "t1.sse",
            [("toolu_k", "slow_append", {"path": str(out), "line": "once", "delay": 1.5})],
        ),
        final_turn_file(tmp_path / "t2.sse"),
    ]
    pool = await connect(redis_url)
    log = EventLog(pool)
    first: subprocess.Popen[bytes] | None = None
    second: subprocess.Popen[bytes] | None = None
    try:
        async with FakeMessagesAPI(files, speed=0) as api, Runner(redis_url=redis_url) as runner:
            first = start_worker(redis_url, api.url)
            run = await runner.start(
                [{"role": "user", "content": "go"}],
                model="claude-sonnet-4-5",
                max_tokens=1024,
                toolset="test",
                max_turns=2,
                turn_timeout_s=120,
            )
            run_id = run.id
            async with asyncio.timeout(60):
                after, _ = await wait_for(log, run_id, {"tool_started"})
                first.send_signal(signal.SIGKILL)
                first.wait()
                second = start_worker(redis_url, api.url)
                _, end = await wait_for(log, run_id, set(RUN_FINAL_KINDS), after)
            assert end["kind"] == "run_completed", end
            summary = summarize(await log.all(run_id))
            [tool] = summary["tools"]
            assert tool["executions"] == 2 and tool["status"] == "ok"
            assert out.read_text() == "once\n"
            results = [b for b in api.requests[1]["messages"][-1]["content"] if b["type"] == "tool_result"]
            assert [r["tool_use_id"] for r in results] == ["toolu_k"]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        await pool.aclose()


async def test_an_unexpected_failure_in_a_turn_fails_the_run_rather_than_hanging(
    redis_url: str, tmp_path: Path
) -> None:
    # The run names a tool set the workers do not have (the runner that starts it knows none to check).
    files = [tool_turn_file(tmp_path / "t1.sse", [("toolu_x", "sleepy", {"seconds": 0})])]
    async with (
        FakeMessagesAPI(files, speed=0) as api,
        Runner(
            {"test": _toolsets.registry},
            redis_url=redis_url,
            workers=1,
            model_client=MessagesClient(base_url=api.url, api_key="sk-test"),
        ),
        Runner(redis_url=redis_url) as starter,
    ):
        run = await starter.start(
            [{"role": "user", "content": "go"}], model="m", max_tokens=10, toolset="no-such-toolset"
        )
        result = await run.result(timeout=30)
    assert result.state == "failed" and result.error is not None
    assert result.error.type == "UnknownToolsetError"
    assert "tool set 'no-such-toolset'" in result.error.message and "'test'" in result.error.message
    assert api.requests == []


async def run_with_faults(
    redis_url: str, files: list[Path], faults: dict[int, Any]
) -> tuple[dict[str, Any], Any]:
    """A run against a fake API that misbehaves as told, with two in-process arq workers."""
    from incremental.fake_api import Fault

    typed = {turn: Fault(**spec) for turn, spec in faults.items()}
    async with FakeMessagesAPI(files, speed=0, faults=typed) as api:
        client = MessagesClient(base_url=api.url, api_key="sk-test")
        async with Runner(
            {"test": _toolsets.registry}, redis_url=redis_url, workers=2, model_client=client
        ) as r:
            run = await r.start(
                [{"role": "user", "content": "go"}],
                model="claude-sonnet-4-5",
                max_tokens=1024,
                max_turns=len(files),
                turn_timeout_s=30,
            )
            result = await run.result(timeout=60)
        await client.aclose()
        return result.summary, api


async def test_overloaded_before_the_first_byte_is_retried(redis_url: str, tmp_path: Path) -> None:
    files = [
        tool_turn_file(tmp_path / "t1.sse", [("toolu_s", "sleepy", {"seconds": 0})]),
        final_turn_file(tmp_path / "t2.sse"),
    ]
    faults = {0: {"kind": "status", "status": 529, "retry_after": 0.01, "times": 2}}
    summary, api = await run_with_faults(redis_url, files, faults)
    assert summary["state"] == "completed"
    assert len(api.requests) == 4  # two 529s, then turn 1, then turn 2
    assert [t["executions"] for t in summary["tools"]] == [1]


async def test_a_dropped_stream_fails_the_turn_and_runs_nothing_twice(redis_url: str, tmp_path: Path) -> None:
    files = [
        tool_turn_file(tmp_path / "t1.sse", [("toolu_s", "sleepy", {"seconds": 0})]),
        final_turn_file(tmp_path / "t2.sse"),
    ]
    # Cut after message_start, the text block and the tool's start: the connection drops mid-tool.
    summary, api = await run_with_faults(redis_url, files, {0: {"kind": "drop_after", "events": 6}})
    assert summary["state"] == "failed"
    assert len(api.requests) == 1
    assert all(t["executions"] == 0 for t in summary["tools"])


# ---------------------------------------------------------------------------------------------- salvage


def kept(block: dict[str, Any], status: str = "done") -> dict[str, Any]:
    return {"block": block, "status": status}


def test_a_salvaged_message_is_the_completed_blocks_in_order() -> None:
    text = {"type": "text", "text": "On it."}
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    call = {"type": "tool_use", "id": "toolu_1", "name": "sleepy", "input": {"seconds": 0}}
    bad = {"type": "tool_use", "id": "toolu_2", "name": "sleepy", "input": {"INVALID_JSON": "{"}}
    records = {
        2: kept(call, "ready"),
        0: kept(thinking),
        1: kept(text),
        3: kept(bad, "invalid"),
    }
    # Block 4 was streaming when the stream was cut: it is not there, and nothing of it is kept.
    content, cut_at, dropped = salvaged_content(records)
    assert content == [thinking, text, call, bad] and cut_at == 4 and dropped == []


def test_a_server_tool_call_without_its_result_is_left_out() -> None:
    search = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}}
    found = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}
    again = {"type": "server_tool_use", "id": "srvtoolu_2", "name": "web_search", "input": {"query": "y"}}
    call = {"type": "tool_use", "id": "toolu_1", "name": "sleepy", "input": {"seconds": 0}}
    records = {0: kept(search, "server_side"), 1: kept(found, "server_side"), 2: kept(call, "ready")}
    records[3] = kept(again, "server_side")  # its result block (4) never completed
    content, cut_at, dropped = salvaged_content(records)
    assert content == [search, found, call] and cut_at == 4 and dropped == [3]
    assert salvaged_content({}) == ([], 0, [])


def blocks_at_their_stop(data: bytes) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """What a stream job keeps of each block as it stops (as ``_TurnState.keep`` does), and the content
    of the whole message."""
    parser = StreamParser()
    at_stop: dict[int, dict[str, Any]] = {}
    content: list[dict[str, Any]] = []
    for event in [*parser.feed(data), *parser.end()]:
        stopped = isinstance(event, BlockStopped | ToolReady | ToolRejected)
        if stopped and getattr(event, "status", "ready") != "truncated":
            [block] = [b for b in parser.blocks if b.index == event.index]  # type: ignore[union-attr]
            at_stop[block.index] = block.assembled()
        if isinstance(event, MessageStopped):
            content = event.message["content"]
    return at_stop, content


def test_each_block_kept_at_its_stop_is_the_block_of_the_whole_message() -> None:
    for name in (
        "thinking_parallel_tools",
        "server_tool_web_search",
        "invalid_tool_json",
        "empty_input_tool",
        "unknown_types",
        "single_tool",
    ):
        at_stop, content = blocks_at_their_stop((FIXTURES / f"{name}.sse").read_bytes())
        assert content, name
        assert at_stop == dict(enumerate(content)), name
