"""The block state machine: readiness, rejection, protocol violations, limits, inputs of every kind."""

from __future__ import annotations

import json

import pytest

from incremental import (
    BlockDelta,
    BlockStatus,
    IncompleteStreamError,
    LimitExceededError,
    Limits,
    MalformedEventError,
    MessageState,
    MessageStopped,
    ParserClosedError,
    ParserWarning,
    ProtocolError,
    StreamFailed,
    StreamParser,
    TextDelta,
    ToolFieldCompleted,
    ToolReady,
    ToolRejected,
    UnknownEvent,
    UpstreamError,
)

from ._streams import (
    MESSAGE_STOP,
    frame,
    json_delta,
    message_delta,
    message_start,
    stop,
    stream,
    text_delta,
    text_start,
    tool_start,
    tool_turn,
)
from ._support import run_parser
from .test_parser_properties import joined


def kinds(events: list[object]) -> list[str]:
    return [e.kind for e in events]  # type: ignore[attr-defined]


def failed_with(events: list[object]) -> Exception:
    last = events[-1]
    assert isinstance(last, StreamFailed), f"expected StreamFailed last, got {last!r}"
    return last.error


# ---------------------------------------------------------------- readiness


def test_tool_ready_at_its_own_stop_before_later_blocks_and_message_stop() -> None:
    objs = tool_turn(
        ("toolu_a", "write_file", ["", '{"path": "a.txt", ', '"content": "hi"}']),
        ("toolu_b", "read_file", ['{"path"', ': "b.txt"}']),
    )
    parser, events = run_parser([stream(*objs)])
    order = [(e.kind, getattr(e, "index", None)) for e in events if not isinstance(e, TextDelta)]
    ready_a = order.index(("tool_ready", 1))
    assert order.index(("block_started", 2)) > ready_a  # a was ready before b even started
    assert order.index(("message_stopped", None)) > order.index(("tool_ready", 2))
    assert [c.input for c in parser.tool_calls] == [{"path": "a.txt", "content": "hi"}, {"path": "b.txt"}]
    assert parser.state is MessageState.DONE and parser.error is None


def test_field_completed_long_before_the_block_ends() -> None:
    objs = tool_turn(("toolu_a", "write_file", ['{"path": "src/App.tsx", "content": "', "x" * 50, '"}']))
    _, events = run_parser([stream(*objs)])
    names = [(e.field, e.value) for e in events if isinstance(e, ToolFieldCompleted)]
    assert names == [("path", "src/App.tsx"), ("content", "x" * 50)]
    first_field = next(i for i, e in enumerate(events) if isinstance(e, ToolFieldCompleted))
    ready = next(i for i, e in enumerate(events) if isinstance(e, ToolReady))
    assert first_field < ready - 1  # the path was known while content still streamed


@pytest.mark.parametrize("fragments", [[], [""], ["", "  "]])
def test_empty_input_means_empty_object(fragments: list[str]) -> None:
    parser, events = run_parser([stream(*tool_turn(("toolu_e", "list_files", fragments)))])
    assert [c.input for c in parser.tool_calls] == [{}]
    assert not [e for e in events if isinstance(e, ToolRejected)]


@pytest.mark.parametrize(
    ("fragments", "why"),
    [
        (['{"path": "a', '\n"}'], "not valid JSON"),  # fine-grained streaming: raw newline in a string
        (['{"path": "a"'], "not valid JSON"),
        (["[1, 2]"], "must be a JSON object, got list"),
        (['{"n": NaN}'], "not valid JSON"),
        (['{"a": 1} {"b": 2}'], "not valid JSON"),
    ],
)
def test_invalid_input_never_ready(fragments: list[str], why: str) -> None:
    parser, events = run_parser([stream(*tool_turn(("toolu_x", "write_file", fragments)))])
    assert not parser.tool_calls
    [rejected] = [e for e in events if isinstance(e, ToolRejected)]
    assert rejected.status == "invalid" and why in rejected.reason and rejected.tool_id == "toolu_x"
    assert parser.message()["content"][1]["input"] == {"INVALID_JSON": "".join(fragments)}


def test_cut_by_max_tokens_is_truncated_never_ready() -> None:
    objs = [
        message_start(),
        tool_start(0, "toolu_ok", "read_file"),
        json_delta(0, '{"path": "a"}'),
        stop(0),
        tool_start(1, "toolu_cut", "write_file"),
        json_delta(1, '{"path": "b", "content": "abc'),
        message_delta("max_tokens"),
        MESSAGE_STOP,
    ]
    parser, events = run_parser([stream(*objs)])
    assert [c.id for c in parser.tool_calls] == ["toolu_ok"]
    [rejected] = [e for e in events if isinstance(e, ToolRejected)]
    assert (rejected.tool_id, rejected.status) == ("toolu_cut", "truncated")
    assert "max_tokens" in rejected.reason
    assert parser.blocks[1].status is BlockStatus.TRUNCATED
    # The assembled message shows what arrived, as the SDK's partial parse does.
    assert parser.message()["content"][1]["input"] == {"path": "b"}
    assert parser.error is None and parser.stop_reason == "max_tokens"


