"""Tool definitions and their runs: ToolRegistry, ToolSpec, ToolContext and execute."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

import incremental.tools
from incremental import IncrementalError
from incremental.tools import (
    RetryableToolError,
    ToolContext,
    ToolError,
    ToolRegistry,
    ToolResult,
    ToolSpec,
    execute,
)


class Item(BaseModel):
    sku: str


class Order(BaseModel):
    """An order to place."""

    customer: str = Field(description="who orders")
    quantity: int = Field(default=1, ge=1)
    items: list[Item] = Field(default_factory=list)


class Empty(BaseModel):
    pass


async def place(args: Order, ctx: ToolContext) -> str:
    """Place an order."""
    return f"{args.quantity} for {args.customer}"


def ctx_for(name: str = "tool", **kw: Any) -> ToolContext:
    return ToolContext(tool_use_id="toolu_1", name=name, **kw)


def spec_of(fn: Any, **kw: Any) -> ToolSpec:
    kw.setdefault("input_model", Order)
    return ToolSpec(name=kw.pop("name", "tool"), description="d", fn=fn, **kw)


# --- the public surface -------------------------------------------------------------------------------


def test_tools_all_is_sorted_and_complete() -> None:
    names = incremental.tools.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(incremental.tools, name), name
    public = {
        n
        for n, v in vars(incremental.tools).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert public == set(names)


def test_tool_errors_are_incremental_errors() -> None:
    assert issubclass(ToolError, IncrementalError)
    assert issubclass(RetryableToolError, ToolError)


# --- decoration ---------------------------------------------------------------------------------------


def test_bare_decorator_takes_name_docstring_and_model() -> None:
    registry = ToolRegistry()
    returned = registry.tool(place)
    assert returned is place
    spec = registry.get("place")
    assert spec is not None
    assert (spec.name, spec.description, spec.input_model) == ("place", "Place an order.", Order)
    assert (spec.policy, spec.concurrency_key, spec.timeout_s, spec.retries) == ("eager", None, 60.0, 0)
    assert spec.idempotent and spec.queue is None and spec.max_input_bytes == 2 * 1024 * 1024
    assert "place" in registry and len(registry) == 1 and list(registry) == [spec]


def test_decorator_with_arguments() -> None:
    registry = ToolRegistry()

    @registry.tool(
        name="order",
        description="Orders things.",
        policy="after_message",
        concurrency_key="customer",
        timeout_s=5,
        retries=2,
        backoff_s=0,
        idempotent=False,
        queue="slow",
        max_input_bytes=100,
    )
    async def anything(args: Order, ctx: ToolContext) -> None:
        return None

    spec = registry.get("order")
    assert spec is not None and spec.fn is anything
    assert spec.description == "Orders things."
    assert (spec.policy, spec.concurrency_key, spec.timeout_s, spec.retries) == (
        "after_message",
        "customer",
        5,
        2,
    )
    assert (spec.idempotent, spec.queue, spec.max_input_bytes) == (False, "slow", 100)
    assert registry.names() == ["order"]


def test_explicit_input_model_for_functions_without_a_resolvable_annotation() -> None:
    registry = ToolRegistry()

    class Local(BaseModel):
        x: int

    async def local_tool(args: Local, ctx: ToolContext) -> None:
        return None

    with pytest.raises(TypeError, match="cannot resolve"):
        registry.tool(local_tool)  # a string annotation naming a local class
    registry.tool(input_model=Local)(local_tool)
    assert registry.get("local_tool") is not None


async def _unannotated(args, ctx):  # type: ignore[no-untyped-def]
    return None


async def _not_a_model(args: dict[str, Any], ctx: ToolContext) -> None:
    return None


async def _one_parameter(args: Order) -> None:
    return None


def _sync(args: Order, ctx: ToolContext) -> None:
    return None


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (_unannotated, "annotate its first parameter"),
        (_not_a_model, "BaseModel subclass"),
        (_one_parameter, "two positional arguments"),
        (_sync, "async function"),
        (42, "async function"),
    ],
    ids=["unannotated", "not-a-model", "one-parameter", "sync", "not-callable"],
)
def test_bad_decorations_raise_type_error(fn: Any, match: str) -> None:
    registry = ToolRegistry()
    with pytest.raises(TypeError, match=match):
        registry.tool(fn)
    assert len(registry) == 0


def test_bad_spec_values_are_refused() -> None:
    with pytest.raises(ValueError, match="tool name"):
        spec_of(place, name="has space")
    with pytest.raises(ValueError, match="not a field"):
        spec_of(place, concurrency_key="nope")
    with pytest.raises(ValueError, match="policy"):
        spec_of(place, policy="later")
    with pytest.raises(ValueError, match="timeout_s"):
        spec_of(place, timeout_s=0)
    with pytest.raises(ValueError, match="retries"):
        spec_of(place, retries=-1)
    with pytest.raises(ValueError, match="max_input_bytes"):
        spec_of(place, max_input_bytes=0)
    with pytest.raises(TypeError, match="input_model"):
        spec_of(place, input_model=dict)


def test_a_name_registers_once() -> None:
    registry = ToolRegistry()
    registry.tool(place)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(spec_of(place, name="place"))


def test_fallback_answers_unknown_names_only_through_get() -> None:
    fallback = spec_of(place, name="fallback")
    registry = ToolRegistry(fallback=fallback)
    registry.tool(place)
    assert registry.get("anything") is fallback
    assert registry.get("place") is not fallback
    assert "anything" not in registry and registry.names() == ["place"]
    assert ToolRegistry().get("anything") is None


# --- the API schema -----------------------------------------------------------------------------------


def test_api_entry_is_a_json_schema_object() -> None:
    registry = ToolRegistry()
    registry.tool(place)
    spec = registry.get("place")
    assert spec is not None
    entry = spec.api()
    assert list(entry) == ["name", "description", "input_schema"]
    assert entry["name"] == "place" and entry["description"] == "Place an order."
    schema = entry["input_schema"]
    assert schema["type"] == "object"
    assert set(schema["properties"]) == {"customer", "quantity", "items"}
    assert schema["required"] == ["customer"]
    assert schema["properties"]["customer"]["description"] == "who orders"
    assert schema["properties"]["quantity"]["minimum"] == 1
    assert "Item" in schema["$defs"]  # nested models keep their definitions
    assert schema["properties"]["items"]["items"] == {"$ref": "#/$defs/Item"}
    assert "title" not in schema


def test_api_schema_of_a_model_without_fields_still_has_properties_and_required() -> None:
    async def nothing(args: Empty, ctx: ToolContext) -> None:
        return None

    schema = ToolSpec(name="nothing", description="", input_model=Empty, fn=nothing).api()
    assert schema == {"name": "nothing", "input_schema": {"type": "object", "properties": {}, "required": []}}


def test_api_tools_lists_all_or_the_named_ones() -> None:
    registry = ToolRegistry()
    registry.tool(place)
    registry.tool(name="other")(place)
    assert [t["name"] for t in registry.api_tools()] == ["place", "other"]
    assert [t["name"] for t in registry.api_tools(["other"])] == ["other"]
    with pytest.raises(KeyError, match="missing"):
        registry.api_tools(["missing"])


def test_key_for_reads_a_field_or_calls_a_function() -> None:
    order = Order(customer="ada", quantity=3)
    assert spec_of(place).key_for(order) is None
    assert spec_of(place, concurrency_key="customer").key_for(order) == "ada"
    assert spec_of(place, concurrency_key="quantity").key_for(order) == "3"
    assert spec_of(place, concurrency_key=lambda a: f"q{a.quantity}").key_for(order) == "q3"
    assert spec_of(place, concurrency_key=lambda a: None).key_for(order) is None


def test_key_for_passes_the_workspace_to_a_function_that_takes_it() -> None:
    """Whether a key function takes the workspace is read once a function; callables that cannot be
    remembered (unhashable) and bound methods (a new object each time) still get it right."""
    order = Order(customer="ada", quantity=3)
    where = Path("/runs/one")

    def with_workspace(args: Order, workspace: Path | None) -> str:
        return f"{workspace}/{args.customer}"

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, args: Order, workspace: Path | None) -> str:
            return f"{workspace}!{args.quantity}"

    class Keys:
        def of(self, args: Order) -> str:
            return args.customer.upper()

    for _ in range(2):  # the second time from what was remembered
        assert spec_of(place, concurrency_key=with_workspace).key_for(order, where) == "/runs/one/ada"
        assert spec_of(place, concurrency_key=Unhashable()).key_for(order, where) == "/runs/one!3"
        assert spec_of(place, concurrency_key=Keys().of).key_for(order, where) == "ADA"


# --- the context --------------------------------------------------------------------------------------


async def test_progress_reaches_the_sink_and_checks_fraction() -> None:
    seen: list[dict[str, Any]] = []

    async def sink(item: dict[str, Any]) -> None:
        seen.append(item)

    ctx = ctx_for(progress_sink=sink)
    await ctx.progress("writing", 0)
    await ctx.progress("writing", 1.0, "done")
    await ctx.progress("thinking")
    assert seen == [
        {"stage": "writing", "fraction": 0.0, "message": None},
        {"stage": "writing", "fraction": 1.0, "message": "done"},
        {"stage": "thinking", "fraction": None, "message": None},
    ]
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="from 0 to 1"):
            await ctx.progress("writing", bad)
    with pytest.raises(ValueError, match="stage"):
        await ctx.progress("")
    await ctx_for().progress("no sink", 0.5)  # nothing to send to: fine


async def test_a_failing_sink_does_not_fail_the_tool() -> None:
    async def sink(item: dict[str, Any]) -> None:
        raise ConnectionError("redis is down")

    await ctx_for(progress_sink=sink).progress("writing", 0.5)


def test_cancelled_follows_the_event() -> None:
    ctx = ctx_for()
    assert not ctx.cancelled
    ctx.cancel_event.set()
    assert ctx.cancelled


# --- execute ------------------------------------------------------------------------------------------


async def test_execute_ok_with_a_string() -> None:
    result = await execute(spec_of(place), {"customer": "ada", "quantity": 2}, ctx_for("place"))
    assert isinstance(result, ToolResult)
    assert (result.tool_use_id, result.name, result.status, result.is_error) == (
        "toolu_1",
        "place",
        "ok",
        False,
    )
    assert result.content == "2 for ada"
    assert result.attempts == 1
    assert result.started_at is not None and result.finished_at is not None
    assert result.started_at <= result.finished_at


@pytest.mark.parametrize(
    ("value", "content"),
    [
        ({"b": [1, 2], "a": "é"}, '{"b":[1,2],"a":"é"}'),
        ([1, "x"], '[1,"x"]'),
        (None, "ok"),
        ("", ""),
        (Item(sku="s1"), '{"sku":"s1"}'),
    ],
    ids=["dict", "list", "none", "empty-str", "model"],
)
async def test_execute_turns_results_into_text(value: object, content: str) -> None:
    async def fn(args: Order, ctx: ToolContext) -> object:
        return value

    result = await execute(spec_of(fn), {"customer": "ada"}, ctx_for())
    assert (result.status, result.content) == ("ok", content)


async def test_execute_result_that_is_not_json_is_an_error() -> None:
    async def fn(args: Order, ctx: ToolContext) -> object:
        return {1, 2}

    result = await execute(spec_of(fn), {"customer": "ada"}, ctx_for())
    assert result.status == "error" and result.is_error
    assert "not text or JSON" in result.content


async def test_execute_passes_the_validated_model_and_the_context() -> None:
    got: list[Any] = []

    async def fn(args: Order, ctx: ToolContext) -> None:
        got.append((args, ctx.attempt, ctx.tool_use_id))

    await execute(spec_of(fn), {"customer": "ada", "quantity": "4"}, ctx_for())
    assert got == [(Order(customer="ada", quantity=4), 1, "toolu_1")]


async def test_execute_refuses_invalid_input_without_running() -> None:
    calls: list[object] = []

    async def fn(args: Order, ctx: ToolContext) -> None:
        calls.append(args)

    result = await execute(spec_of(fn), {"quantity": 0}, ctx_for("order"))
    assert calls == []
    assert (result.status, result.is_error, result.attempts, result.started_at) == ("refused", True, 0, None)
    assert "your input for tool order does not match its input schema; nothing was run" in result.content
    assert "- customer: Field required" in result.content
    assert "- quantity: Input should be greater than or equal to 1" in result.content


async def test_execute_refuses_oversized_input() -> None:
    result = await execute(spec_of(place, max_input_bytes=20), {"customer": "a" * 50}, ctx_for("place"))
    assert result.status == "refused"
    assert "over the tool's limit of 20 bytes" in result.content


async def test_execute_timeout_says_the_limit() -> None:
    async def hang(args: Order, ctx: ToolContext) -> None:
        await asyncio.Event().wait()

    result = await execute(spec_of(hang, timeout_s=0.01), {"customer": "ada"}, ctx_for("hang"))
    assert (result.status, result.is_error, result.attempts) == ("timeout", True, 1)
    assert "tool hang did not finish within its time limit of 0.01 s" in result.content


async def test_a_timeout_error_raised_by_the_tool_is_not_a_timeout() -> None:
    async def fn(args: Order, ctx: ToolContext) -> None:
        raise TimeoutError("upstream took too long")

    result = await execute(spec_of(fn), {"customer": "ada"}, ctx_for("fn"))
    assert result.status == "error"
    assert result.content == "tool fn failed: TimeoutError: upstream took too long"


async def test_retries_then_success() -> None:
    attempts: list[int] = []

    async def flaky(args: Order, ctx: ToolContext) -> str:
        attempts.append(ctx.attempt)
        if len(attempts) < 3:
            raise RetryableToolError("busy")
        return "done"

    result = await execute(spec_of(flaky, retries=2, backoff_s=0), {"customer": "ada"}, ctx_for())
    assert attempts == [1, 2, 3]
    assert (result.status, result.content, result.attempts) == ("ok", "done", 3)


async def test_retries_exhausted() -> None:
    attempts: list[int] = []

    async def down(args: Order, ctx: ToolContext) -> str:
        attempts.append(ctx.attempt)
        raise RetryableToolError("the service is busy")

    result = await execute(spec_of(down, retries=2, backoff_s=0), {"customer": "ada"}, ctx_for("down"))
    assert attempts == [1, 2, 3]
    assert (result.status, result.is_error, result.attempts) == ("error", True, 3)
    assert result.content == "tool down failed after 3 attempts: the service is busy"


async def test_retryable_error_without_retries_fails_at_once() -> None:
    async def down(args: Order, ctx: ToolContext) -> str:
        raise RetryableToolError("busy")

    result = await execute(spec_of(down), {"customer": "ada"}, ctx_for("down"))
    assert (result.status, result.attempts) == ("error", 1)
    assert result.content == "tool down failed and was not retried: busy"


async def test_tool_error_is_not_retried_and_its_message_is_the_content() -> None:
    attempts: list[int] = []

    async def fn(args: Order, ctx: ToolContext) -> str:
        attempts.append(ctx.attempt)
        raise ToolError("no such customer: ada")

    result = await execute(spec_of(fn, retries=3, backoff_s=0), {"customer": "ada"}, ctx_for())
    assert attempts == [1]
    assert (result.status, result.is_error, result.content) == ("error", True, "no such customer: ada")


async def test_unexpected_exception_names_its_type() -> None:
    async def fn(args: Order, ctx: ToolContext) -> str:
        raise KeyError("customer")

    result = await execute(spec_of(fn, retries=3, backoff_s=0), {"customer": "ada"}, ctx_for("fn"))
    assert (result.status, result.attempts) == ("error", 1)
    assert result.content == "tool fn failed: KeyError: 'customer'"


async def test_cancellation_propagates() -> None:
    started = asyncio.Event()

    async def hang(args: Order, ctx: ToolContext) -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(execute(spec_of(hang), {"customer": "ada"}, ctx_for()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancelled_context_stops_retries() -> None:
    attempts: list[int] = []

    async def down(args: Order, ctx: ToolContext) -> None:
        attempts.append(ctx.attempt)
        ctx.cancel_event.set()
        raise RetryableToolError("busy")

    result = await execute(spec_of(down, retries=5, backoff_s=10), {"customer": "ada"}, ctx_for("down"))
    assert attempts == [1]
    assert (result.status, result.is_error) == ("cancelled", True)
    assert "cancelled after attempt 1" in result.content


async def test_a_context_cancelled_before_the_start_runs_nothing() -> None:
    ctx = ctx_for("place")
    ctx.cancel_event.set()
    result = await execute(spec_of(place), {"customer": "ada"}, ctx)
    assert (result.status, result.attempts) == ("cancelled", 0)
    assert result.content == "tool place was cancelled before it ran; nothing was done."


async def test_progress_from_a_tool_reaches_the_sink() -> None:
    seen: list[dict[str, Any]] = []

    async def sink(item: dict[str, Any]) -> None:
        seen.append(item)

    async def fn(args: Order, ctx: ToolContext) -> str:
        await ctx.progress("working", 0.0)
        await ctx.progress("working", 1.0, "all done")
        return "ok"

    result = await execute(spec_of(fn), {"customer": "ada"}, ctx_for(progress_sink=sink))
    assert result.status == "ok"
    assert [(p["stage"], p["fraction"], p["message"]) for p in seen] == [
        ("working", 0.0, None),
        ("working", 1.0, "all done"),
    ]
