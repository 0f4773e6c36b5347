"""Benchmark the live service: delivery to many watchers of a run, the cost per event over many runs, and
how soon a ready tool shows.

Run: ``.venv/bin/python scripts/bench_service.py`` (about six minutes; ``--repeats 1`` for one pass).
It starts a private redis-server and ``incremental serve`` as a process of its own (no in-process
workers, so nothing but the watchers costs the service CPU), then:

1. Watchers of one run: a writer process appends text deltas to a run's log (at RATE a second for
   5 s; 500 watchers also at a tenth of it) while 1, 10, 50 and 500 watchers read the run over SSE.
   Beside each, the floor: the same number of watchers reading the Redis Stream directly, each with its
   own blocking XREAD on its own connection (what a server that gives each connection its own reader
   does, without any HTTP). The delay is from the event's append (its ``ts``) to its arrival at a
   watcher (p50 / p99); ``p99 / floor`` divides the two p99s of the same repeat. The service's CPU time
   (user + system, from ``/proc``) over the pass, divided by the events it delivered, is its cost per
   delivered event.
2. Many runs: RATE events a second spread over 1, 10 and 100 runs, one watcher each; the service's
   CPU per delivered event.
3. One run's ceiling: the writer unpaced, one watcher.
4. First-event latency after a tool becomes ready: a second ``incremental serve --demo`` (with its
   workers) replays the demo recording at its real speed, one watcher; for each tool, from its
   ``tool_ready`` entry to the watcher seeing it. Beside it, what a dispatch-after-stream UI would show:
   the tool appears at ``message_stop``.

Each figure of 1 and 2 is the median of ``--repeats`` passes (default 3), SSE and floor interleaved;
the range over the passes follows in brackets. The watchers share this script's process, so they are
kept to the least work a client can do: an SSE watcher reads the response's bytes off its socket, a
floor watcher uses a redis-py connection directly, and when there are more than 50 watchers every k-th
of them records its delays (all of them read every event). That process's CPU is printed too: near
100% means the watchers, not the server, set the pace.
"""

from __future__ import annotations

import argparse
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
TIMED = 50  # at most this many watchers of a pass record their delays
# (watchers, events a second): 500 watchers twice, at RATE (where on 2 cores the floor falls behind:
# 500 readers are more than Redis and their process keep up with) and at a tenth of it
WATCHERS = ((1, RATE), (10, RATE), (50, RATE), (500, RATE), (500, RATE / 10))
RUNS = (1, 10, 100)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_s(pid: int) -> float:
    """A process's CPU time so far (user + system, every thread), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(redis_url: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "REDIS_URL": redis_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "incremental", "serve", "--port", "0", "--token", f"bench={TOKEN}",
         "--redis", redis_url, *extra],
        stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("incremental serve: "):
        proc.kill()
        raise SystemExit(f"serve did not start: {line!r}")
    return proc, line.split(": ", 1)[1].strip().rstrip("/")


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


async def synthetic_run(pool: Any) -> str:
    run_id = f"run_bench_{secrets.token_hex(6)}"
    await TurnStore(pool).create_run(run_id, {"model": "bench"}, [])
    await pool.hset(f"inc:run:{run_id}", mapping={"owner": "bench"})
    await EventLog(pool, metrics=False).append(RunStartedEvent(run_id=run_id, turn=0, config={}))
    return run_id


_TS = re.compile(rb'"ts":([0-9.]+)')


class Watcher:
    """What one watcher has seen: how many events, and (when it is timed) each one's delay."""

    def __init__(self, n: int, timed: bool) -> None:
        self.n = n
        self.timed = timed
        self.seen = 0
        self.delays: list[float] = []
        self.ready = asyncio.Event()  # set on its first event (run_started): it is reading live

    def take(self, events: bytes, now: float) -> None:
        if self.timed:
            stamps = _TS.findall(events)
            self.delays.extend(now - float(ts) for ts in stamps)
            self.seen += len(stamps)
        else:
            self.seen += events.count(b'"ts":')
        if self.seen:
            self.ready.set()

    @property
    def done(self) -> bool:
        return self.seen >= self.n


