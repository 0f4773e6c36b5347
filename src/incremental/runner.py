"""The front door: start runs, follow them live, steer them, and get their result.

::

    from incremental import Runner, ToolRegistry

    async with Runner(tools=registry) as runner:      # a private redis-server and one in-process worker
        run = await runner.start(messages, model="claude-sonnet-4-5", max_tokens=2048, temperature=0.2)
        async for event in run.events():             # incremental.events models, live, in log order
            ...
        result = await run.result()                  # RunResult: the conversation, every tool call, usage

- ``Runner(tools=..., redis_url=None, workers=N, model_client=..., **worker_options)``. With no
  ``redis_url`` (nor ``pool``) it starts a private ``redis-server`` and ``workers`` in-process arq
  workers (default 1), and stops them on exit. With ``redis_url`` it uses that Redis and starts no
  workers unless ``workers=`` says so: your ``arq yourmodule.WorkerSettings`` processes do the work.
- ``runner.start(messages, **request)``: every Messages API field but ``messages`` and ``stream`` goes
  to the model verbatim; the run's own options are keywords too (``max_turns``, ``turn_timeout_s``,
  ``toolset``, ``simulate_s``, ``workspace``, ``betas``, ``tags``, ``run_id``). A malformed request
  raises ``RequestError`` before anything is stored.
- ``runner.attach(run_id)`` follows a run started elsewhere (another process, the HTTP service).

It is the same path everywhere: the embedded default runs the same Lua scripts and arq jobs as a fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

from arq.connections import ArqRedis, RedisSettings
from pydantic import BaseModel, Field

from .adapters._arq import DEFAULT_OUTAGE_S, connect, json_deserializer, json_serializer, resilient
from .adapters._arq_worker import Worker
from .adapters._redis_server import RedisServer
from .adapters._retention import Retention
from .events import RunEventModel, parse_event
from .exceptions import RequestError, RunNotFoundError
from .pipeline._control import cancel_run, cancel_tool, pause_run, resume_run
from .pipeline._run import RUN_OPTIONS, check_request, start_run
from .pipeline._services import Services
from .pipeline._view import RunView
from .tools import ToolRegistry, ToolResult
from .worker import Hook, Tools, _toolsets, drain_worker, serve_worker, worker_options

__all__ = [
    "ErrorInfo",
    "Run",
    "RunNotFoundError",
    "RunResult",
    "Runner",
    "ToolCallResult",
    "run",
    "stop_worker",
]

logger = logging.getLogger(__name__)

_READ_BLOCK_MS = 1000
_WORKER_GRACE_S = 2.0  # in-process workers' running jobs get this long to return when the runner closes


class ErrorInfo(BaseModel):
    type: str = Field(description="The error that ended the run, e.g. APIStatusError or UpstreamError.")
    message: str = Field(description="What went wrong, for people.")


class ToolCallResult(BaseModel):
    """One tool call of a run and its one result."""

    id: str
    name: str
    turn: int
    status: str = Field(description="ok, error, timeout, refused, cancelled, missing, crashed; else its step")
    content: str | None = Field(description="The tool_result content the model read (None: no result)")
    is_error: bool | None
    executions: int = Field(description="How many times a worker started it (more after a redelivery)")
    ready_at: float | None = Field(description="Wall time its input was complete and valid")
    enqueued_at: float | None = Field(default=None, description="Wall time its job was queued for a worker")
    started_at: float | None
    finished_at: float | None


class RunResult(BaseModel):
    """A finished run. JSON-serializable (``model_dump(mode="json")``).

    ``messages`` is the whole conversation in the API's shape, ready for a new user message and another
    ``start``: when the run stopped at its turn limit, it ends with the user message of the last turn's
    tool results. ``state``: completed (end_turn, stop_sequence), failed, cancelled, or ended (any other
    stop: max_tokens, refusal, the turn limit...).
    """

    id: str
    state: Literal["completed", "failed", "cancelled", "ended", "running"]
    reason: str | None
    stop_reason: str | None
    error: ErrorInfo | None
    messages: list[dict[str, Any]]
    message: dict[str, Any] | None = Field(description="The final assistant message")
    usage: dict[str, Any] = Field(
        description="'turns': each turn's usage as the API sent it; 'total': summed"
    )
    tools: list[ToolCallResult]
    summary: dict[str, Any] = Field(description="Timings and counterfactuals, as incremental replay --json")

    @property
    def text(self) -> str:
        """The final message's text blocks, joined by blank lines."""
        blocks = (self.message or {}).get("content") or []
        if isinstance(blocks, str):
            return blocks
        return "\n\n".join(
            b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"
        )


