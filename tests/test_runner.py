"""The front door as a backend team uses it: your own tools through ``Runner``, with public names only.

Real parts throughout: a private redis-server (the embedded default) or the session's one, real arq
workers (in process, or ``arq`` processes of a user's own module), and the fake Messages API over HTTP.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import incremental
from incremental import MessagesClient, Run, Runner, ToolContext, ToolRegistry
from incremental.events import JobFailedEvent, RunCompletedEvent, RunEventModel, ToolReadyEvent
from incremental.exceptions import RequestError, RunNotFoundError
from incremental.testing import FakeMessagesAPIFactory

from ._streams import (
    MESSAGE_STOP,
    message_delta,
    message_start,
    stop,
    stream,
    text_delta,
    text_start,
)
from ._workers import arq_worker
from .test_pipeline import final_turn_file, tool_turn_file

ROOT = Path(__file__).resolve().parent.parent
REQUEST: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 1024}
GO = [{"role": "user", "content": "go"}]

# ---------------------------------------------------------------------------------------------- your tools

tools = ToolRegistry()


class Lookup(BaseModel):
    city: str


@tools.tool
async def weather(args: Lookup, ctx: ToolContext) -> str:
    """The weather in a city, from the service the start-up hook connected to."""
    service = ctx.state["weather_service"]
    return f"{service[args.city]} in {args.city}"


class Sum(BaseModel):
    a: int
    b: int


@tools.tool(policy="after_message")
async def add(args: Sum, ctx: ToolContext) -> str:
    """Adds two integers."""
    return str(args.a + args.b)


async def connect_weather(state: dict[str, Any]) -> None:
    state["weather_service"] = {"Paris": "sunny", "Oslo": "snow"}


def weather_turns(tmp_path: Path) -> list[Path]:
    calls = [
        ("toolu_paris", "weather", {"city": "Paris"}),
        ("toolu_oslo", "weather", {"city": "Oslo"}),
        ("toolu_add", "add", {"a": 2, "b": 3}),
    ]
    return [tool_turn_file(tmp_path / "t1.sse", calls), final_turn_file(tmp_path / "t2.sse")]


async def enqueue_with_pickle(runner: Runner, files: list[Path]) -> Run:
    """A run recorded as any other, whose first job is enqueued through arq's own pool (pickle)."""
    from arq import create_pool
    from arq.connections import RedisSettings

    from incremental.adapters._arq import JOB_STREAM_TURN, stream_job_id
    from incremental.events import RunStartedEvent
    from incremental.pipeline import check_request

    svc = runner._services()
    config = check_request(GO, dict(REQUEST), toolset="test", max_turns=len(files)).to_dict()
    run_id = f"run_{uuid.uuid4().hex[:20]}"
    await svc.store.create_run(run_id, config, GO)
    await svc.events.append(RunStartedEvent(run_id=run_id, turn=0, config=config))
    assert runner.redis_url is not None
    pickled = await create_pool(
        RedisSettings.from_dsn(runner.redis_url), default_queue_name=svc.pool.default_queue_name
    )
    try:
        await pickled.enqueue_job(JOB_STREAM_TURN, run_id, 0, _job_id=stream_job_id(run_id, 0))
    finally:
        await pickled.aclose()
    return runner.attach(run_id)


# ------------------------------------------------------------------------------------ the embedded default


