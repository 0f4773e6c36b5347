"""Benchmark the live service: events per second to watchers, fan-out, and how soon a ready tool shows.

Run: ``.venv/bin/python scripts/bench_service.py`` (about a minute). It starts a private redis-server and
``incremental serve`` as its own process (so server and clients do not share a CPU's event loop), then:

1. Throughput per run: a writer process appends events to a run's log (paced at RATE, then unpaced
   for one run's ceiling) while watchers read the run over SSE. Beside it, the floor: the same watchers
   reading the Redis Stream directly, each with its own blocking XREAD (what a hand-rolled server would
   do per connection).
2. Fan-out: the same with 1, 10 and 50 watchers; events delivered per second in total, and the delay
   from append to arrival (p50 / p99).
3. First-event latency after a tool becomes ready: the demo recording replayed at its real speed, one
   watcher; for each tool, from its ``tool_ready`` entry to the watcher seeing it. Beside it, what a
   dispatch-after-stream UI would show: the tool appears at ``message_stop``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from incremental.adapters._arq import connect  # noqa: E402
from incremental.adapters._eventlog import EventLog, events_key  # noqa: E402
from incremental.adapters._redis_server import RedisServer  # noqa: E402
from incremental.adapters._store import TurnStore  # noqa: E402
from incremental.events import RunStartedEvent, TextDeltaEvent  # noqa: E402

TOKEN = "bench-" + secrets.token_hex(16)
EVENTS = 5000
RATE = 1000.0  # events per second the writer aims at
PAYLOAD = "x" * 200  # about the size of a text delta with its envelope


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_server(redis_url: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "REDIS_URL": redis_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "incremental", "serve", "--port", "0", "--token", f"bench={TOKEN}",
         "--workers", "2", "--demo", "--redis", redis_url],
        stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("incremental serve: "):
        proc.kill()
        raise SystemExit(f"serve did not start: {line!r}")
    return proc, line.split(": ", 1)[1].strip().rstrip("/")


async def synthetic_run(pool: Any) -> str:
    run_id = f"run_bench_{secrets.token_hex(6)}"
    await TurnStore(pool).create_run(run_id, {"model": "bench"}, [])
    await pool.hset(f"inc:run:{run_id}", mapping={"owner": "bench"})
    return run_id


_TS = re.compile(rb'"ts":([0-9.]+)')


def arrivals_in(chunk: bytes, now: float, out: list[float]) -> None:
    """Append-to-arrival delay of every event in a received chunk (found by its ``ts``, not parsed)."""
    out.extend(now - float(ts) for ts in _TS.findall(chunk))


async def sse_watcher(url: str, run_id: str, n: int, ready: asyncio.Event, arrivals: list[float]) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        httpx.AsyncClient(base_url=url, timeout=120) as client,
        client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as response,
    ):
        ready.set()
        async for chunk in response.aiter_raw():
            arrivals_in(chunk, time.time(), arrivals)
            if len(arrivals) >= n:
                return


async def redis_watcher(
    redis_url: str, run_id: str, n: int, ready: asyncio.Event, arrivals: list[float]
) -> None:
    redis = Redis.from_url(redis_url)
    after: Any = "0-0"
    ready.set()
    try:
        while len(arrivals) < n:
            reply = await redis.xread({events_key(run_id): after}, block=5000, count=500)
            now = time.time()
            for _key, entries in reply or []:
                for entry_id, data in entries:
                    after = entry_id
                    arrivals_in(data[b"data"], now, arrivals)
    finally:
        await redis.aclose()


def writer(redis_url: str, run_id: str, n: int, rate: float) -> None:
    """The run's producer, in its own process: ``n`` text deltas at ``rate`` per second."""

    async def write() -> None:
        pool = await connect(redis_url)
        log = EventLog(pool, metrics=False)
        start = time.perf_counter()
        for i in range(n):
            await log.append(TextDeltaEvent(run_id=run_id, turn=0, index=0, text=f"{i}{PAYLOAD}"))
            delay = start + (i + 1) / rate - time.perf_counter() if rate > 0 else 0.0
            if delay > 0:
                await asyncio.sleep(delay)
        await pool.aclose()

    asyncio.run(write())


