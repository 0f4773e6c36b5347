"""incremental's arq ``Worker``: woken by a push instead of polling, with separate slots for tools and turns.

arq's own worker polls its queue every ``poll_delay`` (5 ms here) and re-checks every due job, running
or not, on every poll: an idle worker sends about 200 commands a second, and a busy one pays for each
running job on every poll, times the number of workers. And one pool of ``max_jobs`` slots holds tools and
model streams alike, so tools queue behind streams that only wait on the network.

This worker runs the same jobs, from the same queue, with three changes:

- **Push.** Whoever enqueues a job also pushes its id onto a wake list (``adapters._arq``):
  ``inc:wake:{queue}`` for tools, ``inc:wake:{queue}:turns`` for the jobs that drive turns. A worker
  waits with a blocking pop on the lists of the kinds it has a free slot for, so a job starts within
  a round trip of its enqueue, and a worker whose stream slots are full still takes every tool. The
  rest of a burst (as many announced ids as there are free slots) is popped and claimed in the same
  call as the first. A deferred job (the safety net's checks) is announced as ``~id``: the worker
  reads when the queue's next job is due, which bounds its waits from then on. A full read of the queue every
  ``sweep_s`` finds what no push announced (a job whose worker was killed comes back when its lease
  runs out; a job enqueued by plain arq).
- **Slots by kind.** Tool jobs get ``max_jobs`` slots; the jobs that drive turns (``stream_turn``, the
  monitor) get ``turn_slots`` more of their own: a model stream costs a task and a socket, not a slot
  a tool could use.
- **One claim per batch, one call to finish.** The ids a wake-up brings are claimed in one Lua call
  (with the pops, above) that also starts them: a job that is due and not in progress elsewhere is
  marked in progress, its try counted, and its payload read (arq: a watched transaction to claim,
  then a transaction to start). A job ends in one more call that stores its result and clears its
  keys, or, for a job to be run again, clears its claim and announces it, so another worker takes it
  at once (after moving its due time, for ``Retry(defer=...)``).
- **Commands sent together.** The commands its jobs send in one turn of the event loop go to Redis as
  one pipeline (``adapters._batching``): a worker with hundreds of jobs makes a few writes a turn, not
  one a command.

The rest is arq's format and meaning: the same keys and payloads, ``job_try`` and ``max_tries``,
``Retry``, a job cancelled by a closing worker runs again, results kept for ``keep_result_s``, the
health check. Plain ``arq yourmodule.WorkerSettings`` still runs these jobs (polling, one pool of
slots). arq's abort (``allow_abort_jobs``) is not offered: a run's or a tool's cancel goes through
incremental's control channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from arq.connections import create_pool
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    keep_cronjob_progress,
    result_key_prefix,
    retry_key_prefix,
)
from arq.jobs import SerializationError, deserialize_job_raw, serialize_result
from arq.utils import ms_to_datetime, timestamp_ms, to_ms
from arq.worker import JobExecutionFailed, Retry, RetryJob, get_kwargs
from arq.worker import Worker as ArqWorker

from ._batching import batch_commands
from ._checkout import SPARE, quick_checkout

__all__ = [
    "ALIVE_PREFIX",
    "CLAIMS_LEASE",
    "CLAIM_BEAT",
    "TURN_JOB_PREFIXES",
    "Worker",
    "make_worker",
    "wake_key",
]

logger = logging.getLogger(__name__)

TURN_JOB_PREFIXES = ("inc:stream:", "inc:monitor:")  # the jobs that take turn slots, not tool slots
CLAIMS_LEASE = "incremental_claim_lease_s"  # in the worker's ctx: its claims hold a job for this long
CLAIM_BEAT = "incremental_claim_beat"  # in a job's ctx: the heartbeat its claim wrote (``Lease``)
ALIVE_PREFIX = "inc:alive:"  # a job's heartbeats, one field an execution
ALIVE_TTL_S = 86_400
_WAKE_MAX = 10_000
_DUE_MARGIN_MS = 50  # a wake list nobody pops (every worker busy) is trimmed to this many ids

_FULL_WAIT_S = 0.05  # the longest a wait lasts while one kind of slot is full
_LAG_TICK_S = 0.01  # how often the event loop's lag is sampled
_LAG_HOLD_S = 0.1  # after a sample over ``admit_lag_ms``, no new stream for this long
# New streams a worker starts: at most this many at once, then this many a second (so that the lag a
# burst of them brings is seen before the worker has taken them all).
_ADMIT_BURST = 5
_ADMIT_RATE = 100.0

_RETRY_TTL_S = 88_400  # how long a job's try count is kept (arq's figure)

# Claim and start an id that is due and not in progress: mark it in progress, count its try, read its
# payload, and write the first heartbeat of this execution under ``beat`` (a name no other claim uses;
# see ``adapters._arq.Lease``). 0 when it is not claimed, else {score, payload or false (expired), try}.
CLAIM_LUA = f"""
local function claim(queue, id, now, claim_ms, beat)
  local key = '{in_progress_key_prefix}' .. id
  local score = redis.call('ZSCORE', queue, id)
  if score and tonumber(score) <= now and redis.call('EXISTS', key) == 0 then
    redis.call('PSETEX', key, claim_ms, '1')
    redis.call('HSET', '{ALIVE_PREFIX}' .. id, beat, now)
    redis.call('EXPIRE', '{ALIVE_PREFIX}' .. id, {ALIVE_TTL_S})
    local tries = redis.call('INCR', '{retry_key_prefix}' .. id)
    redis.call('EXPIRE', '{retry_key_prefix}' .. id, {_RETRY_TTL_S})
    return {{score, redis.call('GET', '{job_key_prefix}' .. id), tries}}
  end
  return 0
