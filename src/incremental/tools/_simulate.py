"""Simulated tools for ``--simulate``: every tool call takes ``seconds``, reports progress, echoes its input.

``simulated_registry(seconds, base=registry)`` answers every name, registered in ``base`` or not, with
a simulated tool. For names that ``base`` has, the simulated tool keeps its policy, concurrency key,
queue, idempotency, input cap and API schema, so a replay keeps the real ordering semantics while
nothing touches the disk or the network.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ._context import ToolContext
from ._registry import ToolFn, ToolRegistry, ToolSpec

__all__ = ["SIMULATED_TOOL_NAME", "SimulatedInput", "simulated_registry"]

SIMULATED_TOOL_NAME = "simulated_tool"
PROGRESS_STEPS = 4


class SimulatedInput(BaseModel):
    """Any JSON object: a simulated tool accepts whatever input it is given."""

    model_config = ConfigDict(extra="allow")


def simulated_registry(seconds: float, *, base: ToolRegistry | None = None) -> ToolRegistry:
    """A registry in which every tool call sleeps ``seconds`` in a few steps and returns its input."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise ValueError(f"seconds must be a finite number, got {seconds!r}")
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    fn = _simulated_fn(float(seconds))
    timeout_s = max(60.0, 2.0 * seconds + 1.0)
    registry = ToolRegistry(
        fallback=ToolSpec(
            name=SIMULATED_TOOL_NAME,
            description=f"A simulated tool: takes {seconds:g} s and returns its input.",
            input_model=SimulatedInput,
            fn=fn,
            timeout_s=timeout_s,
        )
    )
    for spec in base or ():
        registry.register(
            ToolSpec(
                name=spec.name,
                description=spec.description,
                input_model=SimulatedInput,
                fn=fn,
                policy=spec.policy,
                concurrency_key=_simulated_key(spec),
                timeout_s=max(spec.timeout_s, 2.0 * seconds + 1.0),
                retries=0,
                backoff_s=spec.backoff_s,
                idempotent=spec.idempotent,
                queue=spec.queue,
                max_input_bytes=spec.max_input_bytes,
                input_schema=spec.api()["input_schema"],
            )
        )
    return registry


def _simulated_fn(seconds: float) -> ToolFn:
    async def simulated(args: SimulatedInput, ctx: ToolContext) -> dict[str, Any]:
        for step in range(PROGRESS_STEPS):
            await ctx.progress("simulating", step / PROGRESS_STEPS)
            await asyncio.sleep(seconds / PROGRESS_STEPS)
        await ctx.progress("simulating", 1.0)
        return args.model_dump(mode="json")

    return simulated


def _simulated_key(spec: ToolSpec) -> Callable[[Any, Path | None], str | None] | None:
    """The real tool's concurrency key, computed on the simulated (permissive) input."""
    key = spec.concurrency_key
    if key is None:
        return None

    def simulated_key(args: BaseModel, workspace: Path | None) -> str | None:
        data = args.model_dump(mode="json")
        try:
            typed = spec.input_model.model_validate(data)
        except ValidationError:
            # Not a valid input for the real tool: still order by the key field when it is there.
            value = data.get(key) if isinstance(key, str) else None
            return None if value is None else str(value)
        return spec.key_for(typed, workspace)

    return simulated_key
