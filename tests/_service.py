"""Helpers for the service tests: a served instance, an authorised client, an SSE reader, synthetic runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from incremental.adapters._arq import connect
from incremental.adapters._eventlog import EventLog
from incremental.adapters._store import TurnStore
from incremental.service import ServeOptions, Service

ALICE = "alice-" + secrets.token_hex(12)
BOB = "bob-" + secrets.token_hex(12)
TOKENS = {"alice": ALICE, "bob": BOB}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def served(redis_url: str, **overrides: Any) -> AsyncIterator[Service]:
    options: dict[str, Any] = {
        "tokens": TOKENS,
        "port": 0,
        "redis_url": redis_url,
        "workers": 2,
        "demo": True,
        "speed": 30.0,
        "simulate_s": 0.2,
        "heartbeat_s": 15.0,
    }
    options.update(overrides)
    async with Service(ServeOptions(**options)) as service:
        yield service


@dataclass
class Received:
    entries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (id, event) in order
    snapshot: dict[str, Any] | None = None
    ended: dict[str, Any] | None = None


async def read_events(
    client: httpx.AsyncClient,
    run_id: str,
    token: str,
    *,
    after: str | None = None,
    limit: int | None = None,
    into: Received | None = None,
) -> Received:
    """Read the run's SSE stream until ``event: end`` or ``limit`` log entries, then disconnect."""
    got = into or Received()
    headers = auth(token)
    if after is not None:
        headers["Last-Event-ID"] = after
    n = 0
    async with aconnect_sse(client, "GET", f"/v1/runs/{run_id}/events", headers=headers) as source:
        source.response.raise_for_status()
        async for sse in source.aiter_sse():
            if not sse.data:  # httpx-sse hands a heartbeat comment over as an empty message
                continue
            if sse.event == "end":
                got.ended = json.loads(sse.data)
                return got
            if sse.event == "snapshot":
                got.snapshot = json.loads(sse.data)
                continue
            got.entries.append((sse.id, json.loads(sse.data)))
            n += 1
            if limit is not None and n >= limit:
                return got
    return got


async def start_demo(client: httpx.AsyncClient, token: str = ALICE, **extra: Any) -> dict[str, Any]:
    body = (await client.get("/v1/demo", headers=auth(token))).json()
    body.update(extra)
    response = await client.post("/v1/runs", json=body, headers=auth(token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def wait_for_kind(
    client: httpx.AsyncClient, run_id: str, kind: str, token: str = ALICE
) -> tuple[str, dict[str, Any]]:
    """Follow the run's stream until an event of ``kind`` arrives (the stream ends the test if not)."""
    headers = auth(token)
    async with aconnect_sse(client, "GET", f"/v1/runs/{run_id}/events", headers=headers) as source:
        async for sse in source.aiter_sse():
            if sse.event == kind:
                return sse.id, json.loads(sse.data)
            if sse.event == "end":
                break
    raise AssertionError(f"run {run_id} ended without a {kind} event")


async def synthetic_run(
    redis_url: str, owner: str = "alice", **log_options: Any
) -> tuple[str, EventLog, Any]:
    """A run record owned by ``owner`` with an empty log, for tests that write the log themselves."""
    pool = await connect(redis_url)
    run_id = f"run_syn_{secrets.token_hex(8)}"
    await TurnStore(pool).create_run(run_id, {"model": "synthetic", "max_turns": 1}, [])
    await pool.hset(f"inc:run:{run_id}", mapping={"owner": owner})
    await pool.zadd(f"inc:runs:{owner}", {run_id: time.time()})
    return run_id, EventLog(pool, **log_options), pool


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for a server-side condition that follows an event we cannot await (a peer's disconnect)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)
