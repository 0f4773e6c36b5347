"""The event-log schema (``incremental.events``): published file, kinds, and real logs against it.

The drift check runs whole runs (``Runner``: real Redis, real arq workers) over the fixtures and
failure scenarios, and requires every entry to validate *and* to carry no field its model
does not declare: a field added to the pipeline without adding it to the schema fails here.
"""

from __future__ import annotations

import ast
import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import incremental
from incremental import MessagesClient, Run, Runner
from incremental import events as schema
from incremental.adapters._arq import stream_job_id
from incremental.events import (
    EVENT_KINDS,
    EVENT_MODELS,
    EVENT_SCHEMA_ID,
    RunEventModel,
    RunStartedEvent,
    ToolReadyEvent,
    UnknownEventKindError,
    UnknownRunEvent,
    event_json_schema,
    parse_event,
)
from incremental.pipeline import Services, check_request, pause_run
from incremental.testing import FakeMessagesAPIFactory
from incremental.tools import ToolRegistry

from . import _toolsets
from ._streams import MESSAGE_STOP, frame, json_delta, message_delta, message_start, stop, stream, tool_start
from ._support import APP_BUILDER, FIXTURES
from .test_pipeline import final_turn_file, tool_turn_file
from .test_runner import REQUEST, enqueue_with_pickle

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "docs" / "events.schema.json"
SRC = Path(incremental.__file__).resolve().parent
GO = [{"role": "user", "content": "go"}]


# ---------------------------------------------------------------------------------------------- the schema


def test_published_schema_file_is_current() -> None:
    text = SCHEMA_FILE.read_text()
    assert json.loads(text) == event_json_schema(), "run: .venv/bin/python scripts/make_event_schema.py"
    assert text == json.dumps(event_json_schema(), indent=2, sort_keys=True) + "\n"


def test_schema_names_itself_and_every_kind() -> None:
    doc = event_json_schema()
    assert doc["$id"] == EVENT_SCHEMA_ID and doc["title"] and doc["description"]
    assert set(doc["discriminator"]["mapping"]) == EVENT_KINDS
    assert len(doc["oneOf"]) == len(EVENT_KINDS)


def test_every_model_kind_is_listed_and_every_listed_kind_has_a_model() -> None:
    assert set(EVENT_MODELS) == EVENT_KINDS
    for kind, model in EVENT_MODELS.items():
        assert model.__name__.endswith("Event") and model.__doc__, kind
        assert model.model_config.get("extra") == "allow" and model.model_config.get("frozen"), kind
    assert all(hasattr(schema, name) for name in schema.__all__)


def test_events_are_typed_where_they_are_made() -> None:
    """Every ``<x>.events.append(...)`` and ``self.log(...)`` in the source is handed a model of the
    schema (built right there, or passed through), never a kind spelled as a string."""
    models = {model.__name__ for model in EVENT_MODELS.values()}
    built: set[str] = set()
    calls = 0
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = node.func.value
            is_log = node.func.attr == "log" and isinstance(receiver, ast.Name) and receiver.id == "self"
            is_append = node.func.attr == "append" and (
                isinstance(receiver, ast.Attribute) and receiver.attr == "events"
            )
            if not (is_log or is_append) or not node.args:
                continue
            calls += 1
            [arg] = node.args
            where = f"{path.name}:{node.lineno}"
            assert not isinstance(arg, ast.Constant), f"{where}: a kind as a string"
            if isinstance(arg, ast.Call):
                name = arg.func.id if isinstance(arg.func, ast.Name) else getattr(arg.func, "attr", "")
                if name != "model_validate":
                    assert name in models, f"{where}: {name} is not a model of incremental.events"
                    built.add(name)
    assert calls > 30, "the scan found too few appends: it is broken"
    assert len(built) > 25


# ---------------------------------------------------------------------------------------------- parsing


def entry(kind: str, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "kind": kind, "ts": 1.5, "run_id": "run_x", **fields}


def test_known_kind_parses_to_its_model() -> None:
    event = parse_event(entry("tool_ready", turn=0, tool_use_id="toolu_1", name="write_file", index=2))
    assert isinstance(event, ToolReadyEvent) and event.index == 2 and event.input_preview is None
    newer = parse_event(entry("tool_ready", turn=0, tool_use_id="t", name="n", index=1, shiny=True))
    assert newer.model_extra == {"shiny": True}  # a newer producer's field does not break a reader


