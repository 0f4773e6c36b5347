"""Hostile and tolerant input: only our own typed errors ever come out, a bad tool input rejects only
that call, and real captures' untidy ends and preambles are read the way readers of them expect."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incremental import (
    IncompleteStreamError,
    IncrementalError,
    LimitExceededError,
    Limits,
    MalformedEventError,
    MessageState,
    ParserWarning,
    ProtocolError,
    StreamFailed,
    StreamParser,
    ToolReady,
    ToolRejected,
    UnknownEvent,
)
from incremental.adapters._messages_client import encode_request

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
from ._support import WELL_FORMED, fixture, run_parser
from .test_parser_properties import joined


def failed_with(events: list[Any]) -> Exception:
    last = events[-1]
    assert isinstance(last, StreamFailed), f"expected StreamFailed last, got {last!r}"
    return last.error


def warnings_of(events: list[Any]) -> list[str]:
    return [e.message for e in events if isinstance(e, ParserWarning)]


def per_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# ---------------------------------------------------------------- tolerant end of input (Task B)

GOOD = stream(*tool_turn(("toolu_a", "read_file", ['{"path": "a"}'])))


@pytest.mark.parametrize("chunks", ["whole", "per_byte"])
def test_a_stream_without_its_final_blank_line_is_read_with_a_warning(chunks: str) -> None:
    data = GOOD[:-1]  # ends 'data: {"type":"message_stop"}\n'
    assert data.endswith(b"}\n")
    parser, events = run_parser([data] if chunks == "whole" else per_byte(data))
    assert parser.error is None and parser.state is MessageState.DONE
    assert [c.id for c in parser.tool_calls] == ["toolu_a"]
    [warning] = warnings_of(events)
    assert "without the blank line after its last event" in warning and "read anyway" in warning


@pytest.mark.parametrize("chunks", ["whole", "per_byte"])
def test_a_stream_without_a_final_newline_is_read_with_a_warning(chunks: str) -> None:
    data = GOOD[:-2]  # ends 'data: {"type":"message_stop"}'
    assert data.endswith(b"}")
    parser, events = run_parser([data] if chunks == "whole" else per_byte(data))
    assert parser.error is None and parser.state is MessageState.DONE
    [warning] = warnings_of(events)
    assert "without the final newline" in warning


def test_a_stream_cut_inside_its_last_event_is_still_incomplete() -> None:
    data = GOOD[: GOOD.rindex(b"message_stop") + 4]  # 'data: {"type":"mess'
    _, events = run_parser([data])
    assert isinstance(failed_with(events), IncompleteStreamError)
    assert any("unterminated event; its bytes were discarded" in w for w in warnings_of(events))


def test_json_lines_without_a_final_newline_are_read_without_a_warning() -> None:
    objs = tool_turn(("toolu_a", "read_file", ['{"path": "a"}']))
    data = "\n".join(json.dumps(o) for o in objs).encode()
    parser, events = run_parser([data], format="jsonl")
    assert parser.error is None and [c.id for c in parser.tool_calls] == ["toolu_a"]
    assert warnings_of(events) == []


@pytest.mark.parametrize(
    "stray",
    [
        {"type": "message_delta", "delta": {"stop_reason": None}, "usage": {"output_tokens": 1}},
        {"type": "message_stop"},
        {"hello": "a proxy's preamble, no type"},
        {"type": "message", "id": "msg_x", "content": []},  # a whole message object: unknown event
    ],
    ids=["message_delta", "message_stop", "no_type", "message_object"],
)
def test_a_stray_event_before_message_start_is_a_warning(stray: dict[str, Any]) -> None:
    data = b"data: " + json.dumps(stray).encode() + b"\n\n" + GOOD
    parser, events = run_parser([data])
    assert parser.error is None and [c.id for c in parser.tool_calls] == ["toolu_a"]
    assert len(warnings_of(events)) == 1
    assert parser.message()["content"][1]["input"] == {"path": "a"}
    assert parser.stop_reason == "tool_use"  # the stray message_delta changed nothing


def test_a_type_less_object_is_kept_before_message_start_and_fatal_after() -> None:
    _, events = run_parser([b'data: {"x": 1}\n\n' + GOOD])
    assert [e.data for e in events if isinstance(e, UnknownEvent)] == [{"x": 1}]
    _, events = run_parser([stream(message_start()) + b'data: {"x": 1}\n\n'])
    assert isinstance(failed_with(events), MalformedEventError)


@pytest.mark.parametrize(
    "stray", [stop(0), text_start(0), text_delta(0, "x")], ids=["stop", "start", "delta"]
)
def test_a_block_event_before_message_start_is_fatal(stray: dict[str, Any]) -> None:
    # It names a block we never saw: the stream lost its beginning.
    _, events = run_parser([stream(stray) + GOOD])
    err = failed_with(events)
    assert isinstance(err, ProtocolError) and "expected message_start" in str(err)


def test_sdk_helper_events_in_json_lines_are_skipped_silently() -> None:
    # A JSON Lines dump of the anthropic SDK's own messages.stream(): raw and helper events together.
    import anthropic
    import httpx2

    data = fixture("thinking_parallel_tools.sse").read_bytes()

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=data)

    client = anthropic.Anthropic(
        api_key="k",
        base_url="http://dump.invalid",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    lines = []
    with client.messages.stream(model="m", max_tokens=8, messages=[{"role": "user", "content": "x"}]) as s:
        for event in s:
            lines.append(event.to_json(indent=None))
    kinds = {json.loads(line)["type"] for line in lines}
    assert {"text", "input_json", "thinking", "signature"} <= kinds  # the helpers are really there
    dumped, events = run_parser(["\n".join(lines).encode()], format="auto")
    raw, _ = run_parser([data])
    assert dumped.error is None and warnings_of(events) == []
    assert dumped.tool_calls == raw.tool_calls
    assert dumped.message()["content"] == raw.message()["content"]


# ---------------------------------------------------------------- only our errors (Task C)


def test_data_nested_a_thousand_deep_is_a_limit_not_a_recursion_error() -> None:
    deep = '{"type": "ping", "x": ' + "[" * 1000 + "]" * 1000 + "}"
    for feed in ("bytes", "event"):
        parser = StreamParser()
        if feed == "bytes":
            events = parser.feed(stream(message_start()) + f"data: {deep}\n\n".encode())
        else:
            parser.feed_event(message_start())
            obj: Any = []
            for _ in range(1000):
                obj = [obj]
            events = parser.feed_event({"type": "ping", "x": obj})
        err = failed_with(events)
        assert isinstance(err, LimitExceededError) and "nested at most 128 levels" in str(err)


def test_nesting_up_to_the_limit_is_read_and_to_dict_does_not_recurse() -> None:
    limit = Limits().max_depth
    value: Any = "leaf"
    for _ in range(limit - 1):  # with the event object around them: exactly the limit
        value = [value]
    objs = [message_start(), {"type": "surprise", "x": value}, *tool_turn()[1:]]
    _, events = run_parser([stream(*objs)])
    [unknown] = [e for e in events if isinstance(e, UnknownEvent)]
    assert unknown.data["x"] == value
    assert unknown.to_dict()["data"] is unknown.data  # shared, never copied recursively


def deep_input(levels: int) -> str:
    return '{"path": "a", "tree": ' + "[" * levels + "]" * levels + "}"


@pytest.mark.parametrize("levels", [200, 1000, 5000])
def test_a_tool_input_past_the_depth_limit_rejects_that_call_only(levels: int) -> None:
    text = deep_input(levels)
    objs = tool_turn(
        ("toolu_deep", "write_file", [text[i : i + 37] for i in range(0, len(text), 37)]),
        ("toolu_ok", "read_file", ['{"path": "b"}']),
    )
    parser, events = run_parser([stream(*objs)])
    assert parser.error is None and [c.id for c in parser.tool_calls] == ["toolu_ok"]
    [rejected] = [e for e in events if isinstance(e, ToolRejected)]
    assert rejected.tool_id == "toolu_deep" and "nesting deeper than 128 levels" in rejected.reason
    assert parser.message()["content"][1]["input"] == {"INVALID_JSON": text}
    for event in events:
        event.to_dict()


def test_a_tool_input_over_the_block_limit_rejects_that_call_and_frees_it() -> None:
    big = '{"content": "' + "x" * 500 + '"}'
    objs = tool_turn(
        ("toolu_big", "write_file", [big[i : i + 40] for i in range(0, len(big), 40)]),
        ("toolu_ok", "read_file", ['{"path": "b"}']),
    )
    for chunks in ([stream(*objs)], per_byte(stream(*objs))):
        parser, events = run_parser(chunks, limits=Limits(max_block_chars=300))
        assert parser.error is None and [c.id for c in parser.tool_calls] == ["toolu_ok"]
        [rejected] = [e for e in events if isinstance(e, ToolRejected)]
        assert rejected.tool_id == "toolu_big" and "exceeded 300 characters" in rejected.reason
        assert parser.blocks[1].raw_input() == ""  # nothing of it is kept
        assert parser.message()["content"][1]["input"] == {}
        # What came before the limit was reported, the same for any chunking.
        sent = "".join(
            e["partial_json"] for e in joined(events) if e["kind"] == "tool_input_delta" and e["index"] == 1
        )
        assert sent.startswith('{"content": "xxx') and len(sent) <= 300 and sent.endswith("x")


def test_a_text_block_over_the_limit_still_fails_the_stream() -> None:
    objs = [message_start(), text_start(0), text_delta(0, "x" * 20)]
    _, events = run_parser([stream(*objs)], limits=Limits(max_block_chars=10))
    assert isinstance(failed_with(events), LimitExceededError)


def test_a_tool_id_used_twice_is_a_protocol_error_at_once() -> None:
    objs = [
        message_start(),
        tool_start(0, "toolu_same", "read_file"),
        json_delta(0, '{"path": "a"}'),
        stop(0),
        tool_start(1, "toolu_same", "write_file"),
    ]
    parser, events = run_parser([stream(*objs)])
    err = failed_with(events)
    assert isinstance(err, ProtocolError) and err.index == 1
    assert "'toolu_same' again (block 0 has it)" in str(err)
    assert [c.id for c in parser.tool_calls] == ["toolu_same"]  # the first was ready before


WRONG_TYPES: list[tuple[str, str, Any]] = [
    ("text", "citations", 7),
    ("text", "citations", "x"),
    ("text", "text", 5),
    ("thinking", "thinking", []),
    ("thinking", "signature", {}),
    ("redacted_thinking", "data", 1),
    ("tool_use", "id", 7),
    ("tool_use", "id", None),
    ("tool_use", "name", ["a"]),
    ("tool_use", "input", "{}"),
    ("server_tool_use", "input", 3),
]


@pytest.mark.parametrize(("btype", "field", "value"), WRONG_TYPES)
def test_a_block_field_of_the_wrong_type_is_malformed(btype: str, field: str, value: Any) -> None:
    block: dict[str, Any] = {"type": btype, "id": "toolu_1", "name": "n", "input": {}, field: value}
    if value is None:
        del block[field]  # a required field left out
    objs = [message_start(), {"type": "content_block_start", "index": 0, "content_block": block}]
    _, events = run_parser([stream(*objs)])
    err = failed_with(events)
    assert isinstance(err, MalformedEventError) and repr(field) in str(err) and err.index == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "message_delta", "delta": {"stop_reason": 7}},
        {"type": "message_delta", "delta": {"stop_sequence": []}},
        {"type": "message_delta", "delta": {}, "usage": "lots"},
        {"type": "message_start", "message": {"usage": 5}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "citation": 7}},
    ],
)
def test_other_fields_of_the_wrong_type_are_malformed(bad: dict[str, Any]) -> None:
    objs = [message_start(), text_start(0), bad] if bad["type"] != "message_start" else [bad]
    _, events = run_parser([stream(*objs)])
    assert isinstance(failed_with(events), MalformedEventError)


@pytest.mark.parametrize(
    ("fragment", "why"),
    [
        ('{"n": NaN}', "not valid JSON"),
        ('{"n": 1e400}', "out of range"),
        ('{"n": ' + "9" * 5000 + "}", "not valid JSON"),
    ],
)
def test_tool_inputs_no_encoder_takes_back_are_rejected(fragment: str, why: str) -> None:
    parser, events = run_parser([stream(*tool_turn(("toolu_x", "write_file", [fragment])))])
    [rejected] = [e for e in events if isinstance(e, ToolRejected)]
    assert why in rejected.reason and not parser.tool_calls


@pytest.mark.parametrize(
    "data", [b'{"type":"ping","x":NaN}', b'{"type":"ping","x":-Infinity}', b'{"x":1e999}']
)
def test_event_data_no_encoder_takes_back_is_malformed(data: bytes) -> None:
    _, events = run_parser([stream(message_start()) + b"data: " + data + b"\n\n"])
    assert isinstance(failed_with(events), MalformedEventError)


def test_lone_surrogates_survive_into_the_next_request() -> None:
    objs = tool_turn(("toolu_s", "write_file", ['{"path": "a", "content": "\\ud83d"}']))
    objs[2] = text_delta(0, "cut \ud83d")  # the SDK decodes "\ud83d" to a lone surrogate too
    parser, _ = run_parser([stream(*objs)])
    assert parser.error is None and parser.tool_calls[0].input["content"] == "\ud83d"
    content = parser.message()["content"]
    body = encode_request({"messages": [{"role": "assistant", "content": content}]})
    assert json.loads(body)["messages"][0]["content"] == content


# ---------------------------------------------------------------- properties


def _feed_everything(chunks: list[bytes], **kwargs: Any) -> tuple[StreamParser, list[Any]]:
    parser = StreamParser(**kwargs)
    events: list[Any] = []
    for chunk in chunks:
        events += parser.feed(chunk)
        if parser.error is not None:
            break
    else:
        events += parser.end()
    for event in events:
        event.to_dict()
    if parser.error is not None:
        assert isinstance(parser.error, IncrementalError)
    encode_request({"messages": [{"role": "assistant", "content": parser.message().get("content", [])}]})
    return parser, events


DELTA_RUN = stream(
    message_start(),
    text_start(0),
    *[text_delta(0, w) for w in ["héllo ", "wörld ", "\\ ", '"q" ', "✓\n", "end"]],
    stop(0),
    tool_start(1, "toolu_r", "write_file"),
    *[json_delta(1, f) for f in ['{"path": "a.txt", ', '"content": "x\\n\\"y', '\\"\\\\"', ', "n": [1, 2]}']],
    stop(1),
    message_delta("tool_use"),
    MESSAGE_STOP,
)

_NASTY = [b"\\", b'"', b"\x00", b"\n", b"\r", b"\xff", b"\xc3", b"\\ud83d", b"\\u12", b"}", b"{", b"["]


@given(
    st.lists(
        st.tuples(st.integers(0, len(DELTA_RUN) - 1), st.sampled_from(_NASTY) | st.binary(max_size=3)),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.integers(0, len(DELTA_RUN)), max_size=6),
)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_shortcuts_read_corrupted_deltas_exactly_as_the_decoder_does(
    edits: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    # Byte by byte, no shortcut ever applies (no whole frame in a chunk): that is the reference.
    data = bytearray(DELTA_RUN)
    for position, replacement in edits:
        data[position : position + 1] = replacement
    raw = bytes(data)
    _, reference = _feed_everything(per_byte(raw))
    points = sorted({c % (len(raw) + 1) for c in cuts})
    chunks = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    _, events = _feed_everything(chunks)
    assert joined(events) == joined(reference)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    frames = data.split(b"\n\n")
    for _ in range(rng.randint(1, 4)):
        if not frames:
            frames = [b""]
        i = rng.randrange(len(frames))
        op = rng.randrange(6)
        if op == 0:
            frames[i] = frames[i].replace(b'"index":', b'"index":' + bytes([rng.choice(b"-0123456789x[")]), 1)
        elif op == 1:
            frames.insert(i, frames[rng.randrange(len(frames))])
        elif op == 2:
            del frames[i]
        elif op == 3:
            at = rng.randrange(len(frames[i]) + 1)
            insert = rng.choice([b"[" * 300, b'"citations":7,', b"\\ud83d", b"1e999", b'{"a":' * 200])
            frames[i] = frames[i][:at] + insert + frames[i][at:]
        elif op == 4:
            frames[i] = frames[i].replace(b"toolu_", b"toolu_0", 1)
        else:
            at = rng.randrange(len(frames[i]) + 1)
            frames[i] = frames[i][:at] + bytes([rng.randrange(256)]) + frames[i][at + 1 :]
    return b"\n\n".join(frames)


@given(st.sampled_from([n for n in WELL_FORMED if n != "large_file_1mb.sse"]), st.integers(0, 2**32))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_fixtures_raise_only_our_errors(name: str, seed: int) -> None:
    rng = random.Random(seed)
    data = _mutate(rng, fixture(name).read_bytes())
    size = rng.choice([1, 7, 100, 4096, 1 << 20])
    _feed_everything([data[i : i + size] for i in range(0, len(data), size)])


def test_frame_helper_is_what_the_api_sends() -> None:
    # The shortcut recognises the API's own framing: compact JSON, type first, then index and delta.
    assert frame(text_delta(3, "a")) == (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":3,'
        b'"delta":{"type":"text_delta","text":"a"}}\n\n'
    )


def test_ready_tools_before_a_fault_are_kept_in_the_same_chunk() -> None:
    objs = [*tool_turn(("toolu_a", "read_file", ['{"path": "a"}']))[:-2], stop(9)]
    events = StreamParser().feed(stream(*objs))
    assert [e.call.id for e in events if isinstance(e, ToolReady)] == ["toolu_a"]
    assert isinstance(failed_with(events), ProtocolError)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_event_objects_with_numbers_no_encoder_takes_back_are_malformed(value: float) -> None:
    # What a lenient decoder (the SDK's, a user's json.loads) makes of NaN or 1e999 in the data.
    parser = StreamParser()
    parser.feed_event(message_start())
    parser.feed_event({"type": "content_block_start", "index": 0, "content_block": {"type": "text"}})
    events = parser.feed_event({"type": "surprise", "x": [1, {"y": value}]})
    err = failed_with(events)
    assert isinstance(err, MalformedEventError) and "NaN or infinite" in str(err)
