"""The HTTP service end to end: real uvicorn on loopback, real Redis, real arq workers, the fake API."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import socket

import httpx
import pytest

from incremental.adapters._eventlog import compare_ids
from incremental.events import (
    RunCompletedEvent,
    RunStartedEvent,
    TextDeltaEvent,
    ToolCompletedEvent,
    ToolInputStartedEvent,
    ToolReadyEvent,
)

from ._service import (
    ALICE,
    BOB,
    Received,
    auth,
    read_events,
    served,
    start_demo,
    synthetic_run,
    until,
    wait_for_kind,
)


async def test_a_demo_run_streams_every_step_and_ends(redis_url: str) -> None:
    async with served(redis_url) as service, httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        created = await start_demo(client)
        assert created["events_url"] == f"/v1/runs/{created['id']}/events"
        got = await read_events(client, created["id"], ALICE)
        kinds = [e["kind"] for _, e in got.entries]
        assert got.ended == {"state": "completed"}
        assert kinds[0] == "run_started" and "run_completed" in kinds
        # Tools start while the model still streams: a tool_started precedes the first message_stopped.
        assert kinds.index("tool_started") < kinds.index("message_stopped")
        ids = [i for i, _ in got.entries]
        assert all(compare_ids(a, b) < 0 for a, b in itertools.pairwise(ids))

        view = (await client.get(created["url"], headers=auth(ALICE))).json()
        assert view["state"] == "completed"
        first_turn = [t for t in view["tools"] if t["turn"] == 0]
        assert len(first_turn) == 8
        assert all(t["status"] == "completed" and t["duration_s"] is not None for t in first_turn)
        assert view["text"][0]
        assert view["stats"]["completed"] == len(view["tools"])


async def test_a_run_takes_the_messages_api_request_and_a_toolset(redis_url: str) -> None:
    async with served(redis_url) as service, httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        fields = {
            "temperature": 0.3,
            "top_k": 5,
            "tool_choice": {"type": "auto"},
            "metadata": {"user_id": "u1"},
        }
        created = await start_demo(client, toolset="app", tools=["write_file", "replace_lines"], **fields)
        await read_events(client, created["id"], ALICE)
        assert service._api is not None
        first = service._api.requests[0]
        assert {k: first[k] for k in fields} == fields
        assert [t["name"] for t in first["tools"]] == ["write_file", "replace_lines"]
        body = {"messages": [{"role": "user", "content": "x"}], "toolset": "nope"}
        response = await client.post("/v1/runs", json=body, headers=auth(ALICE))
        assert response.status_code == 400 and "no tool set 'nope'" in response.json()["error"]["message"]
        response = await client.post(
            "/v1/runs", json={**body, "toolset": "app", "stream": False}, headers=auth(ALICE)
        )
        assert response.status_code == 400 and "stream" in response.json()["error"]["message"]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_resuming_at_random_cuts_equals_the_uninterrupted_log(redis_url: str, seed: int) -> None:
    rng = random.Random(seed)
    async with served(redis_url) as service, httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        created = await start_demo(client)
        # A watcher that stays connected throughout keeps the run's feed alive, so every reconnect
        # below joins a feed that is already reading: the history-to-live hand-over is what is tested.
        steady = asyncio.create_task(read_events(client, created["id"], ALICE))
        got = Received()
        last: str | None = None
        cuts = 0
        while got.ended is None:
            await read_events(client, created["id"], ALICE, after=last, limit=rng.randint(1, 40), into=got)
            cuts += 1
            if got.entries:
                last = got.entries[-1][0]
        whole = await read_events(client, created["id"], ALICE)
        live = await steady
    assert cuts > 3
    assert got.snapshot is None
    assert got.entries == whole.entries  # same ids, same events, in order: no gap, no duplicate
    assert live.entries == whole.entries


async def test_an_offset_trimmed_away_gets_a_snapshot_first(redis_url: str) -> None:
    run_id, log, pool = await synthetic_run(redis_url, maxlen=20, exact_trim=True)
    try:
        ids = [
            await log.append(
                RunStartedEvent(run_id=run_id, turn=0, config={"request": {"model": "synthetic"}})
            )
        ]
        for i in range(3):
            tid = f"toolu_{i}"
            ids.append(
                await log.append(
                    ToolInputStartedEvent(
                        run_id=run_id, turn=0, index=i, tool_use_id=tid, name="w", server_side=False
                    )
                )
            )
            ids.append(
                await log.append(ToolReadyEvent(run_id=run_id, turn=0, index=i, tool_use_id=tid, name="w"))
            )
            for k in range(15):
                ids.append(await log.append(TextDeltaEvent(run_id=run_id, turn=0, index=9, text=f"{k} ")))
            ids.append(
                await log.append(
                    ToolCompletedEvent(
                        run_id=run_id,
                        turn=0,
                        tool_use_id=tid,
                        name="w",
                        status="ok",
                        is_error=False,
                        content="done",
                        attempts=1,
                        started_at=1.0,
                        finished_at=2.0,
                    )
                )
            )
        assert await log.first_id(run_id) != ids[0]  # the log was trimmed
        async with (
            served(redis_url, demo=False, workers=0) as service,
            httpx.AsyncClient(base_url=service.url, timeout=10) as client,
        ):
            ids.append(
                await log.append(RunCompletedEvent(run_id=run_id, turn=0, state="completed", reason="done"))
            )
            got = await read_events(client, run_id, ALICE, after=ids[1])
            assert got.snapshot is not None
            assert [t["status"] for t in got.snapshot["tools"]] == ["completed"] * 3
            assert got.snapshot["state"] == "completed"
            assert got.snapshot["offset"] == ids[-1]  # it stands for everything up to the last entry
            assert got.entries == []  # so nothing is sent twice
            assert got.ended == {"state": "completed"}

            # An offset still in the log gets no snapshot, just what follows it.
            recent = await read_events(client, run_id, ALICE, after=ids[-2])
            assert recent.snapshot is None
            assert recent.entries[0][0] == ids[-1]

            # GET answers every tool even though the log lost their early events.
            view = (await client.get(f"/v1/runs/{run_id}", headers=auth(ALICE))).json()
            assert [t["tool_use_id"] for t in view["tools"]] == ["toolu_0", "toolu_1", "toolu_2"]
    finally:
        await pool.aclose()


async def test_auth_refusals_say_what_was_wrong_and_no_token_is_logged(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with served(redis_url) as service, httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        created = await start_demo(client)
        run_url, watch = created["url"], created["watch_token"]

        async def error(method: str, url: str, status: int, **kw: object) -> str:
            response = await client.request(method, url, **kw)  # type: ignore[arg-type]
            assert response.status_code == status, response.text
            body = response.json()["error"]
            assert body["type"] and body["message"]
            return str(body["message"])

        assert "Authorization" in await error("GET", run_url, 401)
        assert "Bearer" in await error("GET", run_url, 401, headers={"Authorization": "Basic abc"})
        assert "unknown token" in await error("GET", run_url, 401, headers=auth("nope-" + "x" * 20))
        assert "another token" in await error("GET", run_url, 403, headers=auth(BOB))
        assert "another token" in await error("GET", run_url + "/events", 403, headers=auth(BOB))
        assert "another token" in await error("POST", run_url + "/cancel", 403, headers=auth(BOB))
        # A watch token reads its run, and nothing else.
        assert (await client.get(run_url, headers=auth(watch))).status_code == 200
        assert "only read" in await error("POST", run_url + "/pause", 403, headers=auth(watch))
        assert "cannot start" in await error("POST", "/v1/runs", 403, headers=auth(watch), json={})
        forged = watch[:-4] + "AAAA"
        assert "unknown token" in await error("GET", run_url, 401, headers=auth(forged))
        made_up = f"w.{created['id']}.junk"  # the shape of a watch token is not a watch token
        for url in ("/v1/runs", "/v1/stats", "/v1/demo", run_url, run_url + "/events"):
            assert "unknown token" in await error("GET", url, 401, headers=auth(made_up))
        # Bad requests.
        assert "messages" in await error("POST", "/v1/runs", 400, headers=auth(ALICE), json={"model": "m"})
        assert "messages.0.role" in await error(
            "POST", "/v1/runs", 400, headers=auth(ALICE), json={"messages": [{"role": "bot", "content": "x"}]}
        )
        assert "not valid JSON" in await error(
            "POST", "/v1/runs", 400, headers={**auth(ALICE), "content-type": "application/json"}, content=b"{"
        )
        assert "no tool 'rm_rf' in this tool set" in await error(
            "POST",
            "/v1/runs",
            400,
            headers=auth(ALICE),
            json={"messages": [{"role": "user", "content": "x"}], "tools": ["rm_rf"]},
        )
        big = {"messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]}
        assert "over" in await error("POST", "/v1/runs", 413, headers=auth(ALICE), json=big)
        assert "Last-Event-ID" in await error(
            "GET", run_url + "/events", 400, headers={**auth(ALICE), "Last-Event-ID": "yesterday"}
        )
        assert "no run" in await error("GET", "/v1/runs/run_nope", 404, headers=auth(ALICE))
        assert "no route" in await error("GET", "/v1/nothing", 404)
        await read_events(client, created["id"], ALICE)  # let the run finish before the service stops
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    for secret in (ALICE, BOB, watch):
        assert secret not in logged


async def test_headers_and_heartbeats_keep_proxies_open(redis_url: str) -> None:
    run_id, log, pool = await synthetic_run(redis_url)
    try:
        await log.append(RunStartedEvent(run_id=run_id, turn=0, config={}))
        async with (
            served(redis_url, demo=False, workers=0, heartbeat_s=0.2) as service,
            httpx.AsyncClient(base_url=service.url, timeout=10) as client,
        ):
            async with client.stream("GET", f"/v1/runs/{run_id}/events", headers=auth(ALICE)) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                assert response.headers["x-accel-buffering"] == "no"
                assert "no-cache" in response.headers["cache-control"]
                seen = []
                async for line in response.aiter_lines():
                    seen.append(line)
                    if line.startswith(":"):
                        break
            assert seen[0].startswith("id: ")
            assert ": ping" in seen
    finally:
        await pool.aclose()


async def test_a_client_that_never_reads_is_cut_off_and_hurts_no_one(redis_url: str) -> None:
    run_id, log, pool = await synthetic_run(redis_url)
    n_events = 3000
    try:
        await log.append(RunStartedEvent(run_id=run_id, turn=0, config={}))
        async with (
            served(redis_url, demo=False, workers=0, max_pending_events=100, send_timeout_s=2.0) as service,
            httpx.AsyncClient(base_url=service.url, timeout=30) as client,
        ):
            fanout = service.app.state.inc.fanout
            host, port = service.url.removeprefix("http://").rsplit(":", 1)
            # The stuck client: a tiny receive buffer, a request, and then it never reads a byte.
            _, writer = await asyncio.open_connection(host, int(port), limit=1024)
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            request = f"GET /v1/runs/{run_id}/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\n"
            writer.write(request.encode() + b"\r\n")
            await writer.drain()
            await until(lambda: fanout.subscribers == 1)  # it is watching: its request is being served

            reading = asyncio.create_task(read_events(client, run_id, ALICE))
            payload = "x" * 1000
            for i in range(n_events):
                await log.append(TextDeltaEvent(run_id=run_id, turn=0, index=0, text=f"{i}:{payload}"))
            await log.append(RunCompletedEvent(run_id=run_id, turn=0, state="completed", reason="done"))
            got = await asyncio.wait_for(reading, 60)
            # Its write timed out, so the server let go of it while it is still connected: no
            # generator, no backlog, no feed left for it. (What remains is the kernel's socket buffer.)
            await until(lambda: fanout.subscribers == 0 and not fanout.feeds)
            assert service.app.state.inc.metrics.sse_open._value.get() == 0
            writer.close()
        assert len(got.entries) == n_events + 2  # run_started, every delta, run_completed: all of it
        assert [e["text"].split(":")[0] for _, e in got.entries[1:-1]] == [str(i) for i in range(n_events)]
    finally:
        await pool.aclose()


async def test_two_hundred_connect_disconnect_cycles_leak_nothing(redis_url: str) -> None:
    run_id, log, pool = await synthetic_run(redis_url)
    try:
        await log.append(RunStartedEvent(run_id=run_id, turn=0, config={}))
        async with (
            served(redis_url, demo=False, workers=0) as service,
            httpx.AsyncClient(base_url=service.url, timeout=10) as client,
        ):
            state = service.app.state.inc

            async def clients() -> int:
                info = await pool.info("clients")
                return int(info["connected_clients"])

            await read_events(client, run_id, ALICE, limit=1)
            tasks_before = len(asyncio.all_tasks())
            redis_before = await clients()
            for _ in range(200):
                got = await read_events(client, run_id, ALICE, limit=1)
                assert got.entries[0][1]["kind"] == "run_started"
            await until(lambda: not state.fanout.subscribers and not state.fanout.feeds)
            assert state.metrics.sse_open._value.get() == 0
            assert len(asyncio.all_tasks()) <= tasks_before + 2
            assert await clients() <= redis_before + 2
    finally:
        await pool.aclose()


async def test_a_disconnecting_watcher_cancels_nothing(redis_url: str) -> None:
    async with served(redis_url) as service, httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        created = await start_demo(client)
        await wait_for_kind(client, created["id"], "tool_started")  # watched, then dropped mid-run
        got = await read_events(client, created["id"], ALICE)
        assert got.ended == {"state": "completed"}


async def test_cancel_a_running_run_over_http(redis_url: str) -> None:
    async with (
        served(redis_url, speed=2.0, simulate_s=2.0) as service,
        httpx.AsyncClient(base_url=service.url, timeout=60) as client,
    ):
        created = await start_demo(client)
        run_id, url = created["id"], created["url"]
        await wait_for_kind(client, run_id, "tool_started")
        response = await client.post(
            url + "/cancel", headers=auth(ALICE), json={"reason": "user pressed stop"}
        )
        assert response.status_code == 202, response.text
        assert response.json() == {"run_id": run_id, "target": "run", "outcome": "cancelled"}
        again = await client.post(url + "/cancel", headers=auth(ALICE))
        assert again.status_code == 409
        got = await read_events(client, run_id, ALICE)
        assert got.ended == {"state": "cancelled"}
        view = (await client.get(url, headers=auth(ALICE))).json()
        assert view["state"] == "cancelled" and "user pressed stop" in view["reason"]
        assert all(
            t["status"] not in {"running", "queued", "ready", "paused", "held", "waiting"}
            for t in view["tools"]
        )
        kinds = [e["kind"] for _, e in got.entries]
        assert kinds.count("continued") == 0
        assert "stream_closed" in kinds  # the model stream was closed, not read to its end
        assert "message_stopped" not in kinds
        # Every call that started got one honest report: cancelled while running, or completed anyway.
        started = {e["tool_use_id"] for _, e in got.entries if e["kind"] == "tool_started"}
        reports = [e for _, e in got.entries if e["kind"] in {"tool_cancelled", "tool_completed"}]
        for tool_id in started:
            mine = [e for e in reports if e["tool_use_id"] == tool_id]
            assert len(mine) == 1
            assert mine[0]["kind"] == "tool_completed" or mine[0].get("after_cancel") is True
        assert len(service._api.requests) == 1  # type: ignore[union-attr]  # no second turn was asked for


async def test_pause_holds_tools_and_resume_finishes_the_run(redis_url: str) -> None:
    async with (
        served(redis_url, speed=5.0) as service,
        httpx.AsyncClient(base_url=service.url, timeout=60) as client,
    ):
        created = await start_demo(client)
        url = created["url"]
        assert (await client.post(url + "/pause", headers=auth(ALICE))).status_code == 202
        assert (await client.post(url + "/pause", headers=auth(ALICE))).status_code == 409
        await wait_for_kind(client, created["id"], "tool_paused")
        assert (await client.post(url + "/resume", headers=auth(ALICE))).status_code == 202
        got = await read_events(client, created["id"], ALICE)
        assert got.ended == {"state": "completed"}
        kinds = [e["kind"] for _, e in got.entries]
        paused_at, resumed_at = kinds.index("run_paused"), kinds.index("run_resumed")
        assert "tool_started" not in kinds[paused_at:resumed_at]


async def test_metrics_and_stats_report_the_runs(redis_url: str) -> None:
    async with served(redis_url) as service, httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        created = await start_demo(client)
        await read_events(client, created["id"], ALICE)
        text = (await client.get("/metrics")).text
        stats = (await client.get("/v1/stats", headers=auth(ALICE))).json()
    for name in (
        'incremental_tool_duration_seconds_bucket{le="+Inf",tool="write_file"}',
        "incremental_dispatch_latency_seconds_count",
        "incremental_continuation_latency_seconds_count",
        "incremental_time_saved_seconds_total",
        "incremental_runs_in_flight",
        'incremental_tool_results_total{status="ok",tool="write_file"}',
    ):
        assert name in text, name
    count = next(
        line for line in text.splitlines() if line.startswith("incremental_dispatch_latency_seconds_count")
    )
    assert float(count.split()[-1]) >= 8
    assert stats["tools"]["write_file"]["count"] >= 1 and stats["success_rate"] is not None
    assert json.dumps(stats)  # plain JSON for the page


async def test_tools_past_the_deadline_end_as_missing_and_the_stream_still_ends(redis_url: str) -> None:
    async with (
        served(redis_url, simulate_s=3.0) as service,
        httpx.AsyncClient(base_url=service.url, timeout=60) as client,
    ):
        created = await start_demo(client, limits={"max_turns": 2, "turn_timeout_s": 0.5})
        got = await read_events(client, created["id"], ALICE)
        kinds = [e["kind"] for _, e in got.entries]
        assert "turn_deadline" in kinds
        assert got.ended == {"state": "completed"}
        # The late reports come as duplicates after their calls were answered "missing".
        view = (await client.get(created["url"], headers=auth(ALICE))).json()
        first_turn = [t for t in view["tools"] if t["turn"] == 0]
        assert first_turn and all(t["status"] in {"missing", "completed"} for t in first_turn)
        assert any(t["status"] == "missing" for t in first_turn)
