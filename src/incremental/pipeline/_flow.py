"""The steps shared by the jobs: dispatch a planned call, finish a result, continue or end a run."""

from __future__ import annotations

import json
import time
from typing import Any

from ..adapters._arq import ToolJob
from ..adapters._batching import sent_at_once
from ..events import (
    EVENT_MODELS,
    RESULT_KIND,
    ContinuationPausedEvent,
    ContinuedEvent,
    RunCompletedEvent,
    RunEndedEvent,
    RunEventModel,
    RunFailedEvent,
    ToolDuplicateResultEvent,
    ToolEnqueuedEvent,
    ToolPausedEvent,
    ToolWaitingEvent,
    TurnCompletedEvent,
)
from ..tools import Planned, ToolResult
from ._services import Services
from ._trim import schedule_trim

__all__ = [
    "advance_chain",
    "continue_run",
    "dispatch",
    "end_run",
    "enqueue_tool_job",
    "finish_result",
    "input_preview",
]

_PREVIEW_CHARS = 300


def input_preview(value: object, limit: int = _PREVIEW_CHARS) -> str:
    """A tool input as compact JSON, cut to ``limit`` characters with its full length said."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


async def dispatch(
    svc: Services,
    run_id: str,
    turn: int,
    planned: Planned,
    *,
    ready_at: float | None = None,
    ready: tuple[int, dict[str, Any], RunEventModel] | None = None,
    before: list[RunEventModel] | tuple[()] = (),
) -> str:
    """Enqueue a validated call; behind earlier calls with the same concurrency key, if any. Its
    input is stored with the run first: the job only names the call. ``ready``: the stream's step at
    this call's ToolReady, written in the same call (``TurnStore.enqueue_tool_logged``), after
    ``before`` (the stream's pending events). Returns
    ``"superseded"`` when that step found the stream taken over (nothing was written), else what
    became of the job (``"waiting"``: behind an earlier call with its key)."""
    job = ToolJob(
        run_id=run_id,
        turn=turn,
        tool_use_id=planned.call.id,
        name=planned.call.name,
        index=planned.call.index,
        concurrency_key=planned.concurrency_key,
        queue=planned.spec.queue,
        idempotent=planned.spec.idempotent,
        ready_at=time.time() if ready_at is None else ready_at,
    )
    waiting = None
    if planned.concurrency_key is not None:
        waiting = ToolWaitingEvent(
            run_id=run_id,
            turn=turn,
            tool_use_id=job.tool_use_id,
            name=job.name,
            concurrency_key=planned.concurrency_key,
        )
    return await enqueue_tool_job(svc, job, args=planned.args, ready=ready, waiting=waiting, before=before)


async def enqueue_tool_job(
    svc: Services,
    job: ToolJob,
    *,
    args: dict[str, Any] | None = None,
    ready: tuple[int, dict[str, Any], RunEventModel] | None = None,
    waiting: RunEventModel | None = None,
    before: list[RunEventModel] | tuple[()] = (),
) -> str:
    """Hand a job to the queue (with its event, in one call), unless the run is paused: then it is held
    until ``resume_run``. A pause that lands after that look is caught by ``run_tool``, which re-checks
    at start. ``args``, ``ready``, ``waiting`` and ``before`` go into the same call (``dispatch``)."""

    ids: dict[str, Any] = {
        "run_id": job.run_id,
        "turn": job.turn,
        "tool_use_id": job.tool_use_id,
        "name": job.name,
    }
    with sent_at_once():  # a worker waits for it: not held for the stream worker's next loop turn
        outcome = await svc.store.enqueue_tool_logged(
            job,
            svc.events,
            ToolEnqueuedEvent(**ids, duplicate=False),
            args=args,
            ready=ready,
            waiting=waiting,
            before=before,
        )
    if outcome == "paused":
        if await svc.store.hold_if_paused(job.run_id, job.to_dict()):
            await svc.events.append(ToolPausedEvent(**ids))
            return "paused"
        # Resumed (or ended) meanwhile: enqueue it anyway; run_tool re-checks the run when it starts.
        outcome = "enqueued" if await svc.enqueue_tool(job) else "exists"
        if outcome == "enqueued":
            await svc.events.append(ToolEnqueuedEvent(**ids, duplicate=False))
    if outcome == "exists":
        await svc.events.append(ToolEnqueuedEvent(**ids, duplicate=True))
    return outcome


async def finish_result(
    svc: Services,
    run_id: str,
    turn: int,
    result: ToolResult,
    *,
    key: str | None,
    after_cancel: bool = False,
    before: list[RunEventModel] | None = None,
) -> None:
    """Record a result exactly once (with its event); start the next call with the same key; continue if
    it was the last.

    ``after_cancel``: the tool was running when it was told to stop (it reports that stop, or that it
    finished anyway); the event says so.
    """
    model = EVENT_MODELS[RESULT_KIND.get(result.status, "tool_failed")]
    fields = {
        "run_id": run_id,
        "turn": turn,
        "tool_use_id": result.tool_use_id,
        "name": result.name,
        "status": result.status,
        "is_error": result.is_error,
        "content": result.content[:500],
        "attempts": result.attempts,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "after_cancel": after_cancel,
    }
    # The result and its event are written in one step: no result is ever in the ledger without its
    # event in the log, whoever dies when.
    outcome, _ = await svc.store.add_result_logged(
        run_id, turn, result, svc.events, model.model_validate(fields), before=before or []
    )
    if outcome == "dup":
        await svc.events.append(
            ToolDuplicateResultEvent(
                run_id=run_id, turn=turn, tool_use_id=result.tool_use_id, status=result.status
            )
        )
    if key is not None:
        await advance_chain(svc, run_id, key, result.tool_use_id)
    if outcome == "continue":
        await continue_run(svc, run_id, turn + 1, trigger=result.tool_use_id)


async def advance_chain(svc: Services, run_id: str, key: str, tool_use_id: str) -> None:
    """``tool_use_id`` is done: if it heads its concurrency key's chain, start the call behind it."""
    following = await svc.store.chain_next(run_id, key, tool_use_id)
    if following is not None:
        await enqueue_tool_job(svc, ToolJob.from_dict(following))


async def continue_run(
    svc: Services, run_id: str, next_turn: int, *, trigger: str, completed_by: str | None = None
) -> str:
    """The turn before ``next_turn`` is complete: start the next model request (or stop at the limit).

    Sending it is decided once (``pend_continuation`` marks the turn ``continue_sent``): only the caller
    that hears ``"go"`` enqueues the next turn and logs ``turn_completed`` and ``continued``, so a second
    caller (the monitor, a resume) never repeats them. While the run is paused the continuation is
    recorded instead (``continuation_paused``) and ``resume_run`` calls this again (``trigger="resume"``;
    ``completed_by`` keeps what completed the turn). A pause that lands after the decision is caught by
    ``stream_turn``, which re-checks before its request. Returns the outcome (``"go"``, ``"sent"``,
    ``"pending"``, ``"stopped"``, ``"ended"``...).

    Log order, chosen to keep ``turn_completed`` off the latency-critical path: the next turn's job is
    enqueued first, then ``turn_completed`` (which reads the turn's results) and ``continued`` (whose
    ``decided_at`` is the time before the enqueue) are appended. With arq the next turn's worker needs a
    queue poll and several Redis round trips before its ``request_sent``, so in practice ``continued``
    comes first, but only the in-process runner guarantees it: order by ``decided_at``, not log position.
    """
    run = await svc.store.run(run_id)
    if run is None or run.state != "running":
        return "ended"
    completed_by = completed_by or trigger
    max_turns = int(run.config.get("max_turns") or 10)
    if next_turn >= max_turns:
        await _turn_completed(svc, run_id, next_turn - 1, completed_by)
        await end_run(svc, run_id, "stopped", f"turn limit reached ({max_turns} turns)", turn=next_turn - 1)
        return "stopped"
    outcome = await svc.store.pend_continuation(run_id, next_turn, completed_by)
    if outcome == "pending":
        await svc.events.append(
            ContinuationPausedEvent(run_id=run_id, turn=next_turn - 1, next_turn=next_turn)
        )
    if outcome != "go":
        return outcome
    decided_at = time.time()
    await svc.enqueue_stream_turn(run_id, next_turn, queue=run.queue)
    await _turn_completed(svc, run_id, next_turn - 1, completed_by)
    await svc.events.append(
        ContinuedEvent(run_id=run_id, turn=next_turn, trigger=trigger, decided_at=decided_at)
    )
    return outcome


async def _turn_completed(svc: Services, run_id: str, turn: int, trigger: str) -> None:
    """Log what overlapping the tools with the stream saved on a finished turn (if it had tool calls).

    Times are wall clock. A tool's duration is ``finished_at - started_at`` (0 for results with no run,
    such as refusals); ``last_result_at`` is the latest ``finished_at`` (results are recorded right
    after), or the turn's ``continued_at`` when the deadline filled results in or no result has a
    ``finished_at``. ``parallel_after_stream_end`` is when the turn would have been complete had
    every tool started only at ``message_stop`` and all run in parallel; ``saved_s`` is how much earlier
    it actually was (negative when the overlap did not pay, e.g. queueing behind a busy worker).
    """
    record = await svc.store.turn(run_id, turn)
    expected: list[str] = json.loads(record.get("expected") or "[]")
    if not expected:
        return
    results = await svc.store.results(run_id, turn)
    durations = [
        r.finished_at - r.started_at
        for r in results.values()
        if r.started_at is not None and r.finished_at is not None
    ]
    finished = [r.finished_at for r in results.values() if r.finished_at is not None]
    sealed_at = float(record.get("sealed_at") or 0.0)
    continued_at = float(record.get("continued_at") or sealed_at)
    last_result_at = continued_at if trigger == "deadline" or not finished else max(finished)
    parallel = sealed_at + max(durations, default=0.0)
    await svc.events.append(
        TurnCompletedEvent(
            run_id=run_id,
            turn=turn,
            sealed_at=sealed_at,
            last_result_at=last_result_at,
            tools=len(expected),
            tool_time_s=round(sum(durations), 6),
            parallel_after_stream_end=parallel,
            saved_s=round(parallel - last_result_at, 6),
            trigger=trigger,
        )
    )


async def end_run(
    svc: Services, run_id: str, state: str, reason: str, *, turn: int, error_type: str | None = None
) -> bool:
    """Final state of a run: completed, stopped (max_tokens, refusal, turn limit...), failed, cancelled.

    ``error_type`` (failed runs) names the error class that failed it. Tools a pause was holding get
    their cancelled result here (nothing will release them now); a continuation a pause was holding is
    dropped. Its keys then follow its retention (``store.end_run``), and its trim is scheduled
    (``schedule_trim``). False if the run had already ended.
    """
    if not await svc.store.end_run(run_id, state, reason):
        if await svc.store.run(run_id) is None and await svc.events.first_id(run_id) is not None:
            # Its record is gone but its log goes on (Redis restarted without persistence, or the run
            # expired): say so, rather than leave its watchers waiting for an end.
            await svc.events.append(
                RunFailedEvent(
                    run_id=run_id,
                    turn=turn,
                    state="failed",
                    reason=f"the run's record is gone from Redis (lost in a restart without persistence?); "
                    f"it was to end {state}: {reason}",
                    error_type="RunStateLost",
                )
            )
        return False
    if state == "completed":
        await svc.events.append(RunCompletedEvent(run_id=run_id, turn=turn, state="completed", reason=reason))
    elif state == "failed":
        await svc.events.append(
            RunFailedEvent(run_id=run_id, turn=turn, state="failed", reason=reason, error_type=error_type)
        )
    else:
        await svc.events.append(
            RunEndedEvent(
                run_id=run_id,
                turn=turn,
                state="cancelled" if state == "cancelled" else "stopped",
                reason=reason,
            )
        )
    released = await svc.store.release(run_id, resume=False)
    for data in released[2] if released else []:
        job = ToolJob.from_dict(data)
        if await svc.store.result(run_id, job.turn, job.tool_use_id) is not None:
            # Cancelled on its own while held: its result is in; only its chain must move on.
            if job.concurrency_key is not None:
                await advance_chain(svc, run_id, job.concurrency_key, job.tool_use_id)
            continue
        result = ToolResult.failure(
            job.tool_use_id,
            job.name,
            "cancelled",
            f"not run: the run ended ({state}: {reason}) while a pause held this tool",
        ).with_(finished_at=time.time())
        await finish_result(svc, run_id, job.turn, result, key=job.concurrency_key)
    await schedule_trim(svc, run_id)
    return True
