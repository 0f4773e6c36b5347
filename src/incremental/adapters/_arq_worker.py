"""incremental's arq ``Worker``: woken by a push instead of polling, with separate slots for tools and turns.

arq's own worker polls its queue every ``poll_delay`` (5 ms here) and re-checks every due job, running
or not, on every poll: an idle worker sends about 200 commands a second, and a busy one pays for each
running job on every poll, times the number of workers. And one pool of ``max_jobs`` slots holds tools and
model streams alike, so tools queue behind streams that only wait on the network.

This worker runs the same jobs, from the same queue, with three changes:

- **Push.** Whoever enqueues a job also pushes its id onto ``inc:wake:{queue}`` (``adapters._arq``);
  an idle worker waits on that list with a blocking pop, so a job starts within a round trip of its
  enqueue. A deferred job (the safety net's checks) is announced as ``~id``: the worker reads when the
  queue's next job is due, which bounds its waits from then on. A full read of the queue every
  ``sweep_s`` finds what no push announced (a job whose worker was killed comes back when its lease
  runs out; a job enqueued by plain arq).
- **Slots by kind.** Tool jobs get ``max_jobs`` slots; the jobs that drive turns (``stream_turn``, the
  monitor) get ``turn_slots`` more of their own: a model stream costs a task and a socket, not a slot
  a tool could use.
- **One claim per batch.** The ids a wake-up brings are claimed in one Lua call (the job is due and not
  in progress elsewhere: it is marked in progress), instead of arq's watched transaction per job.

Everything else is arq's: job payloads, retries, results, timeouts, ``job_try``, ``Retry``, the health
check. Plain ``arq yourmodule.WorkerSettings`` still runs these jobs (polling, one pool of slots).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker as ArqWorker
from arq.worker import get_kwargs

__all__ = ["CLAIMS_LEASE", "TURN_JOB_PREFIXES", "Worker", "make_worker", "wake_key"]

logger = logging.getLogger(__name__)

TURN_JOB_PREFIXES = ("inc:stream:", "inc:monitor:")  # the jobs that take turn slots, not tool slots
CLAIMS_LEASE = "incremental_claim_lease_s"  # in the worker's ctx: its claims hold a job for this long
_WAKE_MAX = 10_000
_DUE_MARGIN_MS = 50  # a wake list nobody pops (every worker busy) is trimmed to this many ids

# Claim each id that is due and not in progress (mark it in progress); 0 for the others, else its score.
_CLAIM = """
local out = {}
local now = tonumber(ARGV[1])
for i = 3, #ARGV do
  local id = ARGV[i]
  local key = KEYS[2] .. id
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now and redis.call('EXISTS', key) == 0 then
    redis.call('PSETEX', key, ARGV[2], '1')
    out[#out + 1] = score
  else
    out[#out + 1] = 0
  end
end
return out
"""

# The ids due in (after, now], up to ARGV[3] of them, and the score of the next job due after now.
_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
local nxt = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {ids, nxt[2] or false}
"""


def wake_key(queue_name: str) -> str:
    return f"inc:wake:{queue_name}"


def is_turn_job(job_id: str) -> bool:
    return job_id.startswith(TURN_JOB_PREFIXES)


class Worker(ArqWorker):
    """arq's ``Worker`` with push wake-ups and slots by kind (see the module docstring).

    ``max_jobs``: the tool slots. ``turn_slots``: slots for stream and monitor jobs (0: they share the
    tool slots, as in plain arq). ``wake``: False
    keeps arq's polling (every ``poll_delay``). ``sweep_s``: how often the whole queue is read anyway.
    ``idle_s``: the longest a wait for a push lasts before the worker looks at the queue's due times.
    ``lease_s``: a claim marks a job in progress this far ahead (its job's lease renews it; see
    ``adapters._arq.job_lease``), instead of for arq's whole job timeout."""

    def __init__(
        self,
        *args: Any,
        turn_slots: int = 100,
        wake: bool = True,
        sweep_s: float = 2.0,
        idle_s: float = 1.0,
        lease_s: float | None = None,
        **kwargs: Any,
    ) -> None:
        tool_slots = int(kwargs.get("max_jobs", 10))
        kwargs["max_jobs"] = tool_slots + max(turn_slots, 0)
        if wake:
            kwargs["poll_delay"] = 0  # the waits below pace the loop
        super().__init__(*args, **kwargs)
        self.tool_slots, self.turn_slots = tool_slots, max(turn_slots, 0)
        self.wake, self.sweep_s, self.idle_s = wake, sweep_s, idle_s
        self.wake_key = wake_key(self.queue_name)
        self._freed = asyncio.Event()
        self._next_sweep = 0.0
        self._seen_ms = 0  # due times up to here have been read
        self._next_due_ms: int | None = None
        self._recent: set[str] = set()  # the ids the last due read brought
        self._claim: Any = None
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

    def _has_room(self) -> bool:
        tools, turns = self._running()
        if self.turn_slots == 0:
            return tools + turns < self.tool_slots
        return tools < self.tool_slots or turns < self.turn_slots

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._freed.set()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Start the ids this worker has room for, claimed in one call; the others stay queued."""
        await self._start(job_ids)

    async def _start(self, job_ids: list[bytes] | list[str]) -> list[str]:
        """Start what there is room for; returns the ids left for lack of room (not claimed)."""
        tools, turns = self._running()
        chosen: list[str] = []
        left: list[str] = []
        for raw in job_ids:
            job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            if job_id in self.tasks or job_id in chosen:
                continue
            if is_turn_job(job_id) and self.turn_slots > 0:
                if turns < self.turn_slots:
                    turns += 1
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
        scores = await self._claim(
            keys=[self.queue_name, in_progress_key_prefix], args=[timestamp_ms(), self.claim_ms, *chosen]
        )
        for job_id, score in zip(chosen, scores, strict=True):
            if not score:
                continue  # started elsewhere, finished, or deferred again meanwhile
            await self.sem.acquire()
            self.job_counter += 1
            task = self.loop.create_task(self.run_job(job_id, int(float(score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task
        return left

    # ------------------------------------------------------------------ the loop

    async def _poll_iteration(self) -> None:
        if not self.wake:
            return await super()._poll_iteration()
        loop = asyncio.get_running_loop()
        if not self.allow_pick_jobs or self._pool is None:
            # Stopping (``drain_worker``, ``close``): no new job, and no Redis call that could race the
            # pool's closing; only the running jobs are waited for.
            await self._wait_freed(self.idle_s)
            self._reap()
            return
        if loop.time() >= self._next_sweep:
            # The whole queue: what no push announced. arq's iteration reads it and calls start_jobs.
            self._next_sweep = loop.time() + self.sweep_s
            self._seen_ms = timestamp_ms()
            await super()._poll_iteration()
            await self.pool.ltrim(self.wake_key, -_WAKE_MAX, -1)  # type: ignore[misc]
            await self._read_due()
            return
        if self.allow_pick_jobs and self._has_room():
            popped = await self._wait_for_push(loop)
            pushed = [job_id for job_id in popped if not job_id.startswith("~")]
            # The due times are read when a wait ran out, a deferred job was announced ("~id"), or the
            # next known due time has come.
            due = await self._read_due() if len(pushed) < len(popped) or not popped or self._due_now() else []
            left = await self._start([*pushed, *due])
            if left and pushed:
                # No room for these here: give the announcements back for another worker.
                back = [job_id for job_id in left if job_id in pushed]
                if back:
                    await self.pool.lpush(self.wake_key, *reversed(back))  # type: ignore[misc]
        else:
            await self._wait_freed(self._wait_s(loop))
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
        if self._next_due_ms is not None:
            wait = min(wait, max((self._next_due_ms - timestamp_ms()) / 1000, 0.0))
        return wait

    def _due_now(self) -> bool:
        return self._next_due_ms is not None and self._next_due_ms <= timestamp_ms()

    async def _wait_for_push(self, loop: asyncio.AbstractEventLoop) -> list[str]:
        """The next id pushed: one blocking pop, for up to the next due time (a burst of pushes is one
        pop each, and each pop starts its job at once)."""
        wait = self._wait_s(loop)
        if wait <= 0.001:
            first = await self.pool.lpop(self.wake_key)  # type: ignore[misc]
        else:
            timeout: Any = max(wait, 0.01)
            popped = await self.pool.blpop([self.wake_key], timeout=timeout)  # type: ignore[misc]
            first = popped[1] if popped else None
        if first is None:
            return []
        return [first.decode() if isinstance(first, bytes) else str(first)]

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
    for name in ("turn_slots", "wake", "sweep_s", "idle_s", "lease_s"):
        if hasattr(settings_cls, name) and name not in overrides:
            values[name] = getattr(settings_cls, name)
    return Worker(**values)
