"""The fake Messages API: real HTTP on loopback (uvicorn), driven by httpx and httpx-sse; no mocks."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
from httpx_sse import aconnect_sse, connect_sse

from incremental import IncompleteStreamError, SSEDecoder, SSEEvent, StreamParser
from incremental.fake_api import FakeMessagesAPI, Fault
from incremental.testing import FakeMessagesAPIFactory

from ._support import APP_BUILDER, FIXTURES, fixture, sdk_dump

TURN1 = APP_BUILDER[0]
TURN2 = APP_BUILDER[1]
SINGLE = FIXTURES / "single_tool.sse"


def _parse(data: bytes) -> StreamParser:
    parser = StreamParser()
    parser.feed(data)
    parser.end()
    return parser


def _recorded_events(path: Path) -> list[tuple[float, SSEEvent]]:
    """(t, event) for each event of a recording, from its timing comments."""
    out: list[tuple[float, SSEEvent]] = []
    t = 0.0
    for item in SSEDecoder().feed(path.read_bytes()):
        if isinstance(item, SSEEvent):
            out.append((t, item))
        elif item.text.startswith("t="):
            t = float(item.text[2:])
    return out


CONTENT1: list[dict[str, Any]] = _parse(TURN1.read_bytes()).message()["content"]
TOOL_IDS = [b["id"] for b in CONTENT1 if b["type"] == "tool_use"]


def _results(ids: list[str]) -> list[dict[str, Any]]:
    return [{"type": "tool_result", "tool_use_id": i, "content": f"ran {i}"} for i in ids]


def _request(*turns: list[Any], user: Any = None) -> dict[str, Any]:
    """A request with the given assistant contents, each followed by a user message."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Build me a habit tracker."}]
    for content in turns:
        messages.append({"role": "assistant", "content": content})
        messages.append({"role": "user", "content": user if user is not None else _results(TOOL_IDS)})
    return {"model": "claude-sonnet-4-5-20250929", "max_tokens": 8192, "stream": True, "messages": messages}


async def _post(api: FakeMessagesAPI, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api.url) as client:
        return await client.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})


@pytest.fixture
async def app_builder() -> AsyncIterator[FakeMessagesAPI]:
    async with FakeMessagesAPI([TURN1, TURN2], speed=0) as api:
        yield api


async def test_turn_1_streams_the_recording_byte_for_byte(app_builder: FakeMessagesAPI) -> None:
    response = await _post(app_builder, _request())
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["request-id"].startswith("req_")
    assert response.content == TURN1.read_bytes()
    parser = _parse(response.content)
    assert parser.error is None
    assert parser.message() == _parse(TURN1.read_bytes()).message()
    assert len(parser.tool_calls) == 8
    assert app_builder.requests == [_request()] and len(app_builder.request_times) == 1
    assert app_builder.rejections == []


async def test_pacing_keeps_order_and_never_runs_ahead_of_the_recording() -> None:
    speed = 50.0
    recorded = _recorded_events(TURN1)
    arrived: list[tuple[float, str, str]] = []
    async with FakeMessagesAPI([TURN1], speed=speed) as api, httpx.AsyncClient() as client:
        sent = time.monotonic()
        async with aconnect_sse(client, "POST", f"{api.url}/v1/messages", json=_request()) as source:
            async for sse in source.aiter_sse():
                arrived.append((time.monotonic() - sent, sse.event, sse.data))
    assert [(e, d) for _, e, d in arrived] == [(ev.event, ev.data) for _, ev in recorded]
    for (t, _), (at, _, _) in zip(recorded, arrived, strict=True):
        assert at >= t / speed  # a lower bound only: never early
    assert arrived[-1][0] >= recorded[-1][0] / speed  # 45.484 s recorded, about 0.91 s here


async def test_a_correct_turn_2_request_gets_the_turn_2_stream(app_builder: FakeMessagesAPI) -> None:
    response = await _post(app_builder, _request(CONTENT1))
    assert response.status_code == 200, response.text
    assert response.content == TURN2.read_bytes()
    assert _parse(response.content).stop_reason == "end_turn"
    assert app_builder.rejections == []
    assert len(app_builder.requests) == len(app_builder.request_times) == 1


