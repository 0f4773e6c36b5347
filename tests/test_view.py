"""RunView's additions for the page: block spans and text blocks, settling calls cut mid-input, the
timeline's figures; watch tokens read a redacted ``run_started``; ``/calls`` gives whole inputs."""

from __future__ import annotations

import json
from typing import Any

import httpx

from incremental.pipeline._view import RunView
from incremental.service._events import public_event

from ._service import ALICE, auth, read_events, served, start_demo

RUN = "run_view_test"
CONFIG = {
    "request": {"model": "claude-x", "max_tokens": 512, "system": "secret prompt", "metadata": {"u": 1}},
    "toolset": "app",
    "max_turns": 3,
    "turn_timeout_s": 60.0,
    "simulate_s": 0.5,
    "workspace": "/srv/private/workspaces/run_view_test",
    "betas": [],
    "tags": {"owner": "alice"},
}


def ev(kind: str, ts: float, turn: int = 0, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "kind": kind, "ts": ts, "run_id": RUN, "turn": turn, **fields}


def tool(kind: str, ts: float, tool_id: str, **fields: Any) -> dict[str, Any]:
    return ev(kind, ts, tool_use_id=tool_id, name="write_file", **fields)


def result(kind: str, ts: float, tool_id: str, status: str, **fields: Any) -> dict[str, Any]:
    base = {"is_error": status != "ok", "content": "done", "attempts": 1, "started_at": None}
    return tool(kind, ts, tool_id, status=status, **{**base, "finished_at": ts, **fields})


def head() -> list[dict[str, Any]]:
    """A turn that streams two text blocks and two tool_use blocks; the first call runs meanwhile."""
    return [
        ev("run_started", 100.0, config=CONFIG),
        ev("request_sent", 100.0, attempt=1),
        ev("text_delta", 100.1, index=0, text="Hello"),
        ev("text_delta", 100.2, index=0, text=" world"),
        ev("tool_input_started", 100.3, index=1, tool_use_id="A", name="write_file", server_side=False),
        tool("tool_field_completed", 100.4, "A", field="path", value="a.txt"),
        tool("tool_ready", 100.5, "A", index=1, input_preview='{"path":"a.txt"}'),
        tool("tool_enqueued", 100.51, "A", duplicate=False),
        tool("tool_started", 100.52, "A", attempt=1),
        ev("text_delta", 100.6, index=2, text="## Next"),
        ev("tool_input_started", 100.7, index=3, tool_use_id="B", name="write_file", server_side=False),
    ]


def test_blocks_keep_their_boundaries_and_spans() -> None:
    view = RunView.fold(RUN, head())
    data = view.to_dict()
    assert data["text"] == ["Hello world\n\n## Next"]
    assert data["text_blocks"] == [["Hello world", "## Next"]]
    [turn] = data["turns"]
    assert turn["request_at"] == 100.0 and turn["stream_end_at"] is None
    assert turn["blocks"] == [
        {"index": 0, "type": "text", "started_at": 100.1, "ended_at": 100.2, "tool_use_id": None},
        {"index": 1, "type": "tool_use", "started_at": 100.3, "ended_at": 100.5, "tool_use_id": "A"},
        {"index": 2, "type": "text", "started_at": 100.6, "ended_at": 100.6, "tool_use_id": None},
        {"index": 3, "type": "tool_use", "started_at": 100.7, "ended_at": None, "tool_use_id": "B"},
    ]
    assert turn["tool_blocks"] == 2 and data["stats"]["tool_blocks"] == 2
    # The raw text the replay's table counts is unchanged.
    assert view.text == ["Hello world## Next"]


def test_a_cancel_mid_input_settles_the_call_that_was_streaming() -> None:
    events = [
        *head(),
        ev("cancel_requested", 100.75, target="run", reason="cancelled by request"),
        ev("run_ended", 100.8, state="cancelled", reason="cancelled by request"),
    ]
    view = RunView.fold(RUN, events)
    assert view.tools["B"].status == "streaming"  # the worker may still read a little: not yet
    assert not view.settled
    view.apply(ev("stream_closed", 100.85, reason="cancelled"))
    view.apply(result("tool_completed", 100.9, "A", "ok", after_cancel=True, started_at=100.52))
    b = view.to_dict()["tools"][1]
    assert (b["tool_use_id"], b["status"], b["is_error"]) == ("B", "cancelled", True)
    assert "still streaming" in b["result"]
    assert view.to_dict()["turns"][0]["stream_closed_at"] == 100.85
    assert view.settled  # nothing is left to report: watchers get `event: end`


def test_a_stream_that_fails_mid_input_settles_it_as_rejected_and_real_reports_win() -> None:
    view = RunView.fold(RUN, [*head(), ev("stream_failed", 100.8, error={"type": "UpstreamError"})])
    assert view.tools["B"].status == "rejected" and view.tools["B"].settled_by_view
    # A result the pipeline logs later is the call's real word, and replaces the guess.
    view.apply(result("tool_cancelled", 100.9, "B", "cancelled", content="run failed"))
    assert (view.tools["B"].status, view.tools["B"].result) == ("cancelled", "run failed")
    assert not view.tools["B"].settled_by_view


def test_a_run_that_ends_with_its_stream_closed_settles_every_streaming_call() -> None:
    events = [*head(), ev("run_failed", 100.8, state="failed", reason="the job raised")]
    view = RunView.fold(RUN, events)
    assert view.tools["B"].status == "rejected"
    assert view.tools["A"].status == "running"  # dispatched: it reports for itself


