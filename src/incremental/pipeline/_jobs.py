"""The three jobs, as plain coroutines over ``Services`` (``workers/jobs.py`` hands them to arq).

``stream_turn``  sends one model request, reads the stream through the parser, dispatches every call
                 the moment it is ready, and seals the turn at ``message_stop``. A continuation's job
                 that finds its run paused sends nothing: it leaves the continuation to ``resume_run``.
``run_tool``     runs one call, once: a redelivered job returns the recorded result; a non-idempotent
                 call whose earlier run died mid-way is reported, not repeated. While the run is paused
                 the job holds itself (``resume_run`` enqueues it again).
``monitor_turn`` the safety net, from the moment a turn's stream starts: a turn whose stream job is
                 gone (it ran past its time limit, failed or was cancelled) before the message ended
                 is salvaged when it had dispatched tools (below), and fails its run, saying so,
                 otherwise; a sealed turn gets its missing results at the deadline and
                 continues; a continued turn whose next stream never started gets it enqueued again.
                 Otherwise (or while the run is paused: held tools have not had their chance) it
                 schedules its next check under a fresh job id and returns.
No job waits for another: each does its part and returns.

Every wait for the model is bounded (``_deadlines``): no headers, a stream gone quiet, or a turn past its
deadline is asked again when nothing was dispatched yet, and fails the turn otherwise.

A stream cut after it dispatched tools (its worker killed, its job stopped at its time limit, or a
shutdown that could not hand it over) is salvaged rather than failed: each content block is kept in the
store as it stops, and the job that takes the turn over (the redelivered stream job, the job itself at
its time limit, or the watchdog when the job is gone) rebuilds the assistant message from the blocks
that completed (``salvaged_content``), dispatches the calls among them that were held for the message's
end, and seals the turn with their ids, so it continues once their results are in. The message is
written in one step with the seal (``end_stream``), by the stream job at message_stop or by the salvage:
once a salvage took the stream, its first job (a worker thought dead that still runs) can neither keep
a block, nor end, seal or fail the turn.

``stream_turn`` and ``run_tool`` listen on the run's control channel while they run (``_control``): a
cancelled run closes the model stream and stops running tools; a cancelled call stops its tool.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from ..adapters._arq import ToolJob, job_alive, job_known, monitor_job_id, run_of_job, stream_job_id
from ..adapters._messages_client import APIError
from ..adapters._store import RunRecord
from ..core import (
    BlockStarted,
    BlockStatus,
    BlockStopped,
    Event,
    MessageStopped,
    StreamFailed,
    StreamParser,
    TextDelta,
    ToolCall,
    ToolFieldCompleted,
    ToolReady,
    ToolRejected,
    UpstreamError,
)
from ..events import (
    ContinuationPausedEvent,
    JobFailedEvent,
    JobHandedOverEvent,
    MessageStoppedEvent,
    RequestSentEvent,
    RunEventModel,
    StreamClosedEvent,
    StreamErrorInfo,
    StreamFailedEvent,
    StreamOpenedEvent,
    StreamRetryEvent,
    ToolFieldCompletedEvent,
    ToolHeldEvent,
    ToolInputStartedEvent,
    ToolPausedEvent,
    ToolProgressEvent,
    ToolReadyEvent,
    ToolRejectedEvent,
    ToolStartedEvent,
    TurnDeadlineEvent,
    TurnDeadlinePausedEvent,
    TurnSalvagedEvent,
    TurnSealedEvent,
)
from ..exceptions import StreamTimeoutError
from ..tools import (
    Planned,
    ToolContext,
    ToolRegistry,
    ToolResult,
    ToolSpec,
    execute,
    plan_call,
    refuse_rejected,
)
from ._coalesce import LogBuffer
from ._control import Interrupt, Interrupted, listening, run_cancel, tool_cancel
from ._deadlines import GuardedClient, HandedOver
from ._flow import advance_chain, continue_run, dispatch, end_run, finish_result, input_preview
from ._run import RequestError, request_tools
from ._services import Services, UnknownToolsetError, describe

__all__ = ["monitor_turn", "run_tool", "salvaged_content", "stream_turn", "unreadable_job"]

logger = logging.getLogger(__name__)

WORKER = f"{socket.gethostname()}:{os.getpid()}"  # in request_sent and tool_started: who did it

# Stop reasons that end a run normally; any other non-tool_use reason ends it as "stopped".
_FINISHED = {"end_turn", "stop_sequence"}
_OVERLOAD_RETRIES = 3
# The seal starts a chain of checks of its own (numbered from here, timed to the deadline); the chain
# the turn's start began hands over to it once it exists.
SEALED_CHECKS = 1_000_000


async def stream_turn(svc: Services, run_id: str, turn: int, generation: int = 0) -> str:
    """Never leaves a run hanging: anything unexpected fails the run, with what went wrong.

    ``generation``: 0, or n when ``resume_run`` enqueued the turn again the n-th time (its earlier job
    found the run paused); a job of an older generation does nothing."""
    try:
        return await _stream_turn(svc, run_id, turn, generation)
    except HandedOver:
        raise  # the turn was given back, for another worker (this one is shutting down)
    except asyncio.CancelledError:
        if not svc.drain.draining:
            # Not a shutdown: arq cut the job at its time limit. Nothing will stream this turn now:
            # salvage what it dispatched, or fail it.
            reason = f"turn {turn}'s stream job was stopped (past its time limit) before the message ended"
            await asyncio.shield(_salvage_or_fail(svc, run_id, turn, reason, "StreamTimeoutError"))
        raise
    except (UnknownToolsetError, RequestError) as exc:  # the run asks for what this worker cannot give
        reason = f"turn {turn} cannot start: {exc}"
        await svc.store.block_continuation(run_id, turn, "failed", reason)
        await end_run(svc, run_id, "failed", reason, turn=turn, error_type=type(exc).__name__)
        return "failed"
    except Exception as exc:
        reason = f"turn {turn} failed unexpectedly: {type(exc).__name__}: {exc}"
        await svc.store.block_continuation(run_id, turn, "failed", reason)
        await end_run(svc, run_id, "failed", reason, turn=turn, error_type=type(exc).__name__)
        raise


async def _fail_turn(svc: Services, run_id: str, turn: int, reason: str, error_type: str) -> None:
    await svc.store.block_continuation(run_id, turn, "failed", reason)
    await end_run(svc, run_id, "failed", reason, turn=turn, error_type=error_type)


async def _salvage_or_fail(svc: Services, run_id: str, turn: int, reason: str, error_type: str) -> str:
    """The turn's stream stopped for good mid-message: salvage it if it dispatched tools, else fail it."""
    outcome = await _salvage(svc, run_id, turn, reason)
    if outcome == "asked":
        await _fail_turn(svc, run_id, turn, reason, error_type)
        return "failed"
    return outcome


