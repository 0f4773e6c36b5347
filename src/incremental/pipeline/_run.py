"""Starting a run: its record in Redis, its first event, and its first turn's job."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from arq.connections import ArqRedis

from ..adapters._arq import enqueue_stream_turn
from ..adapters._eventlog import EventLog
from ..adapters._store import TurnStore

__all__ = ["RunConfig", "start_run"]


@dataclass(frozen=True, slots=True)
class RunConfig:
    """What a run asks for. JSON-ready; stored with the run."""

    model: str = "claude-sonnet-4-5"
    max_tokens: int = 8192
    system: str | None = None
    tools: list[str] | None = None  # names from the tool set; None: all of them
    toolset: str = "app"
    api_base_url: str = "https://api.anthropic.com"
    max_turns: int = 10
    turn_timeout_s: float = 300.0
    simulate_s: float | None = None  # run every tool as a simulated job of this many seconds
    workspace: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


async def start_run(
    pool: ArqRedis, config: RunConfig, messages: list[dict[str, Any]], *, run_id: str | None = None
) -> str:
    """Record the run and enqueue its first turn. Returns the run id at once."""
    run_id = run_id or f"run_{uuid.uuid4().hex[:20]}"
    data = asdict(config)
    await TurnStore(pool).create_run(run_id, data, messages)
    await EventLog(pool).append(run_id, "run_started", turn=0, config=data)
    await enqueue_stream_turn(pool, run_id, 0)
    return run_id
