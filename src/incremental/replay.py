"""Replay a recorded conversation through the real pipeline: Redis, arq workers, the fake Messages API.

The recording's turns are served by a loopback ``FakeMessagesAPI`` at their recorded speed; tools run
on real arq workers (in this process when Redis is our own, or the user's workers with ``redis_url``);
every step is read back from the run's event log, in order, and summarised.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .adapters._arq import connect
from .adapters._eventlog import EventLog
from .adapters._redis_server import RedisUnavailableError
from .adapters._redis_server import redis_url as private_redis
from .fake_api import FakeMessagesAPI
from .pipeline import RunConfig, start_run, summarize

__all__ = ["FINAL_EVENTS", "ReplayOptions", "replay"]

FINAL_EVENTS = frozenset({"run_completed", "run_failed", "run_ended"})


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    files: Sequence[str | Path]
    speed: float = 1.0
    simulate_s: float | None = None
    redis_url: str | None = None  # None: $REDIS_URL, else a private redis-server for this replay
    workers: int | None = None  # in-process arq workers; default 2 with our own Redis, 0 with the user's
    workspace: str | None = None
    turn_timeout_s: float = 300.0
    poll_delay_s: float = 0.005
    toolset: str = "app"


async def _stop_worker(worker: Worker, grace_s: float = 2.0) -> None:
    """Let jobs still running finish (the last turn's job returns just after the run's final event)."""
    running = [t for t in worker.tasks.values() if not t.done()]
    if running:
        await asyncio.wait(running, timeout=grace_s)
    current = asyncio.current_task()
    try:
        await worker.close()  # cancels what is left; arq re-raises those jobs' CancelledError
    except asyncio.CancelledError:
        if current is not None and current.cancelling():
            raise


async def replay(
    options: ReplayOptions, on_event: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None
) -> dict[str, Any]:
    """Run the replay to its end; returns the summary (see ``incremental.pipeline.summarize``).

    Raises ``RedisUnavailableError`` when Redis cannot be reached, at the start or mid-run.
    """
    try:
        return await _replay(options, on_event)
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        where = options.redis_url or os.environ.get("REDIS_URL") or "the private redis-server"
        raise RedisUnavailableError(f"cannot reach Redis at {where}: {exc}") from exc


async def _replay(
    options: ReplayOptions, on_event: Callable[[dict[str, Any]], Awaitable[None] | None] | None
) -> dict[str, Any]:
    with private_redis(options.redis_url) as url:
        own_redis = options.redis_url is None
        n_workers = options.workers if options.workers is not None else (2 if own_redis else 0)
        pool = await connect(url)
        api = FakeMessagesAPI(list(options.files), speed=options.speed)
        workers: list[Worker] = []
        tasks: list[asyncio.Task[None]] = []
        workspace_dir = (
            None if options.workspace else tempfile.TemporaryDirectory(prefix="incremental-replay-")
        )
        try:
            await api.start()
            from workers.settings import worker_options  # the project's worker set

            for _ in range(n_workers):
                worker = Worker(
                    **worker_options(poll_delay=options.poll_delay_s),
                    redis_settings=RedisSettings.from_dsn(url),
                    handle_signals=False,
                )
                workers.append(worker)
                tasks.append(asyncio.create_task(worker.async_run()))
            workspace = options.workspace or (workspace_dir.name if workspace_dir else None)
            if options.toolset == "app" and workspace and not any(Path(workspace).iterdir()):
                # The app-builder recordings edit a Vite starter project: give an empty workspace one.
                from workers.app_tools import seed_vite_starter

                seed_vite_starter(Path(workspace))
            config = RunConfig(
                model="claude-sonnet-4-5",
                api_base_url=api.url,
                max_turns=len(options.files),
                turn_timeout_s=options.turn_timeout_s,
                simulate_s=options.simulate_s,
                toolset=options.toolset,
                workspace=workspace,
                meta={"replay": [str(f) for f in options.files], "speed": options.speed},
            )
            first = {"role": "user", "content": f"Replay of {', '.join(Path(f).name for f in options.files)}"}
            run_id = await start_run(pool, config, [first])
            log = EventLog(pool)
            after = "0-0"
            events: list[dict[str, Any]] = []  # the whole log, read once, as it happens
            while not events or events[-1]["kind"] not in FINAL_EVENTS:
                for entry_id, event in await log.read(run_id, after, block_ms=1000):
                    after = entry_id
                    events.append(event)
                    if on_event is not None:
                        maybe = on_event(event)
                        if maybe is not None:
                            await maybe
                    if event["kind"] in FINAL_EVENTS:
                        break
            summary = summarize(events)
            summary["run_id"] = run_id
            summary["requests"] = len(api.requests)
            summary["rejected_requests"] = list(api.rejections)
            return summary
        finally:
            for worker in workers:
                await _stop_worker(worker)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await api.stop()
            await pool.aclose()
            if workspace_dir is not None:
                workspace_dir.cleanup()