end

-- The time a claim compares due times with: the worker's ``now`` (ms) when it made the call, moved up
-- to Redis's own clock, by at most a second. A job enqueued between the worker reading its clock and
-- the call running (a busy loop takes a while to send it) is due, and is claimed: the id is popped in
-- this same call, and would otherwise wait, queued, for the next sweep.
local function claim_now(given)
  local t = redis.call('TIME')
  local server = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  return math.max(given, math.min(server, given + 1000))
end
"""

# KEYS: the queue; ARGV: now (ms), the claim (ms), the heartbeat name, then the ids. ``claim``'s answer
# for each.
_CLAIM = (
    CLAIM_LUA
    + """
local out = {}
local now = claim_now(tonumber(ARGV[1]))
for i = 4, #ARGV do out[#out + 1] = claim(KEYS[1], ARGV[i], now, ARGV[2], ARGV[3]) end
return out
"""
)

# The ids a push brought, and as many more as there is room for, taken from the wake lists and claimed
# in one call. KEYS: the queue, the tool list, the turn list; ARGV: now (ms), the claim (ms), the id
# popped ('' for none), how many more to take from the tool list, from the turn list, the heartbeat
# name. Returns {the ids claimed with ``claim``'s answers, flattened in pairs; the deferred ids
# announced (``~id``)}.
_TAKE = (
    CLAIM_LUA
    + """