_STATE = {"completed": "completed", "failed": "failed", "cancelled": "cancelled", "stopped": "ended"}


class Run:
    """A handle on one run: follow it, wait for it, steer it. Made by ``Runner.start`` or ``attach``."""

    def __init__(self, runner: Runner, run_id: str) -> None:
        self._runner = runner
        self.id = run_id

    def __repr__(self) -> str:
        return f"<Run {self.id}>"

    async def events(self, after: str | None = None) -> AsyncIterator[RunEventModel]:
        """The run's events, live and in order, from the start or after the entry id ``after`` (an
        event's ``entry_id``). Ends once the run has ended and nothing more is coming."""
        async for _entry_id, event, _view in self._follow(after):
            yield event

    async def _follow(self, after: str | None) -> AsyncIterator[tuple[str, RunEventModel, RunView]]:
        svc = self._runner._services()
        if await svc.store.run(self.id) is None and await svc.events.first_id(self.id) is None:
            raise RunNotFoundError(f"no run {self.id!r} in this Redis (never started, or expired)")
        view = RunView(self.id)
        position = "0-0"
        quiet_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            batch = await svc.events.read(self.id, position, block_ms=_READ_BLOCK_MS)
            for entry_id, data in batch:
                position = entry_id
                view.apply(data, entry_id)
                if after is not None and _not_after(entry_id, after):
                    continue
                yield entry_id, parse_event(data, entry_id=entry_id), view
            if view.settled:
                return
            if view.ended:
                # Ended; calls still in flight report soon. Don't wait for ever on a worker that died.
                now = loop.time()
                quiet_since = now if batch or quiet_since is None else quiet_since
                if now - quiet_since >= self._runner.settle_s:
                    return
            elif not batch and await svc.store.run(self.id) is None:
                raise RunNotFoundError(f"run {self.id!r} expired while it was followed")

    async def result(self, timeout: float | None = None) -> RunResult:
        """Wait for the run to end (at most ``timeout`` seconds: ``TimeoutError``) and return its result."""
        async with asyncio.timeout(timeout):
            view = RunView(self.id)
            async for _entry_id, _event, followed in self._follow(None):
                view = followed
            return await self._result(view)

    async def _result(self, view: RunView) -> RunResult:
        svc = self._runner._services()
        messages = await svc.store.messages(self.id)
        results: dict[str, ToolResult] = {}
        for number, turn in view.turns.items():
            if turn.tools:
                results.update(await svc.store.results(self.id, number))
        last = messages[-1] if messages else None
        if view.state == "stopped" and last is not None and last.get("role") == "assistant":
            asked = [
                str(b["id"])
                for b in last.get("content") or []
                if isinstance(b, dict) and b.get("type") == "tool_use" and "id" in b
            ]
            if asked and all(tool_id in results for tool_id in asked):
                messages.append({"role": "user", "content": [results[i].to_block() for i in asked]})
        final = next((m for m in reversed(messages) if m.get("role") == "assistant"), None)
        usage_turns = [{"turn": n, **(t.usage or {})} for n, t in sorted(view.turns.items()) if t.usage]
        total: dict[str, int] = {}
        for usage in usage_turns:
            for key, value in usage.items():
                if key != "turn" and isinstance(value, int) and not isinstance(value, bool):
                    total[key] = total.get(key, 0) + value
        tools = []
        for tool in sorted(
            view.tools.values(), key=lambda t: (t.turn, t.index if t.index is not None else 0)
        ):
            recorded = results.get(tool.tool_use_id)
            tools.append(
                ToolCallResult(
                    id=tool.tool_use_id,
                    name=tool.name,
                    turn=tool.turn,
                    status=recorded.status if recorded else (tool.result_status or tool.status),
                    content=recorded.content if recorded else None,
                    is_error=recorded.is_error if recorded else tool.is_error,
                    executions=tool.executions,
                    ready_at=tool.ready_at,
                    enqueued_at=tool.enqueued_at,
                    started_at=(recorded.started_at if recorded else None) or tool.started_at,
                    finished_at=(recorded.finished_at if recorded else None) or tool.reported_at,
                )
            )
        stop_reason = next(
            (t.stop_reason for _, t in sorted(view.turns.items(), reverse=True) if t.stop_reason), None
        )
        state = _STATE.get(view.state, "running")
        error = (
            ErrorInfo(type=view.error_type or "RunFailed", message=view.reason or "the run failed")
            if state == "failed"
            else None
        )
        return RunResult(
            id=self.id,
            state=state,  # type: ignore[arg-type]
            reason=view.reason,
            stop_reason=stop_reason,
            error=error,
            messages=messages,
            message=final,
            usage={"turns": usage_turns, "total": total},
            tools=tools,
            summary=view.summary(),
        )

    async def view(self) -> RunView:
        """The run's state now, folded from its whole log."""
        svc = self._runner._services()
        return RunView.fold(self.id, [data for _, data in await svc.events.entries(self.id)])

    async def cancel(self, reason: str = "cancelled by request") -> bool:
        """Cancel the run: False when it had already ended."""
        return await cancel_run(self._runner._services(), self.id, reason)

    async def cancel_tool(self, tool_use_id: str, reason: str = "cancelled by request") -> str:
        """Cancel one call: ``"cancelled"`` (it never runs), ``"signalled"`` (told to stop), or why not."""
        return await cancel_tool(self._runner._services(), self.id, tool_use_id, reason)

    async def pause(self) -> bool:
        return await pause_run(self._runner._services(), self.id)

    async def resume(self) -> bool:
        return await resume_run(self._runner._services(), self.id)


