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
    max_jobs          INCREMENTAL_MAX_JOBS      tool jobs one worker runs at once (default 1000;
                                                100 when streams share them, ``turn_slots=0``)
    turn_slots        INCREMENTAL_TURN_SLOTS    model streams (and safety-net checks) one worker runs
                                                at once, in slots of their own (default 100): a stream
                                                never holds a slot a tool could use (0: streams share
                                                the tool slots, as in plain arq). A stream costs CPU for
                                                every event it brings: past what a process can parse,
                                                more streams at once only make each one slower
    admit_lag_ms      INCREMENTAL_ADMIT_LAG_MS  a worker whose event loop lags more than this many ms
                                                takes no new stream until it has caught up, and goes on
                                                taking tools (default 20; 0: streams are taken while
                                                there are turn slots, however slow the process is)
    wake              INCREMENTAL_WAKE          1 (default): workers wait for a push announcing each job
                                                (``adapters._arq_worker``); 0: they poll every
                                                ``poll_delay``, as plain arq does
    batch             INCREMENTAL_BATCH         1 (default): the commands a worker's jobs send in one
                                                turn of its event loop go to Redis together, as one
                                                pipeline (``adapters._batching``); 0: one at a time
    poll_delay        INCREMENTAL_POLL_DELAY    seconds between queue polls, when polling (default
                                                0.005)
    job_timeout       INCREMENTAL_JOB_TIMEOUT   seconds a tool job may run (default: its tool set's
                                                longest tool, retries and backoff included, plus 30 s;
                                                at least 120); a tool it cuts gets a ``timeout`` result
    stream_timeout    INCREMENTAL_STREAM_TIMEOUT       seconds a turn's streaming may take, every
                                                attempt included (default 1200); the stream job's own
                                                limit is this + 60 s
    stream_idle_timeout  INCREMENTAL_STREAM_IDLE_TIMEOUT   seconds a stream may go quiet: no event,
                                                not even a ping (default 45)
    stream_headers_timeout  INCREMENTAL_STREAM_HEADERS_TIMEOUT  seconds to the response's headers, the
                                                client's own retries included (default 90)
    lease_s           INCREMENTAL_JOB_LEASE     a running job renews its claim this far ahead (default
                                                30): a killed worker's job goes to another one after it
    shutdown_grace_s  INCREMENTAL_SHUTDOWN_GRACE  on SIGTERM, seconds running jobs get to finish before
                                                what can be handed over is (default 30)
    redis_outage_s    INCREMENTAL_REDIS_OUTAGE  seconds a command keeps retrying through a Redis outage
                                                (default 120); the worker itself reconnects for ever
    queue             INCREMENTAL_QUEUE         the queue served (default arq's); a tool declared with
                                                ``queue="gpu"`` runs only on workers of that queue
    retention_s       INCREMENTAL_RETENTION     seconds a finished run's keys live after it ended
                                                (default 86400; ``off``: 7 days after their last
                                                write, as while it runs): its record, conversation,
                                                results and log stay readable until then
    trim_after_s      INCREMENTAL_TRIM_AFTER    seconds after its end a finished run is trimmed
                                                (default 300; ``off``: never): its log keeps the
                                                milestones and what its readers fold, the records
                                                only a running run needs go
    keep_result_s     INCREMENTAL_KEEP_RESULT   seconds arq keeps a finished job's result (default
                                                3600): it dedupes a job id's enqueues; it holds the
                                                job's arguments, which name a tool call's input and
                                                never carry it
    (the process)     INCREMENTAL_UVLOOP        1 (default): ``incremental worker`` (``run_worker``)
                                                runs its event loops on uvloop, where it is installed
                                                (the ``worker`` extra installs it, but on Windows);
                                                0: on asyncio's own loop
    (the process)     INCREMENTAL_TOOL_LOOP     1 (default): ``incremental worker`` runs tools on an
                                                event loop of their own, in a thread, and streams on
                                                the main one, so a tool's start never waits for the
                                                events of the streams the process reads (when streams
                                                have slots of their own); 0: one loop for everything.
                                                Your ``on_startup``/``on_shutdown`` run on the tools'
                                                loop, where your tools use what they make
    (the process)     INCREMENTAL_GC            1 (default): ``incremental worker`` moves what exists
                                                at its start out of the garbage collector's reach
                                                (``gc.freeze``) and collects less often (thresholds
                                                20000, 20, 20), so a full collection pauses both loops
                                                less often and for less; 0: Python's defaults
    on_startup(state), on_shutdown(state)       your hooks; ``state`` is ``ToolContext.state``
    monitor_interval_s                          seconds between the safety net's checks of a turn
                                                (default 5): how soon a lost stream job is noticed, and
                                                how late past its deadline a turn may continue

