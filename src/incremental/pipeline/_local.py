"""The in-process runner: the same pipeline and jobs, with no Redis and no workers.

For users who run no workers, ``LocalServices`` swaps the three IO parts of ``Services`` for in-memory
ones and runs the unchanged job coroutines (``stream_turn``, ``run_tool``, ``monitor_turn``) as asyncio
tasks on the current event loop::

    summary = await run_local(RunConfig(...), [{"role": "user", "content": "..."}], registry=my_tools)

    async with LocalServices(registry=my_tools) as services:  # several runs, one set of tasks
        run_id = await services.start_run(config, messages)
        events = await services.follow(run_id, on_event)   # in order, up to the run's final event

- ``MemoryTurnStore`` keeps the ``TurnStore`` records (run, messages, turns, result ledger, execution
  counts, concurrency chains, the tool index, held jobs, cancels) in dicts, as JSON strings like Redis
  holds them.
- ``MemoryControl`` is the control channel (cancels reaching running jobs), in memory.
- ``MemoryEventLog`` keeps each run's events in order, with stream ids ``"1-0"``, ``"2-0"``, ...;
  ``read(..., block_ms=...)`` waits on an ``asyncio.Event`` that ``append`` sets (no polling).
- ``LocalServices`` runs each job as a task, deduplicated by the same deterministic job ids arq uses
  (the same id twice runs once), tools bounded by ``max_concurrent``, the monitor after its deferral.

Why the memory store is atomic. On Redis, exactly-once continuation rests on Lua scripts: each one
reads and writes a turn's keys with no other client in between. Here every ``MemoryTurnStore`` method
is a coroutine whose body never awaits, so once the event loop starts running it, the body runs to its
end before any other task runs: its reads and writes form one step, just like a script. Each method
mirrors its script line by line (``_ADD_RESULT``, ``_SEAL``, ``_EXPIRE``...), so exactly one caller sees
``"continue"``. This holds for one event loop in one thread, the only place these objects are used.

What differs from arq, on purpose: nothing survives the process (no redelivery, nothing to redeliver
to); a job that raises does not leave its run waiting (a tool job gets an ``error`` result, a stream or
monitor job fails the run); ``ToolJob.queue`` is ignored (every tool runs here).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..adapters._arq import ToolJob, stream_job_id
from ..adapters._control import MemoryControl
from ..adapters._eventlog import EVENT_SCHEMA_VERSION, EventLog
from ..adapters._store import RunRecord, TurnStore
from ..tools import ToolRegistry, ToolResult, simulated_registry
from ._flow import end_run, finish_result
from ._jobs import monitor_turn, run_tool, stream_turn
from ._run import RunConfig
from ._services import DEFAULT_TOOLSETS, Services, env_toolsets, shared_http_client
from ._summary import summarize

if TYPE_CHECKING:
    from arq.connections import ArqRedis

__all__ = ["LocalServices", "MemoryEventLog", "MemoryTurnStore", "replay_local", "run_local"]

logger = logging.getLogger(__name__)

EventCallback = Callable[[dict[str, Any]], Awaitable[None] | None]

_FINAL_EVENTS = frozenset({"run_completed", "run_failed", "run_ended"})
_CLOSE_GRACE_S = 2.0  # as replay's workers: jobs still running when a run ends get this long to return
_WATCHDOG_MS = 1000  # follow(): after this long without events, check that something can still move


# ---------------------------------------------------------------------------------------------- store


class MemoryTurnStore(TurnStore):
    """``TurnStore`` in memory. Every method body is free of ``await``: one atomic step (module docstring).

    It subclasses ``TurnStore`` only so that ``Services.store`` keeps its type; it overrides every method
    and has no Redis connection.
    """

    def __init__(self) -> None:  # no super().__init__(): there is no Redis to register scripts on
        self._runs: dict[str, dict[str, str]] = {}  # inc:run:{run}
        self._messages: dict[str, str] = {}  # inc:run:{run}:messages (JSON)
        self._turns: dict[tuple[str, int], dict[str, str]] = {}  # inc:turn:{run}:{n}
        self._results: dict[tuple[str, int], dict[str, str]] = {}  # ...:results, id -> ToolResult JSON
        self._executions: dict[tuple[str, str], int] = {}  # inc:exec:{run}:{id}
        self._chains: dict[tuple[str, str], list[str]] = {}  # inc:chain:{run}:{key}, job JSON
        self._tools: dict[tuple[str, str], str] = {}  # inc:run:{run}:tools, id -> JSON {turn, name}
        self._held: dict[str, list[str]] = {}  # inc:run:{run}:held, job JSON
        self._cancels: dict[tuple[str, str], str] = {}  # inc:run:{run}:cancels, id -> reason
        self._generations: dict[tuple[str, str], int] = {}  # inc:run:{run}:generations

    def drop_run(self, run_id: str) -> None:
        """Forget everything about a run (Redis lets such keys expire; memory needs telling)."""
        self._runs.pop(run_id, None)
        self._messages.pop(run_id, None)
        self._held.pop(run_id, None)
        for turns in (self._turns, self._results):
            for turn_key in [k for k in turns if k[0] == run_id]:
                del turns[turn_key]
        named_maps: tuple[dict[tuple[str, str], Any], ...] = (
            self._executions,
            self._chains,
            self._tools,
            self._cancels,
            self._generations,
        )
        for named in named_maps:
            for name_key in [k for k in named if k[0] == run_id]:
                del named[name_key]

    # ------------------------------------------------------------ runs

    async def create_run(self, run_id: str, config: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        record = self._runs.setdefault(run_id, {})
        record.update(config=json.dumps(config), state="running", created_at=repr(time.time()))
        self._messages[run_id] = json.dumps(messages)

    async def run(self, run_id: str) -> RunRecord | None:
        raw = self._runs.get(run_id)
        if not raw:
            return None
        record = RunRecord(raw)
        record["config"] = json.loads(raw.get("config") or "{}")
        return record

    async def end_run(self, run_id: str, state: str, reason: str) -> bool:
        record = self._runs.get(run_id)  # _END_RUN
        if record is None or record.get("state") != "running":
            return False
        record.update(state=state, reason=reason, ended_at=repr(time.time()))
        return True

    async def messages(self, run_id: str) -> list[dict[str, Any]]:
        raw = self._messages.get(run_id)
        value: list[dict[str, Any]] = json.loads(raw) if raw else []
        return value

    async def set_messages(self, run_id: str, messages: list[dict[str, Any]]) -> None:
        self._messages[run_id] = json.dumps(messages)

    # ------------------------------------------------------------ turns

    async def turn(self, run_id: str, turn: int) -> dict[str, str]:
        return dict(self._turns.get((run_id, turn), {}))

    async def claim_stream(self, run_id: str, turn: int) -> bool:
        return await self.open_stream(run_id, turn) == "claimed"

    async def open_stream(self, run_id: str, turn: int, generation: int = 0, *, hold: bool = False) -> str:
        record = self._turns.setdefault((run_id, turn), {})  # _OPEN_STREAM
        if generation < int(record.get("stream_generation") or "0"):
            return "stale"
        run = self._runs.setdefault(run_id, {})
        if hold and "stream_started" not in record and self._paused_and_running(run_id):
            run["pending"] = json.dumps({"turn": turn, "trigger": "stream", "sent": True})
            return "paused"
        run["turn"] = str(turn)
        if "stream_started" in record:
            return "taken"
        record["stream_started"] = repr(time.time())
        return "claimed"

    async def next_stream_generation(self, run_id: str, turn: int) -> int:
        record = self._turns.setdefault((run_id, turn), {})
        generation = int(record.get("stream_generation") or "0") + 1
        record["stream_generation"] = str(generation)
        return generation

    async def update_turn(self, run_id: str, turn: int, **fields: str) -> None:
        self._turns.setdefault((run_id, turn), {}).update(fields)

    async def add_result(self, run_id: str, turn: int, result: ToolResult) -> str:
        record = self._turns.setdefault((run_id, turn), {})  # _ADD_RESULT
        results = self._results.setdefault((run_id, turn), {})
        if result.tool_use_id in results:
            return "dup"
        results[result.tool_use_id] = result.to_json()
        if (
            record.get("sealed") == "1"
            and "continued" not in record
            and len(results) >= int(record.get("n_expected") or "0")
        ):
            record.update(continued="1", continued_at=repr(time.time()), status="complete")
            return "continue"
        return "ok"

    async def result(self, run_id: str, turn: int, tool_use_id: str) -> ToolResult | None:
        raw = self._results.get((run_id, turn), {}).get(tool_use_id)
        return ToolResult.from_json(raw) if raw else None

    async def results(self, run_id: str, turn: int) -> dict[str, ToolResult]:
        return {k: ToolResult.from_json(v) for k, v in self._results.get((run_id, turn), {}).items()}

    async def seal(self, run_id: str, turn: int, expected: list[str], deadline: float) -> str:
        record = self._turns.setdefault((run_id, turn), {})  # _SEAL
        if record.get("sealed") == "1":
            return "already"
        now = repr(time.time())
        record.update(
            sealed="1",
            expected=json.dumps(expected),
            n_expected=str(len(expected)),
            deadline=repr(deadline),
            status="sealed",
            sealed_at=now,
        )
        if "continued" not in record and len(self._results.get((run_id, turn), {})) >= len(expected):
            record.update(continued="1", continued_at=now, status="complete")
            return "continue"
        return "ok"

    async def expire_turn(
        self, run_id: str, turn: int, missing: list[ToolResult], *, seen_deadline: str | None = None
    ) -> str:
        record = self._turns.setdefault((run_id, turn), {})  # _EXPIRE
        if "continued" in record:
            return "already"
        if record.get("sealed") != "1":
            return "unsealed"
        if seen_deadline and record.get("deadline") != seen_deadline:
            return "moved"
        run = self._runs.get(run_id, {})
        if run.get("paused") == "1":
            since = run.get("paused_at", "")
            if record.get("deadline_paused") == since:
                return "paused"
            record["deadline_paused"] = since
            return "held"
        results = self._results.setdefault((run_id, turn), {})
        for result in missing:
            results.setdefault(result.tool_use_id, result.to_json())
        record.update(continued="1", continued_at=repr(time.time()), status="deadline")
        return "continue"

    async def block_continuation(self, run_id: str, turn: int, status: str, reason: str) -> bool:
        record = self._turns.setdefault((run_id, turn), {})  # _BLOCK
        if "continued" in record:
            return False
        record.update(continued="blocked", status=status, reason=reason)
        return True

    async def count_execution(self, run_id: str, tool_use_id: str) -> int:
        count = self._executions.get((run_id, tool_use_id), 0) + 1
        self._executions[(run_id, tool_use_id)] = count
        return count

    async def executions(self, run_id: str, tool_use_id: str) -> int:
        return self._executions.get((run_id, tool_use_id), 0)

    # ------------------------------------------------------------ concurrency keys

    async def chain_add(self, run_id: str, key: str, job: dict[str, Any]) -> bool:
        chain = self._chains.setdefault((run_id, key), [])  # _CHAIN_ADD
        chain.append(json.dumps(job))
        return len(chain) == 1

    async def chain_next(self, run_id: str, key: str, tool_use_id: str) -> dict[str, Any] | None:
        chain = self._chains.get((run_id, key))  # _CHAIN_NEXT
        if not chain or json.loads(chain[0])["tool_use_id"] != tool_use_id:
            return None
        chain.pop(0)
        if not chain:
            del self._chains[(run_id, key)]
            return None
        value: dict[str, Any] = json.loads(chain[0])
        return value

    # ------------------------------------------------------------ control: pause, resume, cancel

    def _paused_and_running(self, run_id: str) -> bool:
        record = self._runs.get(run_id, {})
        return record.get("state") == "running" and record.get("paused") == "1"

    async def note_tool(self, run_id: str, turn: int, tool_use_id: str, name: str) -> None:
        self._tools[(run_id, tool_use_id)] = json.dumps({"turn": turn, "name": name})

    async def tool_info(self, run_id: str, tool_use_id: str) -> dict[str, Any] | None:
        raw = self._tools.get((run_id, tool_use_id))
        value: dict[str, Any] | None = json.loads(raw) if raw else None
        return value

    async def is_paused(self, run_id: str) -> bool:
        return self._runs.get(run_id, {}).get("paused") == "1"

    async def hold_if_paused(self, run_id: str, job: dict[str, Any]) -> bool:
        if not self._paused_and_running(run_id):  # _HOLD
            return False
        self._held.setdefault(run_id, []).append(json.dumps(job))
        generation = int(job.get("generation") or 0)
        if generation > 0:
            self._generations[(run_id, str(job["tool_use_id"]))] = generation
        return True

    async def start_tool(self, run_id: str, turn: int, tool_use_id: str, generation: int) -> str:
        if tool_use_id in self._results.get((run_id, turn), {}):  # _START_TOOL
            return "done"
        if generation < self._generations.get((run_id, tool_use_id), 0):
            return "stale"
        run = self._runs.get(run_id, {})
        if run.get("state") != "running":
            return "ended"
        if self._turns.get((run_id, turn), {}).get("continued") == "blocked":
            return "ended"
        if (run_id, tool_use_id) in self._cancels:
            return "cancelled"
        if run.get("paused") == "1":
            return "paused"
        count = self._executions.get((run_id, tool_use_id), 0) + 1
        self._executions[(run_id, tool_use_id)] = count
        return str(count)

    async def cancel_tool(self, run_id: str, turn: int, tool_use_id: str, reason: str) -> str:
        if tool_use_id in self._results.get((run_id, turn), {}):  # _CANCEL_TOOL
            return "finished"
        self._cancels[(run_id, tool_use_id)] = reason
        return "signalled" if self._executions.get((run_id, tool_use_id), 0) > 0 else "cancelled"

    async def pause(self, run_id: str) -> int | None:
        record = self._runs.get(run_id)  # _PAUSE
        if record is None or record.get("state") != "running" or record.get("paused") == "1":
            return None
        record.update(paused="1", paused_at=repr(time.time()))
        return int(record.get("turn") or 0)

    async def release(
        self, run_id: str, *, resume: bool
    ) -> tuple[dict[str, Any] | None, int, list[dict[str, Any]]] | None:
        if resume and not self._paused_and_running(run_id):  # _RELEASE
            return None
        record = self._runs.get(run_id, {})
        turn = self._turns.get((run_id, int(record.get("turn") or 0)), {})
        if resume and turn.get("sealed") == "1" and "continued" not in turn:
            now = time.time()
            since = max(float(record.get("paused_at") or now), float(turn.get("sealed_at") or 0))
            if now > since:
                turn["deadline"] = f"{float(turn.get('deadline') or 0) + now - since:.6f}"
        pending_raw = record.pop("pending", "")
        record.pop("paused", None)
        record.pop("paused_at", None)
        jobs = self._held.pop(run_id, [])
        pending: dict[str, Any] | None = json.loads(pending_raw) if pending_raw else None
        return pending, int(record.get("turn") or 0), [json.loads(job) for job in jobs]

    async def pend_continuation(self, run_id: str, next_turn: int, trigger: str) -> str:
        record = self._runs.get(run_id, {})  # _PEND
        if record.get("state") != "running":
            return "ended"
        completed = self._turns.setdefault((run_id, next_turn - 1), {})
        if "continue_sent" in completed:
            return "sent"
        if record.get("paused") != "1":
            completed["continue_sent"] = repr(time.time())
            return "go"
        if "stream_started" in self._turns.get((run_id, next_turn), {}):
            return "started"
        if "pending" in record:
            return "waiting"
        record["pending"] = json.dumps({"turn": next_turn, "trigger": trigger})
        return "pending"


# ---------------------------------------------------------------------------------------------- events


@dataclass(eq=False)
class _Stream:
    data: list[str] = field(default_factory=list)  # event JSON; entry i has the id f"{base + i + 1}-0"
    base: int = 0  # how many entries were trimmed off the front
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)  # set, then replaced, by each append

    @property
    def last(self) -> int:
        return self.base + len(self.data)


class MemoryEventLog(EventLog):
    """``EventLog`` in memory: the same event dicts, ids ``"1-0"``, ``"2-0"``, ... per run.

    Subclasses ``EventLog`` only so that ``Services.events`` keeps its type; it has no Redis connection.
    Like Redis's approximate ``MAXLEN``, a run keeps at least ``maxlen`` events, trimmed in batches.
    """

    def __init__(self, *, maxlen: int = 100_000) -> None:  # no super().__init__(): no Redis
        self.maxlen = maxlen
        self._streams: dict[str, _Stream] = {}

    def _stream(self, run_id: str) -> _Stream:
        stream = self._streams.get(run_id)
        if stream is None:
            stream = self._streams[run_id] = _Stream()
        return stream

    def drop_run(self, run_id: str) -> None:
        self._streams.pop(run_id, None)

    async def append(self, run_id: str, kind: str, **fields: Any) -> str:
        event = {"v": EVENT_SCHEMA_VERSION, "kind": kind, "ts": time.time(), "run_id": run_id, **fields}
        stream = self._stream(run_id)
        stream.data.append(json.dumps(event, separators=(",", ":")))
        if len(stream.data) > self.maxlen + max(1, self.maxlen // 10):
            cut = len(stream.data) - self.maxlen
            del stream.data[:cut]
            stream.base += cut
        waiting, stream.wakeup = stream.wakeup, asyncio.Event()
        waiting.set()
        return f"{stream.last}-0"

    @staticmethod
    def _slice(stream: _Stream, after: int, count: int) -> list[tuple[str, dict[str, Any]]]:
        start = max(after - stream.base, 0)
        return [
            (f"{stream.base + i + 1}-0", json.loads(raw))
            for i, raw in enumerate(stream.data[start : start + count], start=start)
        ]

    async def read(
        self, run_id: str, after: str = "0-0", *, block_ms: int | None = None, count: int = 1000
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events after ``after``; with ``block_ms``, wait that long (0: for ever) for the first one."""
        stream = self._stream(run_id)
        seq = stream.last if after == "$" else int(after.partition("-")[0])
        batch = self._slice(stream, seq, count)
        if batch or block_ms is None:
            return batch
        try:
            async with asyncio.timeout(None if block_ms == 0 else block_ms / 1000):
                while not batch:
                    # No await between the check above and taking the current wakeup: no lost wakeups.
                    await stream.wakeup.wait()
                    batch = self._slice(stream, seq, count)
        except TimeoutError:
            pass
        return batch

    async def all(self, run_id: str) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self._stream(run_id).data]