def test_stream_ending_without_message_stop_fails_and_cuts_open_tools() -> None:
    objs = [message_start(), tool_start(0, "toolu_open", "write_file"), json_delta(0, '{"path": "a"}')]
    parser, events = run_parser([stream(*objs)])
    assert isinstance(failed_with(events), IncompleteStreamError)
    assert [e.tool_id for e in events if isinstance(e, ToolRejected)] == ["toolu_open"]
    assert not parser.tool_calls
    with pytest.raises(ParserClosedError):
        parser.feed(b"data: {}\n\n")


def test_overloaded_error_event_mid_stream() -> None:
    objs = [
        message_start(),
        tool_start(0, "toolu_a", "read_file"),
        json_delta(0, "{}"),
        stop(0),
        tool_start(1, "toolu_b", "write_file"),
        json_delta(1, '{"pa'),
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    parser = StreamParser()
    events = parser.feed(stream(*objs))  # one chunk: the ready tool before the error is not lost
    assert kinds(events)[-3:] == ["tool_input_delta", "tool_rejected", "stream_failed"]
    assert [e.call.id for e in events if isinstance(e, ToolReady)] == ["toolu_a"]
    err = failed_with(events)
    assert isinstance(err, UpstreamError) and err.error_type == "overloaded_error"
    assert parser.state is MessageState.FAILED
    assert parser.end() == []


# ---------------------------------------------------------------- protocol violations (fatal)


@pytest.mark.parametrize(
    ("objs", "error", "fragment", "index"),
    [
        ([message_start(), text_delta(3, "x")], ProtocolError, "content_block_start for index 3", 3),
        ([message_start(), stop(2)], ProtocolError, "content_block_start for index 2", 2),
        ([message_start(), text_start(0), text_start(0)], ProtocolError, "second content_block_start", 0),
        ([message_start(), text_start(0), stop(0), text_delta(0, "x")], ProtocolError, "after its", 0),
        ([message_start(), text_start(0), stop(0), stop(0)], ProtocolError, "after its", 0),
        ([text_start(0)], ProtocolError, "expected message_start", None),
        ([message_start(), message_start()], ProtocolError, "got message_start", None),
        (
            [message_start(), {"type": "content_block_delta", "index": "0"}],
            MalformedEventError,
            "index",
            None,
        ),
        (
            [message_start(), {"type": "content_block_start", "index": 0}],
            MalformedEventError,
            "content_block",
            0,
        ),
        (
            [message_start(), text_start(0), {"type": "content_block_delta", "index": 0}],
            MalformedEventError,
            "delta",
            0,
        ),
        (
            [
                message_start(),
                text_start(0),
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 5}},
            ],
            MalformedEventError,
            "string 'text'",
            0,
        ),
        ([{"type": "message_start"}], MalformedEventError, "'message' object", None),
    ],
)
def test_protocol_violations_fail_with_context(
    objs: list[dict[str, object]], error: type[Exception], fragment: str, index: int | None
) -> None:
    parser, events = run_parser([stream(*objs)])
    err = failed_with(events)
    assert type(err) is error
    assert fragment in str(err)
    assert err.index == index  # type: ignore[attr-defined]
    assert err.event is not None and err.state is not None  # type: ignore[attr-defined]
    assert parser.state is MessageState.FAILED


@pytest.mark.parametrize(
    "raw",
    [b"data: {not json\n\n", b"data: [1, 2]\n\n", b'data: {"no": "type"}\n\n', b"data: \n\n"],
)
def test_bad_data_lines(raw: bytes) -> None:
    _, events = run_parser([stream(message_start()) + raw])
    err = failed_with(events)
    assert isinstance(err, MalformedEventError) and err.event_number == 1


def test_events_after_message_stop_are_warned_and_ignored() -> None:
    parser, _events = run_parser([stream(*tool_turn(("toolu_a", "read_file", ["{}"])), text_start(9))])
    assert parser.error is None and parser.state is MessageState.DONE
    assert any("after message_stop" in w.message for w in parser.warnings)
    assert len(parser.message()["content"]) == 2


# ---------------------------------------------------------------- kept verbatim, warned


def test_unknown_event_block_and_delta_types_kept_verbatim() -> None:
    hologram = {"type": "hologram", "shape": "cube"}
    objs = [
        message_start(),
        {"type": "content_block_annotation", "index": 0, "note": "new"},
        {"type": "content_block_start", "index": 0, "content_block": hologram},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "hologram_delta", "spin": 1}},
        stop(0),
        text_start(1),
        {"type": "content_block_delta", "index": 1, "delta": {"type": "thinking_delta", "thinking": "?"}},
        text_delta(1, "ok"),
        stop(1),
        message_delta("end_turn"),
        MESSAGE_STOP,
    ]
    parser, events = run_parser([stream(*objs)])
    assert parser.error is None
    [unknown] = [e for e in events if isinstance(e, UnknownEvent)]
    assert unknown.event_type == "content_block_annotation" and unknown.data["note"] == "new"
    assert [e.delta["type"] for e in events if isinstance(e, BlockDelta)] == [
        "hologram_delta",
        "thinking_delta",
    ]
    warnings = [w.message for w in events if isinstance(w, ParserWarning)]
    assert len(warnings) == 4, warnings
    assert parser.message()["content"] == [hologram, {"type": "text", "text": "ok"}]
    assert parser.blocks[0].status is BlockStatus.UNKNOWN
    assert parser.blocks[0].extra_deltas == [{"type": "hologram_delta", "spin": 1}]