How they fit together. A killed worker's tool comes back after ``lease_s`` (30 s), far inside the
turn's deadline for its results (``turn_timeout_s``, 300 s by default, counted from ``message_stop``),
which is longer than a tool job may run (``job_timeout``). A run takes its retention from the
process that started it (a runner's options and variables; see ``adapters._retention``): whichever
process ends it applies that one. A stream that goes quiet is cut after 45 s,
and a turn's streaming ends after 1200 s at most; a stream job the watchdog finds gone fails its run
within ``monitor_interval_s`` (after ``lease_s`` when its worker was killed). On SIGTERM a worker takes
no new job, gives running ones ``shutdown_grace_s``, then hands back what it can (tools, and streams
that dispatched nothing) without using up their tries; a stream that dispatched a call finishes where it
is, within its ``stream_timeout``: give the worker that long to stop (a SIGKILL before then cuts its
message: the redelivered job salvages the blocks it completed, and the run goes on from there; so does
the watchdog when a stream job that dispatched a call is gone).

Run workers with ``incremental worker myapp.worker.WorkerSettings`` (or ``run_worker``): it runs
incremental's ``Worker``, which is woken by a push for each job and keeps model streams out of the tool
slots (``adapters._arq_worker``); its loop reconnects a worker that lost Redis, keeping its running
jobs, and stops it gracefully on SIGTERM. ``arq myapp.worker.WorkerSettings`` runs the same jobs, but
as arq does: polling every ``poll_delay``, streams and tools in one pool of ``max_jobs`` slots; it
rides out short outages (its commands retry for ``redis_outage_s``), but arq's own loop exits on a
Redis error that escapes it, and its SIGTERM cancels running jobs at once (they are redelivered, as
after a kill).

Every other keyword goes to arq's ``Worker`` as it is. Jobs are JSON on both sides (never pickle).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from arq import func
from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name, retry_key_prefix
from arq.worker import Retry
from arq.worker import Worker as ArqWorker
from redis.exceptions import WatchError

from .adapters._arq import (
    DEFAULT_OUTAGE_S,
    JOB_MONITOR_TURN,
    JOB_RUN_TOOL,
    JOB_STREAM_TURN,
    JOB_TRIM_RUN,
    JOB_UNREADABLE,
    REDIS_ERRORS,
    Lease,
    job_lease,
    json_deserializer,
    json_serializer,
    resilient,
)
from .adapters._arq_worker import CLAIM_BEAT, CLAIMS_LEASE, Worker, make_worker
from .adapters._model_clients import as_model_client
from .adapters._retention import Retention
from .events import JobHandedOverEvent
from .pipeline._deadlines import HandedOver, StreamLimits
from .pipeline._jobs import give_up_tool, monitor_turn, run_tool, stream_turn, unreadable_job
from .pipeline._services import Services
from .pipeline._trim import trim_run
from .tools import ToolRegistry

__all__ = [
    "Hook",
    "Worker",
    "create_pool",
    "drain_worker",
    "env_toolsets",
    "load_toolsets",
    "run_worker",
    "serve_worker",
    "settings",
    "worker_options",
]

logger = logging.getLogger(__name__)

_CTX = "incremental"  # the worker ctx's entry for these options (arq passes ctx through untouched)
_HANDOVER_S = 5.0  # how long a drain waits for handed-over jobs to be back in the queue
# Tool jobs one worker runs at once. A slot is a task on the tools' loop (tools are coroutines), not a
# thread: the calls of many runs become ready together, and a call that finds the slots full waits a
# whole tool's time. With 100, 200 runs on 2 workers had a p99 of 1.2 s, all of it in such waits.
_TOOL_SLOTS = 1000
# When streams share the tool slots (``turn_slots=0``), as many streams could take them: 100 then.
_SHARED_SLOTS = 100
TOOL_TRIES = 5  # tries of a tool job cut short (its worker killed) before the call gets a crashed result

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


def _count(given: int | None, variable: str, default: int, *, least: int) -> int:
    raw: object = given if given is not None else _env(variable, str(default))
    try:
        value = int(str(raw))
    except ValueError:
        raise ValueError(f"{variable}: expected a whole number, got {raw!r}") from None
    if value < least:
        raise ValueError(f"{variable}: expected at least {least}, got {value}")
    return value


def _flag(variable: str, default: bool) -> bool:
    raw = _env(variable, "1" if default else "0").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{variable}: expected 1 or 0, got {raw!r}")


def _seconds(given: float | None, variable: str, default: float) -> float:
    value = float(given) if given is not None else float(_env(variable, repr(default)))
    if not value > 0:
        raise ValueError(f"{variable}: expected a positive number of seconds, got {value!r}")
    return value


def _milliseconds(given: float | None, variable: str, default: float) -> float:
    raw: object = given if given is not None else _env(variable, repr(default))
    try:
        value = float(str(raw))
    except ValueError:
        raise ValueError(f"{variable}: expected a number of milliseconds, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{variable}: expected a number of milliseconds, at least 0, got {raw!r}")
    return value


def _tool_job_timeout(registries: Mapping[str, ToolRegistry]) -> float:
    """Long enough for the longest tool: every attempt, the backoff between them, and a margin."""
    longest = 0.0
    for registry in registries.values():
        specs = [*registry, *([registry.fallback] if registry.fallback is not None else [])]
        for spec in specs:
            backoff = sum(min(spec.backoff_s * 2**i, 30.0) for i in range(spec.retries))
            longest = max(longest, spec.timeout_s * (spec.retries + 1) + backoff)
    return max(120.0, longest + 30.0)


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
    turn_slots: int | None = None,
    admit_lag_ms: float | None = None,
    wake: bool | None = None,
    batch: bool | None = None,
    job_timeout: float | None = None,
    stream_timeout: float | None = None,
    stream_idle_timeout: float | None = None,
    stream_headers_timeout: float | None = None,
    lease_s: float | None = None,
    shutdown_grace_s: float | None = None,
    monitor_interval_s: float = 5.0,
    retention_s: float | str | None = None,
    trim_after_s: float | str | None = None,
    keep_result_s: float | None = None,
    **arq_options: Any,
) -> dict[str, Any]:
    """Keyword arguments for incremental's ``Worker`` (``adapters._arq_worker``; ``settings`` and the
    in-process workers share them). Plain arq's ``Worker`` ignores ``turn_slots``, ``admit_lag_ms``,
    ``wake`` and ``batch``."""
    registries = _toolsets(tools)
    retention = Retention.configure(retention_s, trim_after_s)
    keep_result = _seconds(keep_result_s, "INCREMENTAL_KEEP_RESULT", 3600.0)
    client = as_model_client(model_client)
    shared: dict[str, Any] = {} if state is None else state
    limits = StreamLimits(
        headers_s=_seconds(stream_headers_timeout, "INCREMENTAL_STREAM_HEADERS_TIMEOUT", 90.0),
        idle_s=_seconds(stream_idle_timeout, "INCREMENTAL_STREAM_IDLE_TIMEOUT", 45.0),
        total_s=_seconds(stream_timeout, "INCREMENTAL_STREAM_TIMEOUT", 1200.0),
    )
    tool_timeout = _seconds(job_timeout, "INCREMENTAL_JOB_TIMEOUT", _tool_job_timeout(registries))
    lease = _seconds(lease_s, "INCREMENTAL_JOB_LEASE", 30.0)
    grace = _seconds(shutdown_grace_s, "INCREMENTAL_SHUTDOWN_GRACE", 30.0)

    async def startup(ctx: dict[str, Any]) -> None:
        known: Services | None = ctx.get("services")
        if known is not None and known.pool is ctx["redis"]:
            return  # the worker's loop was restarted after it lost Redis: everything is still here
        services = Services(
            pool=ctx["redis"],
            registries=registries,
            model_client=client,
            state=shared,
            monitor_interval_s=monitor_interval_s,
            stream_limits=limits,
            retention=retention,
        )
        if _part(ctx, "turns"):
            services.client()  # the built-in client's HTTP pool is made now, not on the way to a request
        ctx["services"] = services
        if on_startup is not None and _part(ctx, "tools"):
            await on_startup(shared)

    async def shutdown(ctx: dict[str, Any]) -> None:
        if on_shutdown is not None and _part(ctx, "tools"):
            await on_shutdown(shared)
        services: Services | None = ctx.get("services")
        if services is not None:
            await services.aclose()

    async def run_tool_job(ctx: dict[str, Any], job: dict[str, Any]) -> str:
        svc: Services = ctx["services"]
        tries = int(ctx.get("job_try") or 1)
        if tries > TOOL_TRIES:  # every earlier try was cut short: the call ends with an error result
            return await give_up_tool(svc, job, tries)
        async with job_lease(ctx["redis"], ctx.get("job_id"), lease, claimed=_claimed(ctx, lease)) as held:
            await _unless_running_elsewhere(ctx, held)
            try:
                return await run_tool(svc, job, token=held.token if held else uuid.uuid4().hex)
            except asyncio.CancelledError:
                if svc.drain.draining:  # the worker is stopping: another one runs the call
                    await asyncio.shield(_hand_back(ctx, svc, job.get("tool_use_id")))
                raise

    async def stream_turn_job(ctx: dict[str, Any], run_id: str, turn: int, generation: int = 0) -> str:
        async with job_lease(ctx["redis"], ctx.get("job_id"), lease, claimed=_claimed(ctx, lease)) as held:
            await _unless_running_elsewhere(ctx, held)
            try:
                return await stream_turn(ctx["services"], run_id, turn, generation)
            except HandedOver:
                await _hand_back(ctx, ctx["services"], None, log=False)  # the job logged why
                raise Retry() from None

    async def monitor_turn_job(ctx: dict[str, Any], run_id: str, turn: int, check: int) -> str:
        async with job_lease(ctx["redis"], ctx.get("job_id"), lease, claimed=_claimed(ctx, lease)):
            return await monitor_turn(ctx["services"], run_id, turn, check)

    async def unreadable(ctx: dict[str, Any], why: str) -> str:
        return await unreadable_job(ctx["services"], str(ctx.get("job_id")), why)

    async def trim_run_job(ctx: dict[str, Any], run_id: str) -> str:
        return await trim_run(ctx["services"], run_id)

    turns = _count(turn_slots, "INCREMENTAL_TURN_SLOTS", 100, least=0)
    tool_slots = _TOOL_SLOTS if turns else _SHARED_SLOTS
    options: dict[str, Any] = {
        "functions": [
            # arq's cap is above ours: the try after the last one records the call's result (give_up_tool).
            func(run_tool_job, name=JOB_RUN_TOOL, max_tries=TOOL_TRIES + 2, timeout=tool_timeout),
            func(stream_turn_job, name=JOB_STREAM_TURN, max_tries=5, timeout=limits.total_s + 60),
            func(monitor_turn_job, name=JOB_MONITOR_TURN, max_tries=5, timeout=60),
            func(unreadable, name=JOB_UNREADABLE, max_tries=1, timeout=60),
            func(trim_run_job, name=JOB_TRIM_RUN, max_tries=5, timeout=300),
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "job_serializer": json_serializer,
        "job_deserializer": json_deserializer,
        "poll_delay": poll_delay
        if poll_delay is not None
        else float(_env("INCREMENTAL_POLL_DELAY", "0.005")),
        "max_jobs": _count(max_jobs, "INCREMENTAL_MAX_JOBS", tool_slots, least=1),
        "turn_slots": turns,
        "admit_lag_ms": _milliseconds(admit_lag_ms, "INCREMENTAL_ADMIT_LAG_MS", 20.0),
        "wake": wake if wake is not None else _flag("INCREMENTAL_WAKE", True),
        "batch": batch if batch is not None else _flag("INCREMENTAL_BATCH", True),
        "job_timeout": tool_timeout,
        "queue_name": queue or _env("INCREMENTAL_QUEUE", default_queue_name),
        "keep_result": keep_result,
        "health_check_interval": 30,
        "lease_s": lease,
        "ctx": {_CTX: {"shutdown_grace_s": grace, "stream_timeout_s": limits.total_s}},
    }
    options.update(arq_options)
    return options


def _part(ctx: dict[str, Any], kind: str) -> bool:
    """Whether this worker runs jobs of ``kind`` ("tools" or "turns"): a worker process's two loops
    (``run_worker``) each run one kind; any other worker runs both."""
    return kind in (ctx.get(_CTX) or {}).get("runs", ("tools", "turns"))


def _claimed(ctx: dict[str, Any], lease_s: float) -> str | None:
    """The heartbeat the worker's claim of this job wrote, when that claim holds it for a lease
    (incremental's ``Worker``), else None."""
    beat = ctx.get(CLAIM_BEAT) if ctx.get(CLAIMS_LEASE) == lease_s else None
    return str(beat) if beat else None


async def _unless_running_elsewhere(ctx: dict[str, Any], held: Lease | None) -> None:
    """A redelivered job whose first execution is still alive (a Redis outage outlasted its lease) must
    not run twice: it steps back (``Retry``, not counted as a try) and looks again a lease later; once
    the first execution ends, arq drops this one."""
    if held is None or int(ctx.get("job_try") or 1) <= 1 or not await held.others_alive():
        return
    logger.info("job %s is still running elsewhere; looking again in %g s", held.job_id, held.lease_s)
    await ctx["redis"].decr(retry_key_prefix + held.job_id)
    raise Retry(defer=held.lease_s)


async def _hand_back(
    ctx: dict[str, Any], svc: Services, tool_use_id: str | None, *, log: bool = True
) -> None:
    """A job stopped by its worker's shutdown goes back to the queue: this try does not count."""
    job_id = str(ctx.get("job_id") or "")
    try:
        await ctx["redis"].decr(retry_key_prefix + job_id)
        if log and (named := _run_of(job_id)) is not None:
            run_id, turn = named
            await svc.events.append(
                JobHandedOverEvent(
                    run_id=run_id,
                    turn=turn,
                    job_id=job_id,
                    tool_use_id=tool_use_id,
                    reason="the worker is shutting down; another one runs the call",
                )
            )
    except REDIS_ERRORS as exc:
        logger.warning("could not hand job %s back cleanly: %s", job_id, exc)


def _run_of(job_id: str) -> tuple[str, int] | None:
    from .adapters._arq import run_of_job

    named = run_of_job(job_id)
    if named is None:
        return None
    run_id, turn = named
    return run_id, turn if turn is not None else 0


def settings(
    tools: Tools = None,
    *,
    redis_url: str | None = None,
    redis_outage_s: float | None = None,
    **options: Any,
) -> type:
    """An arq ``WorkerSettings`` class for ``incremental worker yourmodule.WorkerSettings`` (or ``arq``;
    see the module docstring)."""
    values = worker_options(tools, **options)
    outage = _seconds(redis_outage_s, "INCREMENTAL_REDIS_OUTAGE", DEFAULT_OUTAGE_S)
    values["redis_settings"] = resilient(
        RedisSettings.from_dsn(redis_url or _env("REDIS_URL", "redis://127.0.0.1:6379/0")), outage
    )
    return type("WorkerSettings", (), {**values, "__doc__": "incremental's arq worker settings"})


# ---------------------------------------------------------------------------------------------- running one


async def serve_worker(worker: ArqWorker) -> None:
    """Run an arq ``Worker`` until it is stopped (its ``main_task`` cancelled), through Redis outages:
    when Redis fails under arq's loop, the loop starts again (with backoff) and the jobs that were
    running go on. Returns only in burst mode."""
    delay = 0.1
    loop = asyncio.get_running_loop()
    while True:
        began = loop.time()
        worker.main_task = asyncio.create_task(worker.main(), name="incremental-worker-loop")
        try:
            await worker.main_task
            return
        except (*REDIS_ERRORS, WatchError) as exc:
            if not worker.allow_pick_jobs:
                return  # it is being stopped (drain_worker): its pool is closing
            if loop.time() - began > 30:
                delay = 0.1
            running = sum(not t.done() for t in worker.tasks.values())
            logger.warning(
                "the worker lost Redis (%s: %s); its loop restarts in %.1f s, its %d running job(s) go on",
                type(exc).__name__,
                exc,
                delay,
                running,
            )
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)


