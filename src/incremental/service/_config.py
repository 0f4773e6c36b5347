"""What a service instance is configured with (the ``serve`` command fills it from flags and env)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..runner import Runner
    from ..tools import ToolRegistry

__all__ = ["ServiceConfig"]


@dataclass
class ServiceConfig:
    redis_url: str
    tokens: dict[str, str]  # principal name -> service token
    tools: Mapping[str, ToolRegistry] = field(default_factory=dict)  # the tool sets runs may name
    toolset: str | None = None  # the tool set of a run that names none (None: the only one, if one)
    runner: Runner | None = None  # an open Runner on redis_url to start runs with (None: the app's own)
    simulate_s: float | None = None  # run every tool as a simulated job of this many seconds
    workspace_root: Path | None = None  # each run works in workspace_root/{run_id}
    prepare_workspace: Callable[[Path], object] | None = None  # fills each new workspace (the demo's starter)
    demo_request: dict[str, Any] | None = None  # what GET /v1/demo answers; None: 404
    heartbeat_s: float = 15.0
    send_timeout_s: float = 30.0  # a client that takes longer to accept one write is cut off
    max_pending_events: int = 2000  # per watcher, before it is cut off
    max_body_bytes: int = 4 * 1024 * 1024
    default_model: str = "claude-sonnet-4-5"
    default_max_tokens: int = 8192
    event_log: dict[str, Any] = field(default_factory=dict)  # EventLog options (maxlen, exact_trim...)
    # How long a finished run stays, and when it is trimmed (seconds or "off"; None: INCREMENTAL_RETENTION
    # and INCREMENTAL_TRIM_AFTER, else a day and 5 minutes; see incremental.worker). The runs this service
    # starts are recorded with it, and each caller's run index (inc:runs:{name}) keeps pace with it. With
    # ``runner`` given, that runner's.
    retention_s: float | str | None = None
    trim_after_s: float | str | None = None
