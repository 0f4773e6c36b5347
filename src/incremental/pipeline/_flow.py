"""The steps shared by the jobs: dispatch a planned call, finish a result, continue or end a run."""

from __future__ import annotations

import time

from ..adapters._arq import ToolJob
from ..tools import Planned, ToolResult
from ._services import Services

__all__ = ["continue_run", "dispatch", "end_run", "finish_result"]


async def dispatch(svc: Services, run_id: str, turn: int, planned: Planned) -> None:
    """Enqueue a validated call; behind earlier calls with the same concurrency key, if any."""
    job = ToolJob(
        run_id=run_id,
        turn=turn,
        tool_use_id=planned.call.id,
        name=planned.call.name,
        args=planned.args,
        index=planned.call.index,
        concurrency_key=planned.concurrency_key,
        queue=planned.spec.queue,
        idempotent=planned.spec.idempotent,
    )
    if planned.concurrency_key is not None:
        may_run = await svc.store.chain_add(run_id, planned.concurrency_key, job.to_dict())
        if not may_run:
            await svc.events.append(
                run_id,
                "tool_waiting",
                turn=turn,
                tool_use_id=job.tool_use_id,
                name=job.name,
                concurrency_key=planned.concurrency_key,
            )
            return
    await _enqueue(svc, job)


async def _enqueue(svc: Services, job: ToolJob) -> None:
    created = await svc.enqueue_tool(job)
    await svc.events.append(
        job.run_id,
        "tool_enqueued",
        turn=job.turn,
        tool_use_id=job.tool_use_id,
        name=job.name,
        duplicate=not created,
    )


async def finish_result(
    svc: Services, run_id: str, turn: int, result: ToolResult, *, key: str | None
) -> None:
    """Record a result exactly once; start the next call with the same key; continue if it was the last."""
    outcome = await svc.store.add_result(run_id, turn, result)
    if outcome == "dup":
        await svc.events.append(
            run_id, "tool_duplicate_result", turn=turn, tool_use_id=result.tool_use_id, status=result.status
        )
    else:
        kind = {"ok": "tool_completed", "cancelled": "tool_cancelled", "refused": "tool_refused"}.get(
            result.status, "tool_failed"
        )
        await svc.events.append(
            run_id,
            kind,
            turn=turn,
            tool_use_id=result.tool_use_id,
            name=result.name,
            status=result.status,
            is_error=result.is_error,
            content=result.content[:500],
            attempts=result.attempts,
            started_at=result.started_at,
            finished_at=result.finished_at,
        )
    if key is not None:
        following = await svc.store.chain_next(run_id, key, result.tool_use_id)
        if following is not None:
            await _enqueue(svc, ToolJob.from_dict(following))
    if outcome == "continue":
        await continue_run(svc, run_id, turn + 1, trigger=result.tool_use_id)


async def continue_run(svc: Services, run_id: str, next_turn: int, *, trigger: str) -> None:
    """The turn before ``next_turn`` is complete: start the next model request (or stop at the limit)."""
    run = await svc.store.run(run_id)
    if run is None or run.state != "running":
        return
    max_turns = int(run.config.get("max_turns") or 10)
    if next_turn >= max_turns:
        await end_run(svc, run_id, "stopped", f"turn limit reached ({max_turns} turns)", turn=next_turn - 1)
        return
    await svc.events.append(run_id, "continued", turn=next_turn, trigger=trigger, decided_at=time.time())
    await svc.enqueue_stream_turn(run_id, next_turn)


async def end_run(svc: Services, run_id: str, state: str, reason: str, *, turn: int) -> None:
    """Final state of a run: completed, stopped (max_tokens, refusal, turn limit...), failed, cancelled."""
    if await svc.store.end_run(run_id, state, reason):
        kind = "run_completed" if state == "completed" else "run_failed" if state == "failed" else "run_ended"
        await svc.events.append(run_id, kind, turn=turn, state=state, reason=reason)