async def _stream_turn(svc: Services, run_id: str, turn: int, generation: int) -> str:
    run = await svc.store.run(run_id)
    if run is None:
        return "no such run"
    if run.state != "running":
        return f"run already {run.state}"
    # A continuation (turn > 0) re-checks the pause in the same step as its claim: a pause that landed
    # after continue_run looked must still hold this request. The first turn is the run's start, not a
    # continuation: like a stream already under way, it goes on while paused.
    opened = await svc.store.open_stream(run_id, turn, generation, hold=turn > 0)
    if opened == "stale":
        return "superseded"  # a resume enqueued a later generation of this job
    if opened == "paused":
        await svc.events.append(ContinuationPausedEvent(run_id=run_id, turn=turn - 1, next_turn=turn))
        return "paused"
    if opened != "claimed":
        # This turn's stream was started before, by a worker that died. If it had dispatched nothing,
        # asking again is safe; otherwise a new response (with new ids) could run tools twice: the turn
        # is salvaged from the blocks its stream completed instead.
        why = f"the worker streaming turn {turn} stopped mid-stream, after it had dispatched tools"
        salvaged = await _salvage(svc, run_id, turn, why)
        if salvaged != "asked":
            return salvaged
        if not await svc.store.restart_stream(run_id, turn):
            salvaged = await _salvage(svc, run_id, turn, why)  # a dispatch landed in between
            if salvaged != "asked":
                return salvaged
            await _fail_turn(svc, run_id, turn, why, "StreamInterrupted")
            return "stream already started"
        await svc.events.append(
            StreamRetryEvent(
                run_id=run_id,
                turn=turn,
                reason="the worker streaming this turn stopped before it dispatched anything",
                attempt=0,
            )
        )
    # The watchdog: from now on a check runs every monitor_interval_s until the turn is done with.
    await svc.enqueue_monitor(run_id, turn, 0, svc.monitor_interval_s, queue=run.queue)
    config = run.config
    registry = svc.registry_for(run)
    messages, continued_at = await _conversation(svc, run_id, turn)
    request: dict[str, Any] = {**config.get("request", {}), "messages": messages}
    tools = request_tools(request.pop("tools", None), registry)
    if tools:
        request["tools"] = tools
    betas: list[str] = list(config.get("betas") or [])

    client = svc.client()
    interrupt = Interrupt()
    deadline = asyncio.get_running_loop().time() + svc.stream_limits.total_s
    async with listening(svc, run_id, run_cancel, interrupt.fire):
        for attempt in range(1, _OVERLOAD_RETRIES + 2):
            turn_state = _TurnState(
                svc, run_id, turn, registry, float(config.get("turn_timeout_s") or 300), messages
            )
            turn_state.workspace, turn_state.queue = svc.workspace_for(run), run.queue
            guarded = GuardedClient(
                client,
                svc.stream_limits,
                deadline=deadline,
                drain=svc.drain,
                may_hand_over=_undispatched(turn_state),
            )
            since = None if continued_at is None else time.time() - continued_at
            await svc.events.append(
                RequestSentEvent(
                    run_id=run_id, turn=turn, attempt=attempt, since_continue_s=since, worker=WORKER
                )
            )
            try:
                await turn_state.read(guarded, request, betas, interrupt)
            except _Superseded:
                return "superseded"  # another job salvaged this turn's stream: it is theirs
            except HandedOver:
                if not turn_state.dispatched and await svc.store.restart_stream(run_id, turn, release=True):
                    await svc.events.append(
                        JobHandedOverEvent(
                            run_id=run_id,
                            turn=turn,
                            job_id=stream_job_id(run_id, turn, generation),
                            reason="the worker is shutting down; the turn is asked again by another",
                        )
                    )
                    raise
                # Something was dispatched meanwhile: this stream ends here, and what it completed is
                # salvaged (the turn continues with the calls it had made).
                return await _salvage_or_fail(
                    svc, run_id, turn, "the worker shut down mid-stream", "StreamInterrupted"
                )
            except StreamTimeoutError as exc:
                if exc.kind != "total" and attempt <= _OVERLOAD_RETRIES and await _may_ask_again(turn_state):
                    # Nothing was dispatched, so asking again cannot run a tool twice.
                    await svc.events.append(
                        StreamRetryEvent(run_id=run_id, turn=turn, reason=str(exc), attempt=attempt)
                    )
                    continue
                await turn_state.fail(str(exc), type(exc).__name__)
                return "timed out"
            except APIError as exc:
                await turn_state.fail(f"{type(exc).__name__}: {exc}", type(exc).__name__)
                return "api error"
            except Interrupted as stop:
                return await turn_state.close(stop.reason)
            error = turn_state.parser.error
            overloaded = isinstance(error, UpstreamError) and error.error_type == "overloaded_error"
            if overloaded and attempt <= _OVERLOAD_RETRIES and await _may_ask_again(turn_state):
                # Nothing ran yet, so asking again cannot run a tool twice.
                await svc.events.append(
                    StreamRetryEvent(run_id=run_id, turn=turn, reason=str(error), attempt=attempt)
                )
                try:
                    with interrupt.point():
                        await asyncio.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
                except Interrupted as stop:
                    return await turn_state.close(stop.reason)
                continue
            if error is not None:
                await turn_state.fail(str(error), type(error).__name__)
            return turn_state.outcome
    return turn_state.outcome