async def drain_worker(
    worker: ArqWorker, grace_s: float | None = None, streams_s: float | None = None
) -> None:
    """Stop a worker gracefully: it takes no new job; running jobs get ``grace_s`` to finish; then what can
    be is handed over (tool jobs, and streams that dispatched nothing, go back to the queue without
    using a try), streams that dispatched a call get ``streams_s`` more to end (default: their whole
    stream deadline), and whatever is left is cancelled. Then the worker is closed."""
    options = worker.ctx.get(_CTX) or {}
    grace = float(options.get("shutdown_grace_s", 30.0)) if grace_s is None else grace_s
    linger = float(options.get("stream_timeout_s", 1200.0)) if streams_s is None else streams_s
    svc: Services | None = worker.ctx.get("services")
    worker.allow_pick_jobs = False
    if svc is not None:
        svc.drain.begin()
    await _wait_for(worker, grace)
    if svc is not None:
        svc.drain.hand_over()
    handed: list[asyncio.Task[Any]] = []
    for job_id, task in list(worker.job_tasks.items()):
        if job_id.startswith("inc:tool:") and not task.done():
            task.cancel()
            if job_id in worker.tasks:
                handed.append(worker.tasks[job_id])
    # Let arq put the handed-over jobs back (its bookkeeping must finish before the pool closes), and
    # the streams that could be handed over end their wait.
    await asyncio.sleep(0)
    if handed:
        await asyncio.wait(handed, timeout=_HANDOVER_S)
    await _wait_for(worker, min(0.5, _HANDOVER_S))
    await _wait_for(worker, linger)
    current = asyncio.current_task()
    try:
        await worker.close()  # cancels what is left; arq re-raises those jobs' CancelledError
    except asyncio.CancelledError:
        if current is not None and current.cancelling():
            raise