def test_unknown_kind_is_kept_unless_strict() -> None:
    data = entry("tool_teleported", turn=3, where="mars")
    event = parse_event(data)
    assert type(event) is UnknownRunEvent and event.kind == "tool_teleported" and event.turn == 3
    assert event.model_extra == {"where": "mars"}
    with pytest.raises(UnknownEventKindError) as caught:
        parse_event(data, strict=True)
    assert caught.value.kind == "tool_teleported" and isinstance(caught.value, ValueError)


def test_malformed_known_event_is_a_validation_error() -> None:
    for strict in (False, True):
        with pytest.raises(ValidationError, match="tool_use_id"):
            parse_event(entry("tool_ready", turn=0, name="write_file", index=0), strict=strict)
    with pytest.raises(ValidationError):
        parse_event(entry("tool_completed", turn=0, tool_use_id="t", name="n", status="error"))
    with pytest.raises(ValidationError):
        parse_event({**entry("run_started", turn=0, config={}), "v": 2})


# ---------------------------------------------------------------------------------------------- real logs


def overloaded_before_any_tool(path: Path) -> Path:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    path.write_bytes(stream(message_start(), error))
    return path


async def until(svc: Services, run_id: str, kind: str, **match: Any) -> None:
    """Wait (up to 10 s) for an entry of ``kind`` with the fields in ``match`` in the run's log."""
    after = "0-0"
    try:
        async with asyncio.timeout(10):
            while True:
                for entry_id, event in await svc.events.read(run_id, after, block_ms=500):
                    after = entry_id
                    if event["kind"] == kind and all(event.get(k) == v for k, v in match.items()):
                        return
    except TimeoutError:
        raise AssertionError(f"{run_id}: no {kind} {match} within 10 s") from None


async def whole_log(run: Run) -> list[dict[str, Any]]:
    """Every entry of the run once it has settled (late results included)."""
    await run.result(timeout=30)
    return await run._runner._services().events.all(run.id)


@asynccontextmanager
async def runner_for(
    redis_url: str,
    api_factory: FakeMessagesAPIFactory,
    files: list[Path],
    registry: ToolRegistry,
    **options: Any,
) -> AsyncIterator[Runner]:
    """A Runner with one worker on a queue of its own, streaming from a fake API playing ``files``."""
    api = await api_factory(files, speed=1.0 if options.pop("paced", False) else 0)
    client = MessagesClient(base_url=api.url, api_key="sk-test")
    queue = f"schema-{uuid.uuid4().hex[:8]}"
    toolset = options.pop("toolset", "test")
    async with Runner(
        {toolset: registry}, redis_url=redis_url, model_client=client, queue=queue, workers=1, **options
    ) as runner:
        yield runner
    await client.aclose()


async def plain_run(
    redis_url: str,
    api_factory: FakeMessagesAPIFactory,
    files: list[Path],
    registry: ToolRegistry,
    wait_for: str | None = None,
    **config: Any,
) -> list[dict[str, Any]]:
    """One run to its end; ``wait_for``: also wait for an entry of that kind (one that may land after the
    run has settled, such as a late result that is a duplicate)."""
    toolset = config.pop("toolset", "test")
    async with runner_for(redis_url, api_factory, files, registry, toolset=toolset) as runner:
        run = await runner.start(GO, **REQUEST, toolset=toolset, max_turns=len(files), **config)
        if wait_for is not None:
            await until(runner._services(), run.id, wait_for)
        return await whole_log(run)


async def started_paused(runner: Runner, files: list[Path], **options: Any) -> Run:
    """A run recorded and paused before its first turn is enqueued."""
    svc = runner._services()
    config = check_request(GO, dict(REQUEST), toolset="test", max_turns=len(files), **options).to_dict()
    run_id = f"run_{uuid.uuid4().hex[:20]}"
    await svc.store.create_run(run_id, config, GO)
    await svc.events.append(RunStartedEvent(run_id=run_id, turn=0, config=config))
    assert await pause_run(svc, run_id)
    await svc.enqueue_stream_turn(run_id, 0)
    return runner.attach(run_id)


async def handed_over(
    redis_url: str, api_factory: FakeMessagesAPIFactory, files: list[Path]
) -> list[dict[str, Any]]:
    """Its worker is stopped while the tool runs: the call is handed over and another worker runs it."""
    from incremental.runner import stop_worker

    async with runner_for(redis_url, api_factory, files, _toolsets.registry) as runner:
        run = await runner.start(GO, **REQUEST, toolset="test", max_turns=len(files))
        await until(runner._services(), run.id, "tool_started")
        await stop_worker(runner._workers[0], 0)
        async with Runner(
            {"test": _toolsets.registry},
            redis_url=redis_url,
            model_client=runner._worker_options["model_client"],
            queue=runner.queue,
            workers=1,
        ):
            return await whole_log(run)