async def _conversation(svc: Services, run_id: str, turn: int) -> tuple[list[dict[str, Any]], float | None]:
    """The messages this turn's request is made of (the previous turn's results added, once), and when
    the previous turn was decided complete."""
    messages = await svc.store.messages(run_id)
    continued_at: float | None = None
    if turn > 0:
        previous = await svc.store.turn(run_id, turn - 1)
        continued_at = float(previous["continued_at"]) if previous.get("continued_at") else None
        if messages and messages[-1].get("role") == "assistant":  # not yet added by an earlier try
            expected: list[str] = json.loads(previous.get("expected") or "[]")
            results = await svc.store.results(run_id, turn - 1)
            messages.append({"role": "user", "content": [results[i].to_block() for i in expected]})
            await svc.store.set_messages(run_id, messages)
    return messages, continued_at


class _Superseded(Exception):
    """Another job salvaged this turn's stream (this one was thought dead): this job stops here."""


_SERVER_TOOL_USES = {"server_tool_use", "mcp_tool_use"}


def salvaged_content(records: dict[int, dict[str, Any]]) -> tuple[list[dict[str, Any]], int, list[int]]:
    """The assistant message of a cut stream, from the blocks it completed (``{index: {"block", "status",
    ...}}``, as ``keep_block`` stored them): ``(content, cut_at, dropped)``.

    Blocks go in index order. A block that never stopped is not there (the one streaming when the stream
    was cut: ``cut_at`` is the first index missing). A server tool call (``server_tool_use``,
    ``mcp_tool_use``) whose result block is not there is left out (``dropped``): the API ran it, but the
    message would otherwise ask for a result it never got. Client tool_use blocks are kept whatever their
    status: each has its result (a run, or a refusal), as in the full message."""
    cut_at = 0
    while cut_at in records:
        cut_at += 1
    blocks = [(i, records[i]["block"]) for i in sorted(records)]
    answered = {b.get("tool_use_id") for _, b in blocks if isinstance(b.get("tool_use_id"), str)}
    content: list[dict[str, Any]] = []
    dropped: list[int] = []
    for index, block in blocks:
        if block.get("type") in _SERVER_TOOL_USES and block.get("id") not in answered:
            dropped.append(index)
            continue
        content.append(block)
    return content, cut_at, dropped


async def _salvage(svc: Services, run_id: str, turn: int, why: str) -> str:
    """Take over a turn whose stream job is gone (or stopping) mid-message, and salvage it.

    ``"asked"`` when nothing of the turn was dispatched (the caller may ask the model again, or fail the
    turn); otherwise the turn is this caller's to end: ``"already sealed"`` (its stream was sealed, or its
    turn ended, before), ``"ended"`` (the stream had reached message_stop without asking for tools: the
    run ends as it would have), or ``"salvaged"``: the message is rebuilt from the completed blocks, its
    held calls dispatched and its refused ones answered, and the turn sealed with its tool_use ids."""
    taken, found = await svc.store.take_over_stream(run_id, turn)
    if taken == "done":
        record = await svc.store.turn(run_id, turn)
        run = await svc.store.run(run_id)
        if record.get("continued") == "blocked" and run is not None and run.state == "running":
            await _end_decided(svc, run_id, turn, record)
        return "already sealed"
    if taken == "asked":
        return "asked"
    if taken == "message":  # the job died between message_stop and the end it made of it
        await _end_without_tools(svc, run_id, turn, found or None)
        return "ended"
    run = await svc.store.run(run_id)
    if run is None or run.state != "running":
        return "ended"
    content, cut_at, dropped = salvaged_content(found)
    tool_blocks = [b for b in content if b.get("type") == "tool_use"]
    expected = [str(b["id"]) for b in tool_blocks]
    if not expected:  # dispatched, yet no tool_use block was kept: not expected to happen
        await _fail_turn(
            svc, run_id, turn, f"{why}; no tool call of it could be salvaged", "StreamInterrupted"
        )
        return "failed"
    messages, _ = await _conversation(svc, run_id, turn)
    messages.append({"role": "assistant", "content": content})
    await svc.events.append(
        TurnSalvagedEvent(
            run_id=run_id,
            turn=turn,
            cut_at=cut_at,
            blocks=len(content),
            dropped=dropped,
            expected=expected,
            reason=why,
            worker=WORKER,
        )
    )
    # Every call of the message gets its one result: those dispatched run (or ran); the ones held for
    # the message's end are dispatched now; a refusal that was not recorded yet is recorded.
    registry, workspace = svc.registry_for(run), svc.workspace_for(run)
    have = await svc.store.results(run_id, turn)
    for index, record in sorted(found.items()):
        block = record["block"]
        tool_id = block.get("id")
        if block.get("type") != "tool_use" or tool_id in have:
            continue
        name = str(block.get("name") or "")
        if record.get("status") != BlockStatus.READY:
            rejected = ToolRejected(
                index, str(tool_id), name, str(record.get("status")), record.get("reason") or ""
            )
            await finish_result(svc, run_id, turn, refuse_rejected(rejected), key=None)
            continue
        call = ToolCall(id=str(tool_id), name=name, input=block.get("input") or {}, index=index)
        planned = plan_call(call, registry, workspace)
        if isinstance(planned, ToolResult):
            await finish_result(svc, run_id, turn, planned, key=None)
        elif planned.policy == "after_message":
            await dispatch(svc, run_id, turn, planned)
        elif planned.concurrency_key is None and not await job_known(
            svc.pool, ToolJob(run_id=run_id, turn=turn, tool_use_id=call.id, name=name, args={}).job_id
        ):
            # Its first job died between keeping the block and enqueueing the call.
            await dispatch(svc, run_id, turn, planned)
    names = {str(b["id"]): str(b.get("name") or "") for b in tool_blocks}
    timeout_s = float(run.config.get("turn_timeout_s") or 300)
    deadline = time.time() + timeout_s
    outcome = await svc.store.end_stream(
        run_id,
        turn,
        messages,
        who="salvage",
        stop_reason=None,
        expected=expected,
        names=names,
        deadline=deadline,
    )
    if outcome not in ("ok", "continue"):
        return "already sealed"  # another salvage of it sealed it first
    await svc.events.append(TurnSealedEvent(run_id=run_id, turn=turn, expected=expected, deadline=deadline))
    if outcome == "continue":
        await continue_run(svc, run_id, turn + 1, trigger="seal")
    else:
        await svc.enqueue_monitor(
            run_id, turn, SEALED_CHECKS, min(svc.monitor_interval_s, timeout_s), queue=run.queue
        )
    return "salvaged"


