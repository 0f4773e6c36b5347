"""A run's summary from its event log: what happened when, and what it would have cost otherwise.

Pure: a list of events in, one JSON-ready dict out (the ``replay --json`` contract). Times are seconds
from the run's start. For each turn that asked for tools, with D the stream's duration (request sent to
message_stop), d_i each tool's run time and r_i when it was ready (from the request):

    sequential after the stream   D + sum(d_i)
    parallel after the stream     D + max(d_i)
    ideal                         max(D, max(r_i + d_i))

A turn without tools costs D in all three. The run's figures add its turns up.
"""

from __future__ import annotations

from typing import Any

__all__ = ["summarize"]

_FINAL_TOOL_EVENTS = {"tool_completed", "tool_failed", "tool_cancelled", "tool_refused"}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def summarize(events: list[dict[str, Any]]) -> dict[str, Any]:
    if not events:
        return {}
    t0 = next((e["ts"] for e in events if e["kind"] == "run_started"), events[0]["ts"])
    tools: dict[str, dict[str, Any]] = {}
    turns: dict[int, dict[str, Any]] = {}
    end: dict[str, Any] | None = None

    def tool(tool_id: str, event: dict[str, Any]) -> dict[str, Any]:
        if tool_id not in tools:
            tools[tool_id] = {
                "id": tool_id,
                "name": event.get("name"),
                "turn": event.get("turn"),
                "ready_at": None,
                "enqueued_at": None,
                "started_at": None,
                "finished_at": None,
                "status": "pending",
                "executions": 0,
            }
        return tools[tool_id]

    for event in events:
        kind, ts, turn_no = event["kind"], event["ts"] - t0, event.get("turn")
        turn = turns.setdefault(int(turn_no or 0), {"turn": int(turn_no or 0), "tools": []})
        tool_id = event.get("tool_use_id")
        if kind == "request_sent":
            turn.setdefault("request_at", ts)
        elif kind == "message_stopped":
            turn["stream_end_at"] = ts
            turn["stop_reason"] = event.get("stop_reason")
        elif kind == "continued":
            turns.setdefault(int(turn_no or 0), {"turn": int(turn_no or 0), "tools": []})["continued_at"] = ts
        elif kind in ("run_completed", "run_failed", "run_ended"):
            end = {"at": ts, "state": event.get("state"), "reason": event.get("reason")}
        elif tool_id and kind == "tool_input_started" and event.get("server_side"):
            continue
        elif tool_id and kind in ("tool_ready", "tool_rejected"):
            record = tool(tool_id, event)
            record["ready_at"] = ts if kind == "tool_ready" else None
            if tool_id not in turn["tools"]:
                turn["tools"].append(tool_id)
        elif tool_id and kind == "tool_enqueued":
            tool(tool_id, event)["enqueued_at"] = tool(tool_id, event)["enqueued_at"] or ts
        elif tool_id and kind == "tool_started":
            record = tool(tool_id, event)
            record["executions"] += 1
            record["status"] = "running"
            if record["started_at"] is None:
                record["started_at"] = ts
        elif tool_id and kind in _FINAL_TOOL_EVENTS:
            record = tool(tool_id, event)
            record["status"] = event.get("status", "ok")
            record["finished_at"] = ts
            if record["started_at"] is None and event.get("started_at") is not None:
                record["started_at"] = event["started_at"] - t0
            if tool_id not in turn["tools"]:
                turn["tools"].append(tool_id)

    sequential = parallel = ideal = 0.0
    turn_list = []
    for number in sorted(turns):
        turn = turns[number]
        request_at = turn.get("request_at")
        stream_end = turn.get("stream_end_at")
        if request_at is None or stream_end is None:
            turn_list.append(turn)
            continue
        duration = stream_end - request_at
        runs = []
        for tool_id in turn["tools"]:
            record = tools[tool_id]
            if record["started_at"] is not None and record["finished_at"] is not None:
                ready = (record["ready_at"] if record["ready_at"] is not None else stream_end) - request_at
                runs.append((ready, record["finished_at"] - record["started_at"]))
        sequential += duration + sum(d for _, d in runs)
        parallel += duration + max((d for _, d in runs), default=0.0)
        ideal += max([duration] + [r + d for r, d in runs])
        next_turn = turns.get(number + 1, {})
        turn_list.append(
            {
                "turn": number,
                "request_at": _r(request_at),
                "stream_end_at": _r(stream_end),
                "stop_reason": turn.get("stop_reason"),
                "tools": turn["tools"],
                "continued_at": _r(next_turn.get("request_at")),
            }
        )

    first_tool_turn = next((t for t in turn_list if t.get("tools")), turn_list[0] if turn_list else {})
    return {
        "tools": [
            {k: (_r(v) if k.endswith("_at") else v) for k, v in record.items() if k != "turn"}
            for record in tools.values()
        ],
        "turns": turn_list,
        "stream_end_at": first_tool_turn.get("stream_end_at"),
        "continued_at": first_tool_turn.get("continued_at"),
        "total_s": _r(end["at"]) if end else None,
        "state": end["state"] if end else "running",
        "reason": end["reason"] if end else None,
        "counterfactual": {
            "sequential_s": _r(sequential),
            "parallel_after_stream_s": _r(parallel),
            "ideal_s": _r(ideal),
        },
    }
