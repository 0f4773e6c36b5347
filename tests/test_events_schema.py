"""The event-log schema (``incremental.events``): published file, kinds, and real logs against it.

The drift check runs whole in-process runs (the pipeline's own jobs, ``LocalServices``) over the
fixtures and failure scenarios, and requires every entry to validate *and* to carry no field its model
does not declare: a field added to the pipeline without adding it to the schema fails here.
"""

from __future__ import annotations

import ast
import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import incremental
from incremental import events as schema
from incremental.events import (
    EVENT_KINDS,
    EVENT_MODELS,
    EVENT_SCHEMA_ID,
    RunEventModel,
    ToolReadyEvent,
    UnknownEventKindError,
    UnknownRunEvent,
    event_json_schema,
    parse_event,
)
from incremental.pipeline import LocalServices, RunConfig, cancel_run, cancel_tool, pause_run, resume_run
from incremental.testing import FakeMessagesAPIFactory
from incremental.tools import ToolRegistry

from . import _toolsets
from ._streams import MESSAGE_STOP, frame, json_delta, message_delta, message_start, stop, stream, tool_start
from ._support import FIXTURES
from .test_pipeline import final_turn_file, tool_turn_file

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


def test_every_kind_the_source_appends_is_in_the_schema() -> None:
    """Literal kinds in ``<log>.append(run_id, "kind", ...)`` and ``self.log("kind", ...)`` calls."""
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            arg = {"append": 1, "log": 0}.get(node.func.attr)
            if arg is not None and len(node.args) > arg:
                value = node.args[arg]
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.add(value.value)
    assert found, "no append/log calls found: the scan is broken"
    assert found <= EVENT_KINDS, f"kinds without a model: {sorted(found - EVENT_KINDS)}"


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


async def until(svc: LocalServices, run_id: str, kind: str, **match: Any) -> None:
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


async def whole_log(svc: LocalServices, run_id: str) -> list[dict[str, Any]]:
    """Every entry of the run, once nothing was appended for half a second (late results included)."""
    after = "0-0"
    while batch := await svc.events.read(run_id, after, block_ms=500):
        after = batch[-1][0]
    return await svc.events.all(run_id)


async def plain_run(
    api_factory: FakeMessagesAPIFactory, files: list[Path], registry: ToolRegistry, **config: Any
) -> list[dict[str, Any]]:
    api = await api_factory(files, speed=0)
    config = {"toolset": "test", "max_turns": len(files), **config}
    async with LocalServices(registry=registry) as svc:
        run_id = await svc.start_run(RunConfig(api_base_url=api.url, **config), GO)
        await svc.follow(run_id)
        return await whole_log(svc, run_id)


async def paused_and_resumed(api_factory: FakeMessagesAPIFactory, files: list[Path]) -> list[dict[str, Any]]:
    """Paused before it streams (its tools are held), resumed; paused again while the turn completes."""
    api = await api_factory(files, speed=0)
    config = asdict(RunConfig(toolset="test", api_base_url=api.url, max_turns=len(files)))
    async with LocalServices(registry=_toolsets.registry) as svc:
        run_id = "run_paused_and_resumed"
        await svc.store.create_run(run_id, config, GO)
        await svc.events.append(run_id, "run_started", turn=0, config=config)
        assert await pause_run(svc, run_id)
        await svc.enqueue_stream_turn(run_id, 0)
        await until(svc, run_id, "turn_sealed")
        assert await resume_run(svc, run_id)
        await until(svc, run_id, "tool_completed", tool_use_id="toolu_quick")
        await until(svc, run_id, "tool_started", tool_use_id="toolu_slow")
        assert await pause_run(svc, run_id)
        await until(svc, run_id, "continuation_paused")
        assert await resume_run(svc, run_id)
        await svc.follow(run_id)
        return await whole_log(svc, run_id)