async def _end_without_tools(svc: Services, run_id: str, turn: int, stop_reason: str | None) -> None:
    """The message ended with a stop_reason other than tool_use: nothing continues."""
    await svc.store.block_continuation(run_id, turn, "ended", str(stop_reason))
    state = "completed" if stop_reason in _FINISHED else "stopped"
    await end_run(svc, run_id, state, f"stop_reason {stop_reason}", turn=turn)


async def _end_decided(svc: Services, run_id: str, turn: int, record: dict[str, str]) -> bool:
    """A turn blocked while its run still runs: whoever blocked it decided the run's end and stopped
    (killed) before making it. Make it now, as it would have been made. True if this ended the run."""
    status, reason = record.get("status"), record.get("reason") or ""
    if status == "ended":  # the message ended without asking for tools; the reason is its stop_reason
        state = "completed" if reason in _FINISHED else "stopped"
        return await end_run(svc, run_id, state, f"stop_reason {reason}", turn=turn)
    if status == "failed":
        why = f"{reason} (its worker stopped before it ended the run)"
        return await end_run(svc, run_id, "failed", why, turn=turn, error_type="WorkerLost")
    return await end_run(svc, run_id, "cancelled", reason or "cancelled", turn=turn)


def _undispatched(state: _TurnState) -> Callable[[], bool]:
    return lambda: not state.dispatched


async def _may_ask_again(state: _TurnState) -> bool:
    """Whether the turn may be requested again: nothing was dispatched (the earlier attempt's refusals,
    which never ran, are dropped from the ledger)."""
    return not state.dispatched and await state.svc.store.restart_stream(state.run_id, state.turn)


