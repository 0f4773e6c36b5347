"""Redis memory per finished run, with the retention and trim against the old defaults (retention off).

    .venv/bin/python scripts/bench_redis_memory.py [--runs 5]

Each run is the recorded two-turn app-builder conversation (8 real tool calls on a fresh workspace,
then a text reply) through the real pipeline: a private redis-server, one real arq worker in this
process, the loopback fake Messages API at full speed. Two runners on the same Redis, one after the
other: the old defaults (``retention_s="off"``, ``trim_after_s="off"``) and the new ones (a day, five
minutes). Once a run has ended and its last deferred job has left arq's queue, every key that names it
is measured with ``MEMORY USAGE`` (``SAMPLES 0``: exact), split into the run's own keys (``inc:*``) and
arq's (results of its jobs), beside the TTL Redis reports for them. For the new defaults it measures
again after the trim, which it runs by calling the trim job's function at once instead of waiting the
five minutes ``trim_after_s`` defers it by (the job itself runs the same function). ``used_memory``
before and after each runner's runs, divided by the runs, is shown too (it includes allocator
overhead and the metrics the runs fed).

Then one run of ``fixtures/large_file_1mb.sse`` (a single ``write_file`` of a 1 MB file, then a text
reply), new defaults: the size of the tool input (its JSON) against every key of the run (arq's
included) holding more than half of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from incremental import MessagesClient, Runner  # noqa: E402
from incremental.adapters._redis_server import redis_url  # noqa: E402
from incremental.adapters._retention import DEFAULT_TRIM_AFTER_S  # noqa: E402
from incremental.examples.app_builder import RECORDINGS  # noqa: E402
from incremental.examples.app_builder.tools import registry as app_registry  # noqa: E402
from incremental.examples.app_builder.tools import seed_vite_starter  # noqa: E402
from incremental.fake_api import FakeMessagesAPI  # noqa: E402
from incremental.pipeline._trim import trim_run  # noqa: E402

GO = [{"role": "user", "content": "Build me a todo app with Vite and React."}]
REQUEST: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 8192}
CONFIGS = {
    "old defaults (retention off)": {"retention_s": "off", "trim_after_s": "off"},
    "new defaults": {},
}


async def footprint(pool: Any, run_id: str) -> dict[str, Any]:
    """Bytes of every key naming the run: the run's own and arq's, and the longest TTL of each."""
    out: dict[str, Any] = {"inc": 0, "arq": 0, "inc_ttl": 0, "arq_ttl": 0, "keys": {}}
    async for raw in pool.scan_iter(match=f"*{run_id}*", count=1000):
        key = raw.decode()
        usage = int(await pool.memory_usage(key, samples=0) or 0)
        ttl = int(await pool.ttl(key))
        part = "arq" if key.startswith("arq:") else "inc"
        out[part] += usage
        out[f"{part}_ttl"] = max(out[f"{part}_ttl"], ttl)
        out["keys"][key] = usage
    return out


async def settled(pool: Any, run_id: str) -> None:
    """Wait until arq holds no queued job of the run but its trim (its last deferred checks have run)."""
    for _ in range(600):
        left = [
            k
            async for k in pool.scan_iter(match=f"arq:job:*{run_id}*", count=1000)
            if not k.startswith(b"arq:job:inc:trim:")
        ]
        if not left:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"jobs of {run_id} still queued after 60 s: {left}")


async def used_memory(pool: Any) -> int:
    return int((await pool.info("memory"))["used_memory"])


@contextlib.asynccontextmanager
async def bench_runner(url: str, files: list[Any], options: dict[str, Any]) -> AsyncIterator[Runner]:
    """A Runner with one in-process worker on a queue of its own, its model the fake API playing ``files``."""
    async with FakeMessagesAPI(files, speed=0) as api:
        client = MessagesClient(base_url=api.url, api_key="sk-bench")
        async with Runner(
            tools=app_registry,
            redis_url=url,
            workers=1,
            model_client=client,
            queue=f"bench-{uuid.uuid4().hex[:8]}",
            **options,
        ) as runner:
            yield runner
        await client.aclose()


async def app_runs(url: str, options: dict[str, Any], runs: int) -> dict[str, Any]:
    rows: dict[str, list[float]] = {"end": [], "end_arq": [], "trimmed": [], "ttl": [], "ttl_trim": []}
    async with bench_runner(url, list(RECORDINGS), options) as runner:
        pool = runner.pool
        before = 0
        for n in range(runs + 1):  # the first warms the server and the worker up: not counted
            if n == 1:
                before = await used_memory(pool)
            with tempfile.TemporaryDirectory() as workspace:
                seed_vite_starter(Path(workspace))
                run = await runner.start(GO, **REQUEST, workspace=workspace, max_turns=2)
                result = await run.result(timeout=120)
                assert result.state == "completed" and len(result.tools) == 8, result
            await settled(pool, run.id)
            if n == 0:
                continue
            at_end = await footprint(pool, run.id)
            rows["end"].append(at_end["inc"])
            rows["end_arq"].append(at_end["arq"])
            rows["ttl"].append(at_end["inc_ttl"])
            if runner.retention.trims:
                await trim_run(runner._services(), run.id)
                trimmed = await footprint(pool, run.id)
                rows["trimmed"].append(trimmed["inc"])
                rows["ttl_trim"].append(trimmed["inc_ttl"])
        rows["used_memory"] = [(await used_memory(pool) - before) / runs]
    return {k: statistics.median(v) if v else None for k, v in rows.items()}


async def large_input(url: str, options: dict[str, Any]) -> dict[str, Any]:
    files = [ROOT / "fixtures" / "large_file_1mb.sse", ROOT / "fixtures" / "text_only.sse"]
    async with bench_runner(url, files, options) as runner:
        with tempfile.TemporaryDirectory() as workspace:
            run = await runner.start(GO, **REQUEST, workspace=workspace, max_turns=2)
            result = await run.result(timeout=120)
        assert result.state == "completed", result
        [block] = [
            b
            for m in result.messages
            if m["role"] == "assistant"
            for b in m["content"]
            if b.get("type") == "tool_use"
        ]
        size = len(json.dumps(block["input"]).encode())
        await settled(runner.pool, run.id)
        found = await footprint(runner.pool, run.id)
    holding = {k: v for k, v in found["keys"].items() if v > size // 2}
    return {"size": size, "holding": holding, "run_id": run.id}


def steady_state(m: dict[str, Any], options: dict[str, Any]) -> float:
    """GB Redis holds for finished runs at one run a second, from the sizes and TTLs measured."""
    if m["trimmed"] is None:
        held = m["end"] * m["ttl"]
    else:
        trim_after = float(options.get("trim_after_s", DEFAULT_TRIM_AFTER_S))
        held = m["end"] * trim_after + m["trimmed"] * (m["ttl_trim"] - trim_after)
    return float(held + m["end_arq"] * 3600) / 1e9


def kb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:.1f}"


def hours(value: float | None) -> str:
    return "-" if value is None else f"{value / 3600:.1f} h"


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with redis_url() as url:
        measured = {name: await app_runs(url, options, args.runs) for name, options in CONFIGS.items()}
        large = await large_input(url, {})

    print(
        f"{args.runs} runs per configuration of the 8-tool two-turn app-builder recording, real tools, "
        "one in-process arq worker, private redis-server; medians per run\n"
    )
    print(
        "| configuration | run's keys at its end (KB) | their TTL | after the trim (KB) | their TTL | "
        "arq's keys (KB; results kept 1 h) | used_memory delta per run (KB) | "
        "held at 1 run/s (GB, computed) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, m in measured.items():
        print(
            f"| {name} | {kb(m['end'])} | {hours(m['ttl'])} | {kb(m['trimmed'])} | {hours(m['ttl_trim'])} | "
            f"{kb(m['end_arq'])} | {kb(m['used_memory'])} | {steady_state(m, CONFIGS[name]):.1f} |"
        )
    print(
        "\n(held at 1 run/s: each measured size times the seconds Redis keeps it, the run's keys at their "
        "end until the trim, what the trim leaves until the TTL, arq's for an hour)"
    )
    print()
    print("| tool input (bytes) | keys holding more than half of it | their bytes | x input |")
    print("|---:|---|---:|---:|")
    total = sum(large["holding"].values())
    where = ", ".join(sorted(k.replace(large["run_id"], "{run}") for k in large["holding"]))
    print(f"| {large['size']:,} | {where} | {total:,} | {total / large['size']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