local now = claim_now(tonumber(ARGV[1]))
local ids, deferred, out = {}, {}, {}
local function note(id)
  if string.sub(id, 1, 1) == '~' then deferred[#deferred + 1] = string.sub(id, 2) else ids[#ids + 1] = id end
end
if ARGV[3] ~= '' then note(ARGV[3]) end
for list = 2, 3 do
  for _ = 1, tonumber(ARGV[list + 2]) do
    local id = redis.call('LPOP', KEYS[list])
    if not id then break end
    note(id)
  end
end
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = claim(KEYS[1], id, now, ARGV[2], ARGV[6])
end
return {out, deferred}
"""
)

# End a job. ARGV: the id, then 'done' (its result, if any, is kept: its keys go) or 'again' (it runs
# again: its claim goes, and it is announced at once, or after a defer that moves its due time), the
# result ('' for none), the result's life in ms (0: for ever), the defer in ms (0: none), how long a
# cron job's claim stays (ms, 0: it goes), the heartbeat its claim wrote (it goes; a job done takes
# all its heartbeats with it). A job to run again that is no longer queued (another execution of it
# finished meanwhile) is left alone. KEYS: the queue, its wake list.
_FINISH = f"""
local id = ARGV[1]
local claim = '{in_progress_key_prefix}' .. id
if ARGV[6] ~= '0' then
  redis.call('PEXPIRE', claim, ARGV[6])
else
  redis.call('DEL', claim)
end
if ARGV[2] == 'done' then
  if ARGV[3] ~= '' then
    if ARGV[4] ~= '0' then
      redis.call('SET', '{result_key_prefix}' .. id, ARGV[3], 'PX', ARGV[4])
    else
      redis.call('SET', '{result_key_prefix}' .. id, ARGV[3])
    end
  end
  redis.call('DEL', '{retry_key_prefix}' .. id, '{job_key_prefix}' .. id, '{ALIVE_PREFIX}' .. id)
  redis.call('ZREM', '{abort_jobs_ss}', id)
  redis.call('ZREM', KEYS[1], id)
  return 1
end
redis.call('HDEL', '{ALIVE_PREFIX}' .. id, ARGV[7])
if not redis.call('ZSCORE', KEYS[1], id) then
  return 0  -- another execution finished it meanwhile: nothing to run again
end
if ARGV[5] ~= '0' then
  redis.call('ZINCRBY', KEYS[1], ARGV[5], id)
  redis.call('RPUSH', KEYS[2], '~' .. id)
else
  redis.call('RPUSH', KEYS[2], id)
end
return 1
"""

_NO_RESULT = object()

# The whole queue's due jobs not in progress (up to ARGV[2] of them), and the score of the next job due
# after now; the wake lists are trimmed to their last ARGV[3] ids. KEYS: the queue, its two wake lists.
_SWEEP = f"""
local now = ARGV[1]
local out = {{}}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])) do
  if redis.call('EXISTS', '{in_progress_key_prefix}' .. id) == 0 then out[#out + 1] = id end
end
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[3]), -1)
local nxt = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {{out, nxt[2] or false}}
"""

# The ids due in (after, now], up to ARGV[3] of them, and the score of the next job due after now.
_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
local nxt = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {ids, nxt[2] or false}
"""


def wake_key(queue_name: str, job_id: str = "") -> str:
    """The list that announces a job: tool jobs (and any other) on one, the jobs that drive turns on
    another, so a worker whose turn slots are full waits only for tools, and the other way round."""
    return f"inc:wake:{queue_name}:turns" if is_turn_job(job_id) else f"inc:wake:{queue_name}"


def is_turn_job(job_id: str) -> bool:
    return job_id.startswith(TURN_JOB_PREFIXES)


def is_stream_job(job_id: str) -> bool:
    return job_id.startswith(TURN_JOB_PREFIXES[0])