class _TurnState:
    """One attempt at streaming one turn: the parser and what it has dispatched so far."""

    def __init__(
        self,
        svc: Services,
        run_id: str,
        turn: int,
        registry: ToolRegistry,
        timeout_s: float,
        messages: list[dict[str, Any]],
    ) -> None:
        self.svc, self.run_id, self.turn, self.registry = svc, run_id, turn, registry
        self.messages = messages  # the conversation this turn's request was built from
        self.timeout_s = timeout_s
        self.parser = StreamParser()
        self.dispatched = False
        self.held: list[Planned] = []  # after_message calls, dispatched at message_stop if it says tool_use
        self.ready_at: dict[str, float] = {}  # when each held call became ready
        self.names: dict[str, str] = {}
        self.outcome = "streaming"
        self.workspace: Path | None = None  # the run's: concurrency keys may name real files in it
        self.queue: str | None = None  # the run's: where its monitor jobs go
        self.pending = LogBuffer(svc.events.append_many, run_id, turn)

    async def log(self, event: RunEventModel) -> None:
        await self.svc.events.append(event)

    async def read(
        self, client: Any, request: dict[str, Any], betas: list[str], interrupt: Interrupt
    ) -> None:
        """Stream the response through the parser. Only the waits for the model (the response, each
        event) can be cut short by a cancel; handling an event always runs to its end."""
        async with AsyncExitStack() as stack:
            with interrupt.point():
                stream = await stack.enter_async_context(client.stream(request, betas=betas))
            await self.log(
                StreamOpenedEvent(run_id=self.run_id, turn=self.turn, request_id=stream.request_id)
            )
            events = aiter(stream)
            try:
                while True:
                    with interrupt.point():
                        obj = await anext(events, None)
                    if obj is None:
                        break
                    chunk = self.parser.feed(obj) if isinstance(obj, bytes) else self.parser.feed_event(obj)
                    async with self.pending.lock:
                        for event in chunk:
                            await self.handle(event)
                    if self.parser.error is not None:
                        break
            finally:
                await self.pending.close()
        if self.parser.error is None:
            for event in self.parser.end():
                await self.handle(event)
            await self.pending.flush()

    async def handle(self, event: Event) -> None:
        """Log (and act on) one event of the stream. Text and field completions wait in ``pending``
        (``LogBuffer``), written before the next event of any other kind (or in its call), so the log
        keeps the stream's order."""
        run_id, turn = self.run_id, self.turn
        if isinstance(event, TextDelta):
            self.pending.add_text(event.index, event.text)
            return
        if isinstance(event, ToolFieldCompleted):
            self.pending.add(
                ToolFieldCompletedEvent(
                    run_id=run_id,
                    turn=turn,
                    tool_use_id=event.tool_id,
                    name=event.tool_name,
                    field=event.field,
                    value=describe(event.value),
                )
            )
            return
        if isinstance(event, ToolReady):
            await self.on_ready(event)  # what is pending goes in its call, or is written first
            return
        await self.pending.flush()
        if isinstance(event, BlockStarted):
            if event.tool_id is not None:
                self.names[event.tool_id] = event.tool_name or ""
                started = ToolInputStartedEvent(
                    run_id=run_id,
                    turn=turn,
                    index=event.index,
                    tool_use_id=event.tool_id,
                    name=event.tool_name,
                    server_side=event.block_type != "tool_use",
                )
                if event.block_type == "tool_use":  # a client call: cancel_tool can find it from now on
                    await self.svc.store.note_tool(
                        run_id, turn, event.tool_id, event.tool_name or "", self.svc.events, started
                    )
                else:
                    await self.log(started)
        elif isinstance(event, BlockStopped):
            if event.status != BlockStatus.TRUNCATED:  # a block cut off is not kept: it is partial
                await self.keep(event.index, event.status)
        elif isinstance(event, ToolRejected):
            await self.keep(event.index, event.status, event.reason)
            result = refuse_rejected(event)
            await self.log(
                ToolRejectedEvent(
                    run_id=run_id,
                    turn=turn,
                    tool_use_id=event.tool_id,
                    name=event.tool_name,
                    reason=event.reason,
                )
            )
            await finish_result(self.svc, self.run_id, self.turn, result, key=None)
        elif isinstance(event, MessageStopped):
            await self.on_message_stop(event)
        elif isinstance(event, StreamFailed):
            await self.log(
                StreamFailedEvent(
                    run_id=run_id, turn=turn, error=StreamErrorInfo.model_validate(event.error.to_dict())
                )
            )

    def record(self, index: int, status: str, reason: str | None = None) -> dict[str, Any] | None:
        """A block that stopped, as the full message will have it, with its status."""
        block = next((b for b in reversed(self.parser.blocks) if b.index == index), None)
        if block is None:
            return None
        record: dict[str, Any] = {"block": block.assembled(), "status": str(status)}
        if reason:
            record["reason"] = reason
        return record

    async def keep(self, index: int, status: str, reason: str | None = None) -> None:
        """Keep a block that stopped (a salvage rebuilds the message from these); before anything is
        done with it, so a dispatched call's block is always kept."""
        record = self.record(index, status, reason)
        if record is not None and not await self.svc.store.keep_block(self.run_id, self.turn, index, record):
            raise self.superseded()

    def superseded(self) -> _Superseded:
        return _Superseded(f"turn {self.turn}'s stream was taken over")

    async def on_ready(self, event: ToolReady) -> None:
        call = event.call
        ready_at = time.time()
        ready_event = ToolReadyEvent(
            run_id=self.run_id,
            turn=self.turn,
            tool_use_id=call.id,
            name=call.name,
            index=call.index,
            input_preview=input_preview(call.input),
        )
        planned = plan_call(call, self.registry, self.workspace)
        record = self.record(event.index, BlockStatus.READY)
        if isinstance(planned, Planned) and planned.policy != "after_message" and record is not None:
            # The common case, in one call: the block kept, tool_ready, the turn marked dispatched,
            # the input stored, the job enqueued with tool_enqueued (or waiting behind its key).
            ready = (event.index, record, ready_event)
            # The caller holds the buffer's lock: no timed write is under way.
            outcome = await dispatch(
                self.svc,
                self.run_id,
                self.turn,
                planned,
                ready_at=ready_at,
                ready=ready,
                before=self.pending.take(),
            )
            if outcome == "superseded":
                raise self.superseded()
            self.dispatched = True
            return
        await self.pending.flush()
        await self.keep(event.index, BlockStatus.READY)
        await self.log(ready_event)
        if isinstance(planned, ToolResult):
            await finish_result(self.svc, self.run_id, self.turn, planned, key=None)
            return
        if planned.policy == "after_message":
            self.held.append(planned)
            self.ready_at[call.id] = ready_at
            await self.log(
                ToolHeldEvent(
                    run_id=self.run_id,
                    turn=self.turn,
                    tool_use_id=call.id,
                    name=call.name,
                    policy="after_message",
                )
            )
            return
        await self.mark_dispatched()
        await dispatch(self.svc, self.run_id, self.turn, planned, ready_at=ready_at)

    async def mark_dispatched(self) -> None:
        """From the first dispatch on, this turn is never requested again (recorded before it happens)."""
        if not self.dispatched:
            await self.svc.store.mark_dispatched(self.run_id, self.turn)
            self.dispatched = True

    async def on_message_stop(self, event: MessageStopped) -> None:
        """The message is whole: it is written, and (tool_use) the turn sealed, in one step, unless a
        salvage took the stream over; the calls held for the message's end are dispatched after it."""
        svc, run_id, turn = self.svc, self.run_id, self.turn
        content = event.message.get("content", [])
        messages = [*self.messages, {"role": "assistant", "content": content}]
        tool_uses = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_use"]
        asks = event.stop_reason == "tool_use"
        expected = [b["id"] for b in tool_uses] if asks else None
        deadline = time.time() + self.timeout_s
        outcome = await svc.store.end_stream(
            run_id,
            turn,
            messages,
            who="message",
            stop_reason=event.stop_reason,
            expected=expected,
            names={b["id"]: b.get("name", "") for b in tool_uses},
            deadline=deadline,
        )
        if outcome == "taken":
            self.outcome = "superseded"  # a salvage made the turn's end; the held calls are its
            return
        await self.log(
            MessageStoppedEvent(
                run_id=run_id, turn=turn, stop_reason=event.stop_reason, usage=event.message.get("usage")
            )
        )
        if expected is None:
            await self.cancel_held(f"not run: the message ended with stop_reason {event.stop_reason}")
            await _end_without_tools(svc, run_id, turn, event.stop_reason)
            self.outcome = "completed" if event.stop_reason in _FINISHED else "stopped"
            return
        held, self.held = self.held, []
        for planned in held:
            await self.mark_dispatched()
            await dispatch(svc, run_id, turn, planned, ready_at=self.ready_at.get(planned.call.id))
        await self.log(TurnSealedEvent(run_id=run_id, turn=turn, expected=expected, deadline=deadline))
        self.outcome = "sealed"
        if outcome == "continue":
            await continue_run(svc, run_id, turn + 1, trigger="seal")
        else:
            await svc.enqueue_monitor(
                run_id, turn, SEALED_CHECKS, min(svc.monitor_interval_s, self.timeout_s), queue=self.queue
            )

    async def cancel_held(self, content: str) -> None:
        """The after_message calls will never be dispatched: each gets its cancelled result."""
        held, self.held = self.held, []
        for planned in held:
            result = ToolResult.failure(planned.call.id, planned.call.name, "cancelled", content)
            await finish_result(
                self.svc, self.run_id, self.turn, result.with_(finished_at=time.time()), key=None
            )

    async def fail(self, reason: str, error_type: str) -> None:
        """The stream did not end with tool_use: nothing continues; queued tools will see the run ended.
        Unless another job salvaged the stream (this one was thought dead): the turn is theirs."""
        store = self.svc.store
        blocked = await store.block_continuation(self.run_id, self.turn, "failed", reason, by_stream=True)
        if not blocked and (await store.turn(self.run_id, self.turn)).get("stream_end") == "salvage":
            self.outcome = "superseded"
            return
        await end_run(self.svc, self.run_id, "failed", reason, turn=self.turn, error_type=error_type)
        await self.cancel_held(f"not run: the model stream failed ({reason})")
        self.outcome = "failed"

    async def close(self, reason: str) -> str:
        """The run was cancelled and the stream closed early (``cancel_run`` ended the run already)."""
        if self.outcome != "streaming":
            return self.outcome  # the message had stopped and the turn was sealed: nothing was cut
        await self.log(StreamClosedEvent(run_id=self.run_id, turn=self.turn, reason=reason))
        await self.svc.store.block_continuation(self.run_id, self.turn, "cancelled", reason)
        await self.cancel_held(f"not run: the run was cancelled before the message ended ({reason})")
        self.outcome = "cancelled"
        return self.outcome


