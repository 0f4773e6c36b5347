"""arq, wrapped once: job names, deterministic job ids, and JSON (never pickle) serialization.

Every enqueue in the project goes through the typed functions here, so the string job names live in
this module only. Job ids are derived from what the job is about, so enqueueing the same thing twice
(a redelivered job, two monitors racing) creates one job: arq refuses a job id that already exists.

    inc:tool:{run}:{tool_use_id}            run_tool      one per tool call (and ``:g{n}`` when a paused
                                                          run held it and released it again: generation n)
    inc:stream:{run}:{turn}                 stream_turn   one per turn: the model request and its stream
                                                          (and ``:g{n}`` when it found its run paused and a
                                                          resume enqueued it again: generation n)
    inc:monitor:{run}:{turn}:{check}        monitor_turn  a fresh id per check: no check hits the retry cap

A job whose payload is not our JSON (enqueued through a pool with arq's default pickle serializer, or by
another version) must not vanish into arq's log while its run waits: ``json_deserializer`` hands arq a
job for ``unreadable_job`` instead, which fails the run its id names, saying why.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import default_queue_name

__all__ = [
    "JOB_MONITOR_TURN",
    "JOB_RUN_TOOL",
    "JOB_STREAM_TURN",
    "JOB_UNREADABLE",
    "ToolJob",
    "connect",
    "enqueue_monitor",
    "enqueue_stream_turn",
    "enqueue_tool",
    "json_deserializer",
    "json_serializer",
    "run_of_job",
    "stream_job_id",
]

JOB_RUN_TOOL = "run_tool"
JOB_STREAM_TURN = "stream_turn"
JOB_MONITOR_TURN = "monitor_turn"
JOB_UNREADABLE = "unreadable_job"


def _default(value: object) -> object:
    if isinstance(value, BaseException):  # arq stores a failed job's exception as its result
        return {"exception": type(value).__name__, "message": str(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return repr(value)


def json_serializer(value: Any) -> bytes:
    """arq's job_serializer: JSON everywhere Redis holds our data (arq's default would be pickle)."""
    return json.dumps(value, default=_default, separators=(",", ":")).encode()


def json_deserializer(data: bytes) -> Any:
    """arq's job_deserializer. A payload that is not JSON becomes a job for ``unreadable_job`` (the job
    id, which names the run, reaches it in arq's ``ctx``); arq's own result reads reject that shape."""
    try:
        return json.loads(data)
    except (ValueError, TypeError) as exc:
        if isinstance(data, bytes | bytearray) and data[:1] == b"\x80":
            why = (
                "it was written with pickle (arq's default serializer); incremental's pools and "
                "workers use JSON: start runs through incremental.Runner, or make pools with "
                "incremental.worker.create_pool"
            )
        else:
            why = f"it is not JSON ({exc}); was it enqueued by another version of incremental?"
        return {"t": 1, "f": JOB_UNREADABLE, "a": [why], "k": {}, "et": int(time.time() * 1000)}


def run_of_job(job_id: str) -> tuple[str, int | None] | None:
    """The run (and turn, when the id says) a job id of ours names; None for an id that is not ours."""
    parts = job_id.split(":")
    if len(parts) < 4 or parts[0] != "inc":
        return None
    if parts[1] in ("stream", "monitor") and parts[3].isdigit():
        return parts[2], int(parts[3])
    if parts[1] == "tool":
        return parts[2], None
    return None


@dataclass(frozen=True, slots=True)
class ToolJob:
    """Everything a worker needs to run one tool call. JSON-ready."""

    run_id: str
    turn: int
    tool_use_id: str
    name: str
    args: dict[str, Any]
    index: int = 0
    concurrency_key: str | None = None
    queue: str | None = None
    idempotent: bool = True
    ready_at: float | None = None  # wall time the call became ready (its input complete and valid)
    # 0 for the job dispatch enqueued; n for the job released the n-th time after a pause held it from
    # inside run_tool (arq refuses a job id it has seen, and a stale generation must not run).
    generation: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolJob:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def job_id(self) -> str:
        base = f"inc:tool:{self.run_id}:{self.tool_use_id}"
        return f"{base}:g{self.generation}" if self.generation else base


async def connect(url: str, queue: str | None = None) -> ArqRedis:
    """An arq pool on ``url`` that serializes jobs as JSON; ``queue``: its default queue (else arq's)."""
    return await create_pool(
        RedisSettings.from_dsn(url),
        job_serializer=json_serializer,
        job_deserializer=json_deserializer,
        default_queue_name=queue or default_queue_name,
    )


async def enqueue_tool(pool: ArqRedis, job: ToolJob) -> bool:
    """Enqueue one tool call. False when a job for this tool_use id already exists."""
    kwargs: dict[str, Any] = {"_job_id": job.job_id}
    if job.queue:
        kwargs["_queue_name"] = job.queue
    return await pool.enqueue_job(JOB_RUN_TOOL, job.to_dict(), **kwargs) is not None


def stream_job_id(run_id: str, turn: int, generation: int = 0) -> str:
    base = f"inc:stream:{run_id}:{turn}"
    return f"{base}:g{generation}" if generation else base


async def enqueue_stream_turn(pool: ArqRedis, run_id: str, turn: int, generation: int = 0) -> bool:
    """Enqueue the request-and-stream job of one turn; at most one per (run, turn, generation)."""
    args = (run_id, turn, generation) if generation else (run_id, turn)
    job = await pool.enqueue_job(JOB_STREAM_TURN, *args, _job_id=stream_job_id(run_id, turn, generation))
    return job is not None


async def enqueue_monitor(pool: ArqRedis, run_id: str, turn: int, check: int, defer_s: float) -> bool:
    """Schedule the safety-net check number ``check`` of a turn, ``defer_s`` seconds from now."""
    job = await pool.enqueue_job(
        JOB_MONITOR_TURN,
        run_id,
        turn,
        check,
        _job_id=f"inc:monitor:{run_id}:{turn}:{check}",
        _defer_by=max(defer_s, 0.001),
    )
    return job is not None
