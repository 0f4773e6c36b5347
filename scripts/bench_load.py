"""Load: N concurrent runs on W worker processes; dispatch latency, throughput and Redis work per tool.

    .venv/bin/python scripts/bench_load.py [--n 1,20,100,300] [--workers 2] [--speed 10] [--simulate 0.5]
                                           [--repeat 1] [--baseline] [--idle-s 5]

The workload: the recorded 8-tool, two-turn app-builder conversation, served by the loopback fake
Messages API (its own process) at ``--speed`` times the recorded pace, every tool a simulated job of
``--simulate`` seconds; ``--workers`` processes of ``incremental worker workers.settings.WorkerSettings``
on a private redis-server; N runs started at once through ``incremental.Runner`` (``--spread S``: evenly
over S seconds). Started at once, the runs play the same recording in step: the calls of all N become
ready within some tens of ms of each other, twice a run, the hardest case for dispatch.

For each N, from the runs' event logs and Redis's own counters:

    ready -> started      p50 and p99 over every call: the parser says ToolReady -> a worker starts it
                          (``--breakdown``: split at the enqueue, the stream's worker's part and the
                          tool's worker's)
    tools/s               calls finished / the batch's wall time, beside the ideal (every run as fast
                          as one run alone: N x 8 / the single run's ideal time)
    run time              p50 of the runs' own time, beside the ideal of one run (max over its calls of
                          ready + duration, and its stream's end)
    client commands/tool  commands clients sent to Redis per call (MONITOR, for N <= --monitor-max;
                          less this script's own); Lua scripts count once each
    all commands/tool     every command Redis ran per call, the scripts' inner ones included
                          (INFO commandstats, less this script's own)
    idle commands/s       per worker process, with nothing to do (measured once, before the loads)

``--baseline`` runs the same loads again on arq's own worker (``arq workers.settings.WorkerSettings``:
every job in one pool of 32 slots, polling every 5 ms, arq's transactions to start and end a job): the
comparison of the same workload, in the same run, on the same machine. Before the loads, each set-up
makes ``--warmup`` runs that are not counted, so a process's one-off start-up work (its first
connections, its scripts loaded) is not put on a tool.

Targets (2 workers): ready -> started p99 < 50 ms up to 200 concurrent runs; >= 150 tools/s; <= 30
commands per tool at N=1, not growing with workers; an idle worker <= 10 commands/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from incremental import Runner  # noqa: E402
from incremental.adapters._redis_server import redis_url  # noqa: E402
from incremental.examples.app_builder import RECORDINGS  # noqa: E402
from incremental.examples.app_builder.tools import registry as app_registry  # noqa: E402

FILES = [str(f) for f in RECORDINGS]
TOOLS_PER_RUN = 8


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def start_fake_api(speed: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "incremental", "fake-api", *FILES, "--port", "0", "--speed", str(speed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "Fake Messages API on http://127.0.0.1:PORT (...)"
    url = line.split(" on ", 1)[1].split()[0]
    # It logs every request: read on, or a full pipe stops it mid-write (and every stream with it).
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, url


INCREMENTAL_WORKER = [sys.executable, "-m", "incremental", "worker", "workers.settings.WorkerSettings"]
ARQ_WORKER = [str(Path(sys.executable).parent / "arq"), "workers.settings.WorkerSettings"]


def start_workers(
    n: int, url: str, api_url: str, env: dict[str, str], command: list[str]
) -> list[subprocess.Popen[bytes]]:
    variables = {
        **os.environ,
        "REDIS_URL": url,
        "ANTHROPIC_BASE_URL": api_url,
        "ANTHROPIC_API_KEY": "sk-bench",
        **env,
    }
    variables.pop("INCREMENTAL_TOOLSETS", None)
    return [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=variables,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]


def stop(procs: list[Any]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_now(redis: Redis, pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each group of processes, and of Redis (``INFO cpu``)."""
    out = {name: sum(cpu_s(pid) for pid in group) for name, group in pids.items()}
    info = await redis.info("cpu")
    out["redis"] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return out


async def command_counts(redis: Redis) -> tuple[int, int]:
    """(every command Redis ran, the scripts' inner calls included; the EVAL/EVALSHA calls)."""
    stats = await redis.info("commandstats")
    total = sum(int(v["calls"]) for v in stats.values())
    scripts = sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_eval"))
    return total, scripts