async def fan_out(
    url: str, redis_url: str, pool: Any, watchers: int, kind: str, rate: float = RATE
) -> dict[str, float]:
    run_id = await synthetic_run(pool)
    await EventLog(pool, metrics=False).append(RunStartedEvent(run_id=run_id, turn=0, config={}))
    n = EVENTS + 1  # run_started too
    arrivals: list[list[float]] = [[] for _ in range(watchers)]
    ready = [asyncio.Event() for _ in range(watchers)]
    make = sse_watcher if kind == "sse" else redis_watcher
    where = url if kind == "sse" else redis_url
    tasks = [asyncio.create_task(make(where, run_id, n, r, a)) for r, a in zip(ready, arrivals, strict=True)]
    for r in ready:
        await r.wait()
    await asyncio.sleep(0.3)  # every watcher's request reaches the server before the first event
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--writer", redis_url, run_id, str(EVENTS), str(rate)
    )
    await asyncio.wait_for(asyncio.gather(*tasks), 300)
    elapsed = time.perf_counter() - start
    await proc.wait()
    delays = [d for a in arrivals for d in a[1:]]
    return {
        "events_per_s": watchers * EVENTS / elapsed,
        "p50_ms": pct(delays, 0.5) * 1000,
        "p99_ms": pct(delays, 0.99) * 1000,
    }


async def ready_latency(url: str) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        body = (await client.get("/v1/demo", headers=headers)).json()
        run = (await client.post("/v1/runs", json=body, headers=headers)).json()
        seen: list[float] = []
        ready_ts: list[float] = []
        stop_ts = None
        async with aconnect_sse(client, "GET", run["events_url"], headers=headers) as source:
            async for sse in source.aiter_sse():
                if sse.event == "end":
                    break
                if not sse.data:  # a heartbeat comment
                    continue
                event = json.loads(sse.data)
                if event.get("turn") != 0:
                    continue
                if sse.event == "tool_ready":
                    seen.append(time.time() - event["ts"])
                    ready_ts.append(event["ts"])
                elif sse.event == "message_stopped":
                    stop_ts = event["ts"]
        assert stop_ts is not None
        after_stream = [stop_ts - t for t in ready_ts]
        return {
            "tools": len(seen),
            "p50_ms": pct(seen, 0.5) * 1000,
            "max_ms": max(seen) * 1000,
            "after_stream_p50_s": statistics.median(after_stream),
            "after_stream_max_s": max(after_stream),
        }


async def main() -> None:
    server = RedisServer()
    redis_url = server.start()
    proc, url = start_server(redis_url)
    pool = await connect(redis_url)
    try:
        print(
            f"{EVENTS} events of ~{len(PAYLOAD) + 100} bytes, written at {RATE:g}/s by a process of "
            "their own; server: incremental serve in its own process\n"
        )
        print("| watchers | path | events/s delivered (all watchers) | append→arrival p50 | p99 |")
        print("|---:|---|---:|---:|---:|")
        for watchers in (1, 10, 50):
            for kind, label in (("sse", "incremental SSE"), ("redis", "floor: XREAD per watcher")):
                r = await fan_out(url, redis_url, pool, watchers, kind)
                print(
                    f"| {watchers} | {label} | {r['events_per_s']:,.0f} "
                    f"| {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms |",
                    flush=True,
                )
        print(
            "\nOne run's ceiling: the writer appends as fast as one connection can (no pacing), one watcher\n"
        )
        print("| path | events/s delivered | append→arrival p50 | p99 |")
        print("|---|---:|---:|---:|")
        for kind, label in (("sse", "incremental SSE"), ("redis", "floor: XREAD")):
            r = await fan_out(url, redis_url, pool, 1, kind, rate=0.0)
            print(
                f"| {label} | {r['events_per_s']:,.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms |",
                flush=True,
            )
        r = await ready_latency(url)
        print("\nTool shown to a watcher after it becomes ready (8-tool recording at recorded speed):\n")
        print("| | p50 | max |")
        print("|---|---:|---:|")
        print(
            f"| incremental: tool_ready → on the watcher's stream | {r['p50_ms']:.1f} ms "
            f"| {r['max_ms']:.1f} ms |"
        )
        print(
            f"| dispatch-after-stream UI: ready → message_stop | {r['after_stream_p50_s']:.2f} s "
            f"| {r['after_stream_max_s']:.2f} s |"
        )
    finally:
        await pool.aclose()
        proc.terminate()
        proc.wait(10)
        server.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--writer"]:
        writer(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    else:
        asyncio.run(main())