async def sse_watcher(url: str, run_id: str, w: Watcher) -> None:
    """An SSE client that does nothing but read the response's bytes off its socket (HTTP/1.1, one
    chunk per write of the server's: a chunk-size line never falls inside an event)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        request = (
            f"GET /v1/runs/{run_id}/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
        )
        writer.write(request.encode() + b"\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"the service answered {head.splitlines()[0]!r}")
        rest = b""
        while not w.done:
            chunk = await reader.read(1 << 16)
            if not chunk:
                raise RuntimeError("the service closed the stream")
            now = time.time()
            rest += chunk
            cut = rest.rfind(b"\n\n")  # whole messages only: a read may end inside one
            if cut < 0:
                continue
            w.take(rest[:cut], now)
            rest = rest[cut + 2 :]
    finally:
        writer.close()


async def redis_watcher(redis_url: str, run_id: str, w: Watcher) -> None:
    """The floor's client: a blocking XREAD at a time on a redis-py connection of its own, used
    directly (no command parsing beyond the protocol's)."""
    redis = Redis.from_url(redis_url)
    conn = await redis.connection_pool.get_connection()
    after = b"0-0"
    try:
        while not w.done:
            await conn.send_command(
                "XREAD", "COUNT", 500, "BLOCK", 5000, "STREAMS", events_key(run_id), after
            )
            reply = await conn.read_response()
            now = time.time()
            for _key, entries in reply or []:
                after = entries[-1][0]
                w.take(b"".join(fields[1] for _id, fields in entries), now)
    finally:
        await redis.connection_pool.release(conn)
        await redis.aclose()


def writer(redis_url: str, run_ids: list[str], n: int, rate: float) -> None:
    """The runs' producer, in its own process: ``n`` text deltas in all, round robin, ``rate`` a second."""

    async def write() -> None:
        pool = await connect(redis_url)
        log = EventLog(pool, metrics=False)
        start = time.perf_counter()
        for i in range(n):
            run_id = run_ids[i % len(run_ids)]
            await log.append(TextDeltaEvent(run_id=run_id, turn=0, index=0, text=f"{i}{PAYLOAD}"))
            delay = start + (i + 1) / rate - time.perf_counter() if rate > 0 else 0.0
            if delay > 0:
                await asyncio.sleep(delay)
        await pool.aclose()

    asyncio.run(write())


async def fan_out(
    url: str,
    redis_url: str,
    pool: Any,
    server_pid: int,
    *,
    kind: str,
    watchers: int = 1,
    runs: int = 1,
    rate: float = RATE,
    events: int = EVENTS,
) -> dict[str, float]:
    """``runs`` runs with ``watchers`` watchers each; ``events`` in all, spread evenly over the runs."""
    run_ids = [await synthetic_run(pool) for _ in range(runs)]
    per_run = events // runs
    total = watchers * runs
    step = max(1, total // TIMED)
    ws = [Watcher(per_run + 1, timed=i % step == 0) for i in range(total)]  # run_started too
    make = sse_watcher if kind == "sse" else redis_watcher
    where = url if kind == "sse" else redis_url
    tasks = [asyncio.create_task(make(where, run_ids[i % runs], w)) for i, w in enumerate(ws)]
    for w in ws:  # every watcher has its run's history: the next event it gets is live
        await w.ready.wait()
    cpu0, own0 = cpu_s(server_pid), time.process_time()
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--writer", redis_url, ",".join(run_ids), str(per_run * runs), str(rate)
    )
    await asyncio.wait_for(asyncio.gather(*tasks), 300)
    elapsed = time.perf_counter() - start
    cpu, own = cpu_s(server_pid) - cpu0, time.process_time() - own0
    await proc.wait()
    delays = [d for w in ws for d in w.delays[1:]]
    delivered = total * per_run
    return {
        "events_per_s": delivered / elapsed,
        "p50_ms": pct(delays, 0.5) * 1000,
        "p99_ms": pct(delays, 0.99) * 1000,
        "cpu_us": cpu / delivered * 1e6,
        "cpu_share": cpu / elapsed,
        "own_share": own / elapsed,
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


def med(results: list[dict[str, float]], key: str, fmt: str, spread: bool = False) -> str:
    values = [r[key] for r in results]
    cell = format(statistics.median(values), fmt)
    if spread and len(values) > 1:
        cell += f" ({format(min(values), fmt)}–{format(max(values), fmt)})"
    return cell


def share(results: list[dict[str, float]], key: str) -> str:
    return format(statistics.median(r[key] for r in results), ".0%")


async def main(repeats: int) -> None:
    server = RedisServer()
    redis_url = server.start()
    proc, url = start_server(redis_url, "--workers", "0")
    pool = await connect(redis_url)
    try:
        print(
            f"{EVENTS} events of ~{len(PAYLOAD) + 100} bytes, written at {RATE:g}/s by a process of their "
            f"own; server: incremental serve in its own process; median of {repeats} passes "
            "(range in brackets)\n"
        )
        print(
            "| watchers | written/s | path | events/s delivered (all watchers) | append→arrival p50 | p99 "
            "| p99 / floor | service CPU | per delivered event | watchers' process CPU |"
        )
        print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for watchers, rate in WATCHERS:
            sse: list[dict[str, float]] = []
            floor: list[dict[str, float]] = []
            options = {"watchers": watchers, "rate": rate, "events": int(EVENTS * rate / RATE)}
            for _ in range(repeats):
                sse.append(await fan_out(url, redis_url, pool, proc.pid, kind="sse", **options))
                floor.append(await fan_out(url, redis_url, pool, proc.pid, kind="redis", **options))
                sse[-1]["ratio"] = sse[-1]["p99_ms"] / floor[-1]["p99_ms"]
            for label, rs in (("incremental SSE", sse), ("floor: XREAD per watcher", floor)):
                service = label.startswith("incremental")
                print(
                    f"| {watchers} | {rate:g} | {label} | {med(rs, 'events_per_s', ',.0f')} "
                    f"| {med(rs, 'p50_ms', '.1f')} ms | {med(rs, 'p99_ms', '.1f', spread=True)} ms "
                    f"| {med(rs, 'ratio', '.2f', spread=True) + 'x' if service else ''} "
                    f"| {share(rs, 'cpu_share') if service else ''} "
                    f"| {med(rs, 'cpu_us', '.1f', spread=True) + ' µs' if service else ''} "
                    f"| {share(rs, 'own_share')} |",
                    flush=True,
                )
        print(f"\nMany runs: {RATE:g} events/s in all, spread evenly over the runs, one SSE watcher each\n")
        print("| runs | events/s delivered | append→arrival p50 | p99 | service CPU | per delivered event |")
        print("|---:|---:|---:|---:|---:|---:|")
        for runs in RUNS:
            rs = [
                await fan_out(url, redis_url, pool, proc.pid, kind="sse", runs=runs) for _ in range(repeats)
            ]
            print(
                f"| {runs} | {med(rs, 'events_per_s', ',.0f')} | {med(rs, 'p50_ms', '.1f')} ms "
                f"| {med(rs, 'p99_ms', '.1f')} ms | {share(rs, 'cpu_share')} "
                f"| {med(rs, 'cpu_us', '.1f', spread=True)} µs |",
                flush=True,
            )
        print(
            "\nOne run's ceiling: the writer appends as fast as one connection can (no pacing), one watcher\n"
        )
        print("| path | events/s delivered | append→arrival p50 | p99 |")
        print("|---|---:|---:|---:|")
        for kind, label in (("sse", "incremental SSE"), ("redis", "floor: XREAD")):
            r = await fan_out(url, redis_url, pool, proc.pid, kind=kind, rate=0.0)
            print(
                f"| {label} | {r['events_per_s']:,.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms |",
                flush=True,
            )
    finally:
        await pool.aclose()
        stop_server(proc)
    demo, demo_url = start_server(redis_url, "--workers", "2", "--demo")
    try:
        r = await ready_latency(demo_url)
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
        stop_server(demo)
        server.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--writer"]:
        writer(sys.argv[2], sys.argv[3].split(","), int(sys.argv[4]), float(sys.argv[5]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
        parser.add_argument("--repeats", type=int, default=3, help="passes per figure (default: 3)")
        asyncio.run(main(parser.parse_args().repeats))