class Counter:
    """This script's own Redis commands, to take out of the system's count."""

    def __init__(self) -> None:
        self.sent = 0


class Monitor:
    """Every command Redis runs, through MONITOR (costly: only for small loads): the ones clients sent,
    by name, apart from the ones Lua scripts ran."""

    def __init__(self, url: str, trace: str | None = None) -> None:
        self.redis = Redis.from_url(url)
        self.trace = open(trace, "a") if trace else None  # noqa: SIM115 (closed in __aexit__)
        self.client: dict[str, int] = {}
        self.lua = 0
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Monitor:
        self._task = asyncio.create_task(self._read())
        await self._ready.wait()
        return self

    async def _read(self) -> None:
        async with self.redis.monitor() as mon:
            self._ready.set()
            while True:
                cmd = await mon.next_command()
                if cmd.get("client_type") == "lua":
                    self.lua += 1
                    continue
                words = str(cmd.get("command", "")).split()
                if self.trace is not None:
                    self.trace.write(str(cmd.get("command", ""))[:400] + "\n")
                name = words[0].upper() if words else "?"
                if name == "CLIENT" and len(words) > 1:
                    name = f"CLIENT {words[1].upper()}"
                self.client[name] = self.client.get(name, 0) + 1

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(0.2)  # the last commands' lines are on their way
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.redis.aclose()
        if self.trace is not None:
            self.trace.close()


async def wait_done(redis: Redis, run_ids: list[str], counter: Counter, timeout: float) -> None:
    pending = set(run_ids)
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} run(s) still running after {timeout:g} s")
        await asyncio.sleep(0.25)
        order = list(pending)
        async with redis.pipeline(transaction=False) as pipe:
            for run_id in order:
                pipe.hget(f"inc:run:{run_id}", "state")
            states = await pipe.execute()
        counter.sent += len(order) + 1  # the pipeline's commands, and commandstats' own INFO later
        for run_id, state in zip(order, states, strict=True):
            if state is not None and state not in (b"running", "running"):
                pending.discard(run_id)