class Worker(ArqWorker):
    """arq's ``Worker`` with push wake-ups and slots by kind (see the module docstring).

    ``max_jobs``: the tool slots. ``turn_slots``: slots for stream and monitor jobs (0: they share the
    tool slots, as in plain arq). ``wake``: False
    keeps arq's polling (every ``poll_delay``). ``sweep_s``: how often the whole queue is read anyway.
    ``idle_s``: the longest one wait (for a push, or for a free slot) lasts; a wait also ends at the
    next sweep and at the next known due time.
    ``admit_lag_ms``: a worker whose event loop lags more than this takes no new model stream until it
    has caught up (0: no such limit; see ``_watch_lag``). ``lease_s``: a claim marks a job in progress
    this far ahead (its job's lease renews it; see
    ``adapters._arq.job_lease``), instead of for arq's whole job timeout. ``batch``: False sends each
    of the jobs' commands on its own (``adapters._batching``). ``serve_turns``: False leaves the jobs
    that drive turns to other workers (a worker of tools only); ``max_jobs=0`` with ``turn_slots``
    makes one of turns only."""

    def __init__(
        self,
        *args: Any,
        turn_slots: int = 100,
        wake: bool = True,
        sweep_s: float = 2.0,
        idle_s: float = 5.0,
        lease_s: float | None = None,
        admit_lag_ms: float = 20.0,
        batch: bool = True,
        serve_turns: bool = True,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("allow_abort_jobs"):
            raise ValueError(
                "allow_abort_jobs is not supported by incremental's Worker: cancel runs and tools "
                "through incremental's control (Run.cancel, Run.cancel_tool)"
            )
        tool_slots = int(kwargs.get("max_jobs", 10))
        kwargs["max_jobs"] = tool_slots + max(turn_slots, 0)
        if wake:
            kwargs["poll_delay"] = 0  # the waits below pace the loop
        super().__init__(*args, **kwargs)
        self.tool_slots, self.turn_slots = tool_slots, max(turn_slots, 0)
        self.wake, self.sweep_s, self.idle_s, self.batch = wake, sweep_s, idle_s, batch
        self.serve_turns = serve_turns
        if tool_slots <= 0 and (turn_slots <= 0 or not serve_turns):
            raise ValueError("a worker needs a slot for some kind of job: max_jobs or turn_slots")
        self.admit_lag_s = max(float(admit_lag_ms), 0.0) / 1000
        self._busy_until = 0.0  # on the loop's clock: no new stream before then
        self._allowance, self._allowance_at = float(_ADMIT_BURST), 0.0  # new streams it may start now
        self._tick: asyncio.TimerHandle | None = None
        self.wake_keys = (wake_key(self.queue_name), wake_key(self.queue_name, TURN_JOB_PREFIXES[0]))
        self._freed = asyncio.Event()
        self._next_sweep = 0.0
        self._seen_ms = 0  # due times up to here have been read
        self._next_due_ms: int | None = None
        self._recent: set[str] = set()  # the ids the last due read brought
        self._claim: Any = None
        self._worker_token, self._claims_made = uuid.uuid4().hex[:16], 0
        self._take: Any = None
        self._sweep: Any = None
        self._finish: Any = None
        self._due: Any = None
        # A claim marks the job in progress for one lease (its job renews it), else for arq's timeout.
        self.claim_ms = int((lease_s or self.in_progress_timeout_s) * 1000)
        if lease_s:
            self.ctx[CLAIMS_LEASE] = lease_s

    # ------------------------------------------------------------------ slots

    def _running(self) -> tuple[int, int]:
        """Running (tool jobs, turn jobs); with no turn slots, every job counts as a tool job."""
        tools = turns = 0
        for job_id, task in self.tasks.items():
            if not task.done():
                if is_turn_job(job_id) and self.turn_slots > 0:
                    turns += 1
                else:
                    tools += 1
        return tools, turns

    def _room(self) -> tuple[int, int]:
        """Free (tool slots, turn slots); with no turn slots of its own, a turn job takes a tool slot."""
        tools, turns = self._running()
        if self.turn_slots == 0:
            free = max(self.tool_slots - tools - turns, 0)
            return free, free if self.serve_turns else 0
        return max(self.tool_slots - tools, 0), max(self.turn_slots - turns, 0) if self.serve_turns else 0

    def _has_room(self) -> bool:
        return any(self._room())

    def _a_kind_is_full(self) -> bool:
        """Whether every slot of a kind this worker serves is taken (a kind it does not serve, such as
        the tools of a worker of turns only, is not full: it has no slots)."""
        tools, turns = self._room()
        serves_tools = self.tool_slots > 0
        serves_turns = self.serve_turns and (self.turn_slots > 0 or serves_tools)
        return (serves_tools and tools == 0) or (serves_turns and turns == 0)

    # ------------------------------------------------------------------ admission of streams

    def _watch_lag(self) -> None:
        """Sample the event loop's lag every ``_LAG_TICK_S``: a sample over ``admit_lag_ms`` means the
        process has more to do than it can (every stream's events, every job); it then takes no new
        stream for ``_LAG_HOLD_S``, while it goes on taking tools. Streams it leaves stay announced
        for a worker with room, or for itself once it has caught up. New streams are taken a few at a
        time (``_streams_allowed``), so a burst of runs is spread while the lag shows."""
        if self._tick is not None or not self.wake or self.admit_lag_s <= 0 or self.turn_slots == 0:
            return
        if not self.serve_turns:
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + _LAG_TICK_S
        self._tick = loop.call_at(due, self._on_tick, due)

    def _on_tick(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - due > self.admit_lag_s:
            self._busy_until = now + _LAG_HOLD_S
        self._tick = None
        self._watch_lag()

    def _admits_streams(self) -> bool:
        return self._streams_allowed() > 0

    def _streams_allowed(self) -> int:
        """How many new streams this worker may start now: none while its loop lags (``_watch_lag``)
        and it runs streams already, else what its allowance (``_ADMIT_BURST``, refilled at
        ``_ADMIT_RATE`` a second) has left; a worker that runs none may always start one."""
        if self.admit_lag_s <= 0 or self.turn_slots == 0:
            return self.turn_slots or self.tool_slots
        now = asyncio.get_running_loop().time()
        self._allowance = min(float(_ADMIT_BURST), self._allowance + (now - self._allowance_at) * _ADMIT_RATE)
        self._allowance_at = now
        streams = self._running()[1]
        if self._busy_until > now and streams > 0:
            return 0  # lagging with streams of its own; a worker running none still takes one
        return max(int(self._allowance), 0 if streams > 0 else 1)

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._freed.set()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Start the ids this worker has room for, claimed in one call; the others stay queued."""
        await self._start(job_ids)

    async def _start(self, job_ids: list[bytes] | list[str]) -> list[str]:
        """Start what there is room for; returns the ids left for lack of room (not claimed)."""
        self._reap()  # a job that just ended (to run again) is not one running here
        tools, turns = self._running()
        streams = self._streams_allowed()
        chosen: list[str] = []
        left: list[str] = []
        for raw in job_ids:
            job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            if job_id in self.tasks or job_id in chosen:
                continue
            if not self.serve_turns and is_turn_job(job_id):
                left.append(job_id)  # another worker's (``serve_turns``)
                continue
            if is_turn_job(job_id) and self.turn_slots > 0:
                stream = is_stream_job(job_id)
                if turns < self.turn_slots and (streams > 0 or not stream):
                    turns += 1
                    streams -= int(stream)
                    chosen.append(job_id)
                    continue
            elif tools < self.tool_slots:
                tools += 1
                chosen.append(job_id)
                continue
            left.append(job_id)
        if not chosen:
            return left
        if self._claim is None:
            self._claim = self.pool.register_script(_CLAIM)
        beat = self._beat_name()
        claims = await self._claim(
            keys=[self.queue_name], args=[timestamp_ms(), self.claim_ms, beat, *chosen]
        )
        for job_id, claim in zip(chosen, claims, strict=True):
            await self._spawn(job_id, claim, beat)
        return left

    def _beat_name(self) -> str:
        """A name for the heartbeats one claim call writes, used by no other claim (of any worker), so
        each execution of a job has a heartbeat of its own even when a try number is given back."""
        self._claims_made += 1
        return f"{self._worker_token}:{self._claims_made}"

    async def _spawn(self, job_id: str, claim: Any, beat: str) -> None:
        """Run a job the claim script answered for (0: not claimed, it started elsewhere, finished, or
        was deferred again meanwhile)."""
        if not claim:
            return
        score, payload, job_try = claim
        if is_stream_job(job_id):
            self._allowance -= 1
        await self.sem.acquire()
        self.job_counter += 1
        run = self._run(job_id, int(float(score)), payload or None, int(job_try), beat)
        task = self.loop.create_task(run)
        task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
        self.tasks[job_id] = task

    async def _take_pushed(self, first: str | None) -> list[str]:
        """Claim and start the id popped and as many more announced ids as there is room for, in one
        call; returns the deferred ids that were announced."""
        if self._take is None:
            self._take = self.pool.register_script(_TAKE)
        self._reap()  # a job that just ended (to run again) is not one running here
        tools, turns = self._room()
        if first and not first.startswith("~"):
            if is_turn_job(first) and self.turn_slots > 0:
                turns -= 1
            else:
                tools -= 1
                if self.turn_slots == 0:
                    turns -= 1
        # One pool: the room is shared, taken from the tool list first. Else as many streams as allowed.
        turns = 0 if self.turn_slots == 0 or not self.serve_turns else min(turns, self._streams_allowed())
        beat = self._beat_name()
        claimed, deferred = await self._take(
            keys=[self.queue_name, *self.wake_keys],
            args=[timestamp_ms(), self.claim_ms, first or "", max(tools, 0), max(turns, 0), beat],
        )
        for i in range(0, len(claimed), 2):
            job_id = claimed[i].decode() if isinstance(claimed[i], bytes) else str(claimed[i])
            await self._spawn(
                job_id, claimed[i + 1], beat
            )  # claimed: not running anywhere, this one included
        return [d.decode() if isinstance(d, bytes) else str(d) for d in deferred]

    async def main(self) -> None:
        if self._pool is None:
            pool = quick_checkout(
                await create_pool(
                    self.redis_settings,
                    job_deserializer=self.job_deserializer,
                    job_serializer=self.job_serializer,
                    default_queue_name=self.queue_name,
                    expires_extra_ms=self.expires_extra_ms,
                ),
                spare=SPARE,
            )
            self._pool = batch_commands(pool) if self.batch else pool
        await super().main()

    def handle_sig(self, signum: Any) -> None:
        self.allow_pick_jobs = False  # the jobs it cancels are announced again: they are not its own
        super().handle_sig(signum)

    async def close(self) -> None:
        self.allow_pick_jobs = False
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        await super().close()

    # ------------------------------------------------------------------ one job

    async def _run(self, job_id: str, score: int, payload: bytes | None, job_try: int, beat: str) -> None:
        """Run one claimed job and end it in one call; the job's meaning is arq's (see the module
        docstring). ``beat``: the heartbeat its claim wrote, the job's to renew (``CLAIM_BEAT``)."""
        start_ms = timestamp_ms()
        if payload is None:
            logger.warning("job %s expired", job_id)
            return await self._end_early(job_id, beat, job_try, start_ms, JobExecutionFailed("job expired"))
        try:
            name, args, kwargs, enqueue_try, enqueue_ms = deserialize_job_raw(
                payload, deserializer=self.job_deserializer
            )
        except SerializationError as exc:
            logger.exception("deserializing job %s failed", job_id)
            return await self._end_early(job_id, beat, job_try, start_ms, exc)
        function = self.functions.get(name)
        if function is None:
            logger.warning("job %s, function %r not found", job_id, name)
            failure = JobExecutionFailed(f"function {name!r} not found")
            return await self._end_early(
                job_id, beat, job_try, start_ms, failure, name, args, kwargs, enqueue_ms
            )
        if enqueue_try and enqueue_try > job_try:
            job_try = enqueue_try
            await self.pool.setex(retry_key_prefix + job_id, _RETRY_TTL_S, str(job_try))
        cron = hasattr(function, "next_run")
        ref = name if cron else f"{job_id}:{name}"
        max_tries = self.max_tries if function.max_tries is None else function.max_tries
        if job_try > max_tries:
            logger.warning("%s: more than %d tries", ref, max_tries)
            failure = JobExecutionFailed(f"max {max_tries} retries exceeded")
            return await self._end_early(
                job_id, beat, job_try, start_ms, failure, name, args, kwargs, enqueue_ms
            )

        ctx = {
            **self.ctx,
            "job_id": job_id,
            "job_try": job_try,
            "enqueue_time": ms_to_datetime(enqueue_ms),
            "score": score,
            CLAIM_BEAT: beat,
        }
        if self.on_job_start:
            await self.on_job_start(ctx)
        timeout_s = self.job_timeout_s if function.timeout_s is None else function.timeout_s
        start_ms = timestamp_ms()
        logger.info("%6.2fs → %s try=%d", (start_ms - enqueue_ms) / 1000, ref, job_try)
        result: Any = _NO_RESULT
        done, success, defer_ms = False, False, 0
        task = self.loop.create_task(function.coroutine(ctx, *args, **kwargs))
        self.job_tasks[job_id] = task
        try:
            async with asyncio.timeout(timeout_s):
                result = await task
        except (Exception, asyncio.CancelledError) as exc:
            took = (timestamp_ms() - start_ms) / 1000
            if self.retry_jobs and isinstance(exc, Retry):
                if exc.defer_score:
                    defer_ms = exc.defer_score + (timestamp_ms() - score)
                logger.info("%6.2fs ↻ %s again in %0.2fs", took, ref, (exc.defer_score or 0) / 1000)
                self.jobs_retried += 1
            elif self.retry_jobs and isinstance(exc, asyncio.CancelledError | RetryJob):
                logger.info("%6.2fs ↻ %s cancelled, will be run again", took, ref)
                self.jobs_retried += 1
            else:
                logger.exception("%6.2fs ! %s failed, %s: %s", took, ref, type(exc).__name__, exc)
                result, done = exc, True
                self.jobs_failed += 1
        else:
            done = success = True
            logger.info("%6.2fs ← %s", (timestamp_ms() - start_ms) / 1000, ref)
            self.jobs_complete += 1
        finally:
            self.job_tasks.pop(job_id, None)
            if not task.done():
                task.cancel()
        data = None
        keep_s = self.keep_result_s if function.keep_result_s is None else function.keep_result_s
        forever = (
            self.keep_result_forever if function.keep_result_forever is None else function.keep_result_forever
        )
        if done and result is not _NO_RESULT and (forever or keep_s > 0):
            data = serialize_result(
                name,
                args,
                kwargs,
                job_try,
                enqueue_ms,
                success,
                result,
                start_ms,
                timestamp_ms(),
                ref,
                self.queue_name,
                job_id=job_id,
                serializer=self.job_serializer,
            )
        if self.on_job_end:
            await self.on_job_end(ctx)
        keep_claim = to_ms(keep_cronjob_progress) if cron else 0
        await asyncio.shield(
            self._end(
                job_id,
                beat,
                done,
                data,
                None if forever else keep_s,
                defer_ms=defer_ms,
                keep_claim_ms=keep_claim,
            )
        )
        if self.after_job_end:
            await self.after_job_end(ctx)

    async def _end_early(
        self,
        job_id: str,
        beat: str,
        job_try: int,
        start_ms: int,
        failure: BaseException,
        name: str = "<unknown>",
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        enqueue_ms: int = 0,
    ) -> None:
        """A job that cannot run (expired, unreadable, unknown, out of tries) ends failed, as arq ends it."""
        self.jobs_failed += 1
        data = serialize_result(
            name,
            args,
            kwargs or {},
            job_try,
            enqueue_ms,
            False,
            failure,
            start_ms,
            timestamp_ms(),
            f"{job_id}:{name}",
            self.queue_name,
            job_id=job_id,
            serializer=self.job_serializer,
        )
        keep = self.keep_result_forever or self.keep_result_s > 0
        await asyncio.shield(
            self._end(
                job_id,
                beat,
                True,
                data if keep else None,
                None if self.keep_result_forever else self.keep_result_s,
            )
        )

    async def _end(
        self,
        job_id: str,
        beat: str,
        done: bool,
        data: bytes | None,
        keep_s: float | None,
        *,
        defer_ms: int = 0,
        keep_claim_ms: int = 0,
    ) -> None:
        if self._finish is None:
            self._finish = self.pool.register_script(_FINISH)
        await self._finish(
            keys=[self.queue_name, wake_key(self.queue_name, job_id)],
            args=[
                job_id,
                "done" if done else "again",
                data or b"",
                0 if keep_s is None else max(int(keep_s * 1000), 1),
                int(defer_ms or 0),
                int(keep_claim_ms or 0),
                beat,
            ],
        )

    # ------------------------------------------------------------------ the loop

    async def _poll_iteration(self) -> None:
        if not self.wake:
            return await super()._poll_iteration()
        loop = asyncio.get_running_loop()
        self._watch_lag()
        if not self.allow_pick_jobs or self._pool is None:
            # Stopping (``drain_worker``, ``close``): no new job, and no Redis call that could race the
            # pool's closing; only the running jobs are waited for.
            await self._wait_freed(self.idle_s)
            self._reap()
            return
        if loop.time() >= self._next_sweep:
            # The whole queue: what no push announced (in one call, with the next due time).
            self._next_sweep = loop.time() + self.sweep_s
            await self._sweep_queue()
            self._reap()
            await self.heart_beat()
            return
        lists = self._lists_with_room()
        if lists:
            first = await self._wait_for_push(loop, lists)
            if not self.allow_pick_jobs:  # told to stop during the wait: the id is another worker's
                if first:
                    await self.pool.lpush(wake_key(self.queue_name, first.lstrip("~")), first)
                return
            # What the pop brought, and what else was announced that there is room for, in one call.
            deferred = await self._take_pushed(first) if first is not None else []
            # The due times are read when a deferred job was announced ("~id") or the next known due
            # time has come; a wait that ran out reads nothing (the sweep reads the whole queue).
            if deferred or self._due_now():
                await self._start(await self._read_due())
        else:
            # No free slot: wait for one. A due time that has passed is no reason to wait less (there is
            # no room for that job either): the wait is then bounded by the full-slots wait.
            await self._wait_freed(max(self._wait_s(loop), _FULL_WAIT_S))
        self._reap()
        await self.heart_beat()

    async def _wait_freed(self, seconds: float) -> None:
        """Until a running job ends (a slot is free), for at most ``seconds``."""
        self._freed.clear()
        # asyncio.timeout, not wait_for: on Python 3.11, wait_for can swallow the loop's own cancel
        # (``close``) when the event is set at the same moment, and the loop would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._freed.wait()

    def _wait_s(self, loop: asyncio.AbstractEventLoop) -> float:
        wait = min(self.idle_s, max(self._next_sweep - loop.time(), 0.0))
        if self._a_kind_is_full():
            # A pop cannot be cut short when a slot frees: while a kind is full, look again soon, so a
            # freed slot takes the next announced job of its kind.
            wait = min(wait, _FULL_WAIT_S)
        if self.turn_slots > 0 and self.admit_lag_s > 0 and self._streams_allowed() == 0:
            # Look again at the streams once the hold is over, or the allowance has one more.
            wait = min(wait, _LAG_HOLD_S if self._busy_until > loop.time() else 1 / _ADMIT_RATE)
        if self._next_due_ms is not None:
            wait = min(wait, max((self._next_due_ms - timestamp_ms()) / 1000, 0.0))
        return wait

    def _due_now(self) -> bool:
        return self._next_due_ms is not None and self._next_due_ms <= timestamp_ms()

    def _lists_with_room(self) -> list[str]:
        """The wake lists of the kinds of job this worker has a free slot for."""
        tools, turns = self._room()
        if self.turn_slots > 0 and not self._admits_streams():
            turns = 0
        return [key for key, free in zip(self.wake_keys, (tools, turns), strict=True) if free > 0]

    async def _wait_for_push(self, loop: asyncio.AbstractEventLoop, lists: list[str]) -> str | None:
        """The next id pushed on one of ``lists``: one blocking pop, for up to the next due time (the
        rest of a burst is taken with it, by ``_take_pushed``)."""
        wait = self._wait_s(loop)
        if wait <= 0.001:
            return ""  # nothing to wait for: take what is announced, without a blocking pop
        popped = await self.pool.blpop(lists, timeout=max(wait, 0.01))  # type: ignore[misc,arg-type]
        if not popped:
            return None
        first = popped[1]
        return first.decode() if isinstance(first, bytes) else str(first)

    async def _sweep_queue(self) -> None:
        if self._sweep is None:
            self._sweep = self.pool.register_script(_SWEEP)
        now = timestamp_ms()
        ids, nxt = await self._sweep(
            keys=[self.queue_name, *self.wake_keys], args=[now, self.queue_read_limit, _WAKE_MAX]
        )
        self._seen_ms = now
        self._next_due_ms = int(float(nxt)) if nxt else None
        if ids and self._has_room():
            await self._start(ids)

    async def _read_due(self) -> list[str]:
        """The jobs that became due since the last read (deferred ones), and when the next one is.

        Each read looks ``_DUE_MARGIN_MS`` further back than the last one reached, for a job whose
        enqueue landed a little after the time it carries; the ids that margin brings again are
        dropped here. A job that lands later still (or is queued again under an old score) is the
        sweep's."""
        if self._due is None:
            self._due = self.pool.register_script(_DUE)
        now = timestamp_ms()
        since = max(self._seen_ms - _DUE_MARGIN_MS, 0)
        ids, nxt = await self._due(keys=[self.queue_name], args=[since, now, self.queue_read_limit])
        self._seen_ms = now
        self._next_due_ms = int(float(nxt)) if nxt else None
        fresh = []
        for raw in ids:
            job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            if job_id not in self._recent:
                fresh.append(job_id)
        self._recent = {i.decode() if isinstance(i, bytes) else str(i) for i in ids}
        return fresh

    def _reap(self) -> None:
        """Forget finished tasks (re-raising what failed in arq's own bookkeeping, as arq does)."""
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                task.result()


def make_worker(settings_cls: Any, **overrides: Any) -> Worker:
    """A ``Worker`` from a ``WorkerSettings`` class (as ``arq.worker.create_worker`` makes arq's)."""
    values = {**get_kwargs(settings_cls), **overrides}
    for name in ("turn_slots", "wake", "sweep_s", "idle_s", "lease_s", "admit_lag_ms", "batch"):
        if hasattr(settings_cls, name) and name not in overrides:
            values[name] = getattr(settings_cls, name)
    return Worker(**values)