async def _wait_for(worker: ArqWorker, seconds: float) -> None:
    running = [t for t in worker.tasks.values() if not t.done()]
    if running and seconds > 0:
        await asyncio.wait(running, timeout=seconds)


def run_worker(settings_cls: Any, **overrides: Any) -> None:
    """Run a worker of ``settings_cls`` (a ``WorkerSettings`` class) in this process until SIGTERM or
    SIGINT: reconnecting through Redis outages (``serve_worker``), stopping gracefully on the first
    signal (``drain_worker``), at once on a second one."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _tune_gc()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_run_worker(settings_cls, overrides))


def _tune_gc() -> bool:
    """Fewer and shorter garbage-collector pauses for this process, unless ``INCREMENTAL_GC`` is 0;
    returns whether it tuned them.

    A pause holds the GIL, so it stops both loops: on a worker of 100 streams a full collection took
    60 to 150 ms, and most tools that started 50 ms or more late had waited through one. What the
    process holds when it starts (modules, settings, tool sets) is moved out of the collector's scans
    for good, and the young generation is collected after 20000 allocations rather than 700, the older
    ones after 20 collections of the one below rather than 10. Measured with ``scripts/bench_load.py``
    (5 loads of 100 runs, 4 of 200): ready -> started p99 70 -> 52 ms and 159 -> 83 ms (medians)."""
    if not _flag("INCREMENTAL_GC", True):
        return False
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)
    return True


_GC_THRESHOLDS = (20_000, 20, 20)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed and ``INCREMENTAL_UVLOOP`` is not 0, else asyncio's own. A
    worker's CPU goes on its sockets and callbacks (every stream event, every Redis reply), which uvloop
    runs in C."""
    if not _flag("INCREMENTAL_UVLOOP", True):
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _run_worker(settings_cls: Any, overrides: dict[str, Any]) -> None:
    tools: _LoopThread | None = None
    if _splits(settings_cls, overrides):
        # Streams on this loop; tools on a loop of their own (see ``run_worker``). Each loop reads the
        # whole queue half as often, so the process reads it as often as one loop would.
        sweep = 2 * float(overrides.get("sweep_s", getattr(settings_cls, "sweep_s", _SWEEP_S)))
        worker = make_worker(
            settings_cls,
            handle_signals=False,
            **{**overrides, "max_jobs": 0, "sweep_s": sweep, "ctx": _ctx(settings_cls, "turns")},
        )
        tools = _LoopThread(
            lambda: make_worker(
                settings_cls,
                handle_signals=False,
                **{**overrides, "serve_turns": False, "sweep_s": sweep, "ctx": _ctx(settings_cls, "tools")},
            )
        )
        # The two loops share the GIL. A loop that wakes (a tool's reply from Redis) waits for the one
        # that holds it to let go: at most the switch interval, 5 ms by default, for each wake-up of
        # the several a tool's start takes.
        sys.setswitchinterval(min(sys.getswitchinterval(), _SWITCH_S))
        await tools.start()
        logger.info("streams run on this thread's loop; tools run on a loop of their own (a thread)")
    else:
        worker = make_worker(settings_cls, handle_signals=False, **overrides)
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Future[Any]] = []
    served = asyncio.create_task(serve_worker(worker), name="incremental-worker")

    def stop(at_once: bool) -> None:
        limits: tuple[float | None, float | None] = (0, 0) if at_once else (None, None)
        stopping.append(asyncio.create_task(drain_worker(worker, *limits)))
        if tools is not None:
            stopping.append(asyncio.ensure_future(tools.run(lambda w: drain_worker(w, *limits))))

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if not stopping:
            logger.info("%s: finishing running jobs, then stopping", name)
            stop(at_once=False)
        else:
            logger.info("%s again: handing over what can be, cancelling the rest", name)
            stop(at_once=True)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        parts: list[asyncio.Future[Any]] = [served] if tools is None else [served, tools.done]
        await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
        if not stopping and any(p.done() for p in parts) and tools is not None:
            # One loop stopped on its own (it failed): the other one stops too, and the failure is raised.
            logger.error("a worker loop of this process stopped; stopping the other one")
            stop(at_once=False)
        if stopping:
            await asyncio.gather(*stopping, return_exceptions=True)
            await asyncio.wait(parts)
        elif not served.cancelled() and served.exception() is None:
            await worker.close()  # burst mode: the queue is empty
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    for part in [served] if tools is None else [served, tools.done]:
        failure = None if part.cancelled() or not part.done() else part.exception()
        if failure is not None:
            raise failure