def _not_after(entry_id: str, after: str) -> bool:
    from .adapters._eventlog import compare_ids

    return compare_ids(entry_id, after) <= 0


def _json_pool(pool: ArqRedis, queue: str | None) -> ArqRedis:
    """The user's arq pool, on the same connections, enqueuing JSON (arq's default is pickle)."""
    return ArqRedis(
        connection_pool=pool.connection_pool,
        job_serializer=json_serializer,
        job_deserializer=json_deserializer,
        default_queue_name=queue or pool.default_queue_name,
        expires_extra_ms=pool.expires_extra_ms,
    )


def _settings_of(pool: ArqRedis) -> RedisSettings:
    kw = pool.connection_pool.connection_kwargs
    settings = RedisSettings(
        host=kw.get("host", "localhost"),
        port=int(kw.get("port", 6379)),
        database=int(kw.get("db", 0)),
        username=kw.get("username"),
        password=kw.get("password"),
    )
    return resilient(settings, DEFAULT_OUTAGE_S)


async def stop_worker(worker: Worker, grace_s: float = _WORKER_GRACE_S) -> None:
    """Let an in-process worker's running jobs finish (for ``grace_s``), hand over what can be (tool
    jobs, and streams that dispatched nothing, go back to the queue for other workers without using a
    try), cancel the rest, and close it."""
    await drain_worker(worker, grace_s, 0)