async def run_tool(svc: Services, job_data: dict[str, Any], token: str = "") -> str:
    """Anything unexpected still ends in this call's one result (an error the model reads).

    ``token`` names this try of the job (arq's job id and try): a start is counted once per token. A job
    stopped by its worker's shutdown records nothing (it is handed over); one stopped otherwise (arq's
    time limit) records a timeout."""
    job = ToolJob.from_dict(job_data)
    try:
        return await _run_tool(svc, job, token)
    except asyncio.CancelledError:
        if not svc.drain.draining:
            result = ToolResult.failure(
                job.tool_use_id,
                job.name,
                "timeout",
                f"tool {job.name} was stopped by its worker's time limit for tool jobs; it may have done "
                "part of its work.",
            ).with_(finished_at=time.time())
            await asyncio.shield(finish_result(svc, job.run_id, job.turn, result, key=job.concurrency_key))
        raise
    except Exception as exc:
        result = ToolResult.failure(
            job.tool_use_id,
            job.name,
            "error",
            f"the worker failed around this tool: {type(exc).__name__}: {exc}",
        )
        await finish_result(svc, job.run_id, job.turn, result, key=job.concurrency_key)
        raise


async def give_up_tool(svc: Services, job_data: dict[str, Any], tries: int) -> str:
    """A tool job delivered for the ``tries``-th time, each earlier try cut short (its worker killed):
    the call gets a ``crashed`` result, so its turn goes on, rather than the job vanishing at arq's retry
    cap while the turn waits for its deadline. A call that has a result already keeps it."""
    job = ToolJob.from_dict(job_data)
    result = ToolResult.failure(
        job.tool_use_id,
        job.name,
        "crashed",
        f"the workers running tool {job.name} stopped {tries - 1} times before it finished; it may have "
        "done part of its work, and it was not run again",
    ).with_(finished_at=time.time())
    await finish_result(svc, job.run_id, job.turn, result, key=job.concurrency_key)
    return "crashed"


