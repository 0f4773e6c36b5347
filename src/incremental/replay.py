"""Replay a recorded conversation through the real pipeline: Redis, arq workers, the fake Messages API.

The recording's turns are served by a loopback ``FakeMessagesAPI`` at their recorded speed; tools run
on real arq workers started by a ``Runner`` (in this process when Redis is our own; with ``redis_url``
your own workers, whose model client must then point at the fake API: ``api_port`` fixes its port).
Every step is read back from the run's event log, in order, and summarised by the one reducer.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .adapters._messages_client import MessagesClient
from .events import to_entry
from .exceptions import RedisUnavailableError
from .fake_api import FakeMessagesAPI
from .runner import Runner
from .tools import ToolRegistry

__all__ = ["ReplayOptions", "replay"]


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    files: Sequence[str | Path]
    tools: ToolRegistry  # the tool set the recording's calls run on (or are simulated after)
    toolset: str = "app"
    speed: float = 1.0
    simulate_s: float | None = None
    redis_url: str | None = None  # None: a private redis-server for this replay
    workers: int | None = None  # in-process arq workers; default 2 with our own Redis, 0 with the user's
    workspace: str | None = None
    prepare_workspace: Callable[[Path], object] | None = None  # fills an empty workspace before the run
    turn_timeout_s: float = 300.0
    poll_delay_s: float = 0.005
    api_port: int = 0
    model: str = "claude-sonnet-4-5"
    max_tokens: int = 8192


async def replay(
    options: ReplayOptions, on_event: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None
) -> dict[str, Any]:
    """Run the replay to its end; returns the summary (``RunView.summary``) with ``run_id``,
    ``requests`` and ``rejected_requests``. ``on_event`` sees each log entry as it is read.

    Raises ``RedisUnavailableError`` when Redis cannot be reached, at the start or mid-run.
    """
    try:
        return await _replay(options, on_event)
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        where = options.redis_url or "the private redis-server"
        raise RedisUnavailableError(f"cannot reach Redis at {where}: {exc}") from exc


async def _replay(
    options: ReplayOptions, on_event: Callable[[dict[str, Any]], Awaitable[None] | None] | None
) -> dict[str, Any]:
    own_redis = options.redis_url is None
    n_workers = options.workers if options.workers is not None else (2 if own_redis else 0)
    api = FakeMessagesAPI(list(options.files), speed=options.speed, port=options.api_port)
    workspace_dir = None if options.workspace else tempfile.TemporaryDirectory(prefix="incremental-replay-")
    try:
        await api.start()
        workspace = Path(options.workspace or (workspace_dir.name if workspace_dir else "."))
        if options.prepare_workspace is not None and not any(workspace.iterdir()):
            options.prepare_workspace(workspace)
        client = MessagesClient(base_url=api.url, api_key=os.environ.get("ANTHROPIC_API_KEY") or "replay")
        async with Runner(
            tools={options.toolset: options.tools},
            redis_url=options.redis_url,
            workers=n_workers,
            model_client=client,
            poll_delay=options.poll_delay_s,
        ) as runner:
            first = {"role": "user", "content": f"Replay of {', '.join(Path(f).name for f in options.files)}"}
            run = await runner.start(
                [first],
                model=options.model,
                max_tokens=options.max_tokens,
                toolset=options.toolset,
                max_turns=len(options.files),
                turn_timeout_s=options.turn_timeout_s,
                simulate_s=options.simulate_s,
                workspace=str(workspace),
                tags={"replay": [str(f) for f in options.files], "speed": options.speed},
            )
            view = None
            async for _entry_id, event, followed in run._follow(None):
                view = followed
                if on_event is not None:
                    maybe = on_event(to_entry(event))
                    if maybe is not None:
                        await maybe
            await client.aclose()
            summary = view.summary() if view is not None else {}
        summary["run_id"] = run.id
        summary["requests"] = len(api.requests)
        summary["rejected_requests"] = list(api.rejections)
        return summary
    finally:
        await api.stop()
        if workspace_dir is not None:
            workspace_dir.cleanup()
