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
    inc:trim:{run}                          trim_run      one per run, deferred from its end by its
                                                          ``Retention.trim_after_s``

A job whose payload is not our JSON (enqueued through a pool with arq's default pickle serializer, or by
another version) must not vanish into arq's log while its run waits: ``json_deserializer`` hands arq a
job for ``unreadable_job`` instead, which fails the run its id names, saying why.

Redis outages. Every pool made here (``connect``, ``resilient``) retries a command that met a connection
error, with exponential backoff, for about ``outage_s`` seconds, so a blip stalls a job instead of
failing it. arq's enqueue watches the job's key, and redis-py does not retry a watched transaction: it
raises, or arq reads the failure as "this job exists already". ``_enqueue`` therefore retries, and
checks that a job it was refused really exists. A job renews a short lease on arq's in-progress key
(``job_lease``): arq lets a job go to another worker once that key expires, so a killed worker's job is
redelivered after ``lease_s``, whatever the job's time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import default_queue_name, in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._arq_worker import ALIVE_PREFIX, ALIVE_TTL_S, wake_key
from ._checkout import SPARE, quick_checkout

__all__ = [
    "ENQUEUE_LUA",
    "JOB_MONITOR_TURN",
    "JOB_RUN_TOOL",
    "JOB_STREAM_TURN",
    "JOB_TRIM_RUN",
    "JOB_UNREADABLE",
    "Lease",
    "ToolJob",
    "connect",
    "enqueue_args",
    "enqueue_monitor",
    "enqueue_stream_turn",
    "enqueue_tool",
    "enqueue_trim",
    "job_alive",
    "job_known",
    "job_lease",
    "json_deserializer",
    "json_serializer",
    "monitor_job_id",
    "resilient",
    "run_of_job",
    "stream_job_id",
    "tool_enqueue_args",
]

logger = logging.getLogger(__name__)

DEFAULT_OUTAGE_S = 120.0  # how long a command (and an enqueue) keeps trying through a Redis outage
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

JOB_RUN_TOOL = "run_tool"
JOB_STREAM_TURN = "stream_turn"
JOB_MONITOR_TURN = "monitor_turn"
JOB_TRIM_RUN = "trim_run"
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
    """Everything a worker needs to run one tool call, by reference. JSON-ready.

    The call's input is not in the job: it is stored once, with the run (``TurnStore.enqueue_tool_logged``),
    and the worker reads it there, so neither arq's job nor its result (which keeps a job's
    arguments) holds a copy of a large input. ``args``: an input carried inline instead (a job
    enqueued by an earlier version); None for a reference."""

    run_id: str
    turn: int
    tool_use_id: str
    name: str
    args: dict[str, Any] | None = None
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


def resilient(settings: RedisSettings, outage_s: float = DEFAULT_OUTAGE_S) -> RedisSettings:
    """``settings`` whose connections retry a failed command with backoff (50 ms doubling to 1 s) for
    about ``outage_s`` seconds, and that keep trying to connect at start-up for as long (0: as given)."""
    if outage_s <= 0:
        return settings
    retries = int(outage_s) + 5
    # OSError too: a refused connect (the server is down) is an OSError until redis-py wraps it, and
    # only then would a retry see it; with it here, connecting waits for the server like a command does.
    supported: Any = (RedisConnectionError, RedisTimeoutError, OSError)
    return dataclasses.replace(
        settings,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries, supported_errors=supported),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        conn_retries=max(settings.conn_retries, int(outage_s)),
        conn_retry_delay=1,
    )


async def connect(url: str, queue: str | None = None, *, outage_s: float = DEFAULT_OUTAGE_S) -> ArqRedis:
    """An arq pool on ``url`` that serializes jobs as JSON; ``queue``: its default queue (else arq's).
    Its commands ride out a Redis outage of up to about ``outage_s`` seconds (``resilient``), but a
    Redis that cannot be reached now fails at once (``ConnectionError``): a runner or a service that is
    pointed at the wrong place says so, rather than wait."""
    probe = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        await probe.ping()
    finally:
        await probe.aclose()
    pool = await create_pool(
        resilient(RedisSettings.from_dsn(url), outage_s),
        job_serializer=json_serializer,
        job_deserializer=json_deserializer,
        default_queue_name=queue or default_queue_name,
    )
    return quick_checkout(pool, spare=SPARE)


async def job_alive(pool: ArqRedis, job_id: str) -> bool:
    """Whether arq holds this job: queued (or deferred), or running on a worker."""
    found = await pool.exists(job_key_prefix + job_id, in_progress_key_prefix + job_id)
    return int(found) > 0


def monitor_job_id(run_id: str, turn: int, check: int) -> str:
    return f"inc:monitor:{run_id}:{turn}:{check}"