async def deadline_while_paused(
    api_factory: FakeMessagesAPIFactory, files: list[Path]
) -> list[dict[str, Any]]:
    """Paused before it streams; its turn's deadline passes while paused (nothing expires); resumed."""
    api = await api_factory(files, speed=0)
    config = asdict(RunConfig(toolset="test", api_base_url=api.url, max_turns=len(files), turn_timeout_s=0.1))
    async with LocalServices(registry=_toolsets.registry, monitor_interval_s=0.05) as svc:
        run_id = "run_deadline_while_paused"
        await svc.store.create_run(run_id, config, GO)
        await svc.events.append(run_id, "run_started", turn=0, config=config)
        assert await pause_run(svc, run_id)
        await svc.enqueue_stream_turn(run_id, 0)
        await until(svc, run_id, "turn_deadline_paused")
        assert await resume_run(svc, run_id)
        await svc.follow(run_id)
        return await whole_log(svc, run_id)


async def cancelled(api_factory: FakeMessagesAPIFactory) -> list[dict[str, Any]]:
    """A running tool is cancelled, then the run, while its stream stalls."""
    call = [tool_start(0, "toolu_long", "sleepy"), json_delta(0, '{"seconds": 30}'), stop(0)]
    body = b"".join(frame(obj) for obj in [message_start(), *call])
    body += frame(message_delta("tool_use"), t=120.0)  # the stream stalls here
    api = await api_factory([body + frame(MESSAGE_STOP)], speed=1.0)
    async with LocalServices(registry=_toolsets.registry) as svc:
        run_id = await svc.start_run(RunConfig(toolset="test", api_base_url=api.url), GO)
        await until(svc, run_id, "tool_started", tool_use_id="toolu_long")
        assert await cancel_tool(svc, run_id, "toolu_long", "not needed") == "signalled"
        await until(svc, run_id, "tool_cancelled", tool_use_id="toolu_long")
        assert await cancel_run(svc, run_id, "the user pressed stop")
        await until(svc, run_id, "stream_closed")
        return await whole_log(svc, run_id)


def undeclared(model: BaseModel, prefix: str = "") -> set[str]:
    """Fields the entry carries that its model (or a nested model) does not declare."""
    extra = {prefix + name for name in model.model_extra or {}}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            extra |= undeclared(value, f"{prefix}{name}.")
    return extra


async def test_real_run_logs_validate_and_declare_every_field(
    tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    from workers.app_tools import registry as app_registry
    from workers.app_tools import seed_vite_starter

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
    app_files = [FIXTURES / "app_builder_8_tools.sse", FIXTURES / "app_builder_turn2.sse"]
    slow: list[tuple[str, str, dict[str, Any]]] = [("toolu_slow", "sleepy", {"seconds": 0.4})]
    runs = {
        "app builder": plain_run(
            fake_messages_api, app_files, app_registry, toolset="app", workspace=str(workspace)
        ),
        "mixed tools": plain_run(
            fake_messages_api, [tool_turn_file(tmp_path / "m.sse", mixed), final], tools
        ),
        "deadline": plain_run(
            fake_messages_api, [tool_turn_file(tmp_path / "s.sse", slow), final], tools, turn_timeout_s=0.1
        ),
        "held, then end_turn": plain_run(
            fake_messages_api,
            [tool_turn_file(tmp_path / "p.sse", [("toolu_p", "charge_card", {})], stop_reason="end_turn")],
            tools,
        ),
        "retry": plain_run(fake_messages_api, [overloaded_before_any_tool(tmp_path / "o.sse"), final], tools),
        "bad data line": plain_run(fake_messages_api, [tmp_path / "bad.sse"], tools),
        "paused and resumed": paused_and_resumed(
            fake_messages_api, [tool_turn_file(tmp_path / "r.sse", pausing), final]
        ),
        "deadline while paused": deadline_while_paused(
            fake_messages_api, [tool_turn_file(tmp_path / "dp.sse", pausing[:1]), final]
        ),
        "cancelled": cancelled(fake_messages_api),
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
        runs[name] = plain_run(fake_messages_api, [FIXTURES / f"{name}.sse", final], tools)

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
