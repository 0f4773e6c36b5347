"""The one reducer of a run's event log: its state, every tool's status and timings, each turn.

Everything that shows or returns a run folds its log here: ``GET /v1/runs/{id}`` and the service's
snapshots (``to_dict``), ``RunResult`` and ``incremental replay``'s live table and ``--json`` summary
(``summary``). Pure: fed events (dicts or ``incremental.events`` models, in log order).

Events written by different processes can land slightly out of causal order (a worker may log
``tool_started`` a moment before the dispatcher logs ``tool_enqueued``), so a tool's status never moves
backwards: a finished tool stays finished, and a running one ignores a late "queued".

The summary's counterfactuals, per turn that asked for tools, with D the stream's duration (request
sent to message_stop), d_i each tool's run time and r_i when it was ready (from the request)::

    sequential after the stream   D + sum(d_i)
    parallel after the stream     D + max(d_i)
    ideal                         max(D, max(r_i + d_i))

A turn without tools costs D in all three. The run's figures add its turns up; times in the summary are
seconds from the run's start.

``to_dict`` also carries what a timeline of the run needs (each turn's request and stream end, the span
of each content block, every tool's ready, start and finish) so a page rebuilt from a snapshot draws the
same picture as one that saw every event; and each turn's text blocks apart (``text`` joins them with a
blank line, as ``RunResult.text`` does). When a model stream ends with a tool_use block still
streaming its input (a cancel mid-stream), that call never runs: the view settles it (``cancelled``
when the run was cancelled, else ``rejected``) instead of leaving it ``streaming`` for good.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..events import RUN_FINAL_KINDS, TOOL_RESULT_KINDS, RunEventModel, to_entry

__all__ = ["IN_FLIGHT", "BlockView", "RunView", "ToolView", "TurnView", "summarize"]

# Where a tool can be before it runs, in the order it usually passes them.
_BEFORE_RUNNING = {"streaming": 0, "ready": 1, "held": 2, "waiting": 2, "paused": 2, "queued": 3}
_FINAL = {
    "tool_completed": "completed",
    "tool_failed": "failed",
    "tool_cancelled": "cancelled",
    "tool_refused": "refused",
}
assert set(_FINAL) == TOOL_RESULT_KINDS
_STEP = {
    "tool_ready": "ready",
    "tool_held": "held",
    "tool_waiting": "waiting",
    "tool_paused": "paused",
    "tool_enqueued": "queued",
}
# Dispatched and not finished: the run's watchers wait for these before calling the run settled.
IN_FLIGHT = frozenset({"ready", "held", "waiting", "paused", "queued", "running"})
_RESULT_PREVIEW = 2000
_DISPATCH = {"tool_started", "tool_rejected"}
_NEVER_FINISHED = "never ran: its input was still streaming when the model stream ended"


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass
class ToolView:
    tool_use_id: str
    name: str
    turn: int
    index: int | None = None
    status: str = "streaming"
    input_preview: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] | None = None
    input_started_at: float | None = None
    ready_at: float | None = None
    enqueued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int | None = None
    is_error: bool | None = None
    result: str | None = None
    after_cancel: bool = False
    result_status: str | None = None  # the ToolResult's status (ok, error, timeout...), once recorded
    executions: int = 0  # tool_started events: more than one after a redelivery
    reported_at: float | None = None  # when its result event was logged
    concurrency_key: str | None = None
    last_field: str | None = None  # "path: src/App.tsx", the latest field completed while streaming
    dispatched: bool = False  # it reached planning (ready or rejected) or a worker
    settled_by_view: bool = False  # its stream ended mid-input; a result event, if one comes, wins

    @property
    def final(self) -> bool:
        return self.status not in _BEFORE_RUNNING and self.status != "running"

    def move(self, status: str) -> None:
        """Take ``status`` unless it would move the tool backwards."""
        if self.final:
            return
        if self.status == "running" and status in _BEFORE_RUNNING:
            return
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        duration = (
            self.finished_at - self.started_at
            if self.finished_at is not None and self.started_at is not None
            else None
        )
        return {
            "tool_use_id": self.tool_use_id,
            "name": self.name,
            "turn": self.turn,
            "index": self.index,
            "status": self.status,
            "input_preview": self.input_preview,
            "fields": self.fields,
            "progress": self.progress,
            "input_started_at": self.input_started_at,
            "ready_at": self.ready_at,
            "enqueued_at": self.enqueued_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": duration,
            "attempts": self.attempts,
            "is_error": self.is_error,
            "result": self.result,
            "after_cancel": self.after_cancel,
            "settled_by_view": self.settled_by_view,
        }


@dataclass
class BlockView:
    """One content block of a turn's message: when it started and ended streaming (text: its first and
    last delta; tool_use: its input's start and its ``content_block_stop``, i.e. ready or rejected)."""

    index: int
    type: str  # "text" or "tool_use"
    started_at: float | None = None
    ended_at: float | None = None
    tool_use_id: str | None = None
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "type": self.type,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "tool_use_id": self.tool_use_id,
        }


