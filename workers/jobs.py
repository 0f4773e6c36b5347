"""The arq job functions. Each takes arq's ``ctx`` and delegates to ``incremental.pipeline``."""

from __future__ import annotations

from typing import Any

from incremental.pipeline import Services, monitor_turn_job, run_tool_job, stream_turn_job

__all__ = ["monitor_turn", "run_tool", "shutdown", "startup", "stream_turn"]


async def startup(ctx: dict[str, Any]) -> None:
    ctx["services"] = Services(
        pool=ctx["redis"], monitor_interval_s=float(ctx.get("monitor_interval_s", 2.0))
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    services: Services | None = ctx.get("services")
    if services is not None:
        await services.aclose()


async def run_tool(ctx: dict[str, Any], job: dict[str, Any]) -> str:
    return await run_tool_job(ctx["services"], job)


async def stream_turn(ctx: dict[str, Any], run_id: str, turn: int, generation: int = 0) -> str:
    return await stream_turn_job(ctx["services"], run_id, turn, generation)


async def monitor_turn(ctx: dict[str, Any], run_id: str, turn: int, check: int) -> str:
    return await monitor_turn_job(ctx["services"], run_id, turn, check)