def test_server_tools_are_never_ready() -> None:
    objs = [
        message_start(),
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {
                "type": "server_tool_use",
                "id": "srvtoolu_1",
                "name": "web_search",
                "input": {},
            },
        },
        json_delta(0, '{"query": "x"}'),
        stop(0),
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
        },
        stop(1),
        message_delta("end_turn"),
        MESSAGE_STOP,
    ]
    parser, _ = run_parser([stream(*objs)])
    assert parser.tool_calls == []
    assert [b.status for b in parser.blocks] == [BlockStatus.SERVER_SIDE, BlockStatus.SERVER_SIDE]
    assert parser.message()["content"][0]["input"] == {"query": "x"}


# ---------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("limits", "objs", "fragment"),
    [
        (
            Limits(max_blocks=2),
            [message_start(), text_start(0), stop(0), text_start(1), stop(1), text_start(2)],
            "at most 2 content blocks",
        ),
        (
            Limits(max_block_chars=5),
            [message_start(), text_start(0), text_delta(0, "abc"), text_delta(0, "def")],
            "characters in one block",
        ),
        (
            Limits(max_message_chars=5),
            [
                message_start(),
                text_start(0),
                text_delta(0, "abc"),
                stop(0),
                text_start(1),
                text_delta(1, "def"),
            ],
            "characters in one message",
        ),
        (Limits(max_line_bytes=64), [message_start(), text_start(0), text_delta(0, "x" * 100)], "64 bytes"),
    ],
)
def test_limits_fail_the_stream(limits: Limits, objs: list[dict[str, object]], fragment: str) -> None:
    _parser, events = run_parser([stream(*objs)], limits=limits)
    err = failed_with(events)
    assert isinstance(err, LimitExceededError) and fragment in str(err)


def test_warnings_kept_up_to_their_cap_and_counted_past_it() -> None:
    objs = [message_start()] + [{"type": "surprise", "n": i} for i in range(10)]
    parser, _ = run_parser([stream(*objs)], limits=Limits(max_warnings=3))
    assert len(parser.warnings) == 3 and parser.warning_count == 10


# ---------------------------------------------------------------- inputs of every kind


def test_feed_event_with_dicts_matches_bytes() -> None:
    objs = tool_turn(("toolu_a", "write_file", ['{"path": "a", ', '"content": "b"}']))
    _, from_bytes = run_parser([stream(*objs)])
    parser = StreamParser()
    from_dicts = [e for o in objs for e in parser.feed_event(o)] + parser.end()
    assert joined(from_dicts) == joined(from_bytes)


def test_feed_event_with_anthropic_sdk_models() -> None:
    from anthropic.types import RawMessageStreamEvent
    from pydantic import TypeAdapter

    objs = tool_turn(("toolu_a", "write_file", ['{"path": "a", ', '"content": "b"}']))
    adapter: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)
    models = [adapter.validate_python(o) for o in objs]
    parser = StreamParser()
    events = [e for m in models for e in parser.feed_event(m)] + parser.end()
    assert parser.error is None
    assert [c.input for c in parser.tool_calls] == [{"path": "a", "content": "b"}]
    assert isinstance(events[-1], MessageStopped)


def test_json_lines_and_auto_detection() -> None:
    objs = tool_turn(("toolu_a", "read_file", ['{"path": "a"}']))
    raw = "\n".join(json.dumps(o) for o in objs).encode() + b"\n"
    for fmt in ("jsonl", "auto"):
        parser, _ = run_parser([raw[:7], raw[7:]], format=fmt)
        assert parser.error is None and [c.id for c in parser.tool_calls] == ["toolu_a"]
    _, events = run_parser([b"{}\n{oops\n"], format="jsonl")
    assert isinstance(failed_with(events), MalformedEventError)


def test_timing_comments_set_the_clock() -> None:
    objs = tool_turn(("toolu_a", "read_file", ['{"path": "a"}']))
    raw = b"".join(frame(o, t=i * 0.5) for i, o in enumerate(objs))
    parser, _ = run_parser([raw])
    tool = parser.blocks[1]
    assert (tool.started_at, tool.stopped_at, parser.stopped_at) == (2.0, 3.0, 4.0)


def test_ping_anywhere_and_sse_name_mismatch_warns() -> None:
    ping = b'event: ping\ndata: {"type": "ping"}\n\n'
    raw = ping + stream(*tool_turn(("toolu_a", "read_file", ["{}"]))) + ping
    parser, _ = run_parser([raw])
    assert parser.error is None and parser.warnings == []
    raw = b'event: message_stop\ndata: {"type": "message_start", "message": {}}\n\n'
    parser, _ = run_parser([raw])
    assert any("differs" in w.message for w in parser.warnings)
