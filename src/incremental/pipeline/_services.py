"""What the jobs need, gathered once per worker process: Redis, the store, the event log, tools, clients."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from arq.connections import ArqRedis

from ..adapters import _arq
from ..adapters._control import ControlChannel, RedisControl
from ..adapters._eventlog import EventLog
from ..adapters._messages_client import MessagesClient
from ..adapters._store import RunRecord, TurnStore
from ..tools import ToolRegistry, simulated_registry

__all__ = ["DEFAULT_TOOLSETS", "Services", "env_toolsets", "shared_http_client"]

# Tool sets a run may name. A run names a key, never an import path: runs can come from HTTP requests.
DEFAULT_TOOLSETS = {"app": "workers.app_tools:registry"}


def env_toolsets() -> dict[str, str]:
    """Extra tool sets from ``INCREMENTAL_TOOLSETS``: ``name=module:attr,name2=module:attr``."""
    found = {}
    for item in filter(
        None, (part.strip() for part in os.environ.get("INCREMENTAL_TOOLSETS", "").split(","))
    ):
        name, _, path = item.partition("=")
        found[name.strip()] = path.strip()
    return found


def shared_http_client() -> httpx.AsyncClient:
    """One HTTP client per worker, made when the worker starts: building one (its TLS context) takes
    about 20 ms, which must not land between a turn's last result and the next request. The Messages
    client sets its own timeouts on every request."""
    return httpx.AsyncClient(timeout=None)


def _load_registry(path: str) -> ToolRegistry:
    module_name, _, attr = path.partition(":")
    registry = getattr(importlib.import_module(module_name), attr or "registry")
    if not isinstance(registry, ToolRegistry):
        raise TypeError(f"{path} is not a ToolRegistry")
    return registry


@dataclass
class Services:
    """The arq flavour: Redis store, event log and control channel, arq queue. ``LocalServices`` swaps
    all four for in-memory ones."""

    pool: ArqRedis
    toolsets: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TOOLSETS))
    monitor_interval_s: float = 2.0
    _registries: dict[str, ToolRegistry] = field(default_factory=dict)
    _clients: dict[str, MessagesClient] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store: TurnStore = TurnStore(self.pool)
        self.events: EventLog = EventLog(self.pool)
        self.control: ControlChannel = RedisControl(self.pool)
        self.toolsets.update(env_toolsets())
        self._http = shared_http_client()

    # ------------------------------------------------------------ queueing (the in-process runner overrides)

    async def enqueue_tool(self, job: _arq.ToolJob) -> bool:
        return await _arq.enqueue_tool(self.pool, job)

    async def enqueue_stream_turn(self, run_id: str, turn: int, generation: int = 0) -> bool:
        return await _arq.enqueue_stream_turn(self.pool, run_id, turn, generation)

    async def enqueue_monitor(self, run_id: str, turn: int, check: int, defer_s: float) -> bool:
        return await _arq.enqueue_monitor(self.pool, run_id, turn, check, defer_s)

    def registry_for(self, run: RunRecord) -> ToolRegistry:
        config = run.config
        name = str(config.get("toolset") or "app")
        if name not in self._registries:
            if name not in self.toolsets:
                raise KeyError(f"unknown toolset {name!r}; this worker has {sorted(self.toolsets)}")
            self._registries[name] = _load_registry(self.toolsets[name])
        registry = self._registries[name]
        simulate = config.get("simulate_s")
        if simulate is not None:
            key = f"{name}:simulate:{simulate}"
            if key not in self._registries:
                self._registries[key] = simulated_registry(float(simulate), base=registry)
            registry = self._registries[key]
        return registry

    @staticmethod
    def workspace_for(run: RunRecord) -> Path | None:
        workspace = run.config.get("workspace")
        return Path(workspace) if workspace else None

    def client_for(self, run: RunRecord) -> MessagesClient:
        base_url = str(run.config.get("api_base_url") or "https://api.anthropic.com")
        if base_url not in self._clients:
            self._clients[base_url] = MessagesClient(base_url=base_url, http=self._http)
        return self._clients[base_url]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        await self._http.aclose()
        await self.control.aclose()


def describe(value: Any, limit: int = 200) -> Any:
    """A short form of a value for the event log (long strings cut, with their length said)."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"… ({len(value)} chars)"
    return value
