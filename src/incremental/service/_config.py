"""What a service instance is configured with (the ``serve`` command fills it from flags and env)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ServiceConfig"]


@dataclass
class ServiceConfig:
    redis_url: str
    tokens: dict[str, str]  # principal name -> service token
    api_base_url: str = "https://api.anthropic.com"  # where runs' model requests go; never set by clients
    toolset: str = "app"
    simulate_s: float | None = None  # run every tool as a simulated job of this many seconds
    workspace_root: Path | None = None  # each run works in workspace_root/{run_id}
    seed_starter: bool = False  # give each new workspace the Vite starter (the demo recording edits it)
    demo_request: dict[str, Any] | None = None  # what GET /v1/demo answers; None: 404
    heartbeat_s: float = 15.0
    send_timeout_s: float = 30.0  # a client that takes longer to accept one write is cut off
    max_pending_events: int = 2000  # per watcher, before it is cut off
    max_body_bytes: int = 4 * 1024 * 1024
    default_model: str = "claude-sonnet-4-5"
    event_log: dict[str, Any] = field(default_factory=dict)  # EventLog options (maxlen, exact_trim...)