@dataclass
class TurnView:
    turn: int
    request_at: float | None = None  # the first request_sent
    stream_end_at: float | None = None  # message_stopped
    stop_reason: str | None = None
    usage: dict[str, Any] | None = None
    tools: list[str] = field(default_factory=list)  # tool_use ids, in the order they were seen
    blocks: dict[int, BlockView] = field(default_factory=dict)  # content block index -> its span
    stream_closed_at: float | None = None  # the stream ended without message_stop (closed, failed)
    salvaged_at: int | None = None  # turn_salvaged: its stream was cut at this block, the rest dropped
    completed_at: float | None = None  # turn_completed: its last result landed
    saved_s: float | None = None  # turn_completed's: against running its tools in parallel after it
    saved_sequential_s: float | None = None  # ... and against running them one by one after it

    def block(self, index: int, kind: str) -> BlockView:
        found = self.blocks.get(index)
        if found is None:
            found = self.blocks[index] = BlockView(index, kind)
        return found

    @property
    def text_blocks(self) -> list[str]:
        return [self.blocks[i].text for i in sorted(self.blocks) if self.blocks[i].type == "text"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "turn": self.turn,
            "request_at": self.request_at,
            "stream_end_at": self.stream_end_at,
            "stream_closed_at": self.stream_closed_at,
            "stop_reason": self.stop_reason,
            "salvaged_at": self.salvaged_at,
            "completed_at": self.completed_at,
            "blocks": [self.blocks[i].to_dict() for i in sorted(self.blocks)],
            "tool_blocks": sum(b.type == "tool_use" for b in self.blocks.values()),
            "tools": list(self.tools),
            "saved_s": self.saved_s,
            "saved_sequential_s": self.saved_sequential_s,
        }


