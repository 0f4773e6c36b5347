"""The three jobs, as plain coroutines over ``Services`` (``workers/jobs.py`` hands them to arq).

``stream_turn``  sends one model request, reads the stream through the parser, dispatches every call
                 the moment it is ready, and seals the turn at ``message_stop``.
``run_tool``     runs one call, once: a redelivered job returns the recorded result; a non-idempotent
                 call whose earlier run died mid-way is reported, not repeated.
``monitor_turn`` the safety net: checks a sealed turn, fills missing results at the deadline and
                 continues; otherwise schedules its next check under a fresh job id and returns.
No job waits for another: each does its part and returns.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

from ..adapters._arq import ToolJob
from ..adapters._messages_client import APIConnectionError, APIStatusError
from ..core import (
    BlockStarted,
    Event,
    MessageStopped,
    StreamFailed,
    StreamParser,
    TextDelta,
    ToolFieldCompleted,
    ToolReady,
    ToolRejected,
    UpstreamError,
)
from ..tools import Planned, ToolContext, ToolResult, execute, plan_call, refuse_rejected
from ._flow import continue_run, dispatch, end_run, finish_result
from ._services import Services, describe

__all__ = ["monitor_turn", "run_tool", "stream_turn"]

# Stop reasons that end a run normally; any other non-tool_use reason ends it as "stopped".
_FINISHED = {"end_turn", "stop_sequence"}
_OVERLOAD_RETRIES = 3


async def stream_turn(svc: Services, run_id: str, turn: int) -> str:
    """Never leaves a run hanging: anything unexpected fails the run, with what went wrong."""
    try:
        return await _stream_turn(svc, run_id, turn)
    except Exception as exc:
        reason = f"turn {turn} failed unexpectedly: {type(exc).__name__}: {exc}"
        await svc.store.block_continuation(run_id, turn, "failed", reason)
        await end_run(svc, run_id, "failed", reason, turn=turn)
        raise


async def _stream_turn(svc: Services, run_id: str, turn: int) -> str:
    run = await svc.store.run(run_id)
    if run is None:
        return "no such run"
    if run.state != "running":
        return f"run already {run.state}"
    if not await svc.store.claim_stream(run_id, turn):
        # This turn's stream was started before, by a worker that died. Streaming it again could run
        # its tools twice (a new response has new ids): fail the run instead.
        await end_run(
            svc, run_id, "failed", f"the worker streaming turn {turn} stopped mid-stream", turn=turn
        )
        return "stream already started"
    config = run.config
    registry = svc.registry_for(run)
    messages = await svc.store.messages(run_id)
    if turn > 0:
        previous = await svc.store.turn(run_id, turn - 1)
        expected: list[str] = json.loads(previous.get("expected") or "[]")
        results = await svc.store.results(run_id, turn - 1)
        messages.append({"role": "user", "content": [results[i].to_block() for i in expected]})
        await svc.store.set_messages(run_id, messages)
    request: dict[str, Any] = {
        "model": config.get("model", "claude-sonnet-4-5"),
        "max_tokens": int(config.get("max_tokens") or 8192),
        "messages": messages,
    }
    tools = registry.api_tools(config.get("tools"))
    if tools:
        request["tools"] = tools
    if config.get("system"):
        request["system"] = config["system"]

    client = svc.client_for(run)
    for attempt in range(1, _OVERLOAD_RETRIES + 2):
        turn_state = _TurnState(
            svc, run_id, turn, registry, float(config.get("turn_timeout_s") or 300), messages
        )
        await svc.events.append(run_id, "request_sent", turn=turn, attempt=attempt)
        try:
            async with client.stream(request) as stream:
                await svc.events.append(run_id, "stream_opened", turn=turn, request_id=stream.request_id)
                async for obj in stream:
                    for event in turn_state.parser.feed_event(obj):
                        await turn_state.handle(event)
                    if turn_state.parser.error is not None:
                        break
            if turn_state.parser.error is None:
                for event in turn_state.parser.end():
                    await turn_state.handle(event)
        except (APIStatusError, APIConnectionError) as exc:
            await turn_state.fail(f"{type(exc).__name__}: {exc}")
            return "api error"
        error = turn_state.parser.error
        overloaded = isinstance(error, UpstreamError) and error.error_type == "overloaded_error"
        if overloaded and not turn_state.dispatched and attempt <= _OVERLOAD_RETRIES:
            # Nothing ran yet, so asking again cannot run a tool twice.
            await svc.events.append(run_id, "stream_retry", turn=turn, reason=str(error), attempt=attempt)
            await asyncio.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
            continue
        if error is not None:
            await turn_state.fail(str(error))
        return turn_state.outcome
    return turn_state.outcome


class _TurnState:
    """One attempt at streaming one turn: the parser and what it has dispatched so far."""

    def __init__(
        self,
        svc: Services,
        run_id: str,
        turn: int,
        registry: Any,
        timeout_s: float,
        messages: list[dict[str, Any]],
    ) -> None:
        self.svc, self.run_id, self.turn, self.registry = svc, run_id, turn, registry
        self.messages = messages  # the conversation this turn's request was built from
        self.timeout_s = timeout_s
        self.parser = StreamParser()
        self.dispatched = False
        self.held: list[Planned] = []  # after_message calls, dispatched at message_stop if it says tool_use
        self.names: dict[str, str] = {}
        self.outcome = "streaming"

    async def log(self, kind: str, **fields: Any) -> None:
        await self.svc.events.append(self.run_id, kind, turn=self.turn, **fields)

    async def handle(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            await self.log("text_delta", index=event.index, text=event.text)
        elif isinstance(event, BlockStarted):
            if event.tool_id is not None:
                self.names[event.tool_id] = event.tool_name or ""
                await self.log(
                    "tool_input_started",
                    index=event.index,
                    tool_use_id=event.tool_id,
                    name=event.tool_name,
                    server_side=event.block_type != "tool_use",
                )
        elif isinstance(event, ToolFieldCompleted):
            await self.log(
                "tool_field_completed",
                tool_use_id=event.tool_id,
                name=event.tool_name,
                field=event.field,
                value=describe(event.value),
            )
        elif isinstance(event, ToolReady):
            await self.on_ready(event)
        elif isinstance(event, ToolRejected):
            result = refuse_rejected(event)
            await self.log(
                "tool_rejected", tool_use_id=event.tool_id, name=event.tool_name, reason=event.reason
            )
            await finish_result(self.svc, self.run_id, self.turn, result, key=None)
        elif isinstance(event, MessageStopped):
            await self.on_message_stop(event)
        elif isinstance(event, StreamFailed):
            await self.log("stream_failed", error=event.error.to_dict())

    async def on_ready(self, event: ToolReady) -> None:
        call = event.call
        await self.log("tool_ready", tool_use_id=call.id, name=call.name, index=call.index)
        planned = plan_call(call, self.registry)
        if isinstance(planned, ToolResult):
            await finish_result(self.svc, self.run_id, self.turn, planned, key=None)
            return
        if planned.policy == "after_message":
            self.held.append(planned)
            await self.log("tool_held", tool_use_id=call.id, name=call.name, policy="after_message")
            return
        self.dispatched = True
        await dispatch(self.svc, self.run_id, self.turn, planned)

    async def on_message_stop(self, event: MessageStopped) -> None:
        svc, run_id, turn = self.svc, self.run_id, self.turn
        content = event.message.get("content", [])
        messages = [*self.messages, {"role": "assistant", "content": content}]
        await svc.store.set_messages(run_id, messages)
        await self.log("message_stopped", stop_reason=event.stop_reason, usage=event.message.get("usage"))
        if event.stop_reason != "tool_use":
            for planned in self.held:
                await finish_result(
                    svc,
                    run_id,
                    turn,
                    ToolResult.failure(
                        planned.call.id,
                        planned.call.name,
                        "cancelled",
                        f"not run: the message ended with stop_reason {event.stop_reason}",
                    ),
                    key=None,
                )
            await svc.store.block_continuation(run_id, turn, "ended", str(event.stop_reason))
            state = "completed" if event.stop_reason in _FINISHED else "stopped"
            await end_run(svc, run_id, state, f"stop_reason {event.stop_reason}", turn=turn)
            self.outcome = state
            return
        for planned in self.held:
            self.dispatched = True
            await dispatch(svc, run_id, turn, planned)
        expected = [b["id"] for b in content if isinstance(b, dict) and b.get("type") == "tool_use"]
        names = {
            b["id"]: b.get("name", "") for b in content if isinstance(b, dict) and b.get("type") == "tool_use"
        }
        await svc.store.update_turn(run_id, turn, names=json.dumps(names))
        deadline = time.time() + self.timeout_s
        outcome = await svc.store.seal(run_id, turn, expected, deadline)
        await self.log("turn_sealed", expected=expected, deadline=deadline)
        self.outcome = "sealed"
        if outcome == "continue":
            await continue_run(svc, run_id, turn + 1, trigger="seal")
        else:
            await svc.enqueue_monitor(run_id, turn, 0, min(svc.monitor_interval_s, self.timeout_s))

    async def fail(self, reason: str) -> None:
        """The stream did not end with tool_use: nothing continues; queued tools will see the run ended."""
        await self.svc.store.block_continuation(self.run_id, self.turn, "failed", reason)
        await end_run(self.svc, self.run_id, "failed", reason, turn=self.turn)
        self.outcome = "failed"


async def run_tool(svc: Services, job_data: dict[str, Any]) -> str:
    """Anything unexpected still ends in this call's one result (an error the model reads)."""
    job = ToolJob.from_dict(job_data)
    try:
        return await _run_tool(svc, job)
    except Exception as exc:
        result = ToolResult.failure(
            job.tool_use_id,
            job.name,
            "error",
            f"the worker failed around this tool: {type(exc).__name__}: {exc}",
        )
        await finish_result(svc, job.run_id, job.turn, result, key=job.concurrency_key)
        raise


