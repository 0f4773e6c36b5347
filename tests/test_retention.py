"""A finished run's footprint in Redis: its retention, its trim, and a large input stored once.

Real Redis, real arq workers, the fake Messages API. TTLs and the keys left are read from Redis: no
test waits for anything to expire.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from incremental import MessagesClient, Runner, RunResult
from incremental.adapters._eventlog import HIGH_VOLUME_KINDS, EventLog, compare_ids
from incremental.adapters._retention import Retention, compact
from incremental.adapters._store import TurnStore
from incremental.events import ToolDuplicateResultEvent
from incremental.examples.app_builder.tools import registry as app_registry
from incremental.examples.app_builder.tools import seed_vite_starter
from incremental.pipeline._trim import trim_run
from incremental.pipeline._view import RunView
from incremental.testing import FakeMessagesAPIFactory

from ._service import ALICE, auth, read_events, served, start_demo
from ._support import APP_BUILDER, FIXTURES

GO = [{"role": "user", "content": "Build it."}]
REQUEST: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 1024}
WEEK = 7 * 24 * 3600


async def own_keys(pool: Any, run_id: str) -> dict[str, int]:
    """The run's own keys and their TTLs (arq's left out, and a job's lease, which goes with its job)."""
    found: dict[str, int] = {}
    async for raw in pool.scan_iter(match=f"inc:*{run_id}*", count=1000):
        key = raw.decode()
        if not key.startswith("inc:alive:"):
            found[key] = int(await pool.ttl(key))
    return found