async def one_load(
    runner: Runner,
    redis: Redis,
    n: int,
    simulate: float,
    workdir: Path,
    monitor: Monitor | None,
    pids: dict[str, list[int]],
    samples: str | None = None,
    spread: float = 0.0,
) -> dict[str, Any]:
    counter = Counter()
    cpu_before = await cpu_now(redis, pids)
    before = await command_counts(redis)
    began = time.time()
    runs = []
    for i in range(n):
        if spread > 0:  # run i starts i/n of the way through the spread
            await asyncio.sleep(max(began + spread * i / n - time.time(), 0.0))
        workspace = workdir / f"n{n}-{i}-{time.monotonic_ns()}"
        workspace.mkdir()
        runs.append(
            await runner.start(
                [{"role": "user", "content": "Build the app"}],
                model="claude-sonnet-4-5",
                max_tokens=8192,
                toolset="app",
                max_turns=len(FILES),
                simulate_s=simulate,
                workspace=str(workspace),
            )
        )
    await wait_done(redis, [r.id for r in runs], counter, timeout=600 + n * 2)
    after = await command_counts(redis)
    cpu_after = await cpu_now(redis, pids)
    starts: list[float] = []
    queued: list[float] = []  # ready -> enqueued: the stream's worker
    taken: list[float] = []  # enqueued -> started: the tool's worker
    run_times: list[float] = []
    ideals: list[float] = []
    states: dict[str, int] = {}
    finished_tools = 0
    last = began
    rows: list[dict[str, Any]] = []  # one a call, for ``--samples``
    for run in runs:
        result = await run.result(timeout=30)
        state = result.state
        if result.error is not None:
            state = f"{state} ({result.error.type})"
        states[state] = states.get(state, 0) + 1
        summary = result.summary or {}
        run_times.append(float(summary.get("total_s") or 0.0))
        ideal = (summary.get("counterfactual") or {}).get("ideal_s")
        if ideal is not None:
            ideals.append(float(ideal))
        for tool in result.tools:
            if tool.ready_at is not None and tool.started_at is not None:
                starts.append((tool.started_at - tool.ready_at) * 1000)
                if tool.enqueued_at is not None:
                    queued.append((tool.enqueued_at - tool.ready_at) * 1000)
                    taken.append((tool.started_at - tool.enqueued_at) * 1000)
                rows.append(
                    {
                        "n": n,
                        "run": run.id,
                        "tool": tool.id,
                        "ready_s": tool.ready_at - began,
                        "ready_at": tool.ready_at,
                        "enqueued_ms": None
                        if tool.enqueued_at is None
                        else (tool.enqueued_at - tool.ready_at) * 1000,
                        "started_ms": (tool.started_at - tool.ready_at) * 1000,
                    }
                )
            if tool.finished_at is not None:
                finished_tools += 1
                last = max(last, tool.finished_at)
    if samples:
        with open(samples, "a") as out:
            out.writelines(json.dumps(row) + "\n" for row in rows)
    wall = last - began
    tools = max(finished_tools, 1)
    commands = after[0] - before[0] - counter.sent - 2
    client: float | None = None
    breakdown: dict[str, float] = {}
    if monitor is not None:
        sent = dict(monitor.client)
        sent["HGET"] = sent.get("HGET", 0) - (counter.sent - len(states))  # this script's polling
        sent.pop("INFO", None)  # this script's CPU and command counters (a worker sends INFO only at start)
        client = sum(sent.values()) / tools
        breakdown = {k: v / tools for k, v in sorted(sent.items(), key=lambda kv: -kv[1]) if v > 0}
    return {
        "cpu_ms_per_tool": {k: (cpu_after[k] - cpu_before[k]) * 1000 / tools for k in cpu_after},
        "client_per_tool": client,
        "breakdown": breakdown,
        "n": n,
        "states": states,
        "start_p50": pct(starts, 50),
        "start_p99": pct(starts, 99),
        "split": {
            "ready->enqueued": (pct(queued, 50), pct(queued, 99)),
            "enqueued->started": (pct(taken, 50), pct(taken, 99)),
        },
        "tools_s": finished_tools / wall if wall > 0 else 0.0,
        "ideal_tools_s": (n * TOOLS_PER_RUN / statistics.median(ideals))
        if ideals and statistics.median(ideals) > 0
        else float("nan"),
        "run_p50": pct(run_times, 50),
        "ideal_run": statistics.median(ideals) if ideals else float("nan"),
        "cmd_per_tool": commands / tools,
        "lua_evals_per_tool": (after[1] - before[1]) / tools,
    }