def test_turn_figures_against_both_counterfactuals() -> None:
    events = [
        *head()[:9],
        ev("message_stopped", 101.0, stop_reason="tool_use", usage={}),
        result("tool_completed", 101.52, "A", "ok", started_at=100.52),
        ev(
            "turn_completed",
            101.53,
            sealed_at=101.0,
            last_result_at=101.52,
            tools=1,
            tool_time_s=1.0,
            parallel_after_stream_end=102.0,
            saved_s=0.48,
            trigger="A",
        ),
        ev("continued", 101.54, turn=1, trigger="A", decided_at=101.53),
        ev("request_sent", 101.55, turn=1, attempt=1),
        ev("text_delta", 101.6, turn=1, index=0, text="Done."),
        ev("message_stopped", 101.7, turn=1, stop_reason="end_turn", usage={}),
        ev("run_completed", 101.71, turn=1, state="completed", reason="end_turn"),
    ]
    data = RunView.fold(RUN, events).to_dict()
    turn0, turn1 = data["turns"]
    assert (turn0["saved_s"], turn0["saved_sequential_s"], turn0["completed_at"]) == (0.48, 0.48, 101.52)
    assert turn1["request_at"] == 101.55 and turn1["stream_end_at"] == 101.7
    stats = data["stats"]
    assert stats["measured_s"] == 1.71 and stats["saved_sequential_s"] == 0.48
    assert stats["counterfactual"] == {"sequential_s": 2.15, "parallel_after_stream_s": 2.15, "ideal_s": 1.65}
    assert data["text"] == ["Hello world", "Done."]


def test_a_retried_stream_starts_its_text_over() -> None:
    events = [*head()[:4], ev("request_sent", 100.3, attempt=2), ev("text_delta", 100.4, index=0, text="Hi")]
    data = RunView.fold(RUN, events).to_dict()
    assert data["text_blocks"] == [["Hi"]] and data["turns"][0]["blocks"][0]["started_at"] == 100.4


def test_public_event_keeps_only_what_a_page_shows() -> None:
    event = ev("run_started", 100.0, config=CONFIG)
    public = public_event(event)
    assert public["config"] == {
        "request": {"model": "claude-x", "max_tokens": 512},
        "max_turns": 3,
        "turn_timeout_s": 60.0,
        "redacted": True,
    }
    assert event["config"] is CONFIG  # the log's own entry is untouched
    other = ev("tool_ready", 1.0, tool_use_id="A", name="x")
    assert public_event(other) is other


async def test_a_watch_token_reads_no_server_config_and_calls_give_whole_inputs(redis_url: str) -> None:
    async with served(redis_url) as service, httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        created = await start_demo(client)
        run_id, watch = created["id"], created["watch_token"]
        owner = await read_events(client, run_id, ALICE)
        watcher = await read_events(client, run_id, watch)
        assert [i for i, _ in owner.entries] == [i for i, _ in watcher.entries]
        [(_, started)] = [(i, e) for i, e in owner.entries if e["kind"] == "run_started"]
        workspace = started["config"]["workspace"]
        assert workspace and run_id in workspace  # the owner (a backend) reads the whole config
        public = watcher.entries[0][1]
        assert public["kind"] == "run_started" and public["config"]["redacted"] is True
        assert set(public["config"]) == {"request", "max_turns", "turn_timeout_s", "redacted"}
        seen = json.dumps([e for _, e in watcher.entries])
        view = (await client.get(f"/v1/runs/{run_id}", headers=auth(watch))).text
        root = workspace.rsplit("/", 1)[0]
        for text in (seen, view):  # (the model's own text may hold URLs: the recording's svg does)
            assert root not in text and service.redis_url not in text and "127.0.0.1" not in text

        calls = (await client.get(f"/v1/runs/{run_id}/calls", headers=auth(watch))).json()["calls"]
        tools = json.loads(view)["tools"]
        assert set(calls) == {t["tool_use_id"] for t in tools}
        for t in tools:
            call = calls[t["tool_use_id"]]
            assert isinstance(call["input"], dict) and call["status"] == "ok"
            # Simulated tools echo their input: the whole of it, where the log has 300 chars.
            assert json.loads(call["result"]) == call["input"]
        assert max(len(json.dumps(c["input"])) for c in calls.values()) > 2000


def test_a_salvaged_turn_ends_its_stream_at_the_cut_and_drops_what_followed() -> None:
    events = [
        *head(),
        ev("turn_salvaged", 101.0, cut_at=2, blocks=2, expected=["A"], reason="the worker was killed"),
        ev("turn_sealed", 101.01, expected=["A"], deadline=401.0),
    ]
    view = RunView.fold(RUN, events)
    data = view.to_dict()
    [turn] = data["turns"]
    assert turn["salvaged_at"] == 2 and turn["stream_end_at"] == 101.0
    assert [b["index"] for b in turn["blocks"]] == [0, 1]
    assert data["text_blocks"] == [["Hello world"]] and view.text == ["Hello world"]
    # The call whose input was still streaming never runs; the one dispatched goes on.
    assert view.tools["B"].status == "rejected" and "still streaming" in str(view.tools["B"].result)
    assert view.tools["A"].status == "running" and not view.stream_open
    view.apply(result("tool_completed", 101.5, "A", "ok", started_at=100.52))
    assert data["turns"][0]["stop_reason"] is None and view.summary()["turns"][0]["stream_end_at"] == 1.0