async def test_the_echo_may_be_rebuilt_with_any_key_order_and_results_may_be_followed_by_text(
    app_builder: FakeMessagesAPI,
) -> None:
    reordered = [dict(reversed(list(block.items()))) for block in CONTENT1]
    user = [*_results(TOOL_IDS), {"type": "text", "text": "Also make it dark."}]
    user[0] = {**user[0], "is_error": True, "content": [{"type": "text", "text": "failed"}]}
    response = await _post(app_builder, _request(reordered, user=user))
    assert response.status_code == 200, response.text


def _changed_input() -> list[Any]:
    content = copy.deepcopy(CONTENT1)
    block = next(b for b in content if b["type"] == "tool_use" and b["name"] == "write_file")
    text = block["input"]["content"]
    block["input"]["content"] = text[:100] + ("X" if text[100] != "X" else "Y") + text[101:]
    return content


def _bad_requests() -> dict[str, tuple[dict[str, Any], list[str]]]:
    """name: (request body, words the rejection must hold)."""
    ids = TOOL_IDS
    swapped = [ids[1], ids[0], *ids[2:]]
    return {
        "missing id": (
            _request(CONTENT1, user=_results(ids[:-1])),
            ["missing tool_result", ids[-1], "read_file"],
        ),
        "wrong order": (_request(CONTENT1, user=_results(swapped)), ["out of order", str(ids), str(swapped)]),
        "duplicate": (_request(CONTENT1, user=_results([*ids, ids[3]])), ["duplicate tool_result", ids[3]]),
        "unknown id": (
            _request(CONTENT1, user=_results([*ids, "toolu_nope"])),
            ["toolu_nope", "no tool_use id"],
        ),
        "tool input changed": (
            _request(_changed_input()),
            ["verbatim", "messages[-2].content[1].input.content", "differs at character 100"],
        ),
        "text changed": (
            _request([{**CONTENT1[0], "text": CONTENT1[0]["text"] + " "}, *CONTENT1[1:]]),
            ["messages[-2].content[0].text", "differs at character"],
        ),
        "block dropped": (_request(CONTENT1[:-1]), ["messages[-2].content[11]"]),
        "results after text": (
            _request(CONTENT1, user=[{"type": "text", "text": "hi"}, *_results(ids)]),
            ["must come first"],
        ),
        "results as a string": (_request(CONTENT1, user="done"), ["messages[-1].content", "tool_result"]),
        "no tool_use_id": (
            _request(CONTENT1, user=[{"type": "tool_result", "content": "x"}, *_results(ids)]),
            ["messages[-1].content[0]", "tool_use_id"],
        ),
        "not streamed": ({**_request(), "stream": False}, ["stream", "expected true", "got false"]),
        "stream missing": ({k: v for k, v in _request().items() if k != "stream"}, ["stream", "got null"]),
        "no messages": ({**_request(), "messages": []}, ["messages", "non-empty list"]),
        "past the last turn": (_request(CONTENT1, CONTENT1), ["turn 2", "only 2 turn(s)"]),
    }


@pytest.mark.parametrize("case", list(_bad_requests()))
async def test_a_bad_request_gets_400_naming_the_problem(app_builder: FakeMessagesAPI, case: str) -> None:
    body, words = _bad_requests()[case]
    response = await _post(app_builder, body)
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    message = error["error"]["message"]
    for word in words:
        assert word in message, message
    assert app_builder.rejections == [message]


async def test_a_body_that_is_not_json_is_rejected(app_builder: FakeMessagesAPI) -> None:
    async with httpx.AsyncClient(base_url=app_builder.url) as client:
        response = await client.post("/v1/messages", content=b"{not json")
    assert response.status_code == 400
    assert "expected a JSON request body" in response.json()["error"]["message"]
    assert app_builder.requests == []


async def test_a_429_with_retry_after_then_the_retry_succeeds() -> None:
    faults = {0: Fault("status", status=429, retry_after=1.5)}
    async with FakeMessagesAPI([SINGLE], speed=0, faults=faults) as api:
        first = await _post(api, _request())
        assert first.status_code == 429
        assert first.headers["retry-after"] == "1.5"
        assert first.json()["error"]["type"] == "rate_limit_error"
        second = await _post(api, _request())
        assert second.status_code == 200
        assert second.content == SINGLE.read_bytes()
        assert len(api.requests) == 2 and api.rejections == []


