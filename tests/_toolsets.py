"""Tools for the pipeline tests: the ``test`` tool set of their runners and workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel

from incremental.tools import ToolContext, ToolRegistry

registry = ToolRegistry()


class AppendInput(BaseModel):
    path: str
    line: str
    delay: float = 0.0


@registry.tool(concurrency_key="path")
async def slow_append(args: AppendInput, ctx: ToolContext) -> str:
    """Append a line to a file after ``delay`` seconds of simulated work."""
    await ctx.progress("working", 0.0)
    await asyncio.sleep(args.delay)
    with Path(args.path).open("a") as f:
        f.write(args.line + "\n")
    await ctx.progress("working", 1.0)
    return f"appended {args.line!r}"


class PoisonInput(BaseModel):
    why: str = "boom"


@registry.tool
async def poison(args: PoisonInput, ctx: ToolContext) -> str:
    """Always fails."""
    raise RuntimeError(args.why)


class SleepInput(BaseModel):
    seconds: float


@registry.tool
async def sleepy(args: SleepInput, ctx: ToolContext) -> str:
    """Takes ``seconds`` of simulated work."""
    await asyncio.sleep(args.seconds)
    return "slept"


@registry.tool(policy="after_message")
async def charge_card(args: PoisonInput, ctx: ToolContext) -> str:
    """A non-idempotent side effect: runs only once message_stop says tool_use."""
    return "charged"


class GreetInput(BaseModel):
    name: str


@registry.tool
async def greet(args: GreetInput, ctx: ToolContext) -> str:
    """Greets with what the worker's start-up hook put in the tools' shared state."""
    return f"{ctx.state.get('greeting', 'no greeting in state')}, {args.name}"


SOAK_QUEUE = (
    "incremental-soak-tools"  # the soak's tool workers serve this queue; its stream workers the default
)


class MarkInput(BaseModel):
    path: str
    delay: float = 1.0


@registry.tool(queue=SOAK_QUEUE)
async def mark(args: MarkInput, ctx: ToolContext) -> str:
    """After ``delay`` seconds of work, appends ``run_id tool_use_id`` to a file: the side effect a soak
    counts (one line per call, or it happened twice)."""
    await asyncio.sleep(args.delay)
    with Path(args.path).open("a") as f:
        f.write(f"{ctx.run_id} {ctx.tool_use_id}\n")
    return "marked"