async def workers_up(redis: Redis, workers: int, timeout: float = 120) -> None:
    """Until every worker process has connected and run its first loop (its health check is written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        clients = await redis.client_list()
        names = [c for c in clients if c.get("lib-name") == "redis-py" and c.get("cmd") != "client|list"]
        if await redis.exists("arq:queue:health-check") and len(names) >= workers:
            await asyncio.sleep(2.0)  # their start-up commands are done with
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{workers} worker(s) did not start within {timeout:g} s")


async def idle_rate(redis: Redis, workers: int, seconds: float) -> float:
    before = (await command_counts(redis))[0]
    await asyncio.sleep(seconds)
    after = (await command_counts(redis))[0]
    return (after - before - 1) / seconds / max(workers, 1)


async def measure(
    label: str,
    args: argparse.Namespace,
    url: str,
    api_url: str,
    api_pid: int,
    env: dict[str, str],
    command: list[str],
) -> list[dict[str, Any]]:
    procs = start_workers(args.workers, url, api_url, env, command)
    redis = Redis.from_url(url)
    rows: list[dict[str, Any]] = []
    try:
        async with Runner(tools={"app": app_registry}, redis_url=url, workers=0) as runner:
            await workers_up(redis, args.workers)
            idle = await idle_rate(redis, args.workers, args.idle_s)
            with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
                pids = {
                    "workers": [p.pid for p in procs],
                    "fake API": [api_pid],
                    "this script": [os.getpid()],
                }
                for _ in range(args.warmup):  # the processes' one-off start-up work is not a tool's
                    await one_load(runner, redis, 1, args.simulate, Path(tmp), None, pids)
                for n in args.n:
                    for _ in range(args.repeat):
                        monitor = Monitor(url, args.trace) if n <= args.monitor_max else None
                        async with monitor if monitor is not None else contextlib.nullcontext():
                            row = await one_load(
                                runner,
                                redis,
                                n,
                                args.simulate,
                                Path(tmp),
                                monitor,
                                pids,
                                args.samples,
                                args.spread,
                            )
                        row.update(label=label, idle=idle)
                        rows.append(row)
                        print(_line(row), flush=True)
    finally:
        await redis.aclose()
        stop(procs)
    return rows


def _line(r: dict[str, Any]) -> str:
    client = "" if r["client_per_tool"] is None else f"{r['client_per_tool']:.1f}"
    states = ", ".join(f"{k} {v}" for k, v in sorted(r["states"].items()))
    return (
        f"| {r['label']} | {r['n']} | {r['start_p50']:.1f} | {r['start_p99']:.1f} | {r['tools_s']:.1f} "
        f"| {r['ideal_tools_s']:.1f} | {r['run_p50']:.2f} | {r['ideal_run']:.2f} | {client} "
        f"| {r['cmd_per_tool']:.0f} | {r['idle']:.1f} | {states} |"
    )


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="1,20,100,300", help="concurrent runs, comma-separated")
    ap.add_argument("--workers", type=int, default=2, help="worker processes")
    ap.add_argument("--speed", type=float, default=10.0, help="playback speed of the recording")
    ap.add_argument("--simulate", type=float, default=0.5, help="seconds each tool takes")
    ap.add_argument("--repeat", type=int, default=1, help="loads per N")
    ap.add_argument("--idle-s", type=float, default=5.0, help="seconds to count an idle worker's commands")
    ap.add_argument(
        "--monitor-max", type=int, default=20, help="count client commands (MONITOR) for N up to this"
    )
    ap.add_argument("--trace", help="append every client command MONITOR saw to this file")
    ap.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="start the N runs evenly over this many seconds (default 0: all at once, in step)",
    )
    ap.add_argument(
        "--samples", help="append one JSON line per call (ready time, its enqueue and start) to this file"
    )
    ap.add_argument("--breakdown", action="store_true", help="print the client commands per tool by name")
    ap.add_argument(
        "--baseline", action="store_true", help="also run the loads on arq's own worker (polling, one pool)"
    )
    ap.add_argument(
        "--warmup", type=int, default=1, help="runs made (not counted) before the loads, per set-up"
    )
    args = ap.parse_args()
    args.n = [int(x) for x in args.n.split(",") if x.strip()]

    print(
        f"the 8-tool two-turn recording at {args.speed:g}x, tools simulated at {args.simulate:g} s, "
        f"{args.workers} worker processes, private redis-server, {os.cpu_count()} cores\n"
    )
    print(
        "| set-up | runs | ready->started p50 ms | p99 ms | tools/s | ideal tools/s | run p50 s "
        "| ideal run s "
        "| client commands/tool | all commands/tool | idle commands/s/worker | runs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    api, api_url = start_fake_api(args.speed)
    try:
        with redis_url() as url:
            rows = await measure("incremental", args, url, api_url, api.pid, {}, INCREMENTAL_WORKER)
            if args.baseline:
                rows += await measure("plain arq", args, url, api_url, api.pid, BASELINE_ENV, ARQ_WORKER)
    finally:
        stop([api])
    print(
        "\nCPU ms per tool, by process: "
        + "; ".join(
            f"{r['label']} N={r['n']}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_ms_per_tool"].items())
            for r in rows
        )
    )
    if args.breakdown:
        for r in rows:
            split = ", ".join(f"{k} {p50:.1f} / {p99:.1f} ms" for k, (p50, p99) in r["split"].items())
            print(f"\n{r['label']}, N={r['n']}: p50 / p99 {split}")
            if r["breakdown"]:
                top = ", ".join(f"{k} {v:.1f}" for k, v in r["breakdown"].items())
                print(f"\n{r['label']}, N={r['n']}: client commands per tool: {top}")
    return 0


# The same jobs run by arq's own worker (``arq workers.settings.WorkerSettings``), as the project ran
# them before it had its own: streams and tools share one pool of 32 slots, polled every 5 ms.
BASELINE_ENV = {"INCREMENTAL_MAX_JOBS": "32", "INCREMENTAL_POLL_DELAY": "0.005"}


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