async def _run_tool(svc: Services, job: ToolJob, token: str = "") -> str:
    run_id, turn = job.run_id, job.turn
    start = await svc.store.begin_tool(run_id, turn, job.tool_use_id, job.generation, token)
    verdict = start.verdict
    while verdict == "paused":
        # Queued before the pause: hold this job (as its next generation: arq refuses a job id it has
        # seen, and this one must never run later); if a resume came in between, ask again.
        again = dataclasses.replace(job, generation=job.generation + 1)
        if await svc.store.hold_if_paused(run_id, again.to_dict()):
            await svc.events.append(
                ToolPausedEvent(run_id=run_id, turn=turn, tool_use_id=job.tool_use_id, name=job.name)
            )
            return "paused"
        start = await svc.store.begin_tool(run_id, turn, job.tool_use_id, job.generation, token)
        verdict = start.verdict
    if verdict == "done":
        # A redelivered job, or a call cancelled before it started: the result is recorded. If it waited
        # behind others with its concurrency key, the chain reached it only now: move the chain on.
        if job.concurrency_key is not None:
            await advance_chain(svc, run_id, job.concurrency_key, job.tool_use_id)
        return "already finished"
    if verdict == "stale":
        return "superseded"  # a pause held this job and released a later generation of it
    run = start.run
    if verdict in ("ended", "cancelled") or run is None:
        return await _not_started(svc, job, verdict)
    attempt = int(verdict)
    if attempt > 1 and not job.idempotent:
        result = ToolResult.failure(
            job.tool_use_id,
            job.name,
            "crashed",
            "the worker running this tool stopped mid-run; it may or may not have taken effect, "
            "and it was not run again because it is not idempotent",
        )
        await finish_result(svc, run_id, turn, result, key=job.concurrency_key)
        return "crashed"
    registry = svc.registry_for(run)
    spec = registry.get(job.name)
    if spec is None:  # planning refuses unknown names; a worker with another tool set could still get one
        result = ToolResult.failure(
            job.tool_use_id, job.name, "refused", f"this worker has no tool {job.name!r}"
        )
        await finish_result(svc, run_id, turn, result, key=job.concurrency_key)
        return "refused"
    if job.args is None:  # the job names the call; its input is stored with the run (read at start)
        args = start.args
        if args is None:  # its result was recorded meanwhile (a cancel), or the run is gone
            result = ToolResult.failure(
                job.tool_use_id, job.name, "error", "not run: the call's input is no longer stored"
            )
            await finish_result(svc, run_id, turn, result, key=job.concurrency_key)
            return "no input"
        job = dataclasses.replace(job, args=args)
    # tool_started and the progress after it wait up to the buffer's window, to be written together
    # (the start itself was counted by begin_tool); what is pending at the result goes in its call.
    log = LogBuffer(svc.events.append_many, run_id, turn)
    log.add(
        ToolStartedEvent(
            run_id=run_id,
            turn=turn,
            tool_use_id=job.tool_use_id,
            name=job.name,
            attempt=attempt,
            ready_at=job.ready_at,
            worker=WORKER,
        )
    )

    async def progress(update: dict[str, Any]) -> None:
        log.add(ToolProgressEvent(run_id=run_id, turn=turn, tool_use_id=job.tool_use_id, **update))

    ctx = ToolContext(
        tool_use_id=job.tool_use_id,
        name=job.name,
        run_id=run_id,
        attempt=attempt,
        workspace=svc.workspace_for(run),
        state=svc.state,
        progress_sink=progress,
    )
    try:
        result, told = await _execute_listening(svc, job, spec, ctx)
        await log.settle()
        await finish_result(
            svc,
            run_id,
            turn,
            result.with_(attempts=attempt),
            key=job.concurrency_key,
            after_cancel=told,
            before=log.take(),
        )
    finally:
        await asyncio.shield(log.close())  # a job cut short still logs its start and progress
    return result.status


async def _not_started(svc: Services, job: ToolJob, verdict: str) -> str:
    """The call will not run: its run ended (or its turn was blocked), or a cancel was asked for it."""
    if verdict == "cancelled":
        content = "not run: cancelled before it started"
    else:
        run = await svc.store.run(job.run_id)
        turn_record = await svc.store.turn(job.run_id, job.turn)
        reason = (run.get("reason") if run else None) or turn_record.get("reason") or "the run ended"
        content = f"not run: the run ended before this tool started ({reason})"
    result = ToolResult.failure(job.tool_use_id, job.name, "cancelled", content)
    await finish_result(
        svc, job.run_id, job.turn, result.with_(finished_at=time.time()), key=job.concurrency_key
    )
    return "cancelled"


async def _execute_listening(
    svc: Services, job: ToolJob, spec: ToolSpec, ctx: ToolContext
) -> tuple[ToolResult, bool]:
    """Run the tool in a task of its own, stopped (cancelled) if the run or this call is cancelled.

    Returns the result and whether the tool was told to stop: a tool that finished before the cancel
    landed keeps its own result (``after_cancel`` says it was told anyway).
    """
    started_at = time.time()
    task = asyncio.create_task(execute(spec, job.args or {}, ctx), name=f"tool:{job.tool_use_id}")
    told: list[str] = []

    def stop(reason: str) -> None:
        told.append(reason)
        ctx.cancel_event.set()
        task.cancel()

    try:
        async with listening(svc, job.run_id, tool_cancel(job.tool_use_id), stop):
            await asyncio.wait([task])
    finally:
        if not task.done():  # this job itself is being cancelled (worker shutdown, job timeout)
            task.cancel()
    if task.cancelled():
        reason = told[0] if told else "its task was cancelled"
        result = ToolResult(
            tool_use_id=job.tool_use_id,
            name=job.name,
            status="cancelled",
            content=f"tool {job.name} was stopped while running ({reason}); "
            "it may have done part of its work.",
            is_error=True,
            attempts=ctx.attempt,
            started_at=started_at,
            finished_at=time.time(),
        )
        return result, bool(told)
    return task.result(), bool(told)