async def paused_and_resumed(
    redis_url: str, api_factory: FakeMessagesAPIFactory, files: list[Path]
) -> list[dict[str, Any]]:
    """Paused before it streams (its tools are held), resumed; paused again while the turn completes."""
    async with runner_for(redis_url, api_factory, files, _toolsets.registry) as runner:
        run = await started_paused(runner, files)
        svc = runner._services()
        await until(svc, run.id, "turn_sealed")
        assert await run.resume()
        await until(svc, run.id, "tool_completed", tool_use_id="toolu_quick")
        await until(svc, run.id, "tool_started", tool_use_id="toolu_slow")
        assert await run.pause()
        await until(svc, run.id, "continuation_paused")
        assert await run.resume()
        return await whole_log(run)


async def deadline_while_paused(
    redis_url: str, api_factory: FakeMessagesAPIFactory, files: list[Path]
) -> list[dict[str, Any]]:
    """Paused before it streams; its turn's deadline passes while paused (nothing expires); resumed."""
    async with runner_for(
        redis_url, api_factory, files, _toolsets.registry, monitor_interval_s=0.05
    ) as runner:
        run = await started_paused(runner, files, turn_timeout_s=0.1)
        await until(runner._services(), run.id, "turn_deadline_paused")
        assert await run.resume()
        return await whole_log(run)


async def cancelled(redis_url: str, api_factory: FakeMessagesAPIFactory) -> list[dict[str, Any]]:
    """A running tool is cancelled, then the run, while its stream stalls."""
    call = [tool_start(0, "toolu_long", "sleepy"), json_delta(0, '{"seconds": 30}'), stop(0)]
    body = b"".join(frame(obj) for obj in [message_start(), *call])
    body += frame(message_delta("tool_use"), t=120.0)  # the stream stalls here
    files = [body + frame(MESSAGE_STOP)]
    async with runner_for(redis_url, api_factory, files, _toolsets.registry, paced=True) as runner:  # type: ignore[arg-type]
        run = await runner.start(GO, **REQUEST, toolset="test")
        svc = runner._services()
        await until(svc, run.id, "tool_started", tool_use_id="toolu_long")
        assert await run.cancel_tool("toolu_long", "not needed") == "signalled"
        await until(svc, run.id, "tool_cancelled", tool_use_id="toolu_long")
        assert await run.cancel("the user pressed stop")
        await until(svc, run.id, "stream_closed")
        return await whole_log(run)


async def salvaged(redis_url: str, api_factory: FakeMessagesAPIFactory, final: Path) -> list[dict[str, Any]]:
    """Its stream job is stopped (arq's time limit) after its call ran, mid-stream: the turn is salvaged
    and continues."""
    call = [tool_start(0, "toolu_cut", "sleepy"), json_delta(0, '{"seconds": 0}'), stop(0)]
    body = b"".join(frame(obj) for obj in [message_start(), *call])
    body += frame(message_delta("tool_use"), t=120.0)  # the stream stalls here
    files = [body + frame(MESSAGE_STOP), final]
    async with runner_for(redis_url, api_factory, files, _toolsets.registry, paced=True) as runner:  # type: ignore[arg-type]
        run = await runner.start(GO, **REQUEST, toolset="test", max_turns=2)
        await until(runner._services(), run.id, "tool_completed", tool_use_id="toolu_cut")
        runner._workers[0].job_tasks[stream_job_id(run.id, 0)].cancel()  # what arq's time limit does
        return await whole_log(run)


async def unreadable(
    redis_url: str, api_factory: FakeMessagesAPIFactory, files: list[Path]
) -> list[dict[str, Any]]:
    """A run whose first job was enqueued through arq's own (pickle) pool: it fails, saying why."""
    async with runner_for(redis_url, api_factory, files, _toolsets.registry) as runner:
        run = await enqueue_with_pickle(runner, files)
        return await whole_log(run)


def undeclared(model: BaseModel, prefix: str = "") -> set[str]:
    """Fields the entry carries that its model (or a nested model) does not declare."""
    extra = {prefix + name for name in model.model_extra or {}}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            extra |= undeclared(value, f"{prefix}{name}.")
    return extra


