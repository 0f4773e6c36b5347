"""A run's state, folded from its event log: what ``GET /v1/runs/{id}`` answers and a snapshot carries.

Pure: fed events (dicts, in log order), it keeps every tool's status and timings, each turn's text and
the run's state. Events written by different processes can land slightly out of causal order (a worker
may log ``tool_started`` a moment before the dispatcher logs ``tool_enqueued``), so a tool's status
never moves backwards: a finished tool stays finished, and a running one ignores a late "queued".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["IN_FLIGHT", "RunView", "ToolView"]

# Where a tool can be before it runs, in the order it usually passes them.
_BEFORE_RUNNING = {"streaming": 0, "ready": 1, "held": 2, "waiting": 2, "paused": 2, "queued": 3}
_FINAL = {
    "tool_completed": "completed",
    "tool_failed": "failed",
    "tool_cancelled": "cancelled",
    "tool_refused": "refused",
}
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

    def _turn(self, turn: int) -> None:
        self.turn = max(self.turn, turn)
        while len(self.text) <= turn:
            self.text.append("")
            self.stop_reasons.append(None)

    def _tool(self, event: dict[str, Any]) -> ToolView | None:
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

    def apply(self, event: dict[str, Any], entry_id: str | None = None) -> None:
        self.events += 1
        if entry_id is not None:
            self.last_id = entry_id
        kind = event.get("kind")
        ts = event.get("ts")
        if isinstance(event.get("turn"), int):
            self._turn(event["turn"])
        if kind == "run_started":
            self.state = "running"
            self.created_at = ts
            config = event.get("config") or {}
            self.model = config.get("model") if isinstance(config, dict) else None
        elif kind in {"run_completed", "run_failed", "run_ended"}:
            self.state = str(event.get("state") or kind.removeprefix("run_"))
            self.reason = event.get("reason")
            self.ended_at = ts
            self.paused = False
            if kind == "run_failed":
                self.stream_open = False  # the worker that failed it is not streaming any more
        elif kind == "request_sent":
            self.stream_open = True
        elif kind in {"stream_closed", "stream_failed"}:
            self.stream_open = False
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
        elif kind == "message_stopped":
            self.stop_reasons[int(event.get("turn") or 0)] = event.get("stop_reason")
            self.stream_open = False
        elif kind == "turn_completed":
            self.saved_s += float(event.get("saved_s") or 0.0)
        elif kind == "tool_input_started" and not event.get("server_side"):
            tool = self._tool(event)
            if tool is not None:
                tool.input_started_at = ts
        elif kind == "tool_field_completed":
            tool = self._tool(event)
            if tool is not None:
                tool.fields[str(event.get("field"))] = event.get("value")
        elif kind in _STEP:
            tool = self._tool(event)
            if tool is not None:
                tool.move(_STEP[kind])
                if kind == "tool_ready":
                    tool.ready_at = ts
                    tool.input_preview = event.get("input_preview", tool.input_preview)
                elif kind == "tool_enqueued" and tool.enqueued_at is None:
                    tool.enqueued_at = ts
        elif kind == "tool_rejected":
            tool = self._tool(event)
            if tool is not None:
                tool.move("rejected")
                tool.result = event.get("reason")
                tool.is_error = True
        elif kind == "tool_started":
            tool = self._tool(event)
            if tool is not None:
                tool.move("running")
                tool.started_at = ts
                tool.attempts = event.get("attempt")
        elif kind == "tool_progress":
            tool = self._tool(event)
            if tool is not None:
                tool.progress = {k: event.get(k) for k in ("stage", "fraction", "message")}
        elif kind in _FINAL:
            tool = self._tool(event)
            if tool is not None and not tool.final:
                tool.move(_FINAL[kind])
                tool.started_at = event.get("started_at") or tool.started_at
                tool.finished_at = event.get("finished_at") or ts
                tool.attempts = event.get("attempts") or tool.attempts
                tool.is_error = bool(event.get("is_error"))
                tool.result = str(event.get("content") or "")[:_RESULT_PREVIEW]
                tool.after_cancel = bool(event.get("after_cancel"))

    def to_dict(self) -> dict[str, Any]:
        tools = sorted(self.tools.values(), key=lambda t: (t.turn, t.index if t.index is not None else 0))
        finished = [t for t in tools if t.final]
        return {
            "id": self.run_id,
            "state": self.state,
            "reason": self.reason,
            "paused": self.paused,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "model": self.model,
            "turn": self.turn,
            "text": list(self.text),
            "stop_reasons": list(self.stop_reasons),
            "tools": [t.to_dict() for t in tools],
            "stats": {
                "tools": len(tools),
                "completed": sum(t.status == "completed" for t in finished),
                "failed": sum(t.status != "completed" for t in finished),
                "saved_s": round(self.saved_s, 3),
            },
            "offset": self.last_id,
            "settled": self.settled,
        }
