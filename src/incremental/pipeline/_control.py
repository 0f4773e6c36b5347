"""Cancel, pause and resume a run (or cancel one tool), and how jobs already running hear about it.

``cancel_run``   ends the run as ``cancelled`` (so nothing continues it), blocks its current turn, and
                 tells its running jobs on the control channel: the model stream is closed, running
                 tools are stopped (each reports honestly: ``tool_cancelled`` or, if it finished first,
                 ``tool_completed``, with ``after_cancel``). Tools not started yet get cancelled results
                 when their jobs run; tools a pause holds get theirs at once (``end_run``).
``cancel_tool``  one call: not started yet, its cancelled result is recorded now (it never runs);
                 running, it is told to stop and reports; either way the turn then continues as usual
                 and the model reads the cancelled result as an error.
``pause_run``    holds every tool that becomes ready (and every queued one when its job starts) and the
                 next model request (even one whose job was already enqueued: ``stream_turn`` re-checks
                 before it asks); the current model stream keeps going (a model cannot be paused). The
                 turn's deadline does not expire while paused: held tools have not had their chance.
``resume_run``   releases what the pause held, in order, and the pending continuation; the sealed turn's
                 deadline moves forward by the time it spent paused.

Every function takes ``Services``: a handler, a CLI or a ``Run`` handle can steer a run from anywhere.

How a running job hears (module ``adapters._control``): ``listening`` runs a side task for as long as
the job runs, following the run's control channel. A tool job runs its tool in a task of its own and
cancels it; ``stream_turn`` uses an ``Interrupt``, which cancels the job's own task but only while it
waits on the model stream (never while it records a result or dispatches a call: those steps must
finish once started, or a call could be left with no result).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from ..adapters._arq import ToolJob
from ..events import CancelRequestedEvent, RunPausedEvent, RunResumedEvent
from ..tools import ToolResult
from ._flow import continue_run, end_run, enqueue_tool_job, finish_result
from ._services import Services

__all__ = [
    "Interrupt",
    "Interrupted",
    "cancel_run",
    "cancel_tool",
    "listening",
    "pause_run",
    "resume_run",
    "run_cancel",
    "tool_cancel",
]

logger = logging.getLogger(__name__)

Wants = Callable[[dict[str, Any]], "str | None"]  # a control entry -> the cancel reason, if it is for us


# ---------------------------------------------------------------------------------------------- the API


async def cancel_run(svc: Services, run_id: str, reason: str = "cancelled by request") -> bool:
    """Cancel a running (or paused) run. False when it is not running (no such run, or it ended)."""
    run = await svc.store.run(run_id)
    if run is None or run.state != "running":
        return False
    turn = run.turn
    await svc.events.append(CancelRequestedEvent(run_id=run_id, turn=turn, target="run", reason=reason))
    # The order matters: the run ends (and its turn is blocked) before any running job is told, so a
    # result that a stopped tool records can never be the one that continues the turn.
    if not await end_run(svc, run_id, "cancelled", reason, turn=turn):
        return False  # it ended on its own meanwhile
    await svc.store.block_continuation(run_id, turn, "cancelled", reason)
    await svc.control.send(run_id, "cancel_run", reason=reason)
    return True


async def cancel_tool(
    svc: Services, run_id: str, tool_use_id: str, reason: str = "cancelled by request"
) -> str:
    """Cancel one tool call: ``"cancelled"`` (not started: its cancelled result is recorded now),
    ``"signalled"`` (running: told to stop; it will report), ``"finished"`` (it already had a result) or
    ``"unknown"`` (the run has no client tool_use with this id)."""
    info = await svc.store.tool_info(run_id, tool_use_id)
    if info is None:
        return "unknown"
    turn, name = int(info["turn"]), str(info.get("name") or "")
    outcome = await svc.store.cancel_tool(run_id, turn, tool_use_id, reason)
    if outcome == "finished":
        return outcome
    await svc.events.append(
        CancelRequestedEvent(run_id=run_id, turn=turn, target="tool", tool_use_id=tool_use_id, reason=reason)
    )
    if outcome == "signalled":
        await svc.control.send(run_id, "cancel_tool", tool_use_id=tool_use_id, reason=reason)
    else:
        # No key: if the call waits behind others with the same concurrency key, its job still runs
        # when its turn in the chain comes, finds this result and moves the chain on.
        result = ToolResult.failure(
            tool_use_id, name, "cancelled", f"not run: cancelled before it started ({reason})"
        ).with_(finished_at=time.time())
        await finish_result(svc, run_id, turn, result, key=None)
    return outcome


async def pause_run(svc: Services, run_id: str) -> bool:
    """Pause a running run. False when it is not running or already paused."""
    turn = await svc.store.pause(run_id)
    if turn is None:
        return False
    await svc.events.append(RunPausedEvent(run_id=run_id, turn=turn))
    return True


async def resume_run(svc: Services, run_id: str) -> bool:
    """Resume a paused run: its held tools are enqueued in order, then its pending continuation.
    False when it is not running or not paused."""
    released = await svc.store.release(run_id, resume=True)
    if released is None:
        return False
    pending, turn, jobs = released
    await svc.events.append(
        RunResumedEvent(run_id=run_id, turn=turn, released=len(jobs), continued=pending is not None)
    )
    for data in jobs:
        await enqueue_tool_job(svc, ToolJob.from_dict(data))
    if pending is not None and pending.get("sent"):
        # The continuation was sent (and logged) already; its stream job found the run paused and
        # returned. arq refuses that job's id again: enqueue the turn's next generation.
        next_turn = int(pending["turn"])
        generation = await svc.store.next_stream_generation(run_id, next_turn)
        run = await svc.store.run(run_id)
        await svc.enqueue_stream_turn(run_id, next_turn, generation, queue=run.queue if run else None)
    elif pending is not None:
        completed_by = str(pending.get("trigger") or "resume")
        await continue_run(svc, run_id, int(pending["turn"]), trigger="resume", completed_by=completed_by)
    return True


# ---------------------------------------------------------------------------------------------- listening


def run_cancel(entry: dict[str, Any]) -> str | None:
    """What ``stream_turn`` listens for: the run is cancelled."""
    if entry.get("kind") == "cancel_run":
        return str(entry.get("reason") or "cancelled")
    return None


def tool_cancel(tool_use_id: str) -> Wants:
    """What a tool job listens for: the run is cancelled, or this call is."""

    def wants(entry: dict[str, Any]) -> str | None:
        if entry.get("kind") == "cancel_tool" and entry.get("tool_use_id") == tool_use_id:
            return str(entry.get("reason") or "cancelled")
        return run_cancel(entry)

    return wants


@asynccontextmanager
async def listening(
    svc: Services, run_id: str, wants: Wants, on_cancel: Callable[[str], None]
) -> AsyncIterator[None]:
    """For the duration of the block, call ``on_cancel(reason)`` (once) when a control entry is for us."""
    fired: list[str] = []

    def deliver(entry: dict[str, Any]) -> None:
        reason = wants(entry)
        if reason is not None and not fired:
            fired.append(reason)
            on_cancel(reason)

    async with AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(svc.control.follow(run_id, deliver))
        except Exception:
            logger.warning(
                "control channel of run %s failed: cancels will not reach this job", run_id, exc_info=True
            )
        yield


class Interrupted(Exception):
    """A wait marked with ``Interrupt.point`` was cut short: the run was cancelled."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Interrupt:
    """Cuts the current task's waits short on a cancel, but only the waits it marks with ``point``.

    ``fire`` runs in the listener's task, so the job's task is suspended at some await: inside a
    ``point`` it is cancelled there, and the ``CancelledError`` becomes ``Interrupted`` (the cancel is
    taken back with ``uncancel``, so a cancel from elsewhere, such as a job timeout, still propagates);
    outside one, the next ``point`` raises ``Interrupted`` before it waits.
    """

    def __init__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Interrupt needs a running task")
        self._task = task
        self.reason: str | None = None
        self._waiting = False
        self._sent = False
        self._point = _Point(self)

    def fire(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        if self._waiting:
            self._sent = True
            self._task.cancel()

    def point(self) -> _Point:
        """A wait a cancel may cut short (``with interrupt.point(): await ...``; one at a time). Raises
        ``Interrupted`` if it is, or was already, cancelled."""
        return self._point


class _Point:
    """``Interrupt.point``'s context manager: one for the ``Interrupt``'s life, since a stream enters it
    for every chunk."""

    __slots__ = ("_of",)

    def __init__(self, of: Interrupt) -> None:
        self._of = of

    def __enter__(self) -> None:
        of = self._of
        if of.reason is not None:
            raise Interrupted(of.reason)
        of._waiting = True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        of = self._of
        of._waiting = False
        if not of._sent:
            return
        of._sent = False
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            if of._task.uncancel() > 0:
                return  # cancelled from elsewhere too
            raise Interrupted(of.reason or "cancelled") from None
        of._task.uncancel()  # the wait swallowed our cancel: take it back; the next point raises
