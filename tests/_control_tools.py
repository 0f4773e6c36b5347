"""Tools for the cancel/pause tests (the ``control`` tool set; loaded by in-process workers).

The workers in ``test_control.py`` run in the test's own process and event loop, so a tool can wait on
a gate the test opens: the test decides when a tool finishes, and asserts on the order of events only.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from incremental.tools import ToolContext, ToolRegistry

registry = ToolRegistry()

# Tools on this queue stay queued until a test starts a worker for it.
LATER_QUEUE = "incremental-test-later"

_GATES: dict[str, asyncio.Event] = {}


def gate(name: str) -> asyncio.Event:
    """The gate ``name`` (made on first use). Tests use names unique to themselves."""
    return _GATES.setdefault(name, asyncio.Event())


def open_all() -> None:
    """Let every gated tool finish (at a test's end, so no worker waits on a gate)."""
    for event in _GATES.values():
        event.set()


class GateInput(BaseModel):
    gate: str


class KeyedInput(BaseModel):
    key: str
    gate: str | None = None


class NoInput(BaseModel):
    pass


@registry.tool
async def hold(args: GateInput, ctx: ToolContext) -> str:
    """Runs until its gate opens (or it is cancelled)."""
    await gate(args.gate).wait()
    return f"released by {args.gate}"


@registry.tool
async def stubborn(args: GateInput, ctx: ToolContext) -> str:
    """Swallows a cancel and returns: a tool that finishes although it was told to stop."""
    try:
        await gate(args.gate).wait()
    except asyncio.CancelledError:
        return "finished anyway"
    return f"released by {args.gate}"


@registry.tool(concurrency_key="key")
async def keyed(args: KeyedInput, ctx: ToolContext) -> str:
    """Calls with the same key run one at a time, in stream order; waits on its gate if it has one."""
    if args.gate is not None:
        await gate(args.gate).wait()
    return f"done with {args.key}"


@registry.tool
async def quick(args: NoInput, ctx: ToolContext) -> str:
    """Returns at once."""
    return "quick"


@registry.tool(queue=LATER_QUEUE)
async def later(args: NoInput, ctx: ToolContext) -> str:
    """Returns at once, but only a worker on ``LATER_QUEUE`` runs it."""
    return "later"