async def job_known(pool: ArqRedis, job_id: str) -> bool:
    """Whether arq holds this job, or its result (it ran, within the last hour)."""
    keys = (job_key_prefix + job_id, in_progress_key_prefix + job_id, result_key_prefix + job_id)
    return int(await pool.exists(*keys)) > 0


# arq's enqueue, as one atomic Lua function: refused (0) when the job or its result exists; else the
# job is stored and queued, and announced on the wake list a worker waits on: its id when it is due
# now, else "~" and its id (a deferred job: the worker learns when the queue's next job is due).
ENQUEUE_LUA = """
local function arq_enqueue(job_key, result_key, queue, wake, payload, score, expires_ms, due_now, job_id)
  if redis.call('EXISTS', job_key) == 1 or redis.call('EXISTS', result_key) == 1 then
    return 0
  end
  redis.call('PSETEX', job_key, expires_ms, payload)
  redis.call('ZADD', queue, score, job_id)
  if due_now == '1' then
    redis.call('RPUSH', wake, job_id)
  else
    redis.call('RPUSH', wake, '~' .. job_id)
  end
  redis.call('LTRIM', wake, -10000, -1)
  return 1
end
"""
_ENQUEUE = ENQUEUE_LUA + "return arq_enqueue(KEYS[1], KEYS[2], KEYS[3], KEYS[4], unpack(ARGV))\n"


_SCRIPTS: weakref.WeakKeyDictionary[ArqRedis, AsyncScript] = weakref.WeakKeyDictionary()


def _enqueue_script(pool: ArqRedis) -> AsyncScript:
    """The enqueue script of this pool, registered once (not on every enqueue)."""
    script = _SCRIPTS.get(pool)
    if script is None:
        script = _SCRIPTS[pool] = pool.register_script(_ENQUEUE)
    return script


def enqueue_args(
    pool: ArqRedis, function: str, args: tuple[Any, ...], job_id: str, queue: str | None, defer_s: float
) -> tuple[list[str], list[Any]]:
    """The keys and arguments of ``arq_enqueue`` for one job: arq's own payload (JSON), key and score."""
    queue = queue or pool.default_queue_name
    now_ms = int(time.time() * 1000)
    defer_ms = round(defer_s * 1000)
    payload = serialize_job(function, args, {}, None, now_ms, serializer=json_serializer)
    keys = [job_key_prefix + job_id, result_key_prefix + job_id, queue, wake_key(queue, job_id)]
    due_now = "0" if defer_ms > 0 else "1"
    return keys, [payload, now_ms + defer_ms, defer_ms + pool.expires_extra_ms, due_now, job_id]


def tool_enqueue_args(pool: ArqRedis, job: ToolJob) -> tuple[list[str], list[Any]]:
    return enqueue_args(pool, JOB_RUN_TOOL, (job.to_dict(),), job.job_id, job.queue, 0.0)


async def _enqueue(
    pool: ArqRedis,
    function: str,
    *args: Any,
    _job_id: str,
    _queue_name: str | None = None,
    _defer_by: float | None = None,
    budget_s: float = DEFAULT_OUTAGE_S,
) -> bool:
    """Enqueue an arq job (arq's payload, key and queue, written in one Lua call instead of arq's watched
    transaction), and announce it on the queue's wake list when it is due now. True once enqueued,
    False when a job (or a result) with this id exists. Survives a Redis outage: a call cut by a lost
    connection is made again (if it had landed, the second one reads as "exists", which it does)."""
    deadline = time.monotonic() + budget_s
    delay = 0.05
    while True:
        try:
            keys, argv = enqueue_args(pool, function, args, _job_id, _queue_name, _defer_by or 0.0)
            return bool(int(await _enqueue_script(pool)(keys=keys, args=argv)))
        except REDIS_ERRORS as exc:
            why = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise RedisConnectionError(f"could not enqueue {_job_id} within {budget_s:g} s ({why})")
        logger.info("enqueue of %s failed (%s); trying again", _job_id, why)
        await asyncio.sleep(delay)
        delay = min(1.0, delay * 2)