async def test_real_run_logs_validate_and_declare_every_field(
    redis_url: str, tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    from incremental.examples.app_builder.tools import registry as app_registry
    from incremental.examples.app_builder.tools import seed_vite_starter

    workspace = tmp_path / "ws"
    workspace.mkdir()
    seed_vite_starter(workspace)
    tools = _toolsets.registry
    final = final_turn_file(tmp_path / "final.sse")
    mixed: list[tuple[str, str, dict[str, Any]]] = [
        ("toolu_a", "slow_append", {"path": str(tmp_path / "o.txt"), "line": "1", "delay": 0.05}),
        ("toolu_b", "slow_append", {"path": str(tmp_path / "o.txt"), "line": "2"}),
        ("toolu_poison", "poison", {"why": "kaput"}),
        ("toolu_unknown", "launch_rockets", {}),
        ("toolu_schema", "sleepy", {"seconds": "soon"}),
        ("toolu_pay", "charge_card", {}),
    ]
    pausing: list[tuple[str, str, dict[str, Any]]] = [
        ("toolu_quick", "sleepy", {"seconds": 0}),
        ("toolu_slow", "sleepy", {"seconds": 0.5}),
    ]
    (tmp_path / "bad.sse").write_bytes(b"event: message_start\ndata: [1, 2]\n\n")
    app_files = list(APP_BUILDER)
    slow: list[tuple[str, str, dict[str, Any]]] = [("toolu_slow", "sleepy", {"seconds": 0.4})]
    runs = {
        "app builder": plain_run(
            redis_url, fake_messages_api, app_files, app_registry, toolset="app", workspace=str(workspace)
        ),
        "mixed tools": plain_run(
            redis_url, fake_messages_api, [tool_turn_file(tmp_path / "m.sse", mixed), final], tools
        ),
        "deadline": plain_run(
            redis_url,
            fake_messages_api,
            [tool_turn_file(tmp_path / "s.sse", slow), final],
            tools,
            wait_for="tool_duplicate_result",
            turn_timeout_s=0.1,
        ),
        "held, then end_turn": plain_run(
            redis_url,
            fake_messages_api,
            [tool_turn_file(tmp_path / "p.sse", [("toolu_p", "charge_card", {})], stop_reason="end_turn")],
            tools,
        ),
        "retry": plain_run(
            redis_url, fake_messages_api, [overloaded_before_any_tool(tmp_path / "o.sse"), final], tools
        ),
        "bad data line": plain_run(redis_url, fake_messages_api, [tmp_path / "bad.sse"], tools),
        "paused and resumed": paused_and_resumed(
            redis_url, fake_messages_api, [tool_turn_file(tmp_path / "r.sse", pausing), final]
        ),
        "deadline while paused": deadline_while_paused(
            redis_url, fake_messages_api, [tool_turn_file(tmp_path / "dp.sse", pausing[:1]), final]
        ),
        "cancelled": cancelled(redis_url, fake_messages_api),
        "salvaged": salvaged(redis_url, fake_messages_api, final),
        "handed over": handed_over(
            redis_url, fake_messages_api, [tool_turn_file(tmp_path / "h.sse", slow), final]
        ),
        "unreadable job": unreadable(redis_url, fake_messages_api, [final]),
    }
    for name in (
        "max_tokens_in_tool",
        "invalid_tool_json",
        "overloaded_midstream",
        "thinking_parallel_tools",
        "server_tool_web_search",
        "empty_input_tool",
        "unknown_types",
        "single_tool",
        "text_only",
    ):
        runs[name] = plain_run(redis_url, fake_messages_api, [FIXTURES / f"{name}.sse", final], tools)

    async with asyncio.timeout(60), asyncio.TaskGroup() as group:
        tasks = {name: group.create_task(run) for name, run in runs.items()}
    logs = {name: task.result() for name, task in tasks.items()}

    problems: list[str] = []
    seen: set[str] = set()
    for scenario, log in logs.items():
        assert log and log[0]["kind"] == "run_started", scenario
        for data in log:
            where = f"{scenario}: {data.get('kind')}"
            try:
                event = parse_event(data, strict=True)
            except (ValidationError, UnknownEventKindError) as exc:
                problems.append(f"{where}: {exc}")
                continue
            assert isinstance(event, RunEventModel)
            seen.add(event.kind)
            if extra := undeclared(event):
                problems.append(f"{where}: fields not in the schema: {sorted(extra)}")
    assert not problems, "\n".join(sorted(set(problems)))
    assert seen == EVENT_KINDS, f"kinds no run produced: {sorted(EVENT_KINDS - seen)}"
    after_cancel = [e for e in logs["cancelled"] if e.get("after_cancel")]
    assert [e["kind"] for e in after_cancel] == ["tool_cancelled"]  # only present when true