async def _run_tool(svc: Services, job: ToolJob) -> str:
    run_id, turn = job.run_id, job.turn
    existing = await svc.store.result(run_id, turn, job.tool_use_id)
    if existing is not None:
        return f"already {existing.status}"  # a redelivered job: the result is recorded, nothing runs again
    run = await svc.store.run(run_id)
    turn_record = await svc.store.turn(run_id, turn)
    if run is None or run.state != "running" or turn_record.get("continued") == "blocked":
        reason = (run.get("reason") if run else None) or turn_record.get("reason") or "the run ended"
        result = ToolResult.failure(
            job.tool_use_id,
            job.name,
            "cancelled",
            f"not run: the run ended before this tool started ({reason})",
        )
        await finish_result(svc, run_id, turn, result, key=job.concurrency_key)
        return "cancelled"
    attempt = await svc.store.count_execution(run_id, job.tool_use_id)
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
    await svc.events.append(
        run_id, "tool_started", turn=turn, tool_use_id=job.tool_use_id, name=job.name, attempt=attempt
    )

    async def progress(update: dict[str, Any]) -> None:
        await svc.events.append(run_id, "tool_progress", turn=turn, tool_use_id=job.tool_use_id, **update)

    ctx = ToolContext(
        tool_use_id=job.tool_use_id,
        name=job.name,
        run_id=run_id,
        attempt=attempt,
        workspace=svc.workspace_for(run),
        progress_sink=progress,
    )
    result = await execute(spec, job.args, ctx)
    await finish_result(svc, run_id, turn, result.with_(attempts=attempt), key=job.concurrency_key)
    return result.status


async def monitor_turn(svc: Services, run_id: str, turn: int, check: int) -> str:
    record = await svc.store.turn(run_id, turn)
    run = await svc.store.run(run_id)
    if run is None:
        return "no such run"
    continued = record.get("continued")
    if continued == "1":
        # Make sure the next turn was enqueued even if whoever continued died right after deciding.
        max_turns = int(run.config.get("max_turns") or 10)
        if run.state == "running" and turn + 1 < max_turns:
            await svc.enqueue_stream_turn(run_id, turn + 1)
        return "continued"
    if continued == "blocked" or run.state != "running":
        return "ended"
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
        if await svc.store.expire_turn(run_id, turn, missing) == "continue":
            await svc.events.append(
                run_id, "turn_deadline", turn=turn, missing=[m.tool_use_id for m in missing]
            )
            await continue_run(svc, run_id, turn + 1, trigger="deadline")
        return "deadline"
    wait = (
        svc.monitor_interval_s if record.get("sealed") != "1" else min(svc.monitor_interval_s, deadline - now)
    )
    await svc.enqueue_monitor(run_id, turn, check + 1, wait)
    return "waiting"