class Runner:
    """Starts and follows runs; see the module docstring. Use ``async with`` (or ``open``/``aclose``).

    ``tools``: a ``ToolRegistry`` or tool sets by name, for the in-process workers and for checking
    tool names at ``start``. ``model_client``: the in-process workers' (the built-in client from the
    environment when None; a ``MessagesClient``; or your ``anthropic.AsyncAnthropic``). ``on_startup``,
    ``on_shutdown`` and ``state``: the in-process workers' hooks and tool state. ``queue``: the arq queue
    this runner's runs and workers use (else arq's default): every worker on a queue must have the same
    tool sets and model client, so runners that differ keep to queues of their own. Other keywords go to the
    in-process workers (``incremental.worker.worker_options``); ``retention_s`` and ``trim_after_s``
    (there) are also what this runner's runs are recorded with, workers or not. ``settle_s``: after a
    run ends, how long ``events`` and ``result`` wait for calls still in flight to report before they
    give up on them.
    """

    def __init__(
        self,
        tools: Tools = None,
        *,
        redis_url: str | None = None,
        pool: ArqRedis | None = None,
        workers: int | None = None,
        model_client: Any = None,
        on_startup: Hook | None = None,
        on_shutdown: Hook | None = None,
        state: dict[str, Any] | None = None,
        queue: str | None = None,
        settle_s: float = 5.0,
        **worker_kwargs: Any,
    ) -> None:
        if redis_url is not None and pool is not None:
            raise ValueError("give redis_url or pool, not both")
        self.tools = _toolsets(tools)
        self.redis_url = redis_url
        self.queue = queue or os.environ.get("INCREMENTAL_QUEUE") or None
        self.settle_s = settle_s
        self._given_pool = pool
        own = redis_url is None and pool is None
        self.workers = workers if workers is not None else (1 if own else 0)
        if self.workers < 0:
            raise ValueError(f"workers must be 0 or more, got {self.workers}")
        self._worker_options = dict(
            model_client=model_client,
            on_startup=on_startup,
            on_shutdown=on_shutdown,
            state=state,
            queue=queue,
            **worker_kwargs,
        )
        # What this runner's runs are recorded with (the retention keywords, else the variables).
        self.retention = Retention.configure(
            worker_kwargs.get("retention_s"), worker_kwargs.get("trim_after_s")
        )
        if self.workers:
            worker_options(self.tools, **self._worker_options)  # a bad option fails here, not in a task
        self._server: RedisServer | None = None
        self._pool: ArqRedis | None = None
        self._svc: Services | None = None
        self._workers: list[Worker] = []
        self._tasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        where = "private redis-server" if self._server else (self.redis_url or "a given pool")
        return f"<Runner {where}, {len(self._workers)} in-process worker(s), tool sets {sorted(self.tools)}>"

    async def __aenter__(self) -> Runner:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Connect (starting the private redis-server first, if this runner has one) and start workers."""
        if self._svc is not None:
            return
        try:
            if self._given_pool is not None:
                self._pool = _json_pool(self._given_pool, self.queue)
                settings = _settings_of(self._given_pool)
            else:
                url = self.redis_url
                if url is None:
                    self._server = RedisServer()
                    url = await asyncio.to_thread(self._server.start)
                    self.redis_url = url
                self._pool = await connect(url, self.queue)
                settings = resilient(RedisSettings.from_dsn(url), DEFAULT_OUTAGE_S)
            await self._pool.ping()
            self._svc = Services(pool=self._pool, registries=self.tools, retention=self.retention)
            for _ in range(self.workers):
                worker = Worker(
                    **worker_options(self.tools, **self._worker_options),
                    redis_settings=settings,
                    handle_signals=False,
                )
                self._workers.append(worker)
                # serve_worker, not arq's own loop: a worker that loses Redis reconnects, jobs and all.
                self._tasks.append(asyncio.create_task(serve_worker(worker), name="incremental-worker"))
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop the in-process workers (their running jobs get a short grace), disconnect, stop Redis."""
        for worker in self._workers:
            with contextlib.suppress(Exception):
                await stop_worker(worker)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._workers.clear()
        self._tasks.clear()
        if self._svc is not None:
            await self._svc.aclose()
            self._svc = None
        if self._pool is not None:
            if self._given_pool is None:
                await self._pool.aclose()
            self._pool = None
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)
            self._server = None
            self.redis_url = None

    def _services(self) -> Services:
        if self._svc is None:
            raise RuntimeError("this Runner is not open: use `async with Runner(...) as runner:`")
        return self._svc

    @property
    def pool(self) -> ArqRedis:
        """The runner's arq pool (JSON jobs)."""
        return self._services().pool

    async def start(
        self,
        messages: list[dict[str, Any]],
        *,
        run_id: str | None = None,
        _record: Mapping[str, str] | None = None,
        **request: Any,
    ) -> Run:
        """Start a run; returns its handle at once. See the module docstring for what ``request`` takes."""
        svc = self._services()
        options = {k: request.pop(k) for k in list(request) if k in RUN_OPTIONS}
        config = check_request(messages, request, **options)
        self._check_tools(config.toolset, config.request.get("tools"))
        run_id = await start_run(
            svc.store, svc.events, svc.pool, config, messages, run_id=run_id, record=dict(_record or {})
        )
        return Run(self, run_id)

    def _check_tools(self, toolset: str | None, tools: Any) -> None:
        """Names checked here when this runner knows the tool set; else the worker checks them."""
        if not self.tools:
            return
        if toolset is None:
            if len(self.tools) != 1:
                raise RequestError(f"toolset: name one of {sorted(self.tools)}")
            [registry] = self.tools.values()
        elif toolset in self.tools:
            registry = self.tools[toolset]
        else:
            if self.workers:
                raise RequestError(f"toolset: no tool set {toolset!r} (this runner has {sorted(self.tools)})")
            return
        for name in tools or []:
            if isinstance(name, str) and name not in registry:
                raise RequestError(f"tools: no tool {name!r} in this tool set (it has {registry.names()})")

    def attach(self, run_id: str) -> Run:
        """A handle on a run started elsewhere (``events`` and ``result`` raise ``RunNotFoundError`` if
        there is no such run)."""
        self._services()
        return Run(self, run_id)

    async def run(
        self, messages: list[dict[str, Any]], *, timeout: float | None = None, **request: Any
    ) -> RunResult:
        """Start a run and wait for its result."""
        started = await self.start(messages, **request)
        return await started.result(timeout)


async def run(
    messages: list[dict[str, Any]],
    *,
    tools: ToolRegistry | Mapping[str, ToolRegistry] | None = None,
    model_client: Any = None,
    timeout: float | None = None,
    **request: Any,
) -> RunResult:
    """One run on the embedded default (a private redis-server, one in-process worker), to its end."""
    async with Runner(tools=tools, model_client=model_client) as runner:
        return await runner.run(messages, timeout=timeout, **request)
