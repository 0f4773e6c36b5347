"""The SSE decoder against the WHATWG event-stream rules, under every chunking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incremental import LimitExceededError, SSEComment, SSEDecoder, SSEEvent


def decode(*chunks: bytes) -> list[SSEEvent | SSEComment]:
    decoder = SSEDecoder()
    out: list[SSEEvent | SSEComment] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def events(*chunks: bytes) -> list[tuple[str, str]]:
    return [(e.event, e.data) for e in decode(*chunks) if isinstance(e, SSEEvent)]


@pytest.mark.parametrize("ending", [b"\n", b"\r", b"\r\n"])
def test_every_line_ending(ending: bytes) -> None:
    raw = ending.join([b"event: a", b"data: 1", b"", b"data: 2", b"", b""])
    assert events(raw) == [("a", "1"), ("message", "2")]


def test_cr_lf_pair_split_across_chunks_is_one_ending() -> None:
    assert events(b"data: 1\r", b"\n\r", b"\ndata: 2\r\n\r\n") == [("message", "1"), ("message", "2")]


def test_lone_cr_at_chunk_end_then_data() -> None:
    # CR alone is a line ending; the next chunk starting without LF is a new line.
    assert events(b"data: 1\r", b"\r", b"data: 2\r\r") == [("message", "1"), ("message", "2")]


def test_multi_line_data_joined_with_lf() -> None:
    assert events(b"data: a\ndata:b\ndata\n\n") == [("message", "a\nb\n")]


def test_comments_are_returned_and_do_not_dispatch() -> None:
    out = decode(b": t=1.5\n:no space\ndata: x\n\n")
    assert out[0] == SSEComment(text="t=1.5")
    assert out[1] == SSEComment(text="no space")
    assert [(e.event, e.data) for e in out if isinstance(e, SSEEvent)] == [("message", "x")]


def test_id_and_retry() -> None:
    decoder = SSEDecoder()
    out = decoder.feed(b"id: 7\nretry: 1500\ndata: x\n\nid: bad\x00id\nretry: 1x\ndata: y\n\n")
    assert [e.id for e in out if isinstance(e, SSEEvent)] == ["7", "7"]
    assert decoder.last_event_id == "7" and decoder.retry == 1500


def test_no_data_means_no_event_and_type_resets() -> None:
    assert events(b"event: a\n\ndata: x\n\n") == [("message", "x")]


def test_empty_data_line_dispatches_empty_string() -> None:
    assert events(b"data:\n\n") == [("message", "")]


def test_unknown_fields_ignored_and_single_space_stripped() -> None:
    assert events(b"foo: bar\ndata:  two spaces\n\n") == [("message", " two spaces")]


@pytest.mark.parametrize("split", [1, 2, 3])
def test_bom_dropped_even_when_split(split: int) -> None:
    raw = b"\xef\xbb\xbfdata: x\n\n"
    assert events(raw[:split], raw[split:]) == [("message", "x")]


def test_bom_only_at_stream_start() -> None:
    assert events(b"data: x\n\n\xef\xbb\xbfdata: y\n\n") == [("message", "x")]


def test_utf8_split_inside_a_character() -> None:
    raw = "data: é€😀\n\n".encode()
    for i in range(len(raw)):
        assert events(raw[:i], raw[i:]) == [("message", "é€😀")]


def test_invalid_utf8_is_replaced() -> None:
    assert events(b"data: \xff\xfe\n\n") == [("message", "\ufffd\ufffd")]


def test_unterminated_event_is_discarded_at_close() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\n\ndata: 2\n") != []
    assert decoder.close() is True
    fresh = SSEDecoder()
    fresh.feed(b"data: 1\n\n")
    assert fresh.close() is False


def test_line_cap() -> None:
    decoder = SSEDecoder(max_line_bytes=10)
    decoder.feed(b"data: 12")
    with pytest.raises(LimitExceededError, match="10 bytes"):
        decoder.feed(b"345678")
    with pytest.raises(LimitExceededError):
        SSEDecoder(max_line_bytes=10).feed(b"data: 1\ndata: 12345678901")


SAMPLE = (
    b'\xef\xbb\xbf: t=0.1\r\nevent: a\r\ndata: {"x": "\xc3\xa9\xe2\x82\xac"}\r\n\r\n'
    b"id: 3\rdata: 1\rdata: 2\r\r: c\n\ndata\n\nretry: 9\ndata: z\n\nevent: q\n\n"
)


@given(st.lists(st.integers(min_value=0, max_value=len(SAMPLE)), max_size=20))
@settings(max_examples=300, deadline=None)
def test_any_chunking_gives_the_same_items(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [SAMPLE[a:b] for a, b in zip([0, *points], [*points, len(SAMPLE)], strict=True)]
    assert decode(*chunks) == decode(SAMPLE)


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=17))
@settings(max_examples=300, deadline=None)
def test_random_bytes_any_chunking(raw: bytes, size: int) -> None:
    chunks = [raw[i : i + size] for i in range(0, len(raw), size)]
    assert decode(*chunks) == decode(raw)
