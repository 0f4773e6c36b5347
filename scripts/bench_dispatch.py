"""Dispatch and continuation latency, and the end-to-end replay against the ideal and both baselines.

    .venv/bin/python scripts/bench_dispatch.py [--runs 5] [--speed 10] [--simulate 0.5] [--workers 2]

Each run replays the recorded two-turn app-builder conversation (8 tool calls, then a text reply)
through the real pipeline: a private redis-server, real arq workers (in this process), the loopback fake
Messages API at ``--speed`` times the recorded pace, every tool a simulated job of ``--simulate`` seconds.
From each run's event log (wall-clock timestamps written by the process that saw each step):

    ready -> enqueued      parser says ToolReady (after content_block_stop) -> the job is in arq's queue
    ready -> started       ... -> a worker has picked the job up and starts the tool
    last result -> request the last tool's result lands -> the next turn's request is being sent
    end to end             the run's total beside, from the same run: sequential after the stream,
                           parallel after the stream, and the ideal max(stream end, ready + duration)

Targets: ready->enqueued p99 < 2 ms; ready->started p50 < 15 ms; last result ->
request p50 < 20 ms; end to end within 100 ms of the ideal.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from incremental.adapters._arq import connect  # noqa: E402
from incremental.adapters._eventlog import EventLog  # noqa: E402
from incremental.adapters._redis_server import redis_url  # noqa: E402
from incremental.examples.app_builder import RECORDINGS  # noqa: E402
from incremental.examples.app_builder.tools import registry as app_registry  # noqa: E402
from incremental.replay import ReplayOptions, replay  # noqa: E402

FILES = list(RECORDINGS)


def pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def latencies(events: list[dict[str, Any]]) -> dict[str, list[float]]:
    ready: dict[str, float] = {}
    out: dict[str, list[float]] = {"enqueue": [], "start": [], "continue": []}
    last_result: dict[int, float] = {}
    for e in events:
        tool = e.get("tool_use_id")
        if e["kind"] == "tool_ready":
            ready[tool] = e["ts"]
        elif e["kind"] == "tool_enqueued" and tool in ready:
            out["enqueue"].append((e["ts"] - ready[tool]) * 1000)
        elif e["kind"] == "tool_started" and tool in ready:
            out["start"].append((e["ts"] - ready[tool]) * 1000)
        elif e["kind"] in ("tool_completed", "tool_failed"):
            last_result[e["turn"]] = max(last_result.get(e["turn"], 0.0), e["ts"])
        elif e["kind"] == "request_sent" and e["turn"] - 1 in last_result:
            out["continue"].append((e["ts"] - last_result[e["turn"] - 1]) * 1000)
    return out


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--speed", type=float, default=10.0, help="playback speed of the recording")
    ap.add_argument("--simulate", type=float, default=0.5, help="seconds each tool takes")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    lat: dict[str, list[float]] = {"enqueue": [], "start": [], "continue": []}
    rows = []
    with redis_url() as url:
        pool = await connect(url)
        log = EventLog(pool)
        for _ in range(args.runs):
            options = ReplayOptions(
                files=FILES,
                tools=app_registry,
                speed=args.speed,
                simulate_s=args.simulate,
                redis_url=url,
                workers=args.workers,
            )
            summary = await replay(options)
            assert summary["state"] == "completed", summary
            for key, values in latencies(await log.all(summary["run_id"])).items():
                lat[key] += values
            cf = summary["counterfactual"]
            rows.append(
                (summary["total_s"], cf["ideal_s"], cf["parallel_after_stream_s"], cf["sequential_s"])
            )
        await pool.aclose()

    print(
        f"{args.runs} runs of the 8-tool two-turn recording at {args.speed:g}x, tools simulated at "
        f"{args.simulate:g} s, {args.workers} in-process arq workers, private redis-server\n"
    )
    print("| latency | n | p50 ms | p99 ms | target |")
    print("|---|---:|---:|---:|---|")
    for key, label, target in (
        ("enqueue", "ToolReady -> enqueued", "p99 < 2 ms"),
        ("start", "ToolReady -> tool started", "p50 < 15 ms"),
        ("continue", "last result -> next request", "p50 < 20 ms"),
    ):
        values = lat[key]
        print(f"| {label} | {len(values)} | {pct(values, 50):.2f} | {pct(values, 99):.2f} | {target} |")
    print()
    print(
        "| end to end (s) | measured | ideal | parallel after stream | sequential after stream | over ideal |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for i, (total, ideal, parallel, sequential) in enumerate(rows, 1):
        print(
            f"| run {i} | {total:.3f} | {ideal:.3f} | {parallel:.3f} | {sequential:.3f} | "
            f"{(total - ideal) * 1000:.0f} ms |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