async def test_your_own_tools_on_the_embedded_default(
    tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    api = await fake_messages_api(weather_turns(tmp_path), speed=0)
    client = MessagesClient(base_url=api.url, api_key="sk-test")
    async with Runner(tools=tools, model_client=client, on_startup=connect_weather) as runner:
        assert runner.workers == 1 and runner.redis_url  # a private redis-server, one in-process worker
        run = await runner.start(
            [{"role": "user", "content": "Weather in Paris and Oslo, and 2 + 3?"}], **REQUEST, max_turns=2
        )
        seen: list[RunEventModel] = [event async for event in run.events()]
        result = await run.result(timeout=30)
        # The log resumes after any entry, with no gap and no duplicate.
        middle = seen[len(seen) // 2]
        assert middle.entry_id is not None
        rest = [event async for event in run.events(after=middle.entry_id)]
        assert [e.entry_id for e in rest] == [e.entry_id for e in seen[len(seen) // 2 + 1 :]]
    await client.aclose()

    assert isinstance(seen[-1], RunCompletedEvent) and seen[0].kind == "run_started"
    assert [e.tool_use_id for e in seen if isinstance(e, ToolReadyEvent)] == [
        "toolu_paris",
        "toolu_oslo",
        "toolu_add",
    ]
    assert result.state == "completed" and result.stop_reason == "end_turn" and result.error is None
    by_id = {t.id: t for t in result.tools}
    assert by_id["toolu_paris"].content == "sunny in Paris" and by_id["toolu_oslo"].content == "snow in Oslo"
    assert by_id["toolu_add"].content == "5" and not any(t.is_error for t in result.tools)
    assert all(t.executions == 1 and t.status == "ok" for t in result.tools)
    assert all(t.ready_at and t.started_at and t.finished_at for t in result.tools)
    assert [m["role"] for m in result.messages] == ["user", "assistant", "user", "assistant"]
    assert result.message == result.messages[-1] and result.text == "Done."
    answered = [b["tool_use_id"] for b in result.messages[2]["content"]]
    assert answered == ["toolu_paris", "toolu_oslo", "toolu_add"]
    assert result.usage["total"] == {"input_tokens": 20, "output_tokens": 84}
    assert [u["turn"] for u in result.usage["turns"]] == [0, 1]
    assert result.summary["state"] == "completed" and len(result.summary["tools"]) == 3
    assert set(result.summary["counterfactual"]) == {"sequential_s", "parallel_after_stream_s", "ideal_s"}
    assert result.model_dump(mode="json")["tools"][0]["id"] == "toolu_paris"  # JSON-ready
    assert api.rejections == [] and len(api.requests) == 2
    assert [t["name"] for t in api.requests[0]["tools"]] == ["weather", "add"]


async def test_one_call_for_scripts(tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory) -> None:
    api = await fake_messages_api([final_turn_file(tmp_path / "t.sse")], speed=0)
    client = MessagesClient(base_url=api.url, api_key="sk-test")
    result = await incremental.run(GO, tools=tools, model_client=client, timeout=30, **REQUEST)
    await client.aclose()
    assert result.state == "completed" and result.text == "Done." and result.tools == []


async def test_request_fields_arrive_at_the_api_verbatim(
    tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    api = await fake_messages_api([final_turn_file(tmp_path / "t.sse")], speed=0)
    web_search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    fields: dict[str, Any] = {
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["\n\nHuman:"],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u-42"},
        "service_tier": "auto",
        "a_field_the_api_adds_later": {"nested": [1, 2]},
    }
    client = MessagesClient(base_url=api.url, api_key="sk-test")
    async with Runner(tools=tools, model_client=client) as runner:
        run = await runner.start(GO, **REQUEST, **fields, tools=["add", web_search])
        assert (await run.result(timeout=30)).state == "completed"
    await client.aclose()
    [sent] = api.requests
    assert {k: sent[k] for k in fields} == fields
    assert sent["model"] == REQUEST["model"] and sent["max_tokens"] == REQUEST["max_tokens"]
    assert sent["messages"] == GO and sent["stream"] is True
    assert sent["tools"] == [tools.api_tools(["add"])[0], web_search]


async def test_the_sdk_client_as_model_client(
    tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    from anthropic import AsyncAnthropic

    api = await fake_messages_api(weather_turns(tmp_path), speed=0)
    sdk = AsyncAnthropic(base_url=api.url, api_key="sk-test", max_retries=0)
    async with Runner(tools=tools, model_client=sdk, on_startup=connect_weather) as runner:
        result = await runner.run(GO, **REQUEST, max_turns=2, timeout=30)
    await sdk.close()
    assert result.state == "completed", result.reason
    assert [t.content for t in result.tools] == ["sunny in Paris", "snow in Oslo", "5"]
    assert api.rejections == [] and len(api.requests) == 2  # the echoed turn passed the API's checks


async def test_the_sdk_client_sees_a_stream_error_as_the_stream_failing(
    tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    from anthropic import AsyncAnthropic

    from ._support import FIXTURES

    api = await fake_messages_api([FIXTURES / "overloaded_midstream.sse"], speed=0)
    sdk = AsyncAnthropic(base_url=api.url, api_key="sk-test", max_retries=0)
    async with Runner(tools=tools, model_client=sdk) as runner:
        result = await runner.run(GO, **REQUEST, timeout=30)
    await sdk.close()
    assert result.state == "failed" and result.error is not None
    assert result.error.type == "UpstreamError" and "overloaded_error" in result.error.message


async def test_the_result_can_be_sent_back_with_a_new_user_message(
    tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    again = tmp_path / "t3.sse"
    again.write_bytes(
        stream(
            message_start("msg_again"),
            text_start(0),
            text_delta(0, "Still sunny."),
            stop(0),
            message_delta("end_turn"),
            MESSAGE_STOP,
        )
    )
    api = await fake_messages_api([*weather_turns(tmp_path), again], speed=0)
    client = MessagesClient(base_url=api.url, api_key="sk-test")
    async with Runner(tools=tools, model_client=client, on_startup=connect_weather) as runner:
        first = await runner.run(GO, **REQUEST, max_turns=2, timeout=30)
        follow_up = [*first.messages, {"role": "user", "content": "And tomorrow?"}]
        second = await runner.run(follow_up, **REQUEST, timeout=30)
    await client.aclose()
    assert first.state == second.state == "completed"
    assert api.rejections == [] and api.requests[2]["messages"] == follow_up
    assert second.text == "Still sunny." and second.messages[:-1] == follow_up


async def test_malformed_requests_are_refused_before_anything_is_stored(redis_url: str) -> None:
    bad: list[tuple[list[Any], dict[str, Any], str]] = [
        ([], REQUEST, "messages"),
        ([{"role": "assistant", "content": "hi"}], REQUEST, "messages[0].role"),
        ([{"role": "user", "content": ""}], REQUEST, "messages[0].content"),
        (GO, {"max_tokens": 10}, "model"),
        (GO, {"model": "m", "max_tokens": 0}, "max_tokens"),
        (GO, {**REQUEST, "temperature": 3}, "temperature"),
        (GO, {**REQUEST, "stream": False}, "stream"),
        (GO, {**REQUEST, "tools": ["no_such_tool"]}, "no tool 'no_such_tool'"),
        (GO, {**REQUEST, "max_turns": 0}, "max_turns"),
        (GO, {**REQUEST, "metadata": {"x": {1, 2}}}, "not JSON"),
        (
            [{"role": "user", "content": [{"type": "text", "text": "x", "deep": _nested(100)}]}],
            REQUEST,
            "nests",
        ),
    ]
    async with Runner(tools=tools, redis_url=redis_url) as runner:
        before = await runner.pool.dbsize()
        for messages, request, where in bad:
            with pytest.raises(RequestError, match=where.replace("[", r"\[").replace("]", r"\]")):
                await runner.start(messages, **request)
        assert await runner.pool.dbsize() == before


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


# ---------------------------------------------------------------------------------------------- bad set-ups


async def test_a_job_enqueued_with_pickle_fails_its_run_and_says_why(
    redis_url: str, tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    from . import _toolsets

    api = await fake_messages_api([final_turn_file(tmp_path / "t.sse")], speed=0)
    client = MessagesClient(base_url=api.url, api_key="sk-test")
    queue = f"pickle-{uuid.uuid4().hex[:8]}"
    async with Runner(
        {"test": _toolsets.registry}, redis_url=redis_url, workers=1, model_client=client, queue=queue
    ) as runner:
        run = await enqueue_with_pickle(runner, [tmp_path / "t.sse"])
        events = [event async for event in run.events()]
        result = await run.result(timeout=30)
    await client.aclose()
    assert result.state == "failed" and result.error is not None
    assert result.error.type == "UnreadableJobError" and "pickle" in result.error.message
    assert any(isinstance(e, JobFailedEvent) for e in events) and api.requests == []


async def test_a_pool_from_arq_create_pool_is_made_json(
    redis_url: str, tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    from arq import create_pool
    from arq.connections import RedisSettings

    api = await fake_messages_api(weather_turns(tmp_path), speed=0)
    client = MessagesClient(base_url=api.url, api_key="sk-test")
    pool = await create_pool(RedisSettings.from_dsn(redis_url))  # what users write: arq's pickle default
    try:
        queue = f"given-{uuid.uuid4().hex[:8]}"
        async with Runner(
            tools, pool=pool, workers=1, model_client=client, on_startup=connect_weather, queue=queue
        ) as r:
            result = await r.run(GO, **REQUEST, max_turns=2, timeout=30)
        assert result.state == "completed" and [t.status for t in result.tools] == ["ok"] * 3
        assert await pool.ping()  # the runner leaves the user's pool open
    finally:
        await pool.aclose()
        await client.aclose()


async def test_a_missing_api_key_fails_the_run_and_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    api = await fake_messages_api([final_turn_file(tmp_path / "t.sse")], speed=0)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
    async with Runner(tools=tools) as runner:  # the built-in client, from the environment
        result = await runner.run(GO, **REQUEST, timeout=30)
    assert result.state == "failed" and result.error is not None
    assert result.error.type == "MissingCredentialsError"
    assert "ANTHROPIC_API_KEY" in result.error.message and api.requests == []


async def test_attach_follows_a_run_started_elsewhere(
    redis_url: str, tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    api = await fake_messages_api(weather_turns(tmp_path), speed=0)
    client = MessagesClient(base_url=api.url, api_key="sk-test")
    queue = f"attach-{uuid.uuid4().hex[:8]}"
    async with (
        Runner(
            tools,
            redis_url=redis_url,
            workers=1,
            model_client=client,
            on_startup=connect_weather,
            queue=queue,
        ) as a,
        Runner(redis_url=redis_url, queue=queue) as b,
    ):
        run = await a.start(GO, **REQUEST, max_turns=2)
        result = await b.attach(run.id).result(timeout=30)
        with pytest.raises(RunNotFoundError):
            await b.attach("run_nobody_started_this").result(timeout=5)
    await client.aclose()
    assert result.state == "completed" and result.id == run.id and len(result.tools) == 3


# -------------------------------------------------------------------------------------- external workers


async def test_your_own_worker_module_under_arq(
    redis_url: str, tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    """``arq tests._user_worker.WorkerSettings`` processes: the user's module, tools and start-up hook."""
    calls = [("toolu_hi", "greet", {"name": "Ada"})]
    api = await fake_messages_api(
        [tool_turn_file(tmp_path / "t1.sse", calls), final_turn_file(tmp_path / "t2.sse")], speed=0
    )
    queue = f"user-{uuid.uuid4().hex[:8]}"
    async with (
        arq_worker(
            "tests._user_worker.WorkerSettings", redis_url=redis_url, api_url=api.url, INCREMENTAL_QUEUE=queue
        ) as worker,
        Runner(redis_url=redis_url, queue=queue) as runner,
    ):
        assert runner.workers == 0  # with redis_url, the workers are yours
        result = await runner.run(GO, **REQUEST, toolset="test", max_turns=2, timeout=60)
    assert result.state == "completed", (result.reason, worker.log)
    [greeted] = result.tools
    assert greeted.content == "hello from the worker's start-up hook, Ada"
    assert api.rejections == []