@dataclass
class RunView:
    run_id: str
    state: str = "unknown"
    reason: str | None = None
    paused: bool = False
    created_at: float | None = None
    ended_at: float | None = None
    model: str | None = None
    turn: int = 0
    text: list[str] = field(default_factory=list)
    stop_reasons: list[str | None] = field(default_factory=list)
    tools: dict[str, ToolView] = field(default_factory=dict)
    saved_s: float = 0.0
    last_id: str | None = None
    events: int = 0
    stream_open: bool = False  # a model request went out and its stream has not ended yet
    error_type: str | None = None
    turns: dict[int, TurnView] = field(default_factory=dict)
    first_ts: float | None = None

    @classmethod
    def fold(cls, run_id: str, events: Iterable[Mapping[str, Any] | RunEventModel]) -> RunView:
        view = cls(run_id)
        for event in events:
            view.apply(event)
        return view

    @property
    def settled(self) -> bool:
        """The run has ended, its last model stream is closed, and no dispatched tool is still to
        report: nothing more is coming. (A cancel ends the run before the worker closes the stream,
        and calls that stream in after that still get their events.)"""
        return (
            self.state not in {"running", "unknown"}
            and not self.stream_open
            and not any(t.status in IN_FLIGHT for t in self.tools.values())
        )

    @property
    def ended(self) -> bool:
        return self.state not in {"running", "unknown"}

    def _turn(self, turn: int) -> TurnView:
        self.turn = max(self.turn, turn)
        while len(self.text) <= turn:
            self.text.append("")
            self.stop_reasons.append(None)
        if turn not in self.turns:
            self.turns[turn] = TurnView(turn)
        return self.turns[turn]

    def _tool(self, event: Mapping[str, Any]) -> ToolView | None:
        tool_id = event.get("tool_use_id")
        if not isinstance(tool_id, str):
            return None
        tool = self.tools.get(tool_id)
        if tool is None:
            tool = self.tools[tool_id] = ToolView(
                tool_id, str(event.get("name") or ""), int(event.get("turn") or 0), event.get("index")
            )
        if event.get("name") and not tool.name:
            tool.name = str(event["name"])
        return tool

    def _settle_streaming(self, turn: int | None = None) -> None:
        """The model stream ended: a call whose input was still streaming will never run."""
        for tool in self.tools.values():
            if tool.status == "streaming" and (turn is None or tool.turn == turn):
                tool.status = "cancelled" if self.state == "cancelled" else "rejected"
                tool.is_error = True
                tool.result = _NEVER_FINISHED
                tool.settled_by_view = True
            elif tool.settled_by_view and self.state == "cancelled" and tool.result_status is None:
                tool.status = "cancelled"

    def apply(self, event: Mapping[str, Any] | RunEventModel, entry_id: str | None = None) -> None:
        if isinstance(event, RunEventModel):
            event = to_entry(event)
        self.events += 1
        if entry_id is not None:
            self.last_id = entry_id
        kind = event.get("kind")
        ts = event.get("ts")
        if self.first_ts is None and isinstance(ts, int | float):
            self.first_ts = float(ts)
        turn_view = self._turn(event["turn"]) if isinstance(event.get("turn"), int) else self._turn(0)
        tool_id = event.get("tool_use_id")
        if isinstance(tool_id, str) and (kind in _STEP or kind in _FINAL or kind in _DISPATCH):
            tool = self._tool(event)
            if tool is not None and not tool.dispatched:
                tool.dispatched = True
            counted = kind in ("tool_ready", "tool_rejected") or kind in _FINAL
            if counted and tool_id not in turn_view.tools:
                turn_view.tools.append(tool_id)
        if kind == "run_started":
            self.state = "running"
            self.created_at = ts
            config = event.get("config") or {}
            request = config.get("request") if isinstance(config, dict) else None
            self.model = request.get("model") if isinstance(request, dict) else None
        elif kind in RUN_FINAL_KINDS:
            self.state = str(event.get("state") or str(kind).removeprefix("run_"))
            self.reason = event.get("reason")
            self.error_type = event.get("error_type")
            self.ended_at = ts
            self.paused = False
            if kind == "run_failed":
                self.stream_open = False  # the worker that failed it is not streaming any more
            if not self.stream_open:
                self._settle_streaming()
        elif kind == "request_sent":
            self.stream_open = True
            if turn_view.request_at is None:
                turn_view.request_at = ts
            if (event.get("attempt") or 1) > 1:  # a retried stream starts its message over
                turn_view.blocks.clear()
                self.text[turn_view.turn] = ""
        elif kind in {"stream_closed", "stream_failed"}:
            self.stream_open = False
            if turn_view.stream_end_at is None and turn_view.stream_closed_at is None:
                turn_view.stream_closed_at = ts
            self._settle_streaming(turn_view.turn)
        elif kind == "turn_salvaged":
            # The stream was cut and its message rebuilt from the blocks that completed: the turn's
            # stream has ended (here), the blocks from the cut on are not part of it.
            self.stream_open = False
            if turn_view.stream_end_at is None:
                turn_view.stream_end_at = ts
            cut_at = event.get("cut_at")
            if isinstance(cut_at, int):
                turn_view.salvaged_at = cut_at
                gone = {i for i in turn_view.blocks if i >= cut_at} | set(event.get("dropped") or [])
                for index in gone:
                    turn_view.blocks.pop(index, None)
                self.text[turn_view.turn] = "".join(turn_view.text_blocks)
            self._settle_streaming(turn_view.turn)
        elif kind == "turn_deadline":
            for tool_id in event.get("missing") or []:
                tool = self._tool({"tool_use_id": tool_id, "turn": event.get("turn")})
                if tool is not None and not tool.final:
                    tool.move("missing")
                    tool.is_error = True
                    tool.result = "no result within the turn's deadline"
        elif kind == "tool_duplicate_result":
            tool = self._tool(event)  # its one result is recorded already; a late report changes nothing
            if tool is not None and not tool.final:
                tool.move("missing")
        elif kind == "run_paused":
            self.paused = True
        elif kind == "run_resumed":
            self.paused = False
        elif kind == "text_delta":
            self.text[int(event.get("turn") or 0)] += str(event.get("text") or "")
            block = turn_view.block(int(event.get("index") or 0), "text")
            block.text += str(event.get("text") or "")
            if block.started_at is None:
                block.started_at = ts
            block.ended_at = ts
        elif kind == "message_stopped":
            self.stop_reasons[int(event.get("turn") or 0)] = event.get("stop_reason")
            self.stream_open = False
            turn_view.stream_end_at = ts
            turn_view.stop_reason = event.get("stop_reason")
            turn_view.usage = event.get("usage")
            self._settle_streaming(turn_view.turn)
        elif kind == "turn_completed":
            saved = float(event.get("saved_s") or 0.0)
            self.saved_s += saved
            turn_view.saved_s = saved
            sealed, last = event.get("sealed_at"), event.get("last_result_at")
            if isinstance(sealed, int | float) and isinstance(last, int | float):
                turn_view.completed_at = float(last)
                turn_view.saved_sequential_s = round(
                    float(sealed) + float(event.get("tool_time_s") or 0.0) - float(last), 4
                )
        elif kind == "tool_input_started" and not event.get("server_side"):
            tool = self._tool(event)
            if tool is not None:
                tool.input_started_at = ts
                if isinstance(event.get("index"), int):
                    block = turn_view.block(event["index"], "tool_use")
                    block.tool_use_id = tool.tool_use_id
                    block.started_at = ts
        elif kind == "tool_field_completed":
            tool = self._tool(event)
            if tool is not None:
                tool.fields[str(event.get("field"))] = event.get("value")
                tool.last_field = f"{event.get('field')}: {str(event.get('value'))[:40]}"
        elif kind in _STEP:
            tool = self._tool(event)
            if tool is not None:
                tool.move(_STEP[kind])
                if kind == "tool_ready":
                    tool.ready_at = ts
                    tool.input_preview = event.get("input_preview", tool.input_preview)
                    self._block_done(turn_view, tool, event, ts)
                elif kind == "tool_enqueued" and tool.enqueued_at is None:
                    tool.enqueued_at = ts
                elif kind == "tool_waiting":
                    tool.concurrency_key = event.get("concurrency_key")
        elif kind == "tool_rejected":
            tool = self._tool(event)
            if tool is not None:
                if tool.settled_by_view:  # the parser's own word on it
                    tool.status, tool.settled_by_view = "rejected", False
                tool.move("rejected")
                self._block_done(turn_view, tool, event, ts)
                tool.result = event.get("reason")
                tool.is_error = True
        elif kind == "tool_started":
            tool = self._tool(event)
            if tool is not None:
                tool.move("running")
                tool.executions += 1
                if tool.started_at is None:
                    tool.started_at = ts
                tool.attempts = event.get("attempt")
        elif kind == "tool_progress":
            tool = self._tool(event)
            if tool is not None:
                tool.progress = {k: event.get(k) for k in ("stage", "fraction", "message")}
        elif kind in _FINAL:
            tool = self._tool(event)
            # A rejected call (truncated or invalid input) is final already; its refusal is its result.
            if tool is not None and (
                not tool.final
                or (tool.status == "rejected" and tool.result_status is None)
                or tool.settled_by_view
            ):
                if tool.settled_by_view:  # a real report beats the view's guess
                    tool.status, tool.settled_by_view = "running", False
                tool.move(_FINAL[kind])
                tool.result_status = str(event.get("status") or "ok")
                tool.reported_at = ts
                tool.started_at = tool.started_at or event.get("started_at")
                tool.finished_at = event.get("finished_at") or ts
                tool.attempts = event.get("attempts") or tool.attempts
                tool.is_error = bool(event.get("is_error"))
                tool.result = str(event.get("content") or "")[:_RESULT_PREVIEW]
                tool.after_cancel = bool(event.get("after_cancel"))

    @staticmethod
    def _block_done(turn_view: TurnView, tool: ToolView, event: Mapping[str, Any], ts: Any) -> None:
        index = event.get("index", tool.index)
        if isinstance(index, int) and isinstance(ts, int | float):
            block = turn_view.block(index, "tool_use")
            block.tool_use_id = tool.tool_use_id
            if block.ended_at is None:
                block.ended_at = float(ts)

    def to_dict(self) -> dict[str, Any]:
        tools = sorted(self.tools.values(), key=lambda t: (t.turn, t.index if t.index is not None else 0))
        finished = [t for t in tools if t.final]
        turns = [self.turns[n] for n in sorted(self.turns)]
        summary = self.summary()
        measured = (
            self.ended_at - self.created_at
            if self.ended_at is not None and self.created_at is not None
            else None
        )
        return {
            "id": self.run_id,
            "state": self.state,
            "reason": self.reason,
            "paused": self.paused,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "model": self.model,
            "turn": self.turn,
            # Each turn's text blocks, apart; "text" joins them with a blank line (as RunResult.text).
            "text": ["\n\n".join(self._text_blocks(n)) for n in range(len(self.text))],
            "text_blocks": [self._text_blocks(n) for n in range(len(self.text))],
            "stop_reasons": list(self.stop_reasons),
            "tools": [t.to_dict() for t in tools],
            "turns": [t.to_dict() for t in turns],
            "stats": {
                "tools": len(tools),
                "tool_blocks": sum(t.to_dict()["tool_blocks"] for t in turns),
                "completed": sum(t.status == "completed" for t in finished),
                "failed": sum(t.status != "completed" for t in finished),
                "saved_s": round(self.saved_s, 3),
                "saved_sequential_s": round(sum(t.saved_sequential_s or 0.0 for t in turns), 3),
                "measured_s": _r(measured),
                "counterfactual": summary.get("counterfactual"),
            },
            "offset": self.last_id,
            "settled": self.settled,
        }

    def _text_blocks(self, turn: int) -> list[str]:
        view = self.turns.get(turn)
        blocks = view.text_blocks if view is not None else []
        # A view fed only the joined text (no block spans) still has the text itself.
        return blocks if blocks or not self.text[turn] else [self.text[turn]]

    # ------------------------------------------------------------------------------------ the summary

    def summary(self) -> dict[str, Any]:
        """What happened when, and what it would have cost otherwise: the ``replay --json`` contract."""
        if not self.events:
            return {}
        t0 = self.created_at if self.created_at is not None else (self.first_ts or 0.0)

        def rel(value: float | None) -> float | None:
            return None if value is None else round(value - t0, 4)

        sequential = parallel = ideal = 0.0
        turns: list[dict[str, Any]] = []
        for number in sorted(self.turns):
            turn = self.turns[number]
            if turn.request_at is None or turn.stream_end_at is None:
                turns.append({"turn": number, "tools": list(turn.tools)})
                continue
            duration = turn.stream_end_at - turn.request_at
            runs = []
            for tool_id in turn.tools:
                tool = self.tools[tool_id]
                started, finished = tool.started_at, tool.reported_at
                if started is not None and finished is not None:
                    ready = (
                        tool.ready_at if tool.ready_at is not None else turn.stream_end_at
                    ) - turn.request_at
                    runs.append((ready, finished - started))
            sequential += duration + sum(d for _, d in runs)
            parallel += duration + max((d for _, d in runs), default=0.0)
            ideal += max([duration] + [r + d for r, d in runs])
            following = self.turns.get(number + 1)
            turns.append(
                {
                    "turn": number,
                    "request_at": rel(turn.request_at),
                    "stream_end_at": rel(turn.stream_end_at),
                    "stop_reason": turn.stop_reason,
                    "tools": list(turn.tools),
                    "continued_at": rel(following.request_at if following is not None else None),
                }
            )
        first = next((t for t in turns if t.get("tools")), turns[0] if turns else {})
        return {
            "tools": [
                {
                    "id": tool.tool_use_id,
                    "name": tool.name,
                    "ready_at": rel(tool.ready_at),
                    "enqueued_at": rel(tool.enqueued_at),
                    "started_at": rel(tool.started_at),
                    "finished_at": rel(tool.reported_at),
                    "status": tool.result_status or ("running" if tool.status == "running" else "pending"),
                    "executions": tool.executions,
                }
                for tool in self.tools.values()
                if tool.dispatched
            ],
            "turns": turns,
            "stream_end_at": first.get("stream_end_at"),
            "continued_at": first.get("continued_at"),
            "total_s": rel(self.ended_at),
            "state": self.state if self.ended else "running",
            "reason": self.reason,
            "counterfactual": {
                "sequential_s": round(sequential, 4),
                "parallel_after_stream_s": round(parallel, 4),
                "ideal_s": round(ideal, 4),
            },
        }


def summarize(events: Iterable[Mapping[str, Any] | RunEventModel]) -> dict[str, Any]:
    """The summary (``RunView.summary``) of a run's events, in log order."""
    events = list(events)
    if not events:
        return {}
    first = events[0]
    run_id = first.run_id if isinstance(first, RunEventModel) else str(first.get("run_id", ""))
    return RunView.fold(run_id, events).summary()