@pytest.mark.parametrize(("status", "error_type"), [(529, "overloaded_error"), (500, "api_error")])
async def test_status_faults_use_the_api_error_types(status: int, error_type: str) -> None:
    async with FakeMessagesAPI([SINGLE], speed=0, faults={0: Fault("status", status=status, times=2)}) as api:
        answers = [await _post(api, _request()) for _ in range(3)]
    assert [a.status_code for a in answers] == [status, status, 200]
    assert answers[0].json()["error"]["type"] == error_type
    assert "retry-after" not in answers[0].headers


async def test_drop_after_closes_mid_stream_and_the_parser_reports_it_incomplete() -> None:
    async with FakeMessagesAPI([SINGLE], speed=0, faults={0: Fault("drop_after", events=6)}) as api:
        parser = StreamParser()
        async with httpx.AsyncClient() as client:
            async with client.stream("POST", f"{api.url}/v1/messages", json=_request()) as response:
                assert response.status_code == 200
                with pytest.raises(httpx.RemoteProtocolError):
                    async for chunk in response.aiter_bytes():
                        parser.feed(chunk)
            parser.end()
            assert isinstance(parser.error, IncompleteStreamError)
            assert parser.event_count == 6
            # The fault is spent: the retry plays the whole turn.
            retry = await client.post(f"{api.url}/v1/messages", json=_request())
        assert retry.content == SINGLE.read_bytes()


async def test_stop_cuts_a_stream_in_flight() -> None:
    api = FakeMessagesAPI([TURN1], speed=1)  # 45 s recorded: stop() must not wait for it
    await api.start()
    async with (
        httpx.AsyncClient() as client,
        aconnect_sse(client, "POST", f"{api.url}/v1/messages", json=_request()) as source,
    ):
        events = source.aiter_sse()
        assert (await anext(events)).event == "message_start"
        await api.stop()
        with pytest.raises(httpx.RemoteProtocolError):
            async for _ in events:
                pass
    await api.stop()  # idempotent


async def test_crlf_recordings_and_bytes_turns_are_sent_as_they_are() -> None:
    crlf = (FIXTURES / "crlf_framing.sse").read_bytes()
    untimed = b"".join(line for line in SINGLE.read_bytes().splitlines(True) if not line.startswith(b": t="))
    async with FakeMessagesAPI([crlf], speed=1000) as api:
        assert (await _post(api, _request())).content == crlf
    async with FakeMessagesAPI([untimed], speed=1) as api:  # no timing: everything goes at once
        assert (await _post(api, _request())).content == untimed


async def test_healthz_and_unknown_paths(app_builder: FakeMessagesAPI) -> None:
    async with httpx.AsyncClient(base_url=app_builder.url) as client:
        health = await client.get("/healthz")
        missing = await client.get("/v1/models")
        wrong_method = await client.get("/v1/messages")
    assert (health.status_code, health.text) == (200, "ok")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    assert wrong_method.status_code == 405


async def test_the_app_works_over_asgi_transport_without_a_server() -> None:
    api = FakeMessagesAPI([SINGLE], speed=0)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app), base_url="http://fake"
    ) as client:
        response = await client.post("/v1/messages", json=_request())
    assert response.content == SINGLE.read_bytes()


def test_run_in_thread_serves_synchronous_code() -> None:
    with (
        FakeMessagesAPI([SINGLE], speed=0).run_in_thread() as api,
        httpx.Client() as client,
        connect_sse(client, "POST", f"{api.url}/v1/messages", json=_request()) as source,
    ):
        kinds = [sse.event for sse in source.iter_sse()]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="speed"):
        FakeMessagesAPI([SINGLE], speed=-1)
    with pytest.raises(ValueError, match="at least one"):
        FakeMessagesAPI([])
    with pytest.raises(ValueError, match="kind"):
        Fault("timeout")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="start"):
        _ = FakeMessagesAPI([SINGLE]).url


async def test_the_plugin_fixtures(fake_messages_api: FakeMessagesAPIFactory, redis_url: str) -> None:
    api = await fake_messages_api([TURN1, TURN2], speed=0)
    assert (await _post(api, _request())).status_code == 200
    assert (await _post(api, _request(CONTENT1))).content == TURN2.read_bytes()
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await client.ping() is True
    finally:
        await client.aclose()


