"""Properties over generated streams: split invariance, the SDK as oracle, bad bytes raise nothing."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incremental import Event, IncrementalError, StreamError, StreamFailed, StreamParser

from ._streams import (
    MESSAGE_STOP,
    json_delta,
    message_delta,
    message_start,
    stop,
    stream,
    text_delta,
    text_start,
    tool_start,
)
from ._support import run_parser, sdk_final_message

_DELTA_TEXT = {"text_delta": "text", "thinking_delta": "thinking", "tool_input_delta": "partial_json"}


def joined(events: list[Event]) -> list[dict[str, Any]]:
    """Events as data, in the one form every chunking must give.

    The parser may coalesce consecutive deltas of a block (one event per block per ``feed``), so a
    stretch of deltas and completed fields between two other events becomes: each block's joined text
    per delta kind, in order of appearance, then the completed fields in their order. Empty deltas are
    never sent, so none are expected."""
    out: list[dict[str, Any]] = []
    deltas: dict[tuple[str, int], dict[str, Any]] = {}
    fields: list[dict[str, Any]] = []

    def close_stretch() -> None:
        out.extend(deltas.values())
        out.extend(fields)
        deltas.clear()
        fields.clear()

    for event in events:
        data = event.to_dict()
        kind = data["kind"]
        if kind in _DELTA_TEXT:
            key, text = (kind, data["index"]), _DELTA_TEXT[kind]
            assert data[text], f"an empty delta was sent: {data}"
            if key in deltas:
                deltas[key] = {**deltas[key], text: deltas[key][text] + data[text]}
            else:
                deltas[key] = data
        elif kind == "tool_field_completed":
            fields.append(data)
        else:
            close_stretch()
            out.append(data)
    close_stretch()
    return out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
tool_inputs = st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=5)


@st.composite
def fragments(draw: st.DrawFn, text: str) -> list[str]:
    """Split text at random points, as the API's deltas do (sometimes with a leading empty one)."""
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=8))))
    parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    parts = [p for p in parts if p]
    if draw(st.booleans()):
        parts.insert(0, "")
    return parts


@st.composite
def messages(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A well-formed stream of text, thinking and tool_use blocks, and the tool inputs it carries."""
    objs: list[dict[str, Any]] = [message_start()]
    inputs: list[dict[str, Any]] = []
    kinds = draw(st.lists(st.sampled_from(["text", "tool", "thinking"]), min_size=1, max_size=5))
    for index, kind in enumerate(kinds):
        if kind == "text":
            objs.append(text_start(index))
            objs += [text_delta(index, f) for f in draw(fragments(draw(st.text(min_size=1, max_size=40))))]
        elif kind == "thinking":
            objs.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                }
            )
            for f in draw(fragments(draw(st.text(min_size=1, max_size=30)))):
                objs.append(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "thinking_delta", "thinking": f},
                    }
                )
            objs.append(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "signature_delta", "signature": "c2lnbmF0dXJl" * 4},
                }
            )
        else:
            value = draw(tool_inputs)
            inputs.append(value)
            text = json.dumps(
                value, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1]))
            )
            objs.append(tool_start(index, f"toolu_{index:02d}", "write_file"))
            objs += [json_delta(index, f) for f in draw(fragments(text))]
        objs.append(stop(index))
    objs += [message_delta(draw(st.sampled_from(["end_turn", "tool_use"]))), MESSAGE_STOP]
    return objs, inputs


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@given(messages(), st.lists(st.integers(0, 10**6), max_size=30))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_same_events_for_any_chunking(generated: tuple[list[dict[str, Any]], Any], cuts: list[int]) -> None:
    data = stream(*generated[0])
    _, reference = run_parser([data])
    _, events = run_parser(_split(data, cuts))
    assert joined(events) == joined(reference)


@given(messages())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_streams_match_the_sdk_and_carry_their_inputs(
    generated: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    objs, inputs = generated
    data = stream(*objs)
    parser, _ = run_parser([data])
    assert parser.error is None
    assert [c.input for c in parser.tool_calls] == inputs
    ours = parser.message()
    sdk = {k: v for k, v in sdk_final_message(data).items() if k in ours or v is not None}
    assert sdk == ours


def _feed_all(chunks: list[bytes]) -> None:
    parser = StreamParser(format="auto")
    for chunk in chunks:
        for event in parser.feed(chunk):
            if isinstance(event, StreamFailed):
                assert isinstance(event.error, StreamError)
        if parser.error is not None:
            return
    parser.end()
    assert parser.error is None or isinstance(parser.error, IncrementalError)


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=10))
@settings(max_examples=400, deadline=None)
def test_random_bytes_raise_nothing(data: bytes, cuts: list[int]) -> None:
    _feed_all(_split(data, cuts))


VALID = stream(
    message_start(),
    text_start(0),
    text_delta(0, "héllo"),
    stop(0),
    tool_start(1, "toolu_1", "write_file"),
    json_delta(1, '{"path": "a.txt", "content": "x\\n\\"y\\""}'),
    stop(1),
    message_delta("tool_use"),
    MESSAGE_STOP,
)


@given(
    st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.binary(max_size=3)), min_size=1, max_size=6),
    st.lists(st.integers(0, len(VALID)), max_size=10),
)
@settings(max_examples=400, deadline=None)
def test_corrupted_streams_raise_nothing(edits: list[tuple[int, bytes]], cuts: list[int]) -> None:
    data = bytearray(VALID)
    for position, replacement in edits:
        data[position : position + 1] = replacement
    _feed_all(_split(bytes(data), cuts))