async def monitor_turn(svc: Services, run_id: str, turn: int, check: int) -> str:
    record = await svc.store.turn(run_id, turn)
    run = await svc.store.run(run_id)
    if run is None:
        return "no such run"
    continued = record.get("continued")
    if continued == "1":
        # Make sure the next turn was sent even if whoever decided it died before sending (while
        # paused: that the continuation is pending, so resume_run sends it). Only continue_run's "go"
        # sends and logs; once the turn is marked sent, this only re-enqueues the next turn's job
        # (arq refuses a duplicate id; a paused run's job leaves it pending again), and looks again
        # until that job has started the next turn (whose own checks take over from there).
        max_turns = int(run.config.get("max_turns") or 10)
        if run.state == "running" and turn + 1 < max_turns:
            outcome = await continue_run(svc, run_id, turn + 1, trigger="monitor")
            if outcome in ("pending", "waiting"):
                return "paused"
            if outcome == "ended":
                return "ended"
            following = await svc.store.turn(run_id, turn + 1)
            if "stream_started" in following or run.paused:
                return "continued"
            generation = int(following.get("stream_generation") or 0)
            await svc.enqueue_stream_turn(run_id, turn + 1, generation, queue=run.queue)
            await svc.enqueue_monitor(run_id, turn, check + 1, svc.monitor_interval_s, queue=run.queue)
            return "continued; the next turn has not started yet"
        return "continued"
    if continued == "blocked" and run.state == "running":
        generation = int(record.get("stream_generation") or 0)
        if await job_alive(svc.pool, stream_job_id(run_id, turn, generation)):
            # Its stream job may be making that end right now: look again once it has had the time.
            await svc.enqueue_monitor(run_id, turn, check + 1, svc.monitor_interval_s, queue=run.queue)
            return "ended; its stream job is making the run's end"
        await _end_decided(svc, run_id, turn, record)
        return "ended (the run's end was made here)"
    if continued == "blocked" or run.state != "running":
        return "ended"
    sealed = record.get("sealed") == "1"
    if (
        sealed
        and check < SEALED_CHECKS
        and await job_known(svc.pool, monitor_job_id(run_id, turn, SEALED_CHECKS))
    ):
        return "sealed: the seal's checks take over"
    if record.get("sealed") != "1":
        lost = await _stream_lost(svc, run_id, turn, record, run)
        if lost is not None:
            # Read again: the job may have sealed the turn or ended the run just before it returned.
            again, now_run = await svc.store.turn(run_id, turn), await svc.store.run(run_id)
            if now_run is not None and now_run.state == "running" and again.get("sealed") != "1":
                outcome = await _salvage_or_fail(svc, run_id, turn, lost, "StreamJobLost")
                return "stream lost" if outcome == "failed" else f"stream lost: {outcome}"
        await svc.enqueue_monitor(run_id, turn, check + 1, svc.monitor_interval_s, queue=run.queue)
        return "waiting"
    now = time.time()
    deadline = float(record.get("deadline") or 0)
    if record.get("sealed") == "1" and now >= deadline:
        expected: list[str] = json.loads(record.get("expected") or "[]")
        names: dict[str, str] = json.loads(record.get("names") or "{}")
        have = await svc.store.results(run_id, turn)
        timeout = float(run.config.get("turn_timeout_s") or 300)
        missing = [
            ToolResult.failure(
                tool_id,
                names.get(tool_id, ""),
                "missing",
                f"no result within the turn's deadline ({timeout:g} s); the tool may still be running",
            )
            for tool_id in expected
            if tool_id not in have
        ]
        outcome = await svc.store.expire_turn(run_id, turn, missing, seen_deadline=record.get("deadline"))
        if outcome == "continue":
            await svc.events.append(
                TurnDeadlineEvent(run_id=run_id, turn=turn, missing=[m.tool_use_id for m in missing])
            )
            await continue_run(svc, run_id, turn + 1, trigger="deadline")
            return "deadline"
        if outcome not in ("held", "paused", "moved"):
            return "deadline"  # continued or blocked meanwhile
        # Paused: nothing expires (resume_run moves the deadline on by the paused time); or a resume
        # moved it since the read. Look again later.
        if outcome == "held":
            await svc.events.append(
                TurnDeadlinePausedEvent(
                    run_id=run_id, turn=turn, deadline=deadline, waiting=[m.tool_use_id for m in missing]
                )
            )
        await svc.enqueue_monitor(run_id, turn, check + 1, svc.monitor_interval_s, queue=run.queue)
        return "paused" if outcome != "moved" else "waiting"
    wait = min(svc.monitor_interval_s, deadline - now)
    await svc.enqueue_monitor(run_id, turn, check + 1, wait, queue=run.queue)
    return "waiting"


async def _stream_lost(
    svc: Services, run_id: str, turn: int, record: dict[str, str], run: RunRecord
) -> str | None:
    """Why the unsealed turn has nothing left that could finish it, or None while something can: its
    stream job is queued or running (a killed worker's job comes back once its lease runs out), or it
    has not started and the run is paused. A job that has not started the turn and is gone is enqueued
    again."""
    generation = int(record.get("stream_generation") or 0)
    job_id = stream_job_id(run_id, turn, generation)
    if await job_alive(svc.pool, job_id):
        return None
    if "stream_started" in record:
        return (
            f"the job streaming turn {turn} ended before the message did (it ran past its time limit, "
            "failed or was cancelled), so nothing could finish the turn"
        )
    if run.paused or await svc.enqueue_stream_turn(run_id, turn, generation, queue=run.queue):
        return None
    return f"the job for turn {turn} finished without starting the turn's stream"


async def unreadable_job(svc: Services, job_id: str, why: str) -> str:
    """A job whose payload could not be read (``adapters._arq.json_deserializer``): fail the run its id
    names, with a ``job_failed`` event and a final event that say why, rather than leave it waiting."""
    named = run_of_job(job_id)
    if named is None:
        logger.error("job %s could not be read and names no run of ours: %s", job_id, why)
        return "not ours"
    run_id, turn = named
    run = await svc.store.run(run_id)
    if run is None:
        return "no such run"
    turn = run.turn if turn is None else turn
    await svc.events.append(
        JobFailedEvent(run_id=run_id, turn=turn, job_id=job_id, error=f"UnreadableJobError: {why}")
    )
    reason = f"job {job_id} could not be read: {why}"
    await svc.store.block_continuation(run_id, turn, "failed", reason)
    await end_run(svc, run_id, "failed", reason, turn=turn, error_type="UnreadableJobError")
    return "failed the run"