_SWEEP_S = 2.0  # incremental's Worker's default ``sweep_s``
_SWITCH_S = 0.0005  # the GIL's switch interval when a process runs two loops (see ``_run_worker``)


def _splits(settings_cls: Any, overrides: dict[str, Any]) -> bool:
    """Whether this process runs its tools on a loop of their own (``INCREMENTAL_TOOL_LOOP``): when its
    streams have slots of their own, it waits for pushes, and it is not a burst."""

    def value(name: str, default: Any) -> Any:
        return overrides.get(name, getattr(settings_cls, name, default))

    return (
        _flag("INCREMENTAL_TOOL_LOOP", True)
        and int(value("turn_slots", 0)) > 0
        and int(value("max_jobs", 10)) > 0
        and bool(value("wake", True))
        and not value("burst", False)
    )


def _ctx(settings_cls: Any, runs: str) -> dict[str, Any]:
    """A worker's own ctx (the settings' one copied: arq keeps its connections and services there),
    saying which kind of job it runs (``_part``)."""
    ctx = dict(getattr(settings_cls, "ctx", None) or {})
    ctx[_CTX] = {**(ctx.get(_CTX) or {}), "runs": (runs,)}
    return ctx


class _LoopThread:
    """A worker served on an event loop of its own, in a thread of this process: ``start`` it, ``run``
    a coroutine on its loop, and ``done`` (on the loop that started it) resolves when it stops."""

    def __init__(self, make: Callable[[], ArqWorker]) -> None:
        self._make = make
        self.worker: ArqWorker | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._made = threading.Event()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        caller = asyncio.get_running_loop()

        def ended(failure: BaseException | None) -> None:
            if self.done.done():
                return
            if failure is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(failure)

        def main() -> None:
            failure: BaseException | None = None
            try:
                with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                    runner.run(self._serve())
            except asyncio.CancelledError:
                pass  # stopped (``drain_worker`` cancels the worker's loop)
            except BaseException as exc:
                failure = exc
            finally:
                self._made.set()
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
                caller.call_soon_threadsafe(ended, failure)

        threading.Thread(target=main, name="incremental-tools", daemon=True).start()
        await asyncio.to_thread(self._made.wait)
        if self.worker is None:
            await self.done  # it failed before its worker was made: raises why

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            self.worker = self._make()
        finally:
            self._made.set()
        await serve_worker(self.worker)

    async def run(self, job: Callable[[ArqWorker], Awaitable[Any]]) -> Any:
        """``job(worker)`` on the thread's loop, awaited from the caller's."""
        assert self.loop is not None and self.worker is not None
        worker = self.worker

        async def call() -> Any:
            return await job(worker)

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), self.loop))


async def create_pool(redis_url: str | None = None) -> ArqRedis:
    """An arq pool that enqueues as JSON, as incremental's workers read (arq's own default is pickle);
    its commands ride out a Redis outage (``INCREMENTAL_REDIS_OUTAGE``)."""
    from .adapters._arq import connect

    url = redis_url or _env("REDIS_URL", "redis://127.0.0.1:6379/0")
    outage = _seconds(None, "INCREMENTAL_REDIS_OUTAGE", DEFAULT_OUTAGE_S)
    return await connect(url, os.environ.get("INCREMENTAL_QUEUE") or None, outage_s=outage)
