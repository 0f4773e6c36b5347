"""The Messages API client against respx mocks: the body's bytes, headers, retries, typed errors, and a
request encoding that every JSON the model sent can go back through."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from incremental.adapters._messages_client import (
    HTTP_SHARDS,
    APIConnectionError,
    APIStatusError,
    MessagesClient,
    encode_request,
    http_clients,
    is_retryable_status,
)
from incremental.core import MalformedEventError, StreamFailed, StreamParser
from incremental.exceptions import MissingCredentialsError

BASE = "https://api.test"
REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}
EVENTS: list[dict[str, Any]] = [
    {"type": "message_start", "message": {"id": "msg_1", "content": []}},
    {"type": "ping"},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "héllo"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
    {"type": "message_stop"},
]
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "request-id": "req_ok"}


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def ok(body: bytes = b"") -> httpx.Response:
    return httpx.Response(200, headers=SSE_HEADERS, content=body or sse(*EVENTS))


def api_error(status: int, error_type: str, message: str, **headers: str) -> httpx.Response:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return httpx.Response(status, json=body, headers={"request-id": f"req_{status}", **headers})


class Sleeps:
    """Stands in for asyncio.sleep: records the waits tenacity asks for, waits for none."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class CutStream(httpx.AsyncByteStream):
    """A 200 body that delivers some bytes, then the connection drops."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        raise httpx.ReadError("connection reset by peer")


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def client(sleeps: Sleeps, **kwargs: Any) -> MessagesClient:
    return MessagesClient(**{"base_url": BASE, "api_key": "sk-test", "_sleep": sleeps, **kwargs})


async def collect(c: MessagesClient) -> bytes:
    async with c, c.stream(REQUEST) as stream:
        chunks = [chunk async for chunk in stream]
    assert all(type(chunk) is bytes and chunk for chunk in chunks)
    return b"".join(chunks)


def parse(body: bytes) -> StreamParser:
    parser = StreamParser()
    parser.feed(body)
    parser.end()
    return parser


async def test_200_yields_the_body_bytes_with_metadata(mock: respx.MockRouter, sleeps: Sleeps) -> None:
    route = mock.post("/v1/messages").mock(return_value=ok())
    before = time.monotonic()
    async with client(sleeps) as c, c.stream(REQUEST) as stream:
        body = b"".join([chunk async for chunk in stream])
        assert stream.request_id == "req_ok"
        assert stream.attempts == 1
        assert before <= stream.first_byte_at <= time.monotonic()
        assert stream.bytes_received == len(body)
    assert body == sse(*EVENTS)  # exactly as sent: framing and JSON are the parser's
    parser = parse(body)
    assert parser.error is None and parser.message()["content"] == [{"type": "text", "text": "héllo"}]
    assert json.loads(route.calls.last.request.content) == {**REQUEST, "stream": True}
    assert sleeps.waits == []


async def test_bytes_pass_through_verbatim_and_the_parser_reads_them(
    mock: respx.MockRouter, sleeps: Sleeps
) -> None:
    body = (
        b": t=0.10\r\n"
        b'event: message_start\r\ndata: {"type": "message_start",\r\ndata:  "message": {"id": "m"}}\r\n\r\n'
        b"event: ping\r\n\r\n"  # an event without data is not dispatched (SSE spec)
        b'data: {"type": "message_stop"}\n\n'
    )
    mock.post("/v1/messages").mock(return_value=ok(body))
    received = await collect(client(sleeps))
    assert received == body
    parser = parse(received)
    assert parser.error is None and parser.message()["id"] == "m" and parser.clock == 0.1


async def test_headers_with_key_and_betas(mock: respx.MockRouter, sleeps: Sleeps) -> None:
    route = mock.post("/v1/messages").mock(return_value=ok())
    await collect(client(sleeps, anthropic_version="2099-01-01", betas=["a-1", "b-2"]))
    headers = route.calls.last.request.headers
    assert headers["x-api-key"] == "sk-test"
    assert headers["anthropic-version"] == "2099-01-01"
    assert headers["anthropic-beta"] == "a-1,b-2"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "text/event-stream"


async def test_no_key_fails_before_any_request_and_says_what_is_missing(
    mock: respx.MockRouter, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    route = mock.post("/v1/messages").mock(return_value=ok())
    with pytest.raises(MissingCredentialsError, match="ANTHROPIC_API_KEY"):
        await collect(client(sleeps, api_key=None))
    assert not route.called


async def test_an_authorization_header_stands_in_for_the_key_and_betas_merge_per_request(
    mock: respx.MockRouter, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    route = mock.post("/v1/messages").mock(return_value=ok())
    c = client(sleeps, api_key=None, headers={"Authorization": "Bearer proxy-token"}, betas=["a-1"])
    async with c, c.stream(REQUEST, betas=["b-2", "a-1"]) as stream:
        [_ async for _ in stream]
    headers = route.calls.last.request.headers
    assert "x-api-key" not in headers and headers["authorization"] == "Bearer proxy-token"
    assert headers["anthropic-beta"] == "a-1,b-2"
    assert headers["anthropic-version"] == "2023-06-01"


async def test_base_url_defaults_to_the_environment(
    mock: respx.MockRouter, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", BASE + "/proxy/")
    route = mock.post("/proxy/v1/messages").mock(return_value=ok())
    c = MessagesClient(api_key="sk-test", _sleep=sleeps)
    assert c.url == BASE + "/proxy/v1/messages"
    await collect(c)
    assert route.called


async def test_api_key_defaults_to_environment(
    mock: respx.MockRouter, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-env")
    route = mock.post("/v1/messages").mock(return_value=ok())
    await collect(client(sleeps, api_key=None))
    assert route.calls.last.request.headers["x-api-key"] == "sk-env"


async def test_529_twice_then_200(mock: respx.MockRouter, sleeps: Sleeps) -> None:
    overloaded = api_error(529, "overloaded_error", "Overloaded")
    route = mock.post("/v1/messages").mock(side_effect=[overloaded, overloaded, ok()])
    async with client(sleeps, backoff_base=0.5, backoff_max=8.0) as c, c.stream(REQUEST) as stream:
        assert b"".join([chunk async for chunk in stream]) == sse(*EVENTS)
        assert stream.attempts == 3
    assert route.call_count == 3
    assert len(sleeps.waits) == 2
    assert 0.5 <= sleeps.waits[0] <= 0.625 and 1.0 <= sleeps.waits[1] <= 1.25  # exponential, jittered


async def test_backoff_is_capped_at_backoff_max(mock: respx.MockRouter, sleeps: Sleeps) -> None:
    mock.post("/v1/messages").mock(return_value=api_error(503, "api_error", "unavailable"))
    with pytest.raises(APIStatusError):
        await collect(client(sleeps, max_retries=4, backoff_base=0.5, backoff_max=1.0))
    assert len(sleeps.waits) == 4
    assert all(0.5 <= w <= 1.0 for w in sleeps.waits) and sleeps.waits[1:] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "0.01"}, 0.01),
        ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),  # the finer header wins
        ({"retry-after": "1000"}, 32.0),  # capped at 4 * backoff_max
    ],
)
async def test_429_retry_after_is_honoured(
    mock: respx.MockRouter, sleeps: Sleeps, headers: dict[str, str], expected: float
) -> None:
    limited = api_error(429, "rate_limit_error", "slow down", **headers)
    mock.post("/v1/messages").mock(side_effect=[limited, ok()])
    assert await collect(client(sleeps)) == sse(*EVENTS)
    assert sleeps.waits == [pytest.approx(expected)]


async def test_400_is_not_retried(mock: respx.MockRouter, sleeps: Sleeps) -> None:
    route = mock.post("/v1/messages").mock(
        return_value=api_error(400, "invalid_request_error", "max_tokens: Field required")
    )
    with pytest.raises(APIStatusError) as caught:
        await collect(client(sleeps))
    error = caught.value
    assert route.call_count == 1 and sleeps.waits == []
    assert (error.status_code, error.error_type, error.attempts) == (400, "invalid_request_error", 1)
    assert error.message == "max_tokens: Field required"
    assert error.request_id == "req_400" and error.retry_after is None
    assert str(error) == (
        "expected 200 from POST /v1/messages, got 400 invalid_request_error: max_tokens: Field required"
        " (after 1 attempt, request-id req_400)"
    )


async def test_retries_exhausted(mock: respx.MockRouter, sleeps: Sleeps) -> None:
    route = mock.post("/v1/messages").mock(return_value=api_error(529, "overloaded_error", "Overloaded"))
    with pytest.raises(APIStatusError) as caught:
        await collect(client(sleeps, max_retries=4))
    assert route.call_count == 5 and len(sleeps.waits) == 4
    assert caught.value.attempts == 5
    assert str(caught.value).startswith(
        "expected 200 from POST /v1/messages, got 529 overloaded_error: Overloaded (after 5 attempts"
    )


async def test_error_body_that_is_not_json(mock: respx.MockRouter, sleeps: Sleeps) -> None:
    bad_gateway = httpx.Response(502, text="<html>Bad Gateway</html>")
    mock.post("/v1/messages").mock(side_effect=[bad_gateway, httpx.Response(404, text="nope")])
    with pytest.raises(APIStatusError) as caught:
        await collect(client(sleeps))
    assert (caught.value.status_code, caught.value.error_type, caught.value.message) == (
        404,
        "http_404",
        "nope",
    )
    assert len(sleeps.waits) == 1  # the 502 was retried, the 404 was not


async def test_200_that_is_not_an_event_stream(mock: respx.MockRouter, sleeps: Sleeps) -> None:
    route = mock.post("/v1/messages").mock(return_value=httpx.Response(200, json={"type": "message"}))
    with pytest.raises(APIStatusError) as caught:
        await collect(client(sleeps))
    assert route.call_count == 1
    assert caught.value.error_type == "unexpected_content_type"
    assert "expected a text/event-stream 200" in str(caught.value)
    assert "application/json" in caught.value.message


async def test_connect_error_is_retried_then_raised(mock: respx.MockRouter, sleeps: Sleeps) -> None:
    route = mock.post("/v1/messages").mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(APIConnectionError) as caught:
        await collect(client(sleeps, max_retries=2))
    assert route.call_count == 3 and len(sleeps.waits) == 2
    assert caught.value.attempts == 3
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert str(caught.value) == (
        "expected 200 from POST /v1/messages, could not get a response: "
        "ConnectError: connection refused (after 3 attempts)"
    )


async def test_connect_timeout_then_success(mock: respx.MockRouter, sleeps: Sleeps) -> None:
    mock.post("/v1/messages").mock(side_effect=[httpx.ConnectTimeout("slow"), ok()])
    async with client(sleeps) as c, c.stream(REQUEST) as stream:
        assert stream.attempts == 2


async def test_unsupported_protocol_is_not_retried(sleeps: Sleeps) -> None:
    with pytest.raises(APIConnectionError):
        await collect(client(sleeps, base_url="ftp://api.test"))
    assert sleeps.waits == []


async def test_stream_cut_mid_way_raises_from_iteration_without_retry(
    mock: respx.MockRouter, sleeps: Sleeps
) -> None:
    head = sse(*EVENTS[:3]) + b'event: content_block_delta\ndata: {"type": "content_bl'
    cut = httpx.Response(200, headers=SSE_HEADERS, stream=CutStream(head))
    route = mock.post("/v1/messages").mock(side_effect=[cut, ok()])
    received: list[bytes] = []
    async with client(sleeps) as c, c.stream(REQUEST) as stream:
        with pytest.raises(APIConnectionError) as caught:
            async for chunk in stream:
                received.append(chunk)
    assert b"".join(received) == head
    assert route.call_count == 1 and sleeps.waits == []
    assert isinstance(caught.value.__cause__, httpx.ReadError)
    assert f"broke after {len(head)} bytes: ReadError: connection reset by peer" in str(caught.value)


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'{"type": "message_start"'])
async def test_data_that_is_not_a_json_object(mock: respx.MockRouter, sleeps: Sleeps, data: bytes) -> None:
    body = sse(EVENTS[0]) + b"event: content_block_start\ndata: " + data + b"\n\n" + sse(*EVENTS[1:])
    mock.post("/v1/messages").mock(return_value=ok(body))
    events = StreamParser().feed(await collect(client(sleeps)))  # the client passes it on; the parser says
    assert isinstance(events[-1], StreamFailed)
    error = events[-1].error
    assert isinstance(error, MalformedEventError)
    assert (error.event, error.event_number) == ("content_block_start", 1)


async def test_errors_in_the_callers_block_are_not_retried(mock: respx.MockRouter, sleeps: Sleeps) -> None:
    route = mock.post("/v1/messages").mock(return_value=ok())
    async with client(sleeps) as c:
        with pytest.raises(httpx.ConnectError):
            async with c.stream(REQUEST):
                raise httpx.ConnectError("the caller's own request failed")
    assert route.call_count == 1 and sleeps.waits == []


async def test_iterating_after_the_block_is_an_error(mock: respx.MockRouter, sleeps: Sleeps) -> None:
    mock.post("/v1/messages").mock(return_value=ok())
    async with client(sleeps) as c, c.stream(REQUEST) as stream:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        async for _ in stream:
            pass


async def test_only_an_owned_http_client_is_closed(mock: respx.MockRouter, sleeps: Sleeps) -> None:
    mock.post("/v1/messages").mock(return_value=ok())
    async with httpx.AsyncClient() as http:
        assert await collect(client(sleeps, http=http)) == sse(*EVENTS)
        assert not http.is_closed
    owned = client(sleeps)
    assert len(owned._https) == HTTP_SHARDS
    await owned.aclose()
    assert all(http.is_closed for http in owned._https)


async def test_a_request_takes_the_given_client_with_fewest_streams_open(sleeps: Sleeps) -> None:
    # Each client's own transport counts what reached it. Streams one after another keep to the first
    # client (its connections are reused); streams open at once spread; a failed attempt frees its
    # client. Neither client is closed with the Messages client: they are the caller's.
    served: list[int] = []
    status = {0: 200, 1: 200}

    def transport(n: int) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            served.append(n)
            return ok() if status[n] == 200 else api_error(status[n], "invalid_request_error", "no")

        return httpx.MockTransport(handle)

    https = [httpx.AsyncClient(transport=transport(n)) for n in (0, 1)]
    c = client(sleeps, http=https)
    for _ in range(2):
        assert b"".join([chunk async for chunk in _open(c)]) == sse(*EVENTS)
    assert served == [0, 0]
    async with c.stream(REQUEST) as first, c.stream(REQUEST) as second, c.stream(REQUEST) as third:
        for stream in (first, second, third):
            assert b"".join([chunk async for chunk in stream]) == sse(*EVENTS)
    assert served == [0, 0, 0, 1, 0]
    status[0] = 400
    with pytest.raises(APIStatusError):
        async with c.stream(REQUEST):
            pass
    status[0] = 200
    async with c.stream(REQUEST) as stream:
        assert b"".join([chunk async for chunk in stream]) == sse(*EVENTS)
    assert served == [0, 0, 0, 1, 0, 0, 0]
    await c.aclose()
    assert not any(http.is_closed for http in https)
    for http in https:
        await http.aclose()


async def _open(c: MessagesClient) -> AsyncIterator[bytes]:
    async with c.stream(REQUEST) as stream:
        async for chunk in stream:
            yield chunk


async def test_no_clients_and_no_shards_are_errors(sleeps: Sleeps) -> None:
    with pytest.raises(ValueError, match="at least one client"):
        client(sleeps, http=[])
    with pytest.raises(ValueError, match="at least 1"):
        http_clients(0)
    with pytest.raises(TypeError, match=r"expected httpx\.AsyncClient clients, got str"):
        client(sleeps, http=["http://proxy"])
    shards = http_clients(3)
    assert len({id(http) for http in shards}) == 3
    for http in shards:
        await http.aclose()


async def test_lone_surrogates_in_the_request_go_out_as_escapes(
    mock: respx.MockRouter, sleeps: Sleeps
) -> None:
    # Valid JSON from the model ("\ud83d" alone): Python decodes it to a lone surrogate, which UTF-8
    # cannot encode. The request carries it back as the escape, and reads back as the same string.
    text = json.loads('"cut emoji \\ud83d, and \\ude00 alone, then é"')
    request = {**REQUEST, "messages": [{"role": "assistant", "content": [{"type": "text", "text": text}]}]}
    route = mock.post("/v1/messages").mock(return_value=ok())
    async with client(sleeps) as c, c.stream(request) as stream:
        assert b"".join([chunk async for chunk in stream]) == sse(*EVENTS)
    content = route.calls.last.request.content
    assert content.isascii() and b"\\ud83d" in content
    assert json.loads(content)["messages"][0]["content"][0]["text"] == text
    assert route.calls.last.request.headers["content-type"] == "application/json"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
async def test_a_value_no_json_can_hold_is_refused_before_sending(
    mock: respx.MockRouter, sleeps: Sleeps, value: float
) -> None:
    route = mock.post("/v1/messages").mock(return_value=ok())
    with pytest.raises(ValueError, match="JSON compliant"):
        async with client(sleeps) as c, c.stream({**REQUEST, "temperature": value}):
            pass
    assert route.call_count == 0


def test_encode_request_is_compact_ascii_json() -> None:
    body = {"a": "é\u2713", "b": [1, 2.5, None, True]}
    encoded = encode_request(body)
    assert encoded == b'{"a":"\\u00e9\\u2713","b":[1,2.5,null,true]}'
    assert json.loads(encoded) == body


def test_is_retryable_status() -> None:
    assert [
        s
        for s in (200, 400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504, 505, 529)
        if is_retryable_status(s)
    ] == [
        429,
        500,
        502,
        503,
        504,
        529,
    ]
