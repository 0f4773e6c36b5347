"""Recording: the timed SSE writer, conversations and turns, and the proxy over real loopback HTTP.

The round trip is the anthropic SDK -> ``incremental record`` (in-process and as the command) -> the
fake Messages API, both real servers on loopback; the recording is then inspected and replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from incremental import SSEDecoder, SSEEvent, StreamParser
from incremental._serving import start_server
from incremental.fake_api import FakeMessagesAPI, Fault
from incremental.recording import (
    Recorder,
    RecordingProxy,
    Saved,
    TimedSSEWriter,
    strip_timing,
    turn_files,
)

from ._support import APP_BUILDER, CHUNKINGS, FIXTURES

TURN1, TURN2 = APP_BUILDER
SINGLE = FIXTURES / "single_tool.sse"
KEY = "sk-ant-api03-NOT-A-REAL-KEY-0123456789abcdef"
MODEL = "claude-sonnet-4-5-20250929"


def incremental(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "incremental.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def _events(data: bytes) -> list[SSEEvent]:
    return [e for e in SSEDecoder().feed(data) if isinstance(e, SSEEvent)]


def _timings(data: bytes) -> list[float]:
    return [float(line.split(b"=")[1]) for line in data.splitlines() if line.startswith(b": t=")]


def _write(chunks: list[tuple[bytes, float]]) -> bytes:
    out = io.BytesIO()
    writer = TimedSSEWriter(out)
    for chunk, at in chunks:
        writer.feed(chunk, at)
    writer.close(chunks[-1][1] if chunks else None)
    return out.getvalue()


# ---------------------------------------------------------------- the timed writer


@pytest.mark.parametrize("name", ["single_tool.sse", "crlf_framing.sse", "unknown_types.sse"])
@pytest.mark.parametrize("chunking", ["whole", "per_byte", "random_1", "random_2"])
def test_the_writer_keeps_the_bytes_and_times_every_event(name: str, chunking: str) -> None:
    data = (FIXTURES / name).read_bytes()
    chunks = [(c, i / 1000) for i, c in enumerate(CHUNKINGS[chunking](data))]
    written = _write(chunks)
    assert strip_timing(written) == strip_timing(data)
    events = _events(data)
    assert _events(written) == events
    timings = _timings(written)
    assert len(timings) == len(events) and timings == sorted(timings)
    # Each timing comment sits right before an event's first line, in the file's own line ending.
    eol = b"\r\n" if b"\r\n" in data else b"\n"
    assert written.count(b": t=") == len(events)
    for block in written.split(eol + eol):
        if block.strip():
            lines = block.split(eol)
            assert lines[0].startswith(b": t=") and lines[1].startswith(b"event: "), block[:80]


def test_an_event_is_timed_by_the_chunk_that_completes_it_and_crlf_may_be_split() -> None:
    written = _write(
        [
            (b'event: ping\r\ndata: {"type":"ping"}\r', 1.0),
            (b"\n\r", 2.0),
            (b"\nevent: a\r\ndata: {}\r\n\r\n", 3.25),
        ]
    )
    assert written == (
        b': t=2.000\r\nevent: ping\r\ndata: {"type":"ping"}\r\n\r\n: t=3.250\r\nevent: a\r\ndata: {}\r\n\r\n'
    )


def test_upstream_timing_is_replaced_other_comments_kept_and_an_unfinished_event_written() -> None:
    written = _write(
        [(b": t=9.5\nevent: a\ndata: {}\n\n: ping\n\n", 0.5), (b": t=10\nevent: b\ndata: {", 0.75)]
    )
    assert written == b": t=0.500\nevent: a\ndata: {}\n\n: ping\n\n: t=0.750\nevent: b\ndata: {"


def test_a_byte_order_mark_stays_first_even_when_split() -> None:
    data = b'\xef\xbb\xbfevent: ping\ndata: {"type":"ping"}\n\n'
    written = _write([(data[:1], 0.1), (data[1:2], 0.1), (data[2:], 0.2)])
    assert written == b'\xef\xbb\xbf: t=0.200\nevent: ping\ndata: {"type":"ping"}\n\n'
    assert _events(written) == _events(data)


# ---------------------------------------------------------------- conversations and turns


def _body(*messages: Any) -> bytes:
    return json.dumps({"model": MODEL, "max_tokens": 64, "stream": True, "messages": list(messages)}).encode()


USER = {"role": "user", "content": "Build me a habit tracker."}
ANSWER = {
    "role": "assistant",
    "content": [{"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {}}],
}
RESULT = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}
HEADERS = {"x-api-key": KEY, "authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"}


def _exchange(recorder: Recorder, body: bytes, status: int = 200, data: bytes | None = None) -> Saved:
    exchange = recorder.begin(method="POST", path="/v1/messages", headers=HEADERS, body=body)
    if status == 200:
        exchange.response(200, [("content-type", "text/event-stream")])
        exchange.data(SINGLE.read_bytes() if data is None else data)
    else:
        exchange.response(status, [("content-type", "application/json"), ("set-cookie", "s=1")])
        exchange.data(
            json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "no"}}).encode()
        )
    return exchange.finish()


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_turns_continue_a_conversation_retries_replace_an_attempt_and_reruns_start_anew(
    tmp_path: Path,
) -> None:
    recorder = Recorder(tmp_path)
    first = _exchange(recorder, _body(USER), status=529)
    assert (first.conversation, first.turn, first.attempt, first.ok) == ("conv-001", 0, 1, False)
    assert first.error == "overloaded_error: no"
    retry = _exchange(recorder, _body(USER))
    assert (retry.conversation, retry.turn, retry.attempt, retry.ok) == ("conv-001", 0, 2, True)
    second = _exchange(recorder, _body(USER, ANSWER, RESULT))
    assert (second.conversation, second.turn) == ("conv-001", 1)
    rerun = _exchange(recorder, _body(USER))
    assert (rerun.conversation, rerun.turn) == ("conv-002", 0)
    other = _exchange(recorder, _body({"role": "user", "content": "Something else."}))
    assert other.conversation == "conv-003"  # a different first message
    assert _tree(tmp_path / "conv-001") == [
        "retried/turn-00.1.request.json",
        "retried/turn-00.1.response.json",
        "turn-00.request.json",
        "turn-00.response.json",
        "turn-00.sse",
        "turn-01.request.json",
        "turn-01.response.json",
        "turn-01.sse",
    ]
    assert turn_files(tmp_path / "conv-001") == [tmp_path / "conv-001" / f"turn-0{k}.sse" for k in (0, 1)]
    error = json.loads((tmp_path / "conv-001/retried/turn-00.1.response.json").read_text())
    assert error["status"] == 529 and error["body"]["error"]["type"] == "overloaded_error"
    assert "set-cookie" not in error["headers"] and error["outcome"] == "complete"
    assert Recorder(tmp_path).begin(method="POST", path="/v1/messages", headers={}, body=b"").sent_at > 0
    assert (tmp_path / "conv-004").is_dir()  # a new recorder numbers after the folders already there


def test_a_cache_control_marker_moving_keeps_the_conversation(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    marked = {
        "role": "user",
        "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
    }
    plain = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    assert _exchange(recorder, _body(marked)).conversation == "conv-001"
    second = _exchange(recorder, _body(plain, ANSWER, RESULT))
    assert (second.conversation, second.turn) == ("conv-001", 1)


def test_secrets_are_never_written(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    body = json.loads(_body(USER))
    body["mcp_servers"] = [
        {"type": "url", "url": "https://mcp.example", "name": "x", "authorization_token": KEY}
    ]
    headers = {**HEADERS, "Cookie": KEY, "x-auth-token": KEY, "user-agent": "test"}
    exchange = recorder.begin(
        method="POST", path="/v1/messages", headers=headers, body=json.dumps(body).encode()
    )
    exchange.response(200, [("content-type", "text/event-stream"), ("anthropic-organization-id", "org")])
    exchange.data(SINGLE.read_bytes())
    saved = exchange.finish()
    request = json.loads(saved.files[0].read_text())
    assert request["headers"] == {"anthropic-version": "2023-06-01", "user-agent": "test"}
    assert request["redacted_headers"] == ["x-api-key", "authorization", "cookie", "x-auth-token"]
    assert request["body"]["mcp_servers"][0]["authorization_token"] == "[not recorded]"
    assert request["body"]["messages"] == [USER]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes()
    response = json.loads(saved.files[2].read_text())
    assert "anthropic-organization-id" not in response["headers"]


# ---------------------------------------------------------------- the proxy, over real HTTP


@dataclass
class RoundTrip:
    out: Path
    finals: list[dict[str, Any]]  # the SDK's get_final_message() of each turn, as JSON
    upstream_requests: list[dict[str, Any]]  # what the fake API received
    saved: list[Saved]


def _tool_results(message: anthropic.types.Message) -> dict[str, Any]:
    results = [
        {"type": "tool_result", "tool_use_id": b.id, "content": f"ran {b.name}"}
        for b in message.content
        if b.type == "tool_use"
    ]
    return {"role": "user", "content": results}


async def _sdk_conversation(base_url: str, turns: int, **client: Any) -> list[anthropic.types.Message]:
    """The SDK as an app uses it: stream a turn, echo its content with model_dump(), send tool results."""
    sdk = anthropic.AsyncAnthropic(base_url=base_url, api_key=KEY, **client)
    messages: list[Any] = [USER]
    finals = []
    try:
        for _ in range(turns):
            async with sdk.messages.stream(model=MODEL, max_tokens=8192, messages=messages) as stream:
                final = await stream.get_final_message()
            finals.append(final)
            messages = [
                *messages,
                {"role": "assistant", "content": [b.model_dump() for b in final.content]},
                _tool_results(final),
            ]
    finally:
        await sdk.close()
    return finals


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory: pytest.TempPathFactory) -> RoundTrip:
    out = tmp_path_factory.mktemp("recordings")

    async def run() -> RoundTrip:
        async with (
            FakeMessagesAPI([TURN1, TURN2], speed=0) as api,
            RecordingProxy(out, upstream=api.url) as proxy,
        ):
            finals = await _sdk_conversation(proxy.url, 2, max_retries=0)
            assert api.rejections == []
            return RoundTrip(
                out, [m.to_dict(mode="json") for m in finals], api.requests, proxy.recorder.saved
            )

    return asyncio.run(run())


def test_the_recording_holds_what_the_upstream_sent(round_trip: RoundTrip) -> None:
    conv = round_trip.out / "conv-001"
    assert _tree(round_trip.out) == [
        f"conv-001/turn-0{k}.{ext}" for k in (0, 1) for ext in ("request.json", "response.json", "sse")
    ]
    for k, fixture in enumerate((TURN1, TURN2)):
        saved = (conv / f"turn-0{k}.sse").read_bytes()
        assert strip_timing(saved) == strip_timing(fixture.read_bytes())  # the fake API sends it verbatim
        assert len(_timings(saved)) == len(_events(saved)) == len(_events(fixture.read_bytes()))
        assert _timings(saved) == sorted(_timings(saved))
        request = json.loads((conv / f"turn-0{k}.request.json").read_text())
        assert request["body"] == round_trip.upstream_requests[k]
        assert request["path"] == "/v1/messages" and request["method"] == "POST"
        assert "x-api-key" not in request["headers"] and "authorization" not in request["headers"]
        response = json.loads((conv / f"turn-0{k}.response.json").read_text())
        assert response["status"] == 200 and response["outcome"] == "complete"
        assert response["headers"]["content-type"] == "text/event-stream"
        assert response["headers"]["request-id"].startswith("req_")
    assert [(s.turn, s.ok, s.stop_reason) for s in round_trip.saved] == [
        (0, True, "tool_use"),
        (1, True, "end_turn"),
    ]
    for path in round_trip.out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes()


def test_inspect_of_the_recording_equals_the_sdks_final_message(round_trip: RoundTrip) -> None:
    files = [str(p) for p in turn_files(round_trip.out / "conv-001")]
    result = incremental("inspect", "--json", *files)
    assert result.returncode == 0, result.stderr
    for line, sdk in zip(result.stdout.splitlines(), round_trip.finals, strict=True):
        ours = json.loads(line)["message"]
        # The SDK sets every field it models, as null when the stream never sent it (stop_details).
        assert {k: v for k, v in sdk.items() if k in ours or v is not None} == ours


def test_the_recording_replays_through_the_pipeline(round_trip: RoundTrip) -> None:
    files = [str(p) for p in turn_files(round_trip.out / "conv-001")]
    result = incremental("replay", *files, "--simulate", "0.01", "--speed", "0", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "completed"
    assert [t["stop_reason"] for t in summary["turns"]] == ["tool_use", "end_turn"]
    ids = [b["id"] for b in round_trip.finals[0]["content"] if b["type"] == "tool_use"]
    assert [t["id"] for t in summary["tools"]] == ids
    assert all(t["status"] == "ok" and t["executions"] == 1 for t in summary["tools"])


async def test_the_answer_streams_through_as_it_arrives_and_a_client_that_leaves_is_recorded(
    tmp_path: Path,
) -> None:
    saved: asyncio.Queue[Saved] = asyncio.Queue()
    async with (
        FakeMessagesAPI([TURN1], speed=1) as api,  # 45 s recorded: nothing buffered may wait for its end
        RecordingProxy(tmp_path, upstream=api.url, on_saved=saved.put_nowait) as proxy,
        httpx.AsyncClient(timeout=30) as client,
    ):
        async with (
            asyncio.timeout(20),
            client.stream("POST", f"{proxy.url}/v1/messages", content=_body(USER)) as r,
        ):
            assert r.status_code == 200
            async for chunk in r.aiter_raw():
                assert b"event: message_start" in chunk
                break
            assert proxy.recorder.saved == []  # the exchange is still open upstream
        gone = await asyncio.wait_for(saved.get(), 20)
    assert gone.outcome == "the client disconnected" and not gone.ok
    data = (tmp_path / "conv-001/turn-00.sse").read_bytes()
    assert 1 <= len(_events(data)) < len(_events(TURN1.read_bytes()))
    assert strip_timing(TURN1.read_bytes()).startswith(strip_timing(data))


async def test_an_error_status_is_recorded_and_the_sdks_retry_is_the_same_turn(tmp_path: Path) -> None:
    faults = {0: Fault("status", status=529, retry_after=0.01)}
    async with (
        FakeMessagesAPI([SINGLE], speed=0, faults=faults) as api,
        RecordingProxy(tmp_path, upstream=api.url) as proxy,
    ):
        [final] = await _sdk_conversation(proxy.url, 1, max_retries=2)
    assert final.stop_reason == "tool_use" and len(api.requests) == 2
    assert _tree(tmp_path) == [
        "conv-001/retried/turn-00.1.request.json",
        "conv-001/retried/turn-00.1.response.json",
        "conv-001/turn-00.request.json",
        "conv-001/turn-00.response.json",
        "conv-001/turn-00.sse",
    ]
    error = json.loads((tmp_path / "conv-001/retried/turn-00.1.response.json").read_text())
    assert error["status"] == 529 and error["headers"]["retry-after"] == "0.01"
    assert error["body"]["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert [(s.attempt, s.status, s.ok) for s in proxy.recorder.saved] == [(1, 529, False), (2, 200, True)]


async def test_an_upstream_that_breaks_mid_body_breaks_the_client_too_and_is_recorded(tmp_path: Path) -> None:
    async with (
        FakeMessagesAPI([SINGLE], speed=0, faults={0: Fault("drop_after", events=4)}) as api,
        RecordingProxy(tmp_path, upstream=api.url) as proxy,
        httpx.AsyncClient() as client,
    ):
        received = b""
        with pytest.raises(httpx.RemoteProtocolError):
            async with client.stream("POST", f"{proxy.url}/v1/messages", content=_body(USER)) as response:
                async for chunk in response.aiter_raw():
                    received += chunk
        retry = await client.post(f"{proxy.url}/v1/messages", content=_body(USER))
    assert retry.content == SINGLE.read_bytes()
    cut, whole = proxy.recorder.saved
    assert cut.outcome.startswith("the upstream connection broke") and not cut.ok
    assert (whole.attempt, whole.ok) == (2, True)
    data = (tmp_path / "conv-001/retried/turn-00.1.sse").read_bytes()
    assert strip_timing(data) == strip_timing(received) and len(_events(data)) == 4


@contextlib.asynccontextmanager
async def _serve(app: Starlette) -> AsyncIterator[str]:
    server, task, port = await start_server(app, "127.0.0.1", 0, name="a test upstream", lifespan="off")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_a_non_streaming_answer_headers_and_other_paths_go_through_unchanged(tmp_path: Path) -> None:
    seen: list[tuple[str, dict[str, str], bytes]] = []
    message = _message_of(SINGLE)

    async def messages(request: Request) -> Response:
        seen.append((request.url.path + "?" + request.url.query, dict(request.headers), await request.body()))
        return JSONResponse(message, headers={"request-id": "req_test", "set-cookie": "s=1"})

    async def models(request: Request) -> Response:
        seen.append((request.url.path, dict(request.headers), b""))
        return JSONResponse({"data": [], "has_more": False})

    app = Starlette(routes=[Route("/v1/messages", messages, methods=["POST"]), Route("/v1/models", models)])
    async with _serve(app) as upstream, RecordingProxy(tmp_path, upstream=upstream) as proxy:
        sdk = anthropic.AsyncAnthropic(base_url=proxy.url, api_key=KEY, max_retries=0)
        try:
            answer = await sdk.messages.create(
                model=MODEL, max_tokens=64, messages=[USER], extra_query={"beta": "true"}
            )
            await sdk.models.list()
        finally:
            await sdk.close()
    assert answer.content[0].type == "text" and answer.id == message["id"]
    (path, headers, body), (models_path, _, _) = seen
    assert path == "/v1/messages?beta=true" and models_path == "/v1/models"
    assert KEY in (headers.get("x-api-key", "") + headers.get("authorization", ""))  # forwarded upstream
    assert headers["accept-encoding"] == "identity" and headers["host"] == upstream.removeprefix("http://")
    assert _tree(tmp_path) == ["conv-001/turn-00.request.json", "conv-001/turn-00.response.json"]
    request = json.loads((tmp_path / "conv-001/turn-00.request.json").read_text())
    assert request["body"] == json.loads(body) and request["path"] == "/v1/messages?beta=true"
    response = json.loads((tmp_path / "conv-001/turn-00.response.json").read_text())
    assert (
        response["body"] == message and response["status"] == 200 and "set-cookie" not in response["headers"]
    )
    assert KEY.encode() not in b"".join(p.read_bytes() for p in tmp_path.rglob("*.json"))


def _message_of(path: Path) -> dict[str, Any]:
    parser = StreamParser()
    parser.feed(path.read_bytes())
    parser.end()
    return parser.message()


async def test_an_upstream_that_cannot_be_reached_is_a_502_in_the_apis_shape(tmp_path: Path) -> None:
    async with FakeMessagesAPI([SINGLE]) as api:
        gone = api.url  # nothing listens here once it has stopped
    async with RecordingProxy(tmp_path, upstream=gone) as proxy, httpx.AsyncClient() as client:
        response = await client.post(f"{proxy.url}/v1/messages", content=_body(USER))
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "api_error" and gone in response.json()["error"]["message"]
    [saved] = proxy.recorder.saved
    assert saved.status == 502 and saved.outcome.startswith("the upstream could not be reached")


# ---------------------------------------------------------------- the command


def _lines(process: subprocess.Popen[str]) -> Callable[[], str]:
    assert process.stdout is not None
    return process.stdout.readline


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_command_records_until_stopped(tmp_path: Path, stop_signal: signal.Signals) -> None:
    with FakeMessagesAPI([SINGLE], speed=0).run_in_thread() as api:
        command = [
            sys.executable,
            "-m",
            "incremental.cli",
            "record",
            "--out",
            str(tmp_path),
            "--upstream",
            api.url,
        ]
        process = subprocess.Popen(
            [*command, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            first = _lines(process)()
            assert first.startswith("listening on http://127.0.0.1:"), first
            url = first.split()[-1]
            response = httpx.post(f"{url}/v1/messages", content=_body(USER), headers={"x-api-key": KEY})
            assert response.content == SINGLE.read_bytes()
            saved_line = _lines(process)()
            while "conv-001 turn 0" not in saved_line:
                saved_line = _lines(process)()
        finally:
            process.send_signal(stop_signal)
            out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "200, 15 events, stop_reason tool_use" in saved_line and "conv-001/turn-00.sse" in saved_line
    assert f"replay: incremental replay {tmp_path}/conv-001/turn-*.sse" in out and "stopped" in out
    assert strip_timing((tmp_path / "conv-001/turn-00.sse").read_bytes()) == strip_timing(SINGLE.read_bytes())


def test_the_command_refuses_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    cases = {
        ("--upstream", "ftp://example.com"): "http(s) URL",
        ("--out", str(tmp_path / "file")): "not a directory",
        ("--port", "70000"): "--port",
    }
    for extra, words in cases.items():
        args = ["record", "--out", str(tmp_path / "rec"), *extra]
        result = incremental(*args, timeout=30)
        assert result.returncode == 2 and words in result.stderr, (extra, result.stderr)
    assert incremental("record", timeout=30).returncode == 2  # --out is required


# ---------------------------------------------------------------- the committed recordings

RECORDED = FIXTURES / "recorded"
ORIGINALS = {
    "app_builder": [TURN1, TURN2],
    "web_search_retried": [FIXTURES / "server_tool_web_search.sse"],
}


@pytest.mark.parametrize("name", list(ORIGINALS))
def test_the_committed_recordings_hold_the_upstreams_events_timed_never_early(name: str) -> None:
    turns = turn_files(RECORDED / name)
    assert len(turns) == len(ORIGINALS[name])
    for recorded, original in zip(turns, ORIGINALS[name], strict=True):
        data, sent = recorded.read_bytes(), original.read_bytes()
        assert strip_timing(data) == strip_timing(sent)
        measured, scheduled = _timings(data), _timings(sent)
        assert len(measured) == len(scheduled) == len(_events(data))
        # Played at speed 1, the fake API never sends an event before its time; the recorder's clock
        # starts before the request leaves, so each measured time is at least the scheduled one.
        assert all(m >= s for m, s in zip(measured, scheduled, strict=True))
        response = json.loads(recorded.with_suffix(".response.json").read_text())
        assert response["status"] == 200 and response["outcome"] == "complete"
        assert response["events"] == len(measured)
    for path in (RECORDED / name).rglob("*"):
        if path.is_file():
            assert b"sk-ant" not in path.read_bytes()
    result = incremental("inspect", "--json", *map(str, turns))
    assert result.returncode == 0, result.stderr
    assert all(json.loads(line)["error"] is None for line in result.stdout.splitlines())


def test_the_committed_retry_kept_the_error_beside_the_turn() -> None:
    error = json.loads((RECORDED / "web_search_retried/retried/turn-00.1.response.json").read_text())
    assert error["status"] == 529 and error["body"]["error"]["type"] == "overloaded_error"
    first = json.loads((RECORDED / "web_search_retried/retried/turn-00.1.request.json").read_text())
    second = json.loads((RECORDED / "web_search_retried/turn-00.request.json").read_text())
    assert first["body"] == second["body"]
    assert (first["headers"]["x-stainless-retry-count"], second["headers"]["x-stainless-retry-count"]) == (
        "0",
        "1",
    )


async def test_the_committed_conversation_plays_back_from_the_fake_api() -> None:
    async with FakeMessagesAPI(turn_files(RECORDED / "app_builder"), speed=0) as api:
        finals = await _sdk_conversation(api.url, 2, max_retries=0)
    assert [m.stop_reason for m in finals] == ["tool_use", "end_turn"] and api.rejections == []
    recorded = [
        json.loads(p.read_text())["body"] for p in sorted((RECORDED / "app_builder").glob("*.request.json"))
    ]
    assert [len(r["messages"]) for r in recorded] == [len(r["messages"]) for r in api.requests] == [1, 3]


def test_a_stream_that_fails_or_stops_short_is_a_failed_attempt(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    overloaded = _exchange(recorder, _body(USER), data=(FIXTURES / "overloaded_midstream.sse").read_bytes())
    assert (overloaded.ok, overloaded.outcome) == (False, "the stream ended with an error event")
    whole = SINGLE.read_bytes()
    short = _exchange(recorder, _body(USER), data=whole[: whole.index(b"event: message_stop")])
    assert (short.conversation, short.attempt, short.ok) == ("conv-001", 2, False)
    assert short.outcome == "the stream ended without message_stop" and short.stop_reason == "tool_use"
    done = _exchange(recorder, _body(USER))
    assert (done.conversation, done.attempt, done.ok, done.events) == ("conv-001", 3, True, 15)
    assert sorted(p.name for p in (tmp_path / "conv-001/retried").iterdir()) == [
        f"turn-00.{n}.{ext}" for n in (1, 2) for ext in ("request.json", "response.json", "sse")
    ]


# ---------------------------------------------------------------- the built-in model client


async def test_the_model_client_records_every_attempt_with_record_to(tmp_path: Path) -> None:
    from incremental.adapters._messages_client import MessagesClient

    async def no_wait(_: float) -> None:
        return None

    faults = {0: Fault("status", status=529)}
    async with (
        FakeMessagesAPI([TURN1, TURN2], speed=0, faults=faults) as api,
        MessagesClient(base_url=api.url, api_key=KEY, record_to=tmp_path, _sleep=no_wait) as client,
    ):
        request = {"model": MODEL, "max_tokens": 8192, "messages": [USER]}
        parser = StreamParser()
        async with client.stream(request) as stream:
            async for chunk in stream:
                parser.feed(chunk)
        parser.end()
        assert stream.attempts == 2 and parser.error is None
        content = parser.message()["content"]
        ids = [b["id"] for b in content if b["type"] == "tool_use"]
        results = [{"type": "tool_result", "tool_use_id": i, "content": "ok"} for i in ids]
        follow = {
            **request,
            "messages": [
                USER,
                {"role": "assistant", "content": content},
                {"role": "user", "content": results},
            ],
        }
        async with client.stream(follow) as stream:
            async for _ in stream:
                pass
    assert _tree(tmp_path) == [
        "conv-001/retried/turn-00.1.request.json",
        "conv-001/retried/turn-00.1.response.json",
        *(f"conv-001/turn-0{k}.{ext}" for k in (0, 1) for ext in ("request.json", "response.json", "sse")),
    ]
    for k, fixture in enumerate((TURN1, TURN2)):
        saved = (tmp_path / f"conv-001/turn-0{k}.sse").read_bytes()
        assert strip_timing(saved) == strip_timing(fixture.read_bytes())
        assert (
            json.loads((tmp_path / f"conv-001/turn-0{k}.response.json").read_text())["outcome"] == "complete"
        )
        assert (
            json.loads((tmp_path / f"conv-001/turn-0{k}.request.json").read_text())["body"]
            == api.requests[k + 1]
        )
    error = json.loads((tmp_path / "conv-001/retried/turn-00.1.response.json").read_text())
    assert error["status"] == 529 and error["body"]["error"]["type"] == "overloaded_error"
    assert KEY.encode() not in b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


async def test_the_model_client_records_an_upstream_it_cannot_reach(tmp_path: Path) -> None:
    from incremental.adapters._messages_client import MessagesClient
    from incremental.exceptions import APIConnectionError

    async with FakeMessagesAPI([SINGLE]) as api:
        gone = api.url
    recorder = Recorder(tmp_path)
    async with MessagesClient(base_url=gone, api_key=KEY, record_to=recorder, max_retries=0) as client:
        with pytest.raises(APIConnectionError):
            async with client.stream({"model": MODEL, "max_tokens": 8, "messages": [USER]}):
                pass
    [saved] = recorder.saved
    assert saved.status is None and saved.outcome.startswith("the upstream could not be reached")