class Lease:
    """One execution's hold on its job (``job_lease``): ``token`` names this execution, and its
    heartbeat in the job's ``inc:alive:`` hash. ``token`` given: the worker's claim wrote the first
    heartbeat under that name (and its end takes it back), so the execution has one from its start."""

    def __init__(self, pool: ArqRedis, job_id: str, lease_s: float, token: str | None = None) -> None:
        self.pool, self.job_id, self.lease_s = pool, job_id, lease_s
        self.token = token or uuid.uuid4().hex
        self.alive_key = f"{ALIVE_PREFIX}{job_id}"

    async def renew(self) -> None:
        """Hold the in-progress key ``lease_s`` ahead (set again, should an outage have let it expire)
        and write this execution's heartbeat."""
        async with self.pool.pipeline(transaction=False) as pipe:
            pipe.set(in_progress_key_prefix + self.job_id, b"1", px=int(self.lease_s * 1000))
            pipe.hset(self.alive_key, self.token, repr(time.time()))
            pipe.expire(self.alive_key, ALIVE_TTL_S)
            await pipe.execute()

    async def others_alive(self) -> bool:
        """Whether another execution of this job still runs: its heartbeat moves on (or is taken back,
        as an execution that ends takes it) within one renewal period. A job redelivered because a
        Redis outage outlasted its lease finds its first execution alive (and should wait), even if
        that one had not renewed yet: its claim wrote its first heartbeat. One whose worker died finds
        a heartbeat that has stopped."""
        before = await self._others()
        if not before:
            return False
        await asyncio.sleep(self.lease_s / 3 + 0.25)
        after = await self._others()
        return any(after.get(token) != beat for token, beat in before.items())

    async def _others(self) -> dict[str, str]:
        raw = await self.pool.hgetall(self.alive_key)  # type: ignore[misc]
        beats = {_text(k): _text(v) for k, v in raw.items()}
        beats.pop(self.token, None)
        return beats

    async def release(self) -> None:
        await self.pool.hdel(self.alive_key, self.token)  # type: ignore[misc]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextlib.asynccontextmanager
async def job_lease(
    pool: ArqRedis, job_id: str | None, lease_s: float, *, claimed: str | None = None
) -> AsyncIterator[Lease | None]:
    """For the block, hold this job's in-progress key ``lease_s`` seconds ahead (renewed every third of
    it): if the worker dies, arq gives the job to another one ``lease_s`` after its last renewal.
    ``claimed``: the heartbeat the worker's claim wrote (incremental's ``Worker``); the claim set the
    key ``lease_s`` ahead already, so the first renewal is due a third of a lease from now, and a job
    shorter than that sends nothing for its lease (the job's end takes the heartbeat back)."""
    if not job_id or lease_s <= 0:
        yield None
        return
    lease = Lease(pool, job_id, lease_s, claimed)
    renewed = False

    async def renew() -> None:
        nonlocal renewed
        if claimed:
            await asyncio.sleep(lease_s / 3)
        while True:
            try:
                renewed = True
                await lease.renew()
            except REDIS_ERRORS as exc:
                logger.warning("could not renew the lease of job %s: %s", job_id, exc)
            await asyncio.sleep(lease_s / 3)

    task = asyncio.create_task(renew(), name=f"lease:{job_id}")
    try:
        yield lease
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if renewed and not claimed:  # a renewal wrote the heartbeat; a claimed job's end takes it
            try:
                await lease.release()
            except REDIS_ERRORS as exc:
                logger.warning("could not release the lease of job %s: %s", job_id, exc)


async def enqueue_tool(pool: ArqRedis, job: ToolJob) -> bool:
    """Enqueue one tool call. False when a job for this tool_use id already exists."""
    kwargs: dict[str, Any] = {"_job_id": job.job_id}
    if job.queue:
        kwargs["_queue_name"] = job.queue
    return await _enqueue(pool, JOB_RUN_TOOL, job.to_dict(), **kwargs)


def stream_job_id(run_id: str, turn: int, generation: int = 0) -> str:
    base = f"inc:stream:{run_id}:{turn}"
    return f"{base}:g{generation}" if generation else base


def _on(queue: str | None) -> dict[str, Any]:
    return {"_queue_name": queue} if queue else {}


async def enqueue_stream_turn(
    pool: ArqRedis, run_id: str, turn: int, generation: int = 0, *, queue: str | None = None
) -> bool:
    """Enqueue the request-and-stream job of one turn; at most one per (run, turn, generation).
    ``queue``: the run's (the one its runner used), else the pool's default."""
    args = (run_id, turn, generation) if generation else (run_id, turn)
    job_id = stream_job_id(run_id, turn, generation)
    return await _enqueue(pool, JOB_STREAM_TURN, *args, _job_id=job_id, **_on(queue))


async def enqueue_monitor(
    pool: ArqRedis, run_id: str, turn: int, check: int, defer_s: float, *, queue: str | None = None
) -> bool:
    """Schedule the safety-net check number ``check`` of a turn, ``defer_s`` seconds from now."""
    return await _enqueue(
        pool,
        JOB_MONITOR_TURN,
        run_id,
        turn,
        check,
        _job_id=monitor_job_id(run_id, turn, check),
        _defer_by=max(defer_s, 0.001),
        **_on(queue),
    )


async def enqueue_trim(pool: ArqRedis, run_id: str, defer_s: float, *, queue: str | None = None) -> bool:
    """Schedule the trim of a finished run (``pipeline._trim``), ``defer_s`` seconds from now."""
    return await _enqueue(
        pool, JOB_TRIM_RUN, run_id, _job_id=f"inc:trim:{run_id}", _defer_by=max(defer_s, 0.001), **_on(queue)
    )
