"""Workers built from your own code: your tool sets, your model client, your tools' dependencies.

A worker module of yours::

    # myapp/worker.py
    import incremental.worker
    from myapp.tools import registry

    async def startup(state: dict) -> None:       # fills ToolContext.state for every tool run
        state["db"] = await create_db_pool()

    WorkerSettings = incremental.worker.settings(tools={"myapp": registry}, on_startup=startup)

and on as many machines as you like: ``arq myapp.worker.WorkerSettings``. Runs name a tool set
(``runner.start(..., toolset="myapp")``); a worker with one tool set serves runs that name none.

The tunables, in one place. Each keyword of ``settings`` / ``worker_options`` overrides its variable:

    redis_url         REDIS_URL                 the Redis the workers and the runners share
                                                (default redis://127.0.0.1:6379/0)
    tools             INCREMENTAL_TOOLSETS      tool sets by name; the variable adds
                                                ``name=module:attr,...`` to the ones given
    model_client      ANTHROPIC_API_KEY,        the model client: None is the built-in httpx client,
                      ANTHROPIC_BASE_URL        which reads these two when not given them; or a
                                                ``MessagesClient(...)``, or your own
                                                ``anthropic.AsyncAnthropic`` (Bedrock, Vertex, a proxy)
    poll_delay        INCREMENTAL_POLL_DELAY    seconds between queue polls when idle (default 0.005):
                                                the bound on "enqueued -> started"; lower costs Redis CPU
    max_jobs          INCREMENTAL_MAX_JOBS      jobs one worker runs at once (default 32)
    job_timeout       INCREMENTAL_JOB_TIMEOUT   seconds a job may run (default 900); arq redelivers the
                                                job of a worker that died after this + 10 s
    queue             INCREMENTAL_QUEUE         the queue served (default arq's); a tool declared with
                                                ``queue="gpu"`` runs only on workers of that queue
    on_startup(state), on_shutdown(state)       your hooks; ``state`` is ``ToolContext.state``
    monitor_interval_s                          seconds between the safety net's checks (default 2)

Every other keyword goes to ``arq.worker.Worker`` as it is. Jobs are JSON on both sides (never pickle).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from arq import func
from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name

from .adapters._arq import (
    JOB_MONITOR_TURN,
    JOB_RUN_TOOL,
    JOB_STREAM_TURN,
    JOB_UNREADABLE,
    json_deserializer,
    json_serializer,
)
from .adapters._model_clients import as_model_client
from .pipeline._jobs import monitor_turn, run_tool, stream_turn, unreadable_job
from .pipeline._services import Services
from .tools import ToolRegistry

__all__ = ["Hook", "create_pool", "env_toolsets", "load_toolsets", "settings", "worker_options"]

Hook = Callable[[dict[str, Any]], Awaitable[None]]
Tools = ToolRegistry | Mapping[str, ToolRegistry] | None


def load_toolsets(spec: str) -> dict[str, ToolRegistry]:
    """Tool sets named in ``name=module:attr,name2=module:attr`` (``attr`` defaults to ``registry``)."""
    found: dict[str, ToolRegistry] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ValueError(f"expected NAME=MODULE:ATTR, got {item!r}")
        module_name, _, attr = path.strip().partition(":")
        registry = getattr(importlib.import_module(module_name), attr or "registry")
        if not isinstance(registry, ToolRegistry):
            raise TypeError(f"{path.strip()} is not a ToolRegistry")
        found[name.strip()] = registry
    return found


def env_toolsets() -> dict[str, ToolRegistry]:
    """Tool sets from ``INCREMENTAL_TOOLSETS``."""
    return load_toolsets(os.environ.get("INCREMENTAL_TOOLSETS", ""))


def _toolsets(tools: Tools) -> dict[str, ToolRegistry]:
    if isinstance(tools, ToolRegistry):
        found = {"default": tools}
    else:
        found = dict(tools or {})
        for name, registry in found.items():
            if not isinstance(registry, ToolRegistry):
                raise TypeError(f"tools[{name!r}] must be a ToolRegistry, got {registry!r}")
    found.update(env_toolsets())
    return found


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def worker_options(
    tools: Tools = None,
    *,
    model_client: Any = None,
    on_startup: Hook | None = None,
    on_shutdown: Hook | None = None,
    state: dict[str, Any] | None = None,
    queue: str | None = None,
    poll_delay: float | None = None,
    max_jobs: int | None = None,
    job_timeout: float | None = None,
    monitor_interval_s: float = 2.0,
    **arq_options: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``arq.worker.Worker`` (``settings`` and in-process workers share them)."""
    registries = _toolsets(tools)
    client = as_model_client(model_client)
    shared: dict[str, Any] = {} if state is None else state

    async def startup(ctx: dict[str, Any]) -> None:
        services = Services(
            pool=ctx["redis"],
            registries=registries,
            model_client=client,
            state=shared,
            monitor_interval_s=monitor_interval_s,
        )
        services.client()  # the built-in client's HTTP pool is made now, not on the way to a request
        ctx["services"] = services
        if on_startup is not None:
            await on_startup(shared)

    async def shutdown(ctx: dict[str, Any]) -> None:
        if on_shutdown is not None:
            await on_shutdown(shared)
        services: Services | None = ctx.get("services")
        if services is not None:
            await services.aclose()

    async def run_tool_job(ctx: dict[str, Any], job: dict[str, Any]) -> str:
        return await run_tool(ctx["services"], job)

    async def stream_turn_job(ctx: dict[str, Any], run_id: str, turn: int, generation: int = 0) -> str:
        return await stream_turn(ctx["services"], run_id, turn, generation)

    async def monitor_turn_job(ctx: dict[str, Any], run_id: str, turn: int, check: int) -> str:
        return await monitor_turn(ctx["services"], run_id, turn, check)

    async def unreadable(ctx: dict[str, Any], why: str) -> str:
        return await unreadable_job(ctx["services"], str(ctx.get("job_id")), why)

    options: dict[str, Any] = {
        "functions": [
            func(run_tool_job, name=JOB_RUN_TOOL, max_tries=5),
            func(stream_turn_job, name=JOB_STREAM_TURN, max_tries=5),
            func(monitor_turn_job, name=JOB_MONITOR_TURN, max_tries=5),
            func(unreadable, name=JOB_UNREADABLE, max_tries=1),
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "job_serializer": json_serializer,
        "job_deserializer": json_deserializer,
        "poll_delay": poll_delay
        if poll_delay is not None
        else float(_env("INCREMENTAL_POLL_DELAY", "0.005")),
        "max_jobs": max_jobs if max_jobs is not None else int(_env("INCREMENTAL_MAX_JOBS", "32")),
        "job_timeout": job_timeout
        if job_timeout is not None
        else float(_env("INCREMENTAL_JOB_TIMEOUT", "900")),
        "queue_name": queue or _env("INCREMENTAL_QUEUE", default_queue_name),
        "keep_result": 3600,
        "health_check_interval": 30,
    }
    options.update(arq_options)
    return options


def settings(tools: Tools = None, *, redis_url: str | None = None, **options: Any) -> type:
    """An arq ``WorkerSettings`` class for ``arq yourmodule.WorkerSettings`` (see the module docstring)."""
    values = worker_options(tools, **options)
    values["redis_settings"] = RedisSettings.from_dsn(
        redis_url or _env("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    return type("WorkerSettings", (), {**values, "__doc__": "incremental's arq worker settings"})


async def create_pool(redis_url: str | None = None) -> ArqRedis:
    """An arq pool that enqueues as JSON, as incremental's workers read (arq's own default is pickle)."""
    from .adapters._arq import connect

    url = redis_url or _env("REDIS_URL", "redis://127.0.0.1:6379/0")
    return await connect(url, os.environ.get("INCREMENTAL_QUEUE") or None)