# ---------------------------------------------------------------------------------------------- services


class _NoRedis:
    """``LocalServices.pool``: there is none, and whoever reaches for it is told so."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"LocalServices has no Redis pool (wanted .{name}); it runs jobs in-process")

    def __repr__(self) -> str:
        return "<no Redis: in-process>"


class LocalServices(Services):
    """``Services`` without Redis or workers: memory store and event log, jobs as asyncio tasks.

    ``registry`` serves every run whatever its ``toolset`` says; ``registries`` adds named ones (beside
    the import paths of ``toolsets``, ``DEFAULT_TOOLSETS`` and ``$INCREMENTAL_TOOLSETS``). At most
    ``max_concurrent`` tools run at once. Close with ``aclose()`` (or ``async with``).
    """

    def __init__(
        self,
        *,
        registry: ToolRegistry | None = None,
        registries: Mapping[str, ToolRegistry] | None = None,
        toolsets: Mapping[str, str] | None = None,
        max_concurrent: int = 16,
        monitor_interval_s: float = 2.0,
    ) -> None:
        # Not Services.__init__: it takes an arq pool and builds the Redis store and log from it.
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self.pool = cast("ArqRedis", _NoRedis())
        self.toolsets = dict(DEFAULT_TOOLSETS if toolsets is None else toolsets)
        self.monitor_interval_s = monitor_interval_s
        self._registries = dict(registries or {})
        self._clients = {}
        self._http = shared_http_client()
        self.store: MemoryTurnStore = MemoryTurnStore()
        self.events: MemoryEventLog = MemoryEventLog()
        self.control: MemoryControl = MemoryControl()
        self.toolsets.update(env_toolsets())
        self.registry = registry
        self.max_concurrent = max_concurrent
        self._tool_slots = asyncio.Semaphore(max_concurrent)
        self._job_ids: set[str] = set()  # every job id ever enqueued here: arq refuses a known id
        self._tasks: dict[str, asyncio.Task[None]] = {}  # job id -> its task, until it is done
        self._deferred: set[str] = set()  # monitor jobs still waiting out their deferral
        self._closing = False

    def __repr__(self) -> str:
        return (
            f"<LocalServices {len(self._tasks)} job(s) running, max_concurrent={self.max_concurrent}"
            f"{', closed' if self._closing else ''}>"
        )

    async def __aenter__(self) -> LocalServices:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def registry_for(self, run: RunRecord) -> ToolRegistry:
        if self.registry is None:
            return super().registry_for(run)
        simulate = run.config.get("simulate_s")
        if simulate is None:
            return self.registry
        key = f"<registry>:simulate:{simulate}"
        if key not in self._registries:
            self._registries[key] = simulated_registry(float(simulate), base=self.registry)
        return self._registries[key]

    @property
    def busy(self) -> bool:
        """Whether any job is running or scheduled: while a run is running, one always is."""
        return bool(self._tasks)

    # ------------------------------------------------------------ queueing

    async def enqueue_tool(self, job: ToolJob) -> bool:
        data = json.loads(json.dumps(job.to_dict()))  # what a worker would get: JSON, not our objects

        async def work() -> None:
            async with self._tool_slots:
                await run_tool(self, data)

        return self._start(job.job_id, work, job.run_id, turn=job.turn, tool=job)

    async def enqueue_stream_turn(self, run_id: str, turn: int, generation: int = 0) -> bool:
        return self._start(
            stream_job_id(run_id, turn, generation),
            lambda: stream_turn(self, run_id, turn, generation),
            run_id,
            turn=turn,
        )

    async def enqueue_monitor(self, run_id: str, turn: int, check: int, defer_s: float) -> bool:
        job_id = f"inc:monitor:{run_id}:{turn}:{check}"

        async def work() -> None:
            await asyncio.sleep(max(defer_s, 0.001))  # the scheduler's deferral, as arq's _defer_by
            self._deferred.discard(job_id)
            await monitor_turn(self, run_id, turn, check)

        started = self._start(job_id, work, run_id, turn=turn)
        if started:
            self._deferred.add(job_id)
        return started

    def _start(
        self,
        job_id: str,
        work: Callable[[], Coroutine[Any, Any, object]],
        run_id: str,
        *,
        turn: int,
        tool: ToolJob | None = None,
    ) -> bool:
        """Start a job as a task unless its id was seen before. No await: the check and the add are one."""
        if job_id in self._job_ids:
            return False
        if self._closing:
            logger.warning("not starting %s: these LocalServices are closing", job_id)
            return False
        self._job_ids.add(job_id)

        async def guarded() -> None:
            try:
                await work()
            except Exception as exc:
                logger.exception("in-process job %s raised", job_id)
                await self._job_raised(job_id, run_id, turn, tool, exc)

        task = asyncio.create_task(guarded(), name=job_id)
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._forget_task(job_id))
        return True

    def _forget_task(self, job_id: str) -> None:
        self._tasks.pop(job_id, None)
        self._deferred.discard(job_id)

    async def _job_raised(
        self, job_id: str, run_id: str, turn: int, tool: ToolJob | None, exc: Exception
    ) -> None:
        """A job raised: a bug, not a tool failure (``execute`` catches those). Leave no run waiting."""
        error = f"{type(exc).__name__}: {exc}"
        try:
            await self.events.append(run_id, "job_failed", turn=turn, job_id=job_id, error=error)
            if tool is not None:
                result = ToolResult.failure(
                    tool.tool_use_id, tool.name, "error", f"the job running tool {tool.name} raised {error}"
                )
                await finish_result(self, run_id, turn, result, key=tool.concurrency_key)
            else:
                await self.store.block_continuation(run_id, turn, "failed", error)
                await end_run(self, run_id, "failed", f"in-process job {job_id} raised {error}", turn=turn)
        except Exception:
            logger.exception("could not record the failure of job %s", job_id)

    # ------------------------------------------------------------ runs

    async def start_run(
        self, config: RunConfig, messages: list[dict[str, Any]], *, run_id: str | None = None
    ) -> str:
        """As ``start_run``: record the run, log ``run_started``, start its first turn. Returns its id."""
        run_id = run_id or f"run_{uuid.uuid4().hex[:20]}"
        data = asdict(config)
        await self.store.create_run(run_id, data, messages)
        await self.events.append(run_id, "run_started", turn=0, config=data)
        await self.enqueue_stream_turn(run_id, 0)
        return run_id

    async def follow(self, run_id: str, on_event: EventCallback | None = None) -> list[dict[str, Any]]:
        """Every event of the run, in order, up to its final one; ``on_event`` sees each as it comes."""
        if await self.store.run(run_id) is None:
            raise KeyError(f"no run {run_id!r} in these LocalServices")
        events: list[dict[str, Any]] = []
        after, turn = "0-0", 0
        while True:
            batch = await self.events.read(run_id, after, block_ms=_WATCHDOG_MS)
            for entry_id, event in batch:
                after, turn = entry_id, int(event.get("turn") or turn)
                events.append(event)
                if on_event is not None:
                    maybe = on_event(event)
                    if maybe is not None:
                        await maybe
                if event["kind"] in _FINAL_EVENTS:
                    return events
            if not batch and not self.busy:
                # No job is left that could move the run on: say so rather than wait for ever.
                run = await self.store.run(run_id)
                if run is None or run.state != "running":
                    return events
                if run.paused:
                    continue  # waiting for resume_run, not stuck
                await end_run(self, run_id, "failed", "no job left to finish the run (in-process)", turn=turn)

    def forget_run(self, run_id: str) -> None:
        """Drop a finished run's records, events and job ids (a long-lived instance otherwise keeps them)."""
        self.store.drop_run(run_id)
        self.events.drop_run(run_id)
        self.control.drop_run(run_id)
        marks = (f"inc:tool:{run_id}:", f"inc:stream:{run_id}:", f"inc:monitor:{run_id}:")
        self._job_ids = {j for j in self._job_ids if not j.startswith(marks) or j in self._tasks}

    async def aclose(self, *, grace_s: float = _CLOSE_GRACE_S) -> None:
        """Stop taking jobs; cancel deferred monitors; give running jobs ``grace_s``, then cancel them."""
        self._closing = True
        for job_id in list(self._deferred):
            task = self._tasks.get(job_id)
            if task is not None:
                task.cancel()
        running = [t for t in self._tasks.values() if not t.done()]
        if running and grace_s > 0:
            await asyncio.wait(running, timeout=grace_s)
        left = [t for t in self._tasks.values() if not t.done()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)
        await super().aclose()