def _lines(process: subprocess.Popen[str]) -> Callable[[], str]:
    assert process.stdout is not None
    return process.stdout.readline


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_command_line_serves_until_ctrl_c(stop_signal: signal.Signals) -> None:
    command = [
        sys.executable,
        "-m",
        "incremental.cli",
        "fake-api",
        str(SINGLE),
        "--port",
        "0",
        "--speed",
        "0",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        readline = _lines(process)
        first = readline()
        assert first.startswith("Fake Messages API on http://127.0.0.1:"), first
        url = first.split()[4]
        response = httpx.post(f"{url}/v1/messages", json=_request())
        assert response.content == SINGLE.read_bytes()
        rejected = httpx.post(f"{url}/v1/messages", json={**_request(), "stream": False})
        assert rejected.status_code == 400
    finally:
        process.send_signal(stop_signal)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "turn 0: playing" in out and "400: stream" in out and "stopped" in out
    assert json.loads(rejected.text)["error"]["type"] == "invalid_request_error"


def _sdk_dump(path: Path) -> list[dict[str, Any]]:
    """``[b.model_dump() for b in message.content]`` of the SDK's own final message for a recording."""
    blocks: list[dict[str, Any]] = sdk_dump(path.read_bytes(), lambda m: [b.model_dump() for b in m.content])
    return blocks


TOLERATED = ["app_builder_8_tools.sse", "thinking_parallel_tools.sse", "server_tool_web_search.sse"]


@pytest.mark.parametrize("name", TOLERATED)
async def test_the_sdks_model_dump_of_the_content_is_accepted_as_the_api_accepts_it(name: str) -> None:
    path = fixture(name)
    dumped = _sdk_dump(path)
    recorded = _parse(path.read_bytes()).message()["content"]
    assert dumped != recorded  # the SDK writes out nulls the stream never sent (citations, caller, ...)
    added = {k for d, r in zip(dumped, recorded, strict=True) for k, v in d.items() if k not in r}
    assert "citations" in added
    ids = [b["id"] for b in recorded if b["type"] == "tool_use"]
    async with FakeMessagesAPI([path, TURN2], speed=0) as api:
        response = await _post(api, _request(dumped, user=_results(ids)))
        assert response.status_code == 200, response.text
        assert api.rejections == []


def _with(content: list[Any], index: int, **changes: Any) -> list[Any]:
    out = copy.deepcopy(content)
    out[index].update(changes)
    return out


def _tolerance_cases() -> dict[str, tuple[list[Any], list[str] | None]]:
    """name: (echoed content, None if accepted, else words the rejection must hold)."""
    dumped = _sdk_dump(TURN1)
    write = next(i for i, b in enumerate(CONTENT1) if b["type"] == "tool_use")
    text_input = {**CONTENT1[write]["input"], "mode": None}
    return {
        "model_dump": (dumped, None),
        "citations []": (_with(CONTENT1, 0, citations=[]), None),
        "an unknown key set to null": (_with(CONTENT1, 0, annotations=None), None),
        "citations with an item": (
            _with(dumped, 0, citations=[{"type": "char_location"}]),
            ["messages[-2].content[0].citations", "was not in the recording"],
        ),
        "an extra key with a value": (
            _with(dumped, write, caller={"type": "direct"}),
            [f"messages[-2].content[{write}].caller was not in the recording", '{"type": "direct"}'],
        ),
        "a null added to a tool input": (
            _with(dumped, write, input=text_input),
            [f"messages[-2].content[{write}].input.mode was not in the recording (got null)"],
        ),
        "a changed text in a dump": (
            _with(dumped, 0, text=dumped[0]["text"] + "!"),
            ["messages[-2].content[0].text differs at character"],
        ),
    }


@pytest.mark.parametrize("case", list(_tolerance_cases()))
async def test_nulls_and_defaults_are_read_as_absent_and_anything_else_is_named(
    app_builder: FakeMessagesAPI, case: str
) -> None:
    content, words = _tolerance_cases()[case]
    response = await _post(app_builder, _request(content))
    if words is None:
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    for word in words:
        assert word in message, message