def fold(run_id: str, entries: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    view = RunView(run_id)
    for entry_id, event in entries:
        view.apply(event, entry_id)
    return view.to_dict()


def keys_of(run_id: str, *names: str) -> set[str]:
    return {name.format(run=run_id) for name in names}


async def app_run(
    runner: Runner, workspace: Path, api_url: str
) -> tuple[str, RunResult, list[tuple[str, dict[str, Any]]]]:
    """The recorded 8-tool app-builder conversation, to its end: its id, result and whole log."""
    seed_vite_starter(workspace)
    run = await runner.start(GO, **REQUEST, toolset="default", workspace=str(workspace), max_turns=2)
    result = await run.result(timeout=60)
    assert result.state == "completed" and len(result.tools) == 8, result
    return run.id, result, await runner._services().events.entries(run.id)


def app_runner(api_url: str, redis_url: str, **options: Any) -> Runner:
    return Runner(
        tools=app_registry,
        redis_url=redis_url,
        workers=1,
        model_client=MessagesClient(base_url=api_url, api_key="sk-test"),
        queue=f"retention-{uuid.uuid4().hex[:8]}",
        **options,
    )


async def test_a_finished_run_expires_with_its_retention_and_its_trim_keeps_what_readers_need(
    redis_url: str, tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    api = await fake_messages_api(APP_BUILDER, speed=0)
    async with app_runner(api.url, redis_url, retention_s=7200, trim_after_s=3600) as runner:
        svc = runner._services()
        pool = runner.pool
        run_id, result, full = await app_run(runner, tmp_path, api.url)
        ended_at = float((await svc.store.run(run_id) or {})["ended_at"])

        # At its end every key of the run took the retention (not a week from its last write).
        before = await own_keys(pool, run_id)
        assert f"inc:turn:{run_id}:0" in before and f"inc:milestones:{run_id}" in before
        assert all(7200 - 600 < ttl <= 7200 for ttl in before.values()), before
        # The trim is scheduled for trim_after_s after the end, on the run's queue.
        due_ms = await pool.zscore(runner.queue or "", f"inc:trim:{run_id}")
        assert due_ms is not None and abs(due_ms / 1000 - (ended_at + 3600)) < 60

        # What the job does, now (not in an hour).
        assert (await trim_run(svc, run_id)).startswith("trimmed")
        after = await own_keys(pool, run_id)
        assert set(after) == keys_of(
            run_id,
            "inc:run:{run}",
            "inc:run:{run}:messages",
            "inc:run:{run}:tools",
            "inc:turn:{run}:0:results",
            "inc:events:{run}",
        )
        record_ttl = after[f"inc:run:{run_id}"]
        assert all(record_ttl - 5 <= ttl <= record_ttl for ttl in after.values()), after

        # The log kept every milestone and text delta, under its id, and only superseded previews went.
        trimmed = await svc.events.entries(run_id)
        kept_ids = {i for i, _ in trimmed}
        superseded = [(i, e) for i, e in full if i not in kept_ids]
        assert superseded and all(
            e["kind"] in ("tool_field_completed", "tool_progress") for _, e in superseded
        )
        assert [i for i, e in full if e["kind"] not in HIGH_VOLUME_KINDS or e["kind"] == "text_delta"] == [
            i for i, e in trimmed if e["kind"] not in HIGH_VOLUME_KINDS or e["kind"] == "text_delta"
        ]
        # Its milestones are read from the main log now.
        assert await svc.events.milestones(run_id) == [
            (i, e) for i, e in full if e["kind"] not in HIGH_VOLUME_KINDS
        ]

        # Whoever reads it now gets what they got before: the same view, the same result.
        whole = fold(run_id, full)
        assert fold(run_id, trimmed) == whole
        assert await runner.attach(run_id).result(timeout=30) == result
        # A reader that saw the whole log up to any entry and resumes after it ends with the same state.
        for cut in range(len(full)):
            view = RunView(run_id)
            for entry_id, event in full[: cut + 1]:
                view.apply(event, entry_id)
            for entry_id, event in trimmed:
                if compare_ids(entry_id, full[cut][0]) > 0:
                    view.apply(event, entry_id)
            assert view.to_dict() == whole, f"resumed after entry {cut} ({full[cut][1]['kind']})"

        # A late report goes to the trimmed log alone, and does not outlive the run's record.
        await svc.events.append(
            ToolDuplicateResultEvent(run_id=run_id, turn=0, tool_use_id=result.tools[0].id, status="ok")
        )
        late = await own_keys(pool, run_id)
        assert f"inc:milestones:{run_id}" not in late
        assert late[f"inc:events:{run_id}"] <= late[f"inc:run:{run_id}"]
        assert (await trim_run(svc, run_id)).endswith("trimmed before)")


async def test_with_retention_off_a_finished_run_keeps_its_keys_for_a_week_untrimmed(
    redis_url: str, tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    api = await fake_messages_api(APP_BUILDER, speed=0)
    async with app_runner(api.url, redis_url, retention_s="off", trim_after_s="off") as runner:
        run_id, _, _ = await app_run(runner, tmp_path, api.url)
        keys = await own_keys(runner.pool, run_id)
        assert f"inc:turn:{run_id}:0" in keys and f"inc:milestones:{run_id}" in keys
        assert all(WEEK - 600 < ttl <= WEEK for ttl in keys.values()), keys
        assert await runner.pool.zscore(runner.queue or "", f"inc:trim:{run_id}") is None
        assert await runner.pool.hget(f"inc:run:{run_id}", "retained") is None


async def test_the_trim_job_runs_on_the_workers_after_trim_after_s(
    redis_url: str, tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    api = await fake_messages_api(APP_BUILDER, speed=0)
    async with app_runner(api.url, redis_url, retention_s=600, trim_after_s=0) as runner:
        run_id, result, _ = await app_run(runner, tmp_path, api.url)
        pool = runner.pool
        async with asyncio.timeout(30):  # until the job has finished (its result), not a duration
            while not await pool.exists(f"arq:result:inc:trim:{run_id}"):
                await asyncio.sleep(0.02)
        keys = await own_keys(pool, run_id)
        assert f"inc:milestones:{run_id}" not in keys and f"inc:turn:{run_id}:0" not in keys
        assert all(0 < ttl <= 600 for ttl in keys.values()), keys
        assert await runner.attach(run_id).result(timeout=30) == result


async def test_a_large_tool_input_is_stored_once(
    redis_url: str, tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    api = await fake_messages_api([FIXTURES / "large_file_1mb.sse", FIXTURES / "text_only.sse"], speed=0)
    async with app_runner(api.url, redis_url) as runner:
        run = await runner.start(GO, **REQUEST, toolset="default", workspace=str(tmp_path), max_turns=2)
        result = await run.result(timeout=60)
        assert result.state == "completed" and [t.status for t in result.tools] == ["ok"]
        [block] = [
            b
            for m in result.messages
            if m["role"] == "assistant"
            for b in m["content"]
            if b["type"] == "tool_use"
        ]
        size = len(json.dumps(block["input"]))
        assert size > 1_000_000
        pool = runner.pool
        holding: dict[str, int] = {}
        async for raw in pool.scan_iter(match=f"*{run.id}*", count=1000):
            usage = int(await pool.memory_usage(raw, samples=0) or 0)
            if usage > size // 2:
                holding[raw.decode()] = usage
        # The conversation holds it (the next request needs it); no job, result or ledger has a copy.
        assert list(holding) == [f"inc:run:{run.id}:messages"], holding
        assert sum(holding.values()) < 1.2 * size
        tool_result = await pool.memory_usage(f"arq:result:inc:tool:{run.id}:{block['id']}", samples=0)
        assert tool_result is not None and tool_result < 4096


async def test_a_job_with_its_input_inline_still_runs(redis_url: str) -> None:
    """A tool job enqueued by an earlier version carries its input: the worker runs it as it is."""
    from incremental.adapters._arq import ToolJob, connect
    from incremental.pipeline._jobs import run_tool
    from incremental.pipeline._services import Services

    from . import _toolsets

    pool = await connect(redis_url)
    try:
        svc = Services(pool=pool, registries={"test": _toolsets.registry})
        run_id = f"run_inline_{uuid.uuid4().hex[:8]}"
        await svc.store.create_run(run_id, {"toolset": "test", "request": {}}, GO)
        job = ToolJob(run_id=run_id, turn=0, tool_use_id="toolu_inline", name="greet", args={"name": "Ada"})
        assert await run_tool(svc, job.to_dict(), token="t") == "ok"
        recorded = await svc.store.result(run_id, 0, "toolu_inline")
        assert recorded is not None and "Ada" in recorded.content
        # A reference whose input is gone (its result came first) runs nothing and says why.
        by_reference = ToolJob(run_id=run_id, turn=0, tool_use_id="toolu_ref", name="greet")
        assert await run_tool(svc, by_reference.to_dict(), token="u") == "no input"
        await svc.aclose()
    finally:
        await pool.aclose()


def test_retention_options_and_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Retention.configure() == Retention(24 * 3600.0, 300.0)
    monkeypatch.setenv("INCREMENTAL_RETENTION", "3600")
    monkeypatch.setenv("INCREMENTAL_TRIM_AFTER", "off")
    assert Retention.configure() == Retention(3600.0, None)
    assert Retention.configure(60, 5) == Retention(60.0, 5.0)
    assert not Retention(60.0, 60.0).trims and Retention(None, 5.0).trims
    with pytest.raises(ValueError, match="INCREMENTAL_RETENTION"):
        Retention.configure(-1)
    # A run carries its own, read back by whoever ends it; a run recorded without one takes the default.
    assert Retention.of_run(Retention(60.0, None).record(), Retention()) == Retention(60.0, None)
    assert Retention.of_run({}, Retention.off()) == Retention.off()


def test_compact_keeps_the_last_preview_of_each_key() -> None:
    def entry(n: int, **event: Any) -> tuple[str, str]:
        return f"{n}-0", json.dumps(event)

    entries = [
        entry(1, kind="tool_field_completed", tool_use_id="a", field="path", value="x"),
        entry(2, kind="tool_progress", tool_use_id="a", fraction=0.1),
        entry(3, kind="tool_field_completed", tool_use_id="a", field="path", value="y"),
        entry(4, kind="tool_field_completed", tool_use_id="b", field="path", value="z"),
        entry(5, kind="tool_progress", tool_use_id="a", fraction=0.9),
        entry(6, kind="text_delta", text="hi"),
    ]
    assert [i for i, _ in compact(entries)] == ["3-0", "4-0", "5-0", "6-0"]


# ------------------------------------------------------------------------------------------ the service


async def test_the_service_reads_a_trimmed_run_as_before_and_its_run_index_keeps_pace(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INCREMENTAL_RETENTION", "7200")
    monkeypatch.setenv("INCREMENTAL_TRIM_AFTER", "3600")
    async with served(redis_url) as service:
        pool = service._runner.pool  # type: ignore[union-attr]
        svc = service._runner._services()  # type: ignore[union-attr]
        # Index entries from long ago: one whose run is gone, one whose run is still kept.
        index = "inc:runs:alice"
        kept_id = f"run_kept_{uuid.uuid4().hex[:8]}"
        gone_id = f"run_gone_{uuid.uuid4().hex[:8]}"
        await TurnStore(pool).create_run(kept_id, {}, GO)
        await pool.zadd(index, {gone_id: time.time() - 8 * 24 * 3600, kept_id: time.time() - 8 * 24 * 3600})
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            created = await start_demo(client)
            run_id = created["id"]
            assert await pool.zscore(index, gone_id) is None and await pool.zscore(index, kept_id) is not None
            assert 7 * 24 * 3600 - 600 < await pool.ttl(index) <= 7 * 24 * 3600
            full = await read_events(client, run_id, ALICE)
            assert full.ended is not None
            view = (await client.get(f"/v1/runs/{run_id}", headers=auth(ALICE))).json()
            assert view["settled"], view

            assert (await trim_run(svc, run_id)).startswith("trimmed")
            assert (await client.get(f"/v1/runs/{run_id}", headers=auth(ALICE))).json() == view
            calls = (await client.get(f"/v1/runs/{run_id}/calls", headers=auth(ALICE))).json()["calls"]
            assert len(calls) == 8 and all(c["input"] is not None and "result" in c for c in calls.values())
            again = await read_events(client, run_id, ALICE)
            assert again.ended == full.ended and again.snapshot is None
            assert (
                RunView.fold(run_id, [e for _, e in again.entries]).to_dict()
                == RunView.fold(run_id, [e for _, e in full.entries]).to_dict()
            )
            # Resumed after an entry the trim dropped: the rest, and the same end.
            kept = {i for i, _ in again.entries}
            dropped = next(i for i, _ in full.entries if i not in kept)
            resumed = await read_events(client, run_id, ALICE, after=dropped)
            assert resumed.snapshot is None and resumed.ended == full.ended
            assert [i for i, _ in resumed.entries] == [
                i for i, _ in again.entries if compare_ids(i, dropped) > 0
            ]
        log = EventLog(pool)
        assert await log.milestones(run_id) == [
            (i, e) for i, e in full.entries if e["kind"] not in HIGH_VOLUME_KINDS
        ]