# ---------------------------------------------------------------------------------------------- entry points


async def run_local(
    config: RunConfig,
    messages: list[dict[str, Any]],
    *,
    registry: ToolRegistry | None = None,
    on_event: EventCallback | None = None,
    max_concurrent: int = 16,
) -> dict[str, Any]:
    """Run a conversation in this process to its end; returns its summary (``summarize``) and ``run_id``.

    ``registry`` runs the tools (None: the tool set ``config.toolset`` names); ``on_event`` sees every
    event in order, as it happens. Everything started here is closed before it returns.
    """
    services = LocalServices(registry=registry, max_concurrent=max_concurrent)
    try:
        run_id = await services.start_run(config, messages)
        events = await services.follow(run_id, on_event)
        summary = summarize(events)
        summary["run_id"] = run_id
        return summary
    finally:
        await services.aclose()


async def replay_local(
    files: Sequence[str | Path],
    *,
    speed: float = 1.0,
    simulate_s: float | None = None,
    toolset_registry: ToolRegistry | None = None,
    workspace: str | None = None,
    turn_timeout_s: float = 300.0,
    on_event: EventCallback | None = None,
) -> dict[str, Any]:
    """``replay`` without Redis or workers: the recording's turns from a ``FakeMessagesAPI``, tools here.

    ``toolset_registry`` defaults to the app builder's tools (``workers.app_tools``); with them, an empty
    (or temporary) workspace is seeded with the Vite starter the recordings edit. The summary has
    ``requests`` and ``rejected_requests`` from the fake API besides ``run_local``'s.
    """
    from ..fake_api import FakeMessagesAPI  # uvicorn and starlette: only when replaying

    if toolset_registry is None:
        from workers.app_tools import registry as app_registry

        toolset_registry = app_registry
    app_module = sys.modules.get("workers.app_tools")  # imported by whoever holds its registry
    is_app = app_module is not None and toolset_registry is getattr(app_module, "registry", None)
    api = FakeMessagesAPI(list(files), speed=speed)
    workspace_dir = None if workspace else tempfile.TemporaryDirectory(prefix="incremental-replay-")
    try:
        await api.start()
        where = workspace or (workspace_dir.name if workspace_dir else None)
        if is_app and where and not any(Path(where).iterdir()):
            # The app-builder recordings edit a Vite starter project: give an empty workspace one.
            from workers.app_tools import seed_vite_starter

            seed_vite_starter(Path(where))
        config = RunConfig(
            model="claude-sonnet-4-5",
            api_base_url=api.url,
            max_turns=len(files),
            turn_timeout_s=turn_timeout_s,
            simulate_s=simulate_s,
            toolset="app" if is_app else "local",
            workspace=where,
            meta={"replay": [str(f) for f in files], "speed": speed, "runner": "local"},
        )
        first = {"role": "user", "content": f"Replay of {', '.join(Path(f).name for f in files)}"}
        summary = await run_local(config, [first], registry=toolset_registry, on_event=on_event)
        summary["requests"] = len(api.requests)
        summary["rejected_requests"] = list(api.rejections)
        return summary
    finally:
        await api.stop()
        if workspace_dir is not None:
            workspace_dir.cleanup()
