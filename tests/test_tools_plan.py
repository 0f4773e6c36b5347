"""Planning ready calls (plan_call, refuse_rejected) and the simulated registry used by --simulate."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, Field

from incremental import Event, StreamParser, ToolCall, ToolReady, ToolRejected
from incremental.examples.app_builder.tools import registry as app_registry
from incremental.tools import (
    Planned,
    ToolContext,
    ToolRegistry,
    ToolResult,
    execute,
    plan_call,
    refuse_rejected,
    simulated_registry,
)
from tests._support import fixture as recorded


class Write(BaseModel):
    path: str
    content: str = Field(max_length=1000)


class Move(BaseModel):
    source: str
    target: str


class Many(BaseModel):
    a: int
    b: int
    c: int
    d: int
    e: int
    f: int
    g: int
    h: int
    i: int
    j: int
    k: int
    m: int


registry = ToolRegistry()


@registry.tool(concurrency_key="path", max_input_bytes=200)
async def write(args: Write, ctx: ToolContext) -> str:
    """Write a file."""
    return "written"


@registry.tool(policy="after_message", concurrency_key=lambda m: f"{m.source}->{m.target}")
async def move(args: Move, ctx: ToolContext) -> str:
    """Move a file."""
    return "moved"


@registry.tool
async def many(args: Many, ctx: ToolContext) -> str:
    return "many"


def call(name: str, input: dict[str, Any], id: str = "toolu_1", index: int = 0) -> ToolCall:
    return ToolCall(id=id, name=name, input=input, index=index)


def refused(result: Planned | ToolResult) -> ToolResult:
    assert isinstance(result, ToolResult)
    assert (result.status, result.is_error, result.attempts) == ("refused", True, 0)
    return result


# --- plan_call ----------------------------------------------------------------------------------------


def test_a_valid_call_is_planned_with_its_key_from_a_field() -> None:
    c = call("write", {"path": "src/a.ts", "content": "x"})
    planned = plan_call(c, registry)
    assert isinstance(planned, Planned)
    assert planned.call is c and planned.spec is registry.get("write")
    assert planned.args == {"path": "src/a.ts", "content": "x"}
    assert (planned.concurrency_key, planned.policy) == ("src/a.ts", "eager")


def test_the_key_from_a_function_and_the_policy_come_from_the_spec() -> None:
    planned = plan_call(call("move", {"source": "a", "target": "b"}), registry)
    assert isinstance(planned, Planned)
    assert (planned.concurrency_key, planned.policy) == ("a->b", "after_message")


def test_planned_args_are_the_validated_json_data() -> None:
    planned = plan_call(call("many", {k: str(n) for n, k in enumerate("abcdefghijkm")}), registry)
    assert isinstance(planned, Planned)
    assert planned.args == {k: n for n, k in enumerate("abcdefghijkm")}
    assert planned.concurrency_key is None


def test_unknown_tool_names_the_tools_that_exist() -> None:
    result = refused(plan_call(call("delete_everything", {}, id="toolu_9"), registry))
    assert (result.tool_use_id, result.name) == ("toolu_9", "delete_everything")
    assert result.content == (
        "there is no tool named 'delete_everything'; nothing was run. "
        "The available tools are: many, move, write."
    )


def test_oversized_input_says_its_size_and_the_limit() -> None:
    data = {"path": "a", "content": "x" * 300}
    size = len(json.dumps(data, separators=(",", ":")))
    result = refused(plan_call(call("write", data), registry))
    assert result.content == (
        f"your input for tool write is {size} bytes of JSON, over the tool's limit of 200 bytes; "
        "nothing was run. Split the work into smaller calls."
    )


def test_oversized_input_is_measured_in_utf8_bytes() -> None:
    result = refused(plan_call(call("write", {"path": "a", "content": "é" * 90}), registry))
    assert "is 205 bytes of JSON" in result.content  # 90 characters, 180 bytes of content; 25 of the rest


def test_schema_failure_lists_each_field() -> None:
    result = refused(plan_call(call("write", {"content": 5, "extra": True}), registry))
    assert result.content.startswith(
        "your input for tool write does not match its input schema; nothing was run. "
        "Fix these and call it again:"
    )
    lines = result.content.splitlines()[1:]
    assert lines == ["- path: Field required", "- content: Input should be a valid string"]


def test_schema_failure_shows_nested_locations() -> None:
    class Inner(BaseModel):
        n: int

    class Outer(BaseModel):
        items: list[Inner]

    reg = ToolRegistry()

    async def nested(args: Outer, ctx: ToolContext) -> None:
        return None

    reg.tool(input_model=Outer)(nested)
    result = refused(plan_call(call("nested", {"items": [{"n": 1}, {"n": "x"}]}), reg))
    assert "- items.1.n: Input should be a valid integer" in result.content


def test_schema_failure_shows_at_most_ten_errors() -> None:
    result = refused(plan_call(call("many", {}), registry))
    lines = result.content.splitlines()[1:]
    assert len(lines) == 11
    assert lines[0] == "- a: Field required"
    assert lines[-1] == "- ... and 2 more"


def test_a_failing_key_function_refuses_the_call() -> None:
    reg = ToolRegistry()

    async def fn(args: Move, ctx: ToolContext) -> None:
        return None

    reg.tool(name="bad_key", concurrency_key=lambda m: m.nope)(fn)
    result = refused(plan_call(call("bad_key", {"source": "a", "target": "b"}), reg))
    assert "its concurrency key failed (AttributeError" in result.content


# --- refuse_rejected ----------------------------------------------------------------------------------


def test_refuse_invalid_json() -> None:
    event = ToolRejected(index=1, tool_id="toolu_2", tool_name="write_file", status="invalid", reason="bad")
    result = refused(refuse_rejected(event))
    assert (result.tool_use_id, result.name) == ("toolu_2", "write_file")
    assert result.content.startswith(
        "your input for tool write_file was not valid JSON (bad); nothing was run."
    )


def test_refuse_truncated() -> None:
    event = ToolRejected(index=1, tool_id="toolu_2", tool_name="write_file", status="truncated", reason="cut")
    result = refused(refuse_rejected(event))
    assert result.content.startswith(
        "your input for tool write_file was cut off before it ended (cut); nothing was run."
    )


def test_refuse_another_status() -> None:
    event = ToolRejected(index=1, tool_id="toolu_2", tool_name="x", status="other", reason="why")
    assert (
        refused(refuse_rejected(event)).content == "your call to tool x was rejected (why); nothing was run."
    )


def _events(fixture: str) -> list[Event]:
    parser = StreamParser()
    events = list(parser.feed(recorded(fixture).read_bytes()))
    events.extend(parser.end())
    return events


@pytest.mark.parametrize(
    ("fixture", "text"),
    [
        ("invalid_tool_json.sse", "was not valid JSON (input is not valid JSON: Invalid control character"),
        ("max_tokens_in_tool.sse", "was cut off before it ended (the block was cut off"),
    ],
)
def test_rejections_from_recorded_streams(fixture: str, text: str) -> None:
    rejected = [e for e in _events(fixture) if isinstance(e, ToolRejected)]
    assert rejected
    for event in rejected:
        result = refused(refuse_rejected(event))
        assert result.tool_use_id == event.tool_id
        assert f"your input for tool {event.tool_name} {text}" in result.content


def test_every_call_of_the_app_builder_recording_plans_against_the_app_tools() -> None:
    calls = [e.call for e in _events("app_builder_8_tools.sse") if isinstance(e, ToolReady)]
    plans = [plan_call(c, app_registry) for c in calls]
    assert all(isinstance(p, Planned) for p in plans), plans
    keys = [p.concurrency_key for p in plans if isinstance(p, Planned)]
    assert keys == [
        "src/App.tsx",
        "src/components/HabitList.tsx",
        "src/styles.css",
        "src/main.tsx",
        "index.html",
        "package.json",
        "app.json",
        "vite.config.ts",
    ]
    assert {p.policy for p in plans if isinstance(p, Planned)} == {"eager"}


# --- the simulated registry ---------------------------------------------------------------------------


def test_a_fallback_registry_plans_unknown_names() -> None:
    sim = simulated_registry(0)
    planned = plan_call(call("anything_at_all", {"x": [1, {"y": None}]}), sim)
    assert isinstance(planned, Planned)
    assert planned.args == {"x": [1, {"y": None}]}
    assert (planned.concurrency_key, planned.policy) == (None, "eager")
    assert sim.names() == []


async def test_a_simulated_tool_reports_progress_and_echoes_its_input() -> None:
    seen: list[dict[str, Any]] = []

    async def sink(item: dict[str, Any]) -> None:
        seen.append(item)

    sim = simulated_registry(0.001)
    spec = sim.get("whatever")
    assert spec is not None
    ctx = ToolContext(tool_use_id="toolu_5", name="whatever", progress_sink=sink)
    result = await execute(spec, {"b": 1, "a": "é"}, ctx)
    assert (result.status, result.name, result.tool_use_id) == ("ok", "whatever", "toolu_5")
    assert json.loads(result.content) == {"b": 1, "a": "é"}
    fractions = [p["fraction"] for p in seen]
    assert len(fractions) >= 3 and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions)


def test_a_simulated_registry_keeps_the_base_semantics() -> None:
    sim = simulated_registry(1.0, base=registry)
    assert sim.names() == registry.names()
    for spec in registry:
        fake = sim.get(spec.name)
        assert fake is not None and fake is not spec
        assert (fake.policy, fake.idempotent, fake.queue, fake.max_input_bytes) == (
            spec.policy,
            spec.idempotent,
            spec.queue,
            spec.max_input_bytes,
        )
        assert fake.api() == spec.api()  # the model sees the real schema
    assert sim.api_tools() == registry.api_tools()
    moved = plan_call(call("move", {"source": "a", "target": "b"}), sim)
    assert isinstance(moved, Planned)
    assert (moved.concurrency_key, moved.policy) == ("a->b", "after_message")
    written = plan_call(call("write", {"path": "p", "content": "x"}), sim)
    assert isinstance(written, Planned) and written.concurrency_key == "p"
    # Inputs the real tool would refuse still run when simulated, ordered by the key field if present.
    loose = plan_call(call("write", {"path": "p", "unexpected": 1}), sim)
    assert isinstance(loose, Planned) and loose.concurrency_key == "p"
    other = plan_call(call("not_in_base", {"path": "p"}), sim)
    assert isinstance(other, Planned) and other.concurrency_key is None


def test_a_simulated_registry_over_the_app_tools_keys_like_the_real_one() -> None:
    sim = simulated_registry(0.5, base=app_registry)
    planned = plan_call(call("write_file", {"path": "./src//App.tsx", "content": "x"}), sim)
    assert isinstance(planned, Planned) and planned.concurrency_key == "src/App.tsx"
    renamed = plan_call(call("rename_app", {"name": "x"}), sim)
    assert isinstance(renamed, Planned) and renamed.concurrency_key == "app.json"


def test_simulated_seconds_must_be_a_finite_non_negative_number() -> None:
    for bad in (-1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="seconds"):
            simulated_registry(bad)
