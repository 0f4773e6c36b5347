"""What the jobs need, gathered once per worker process: Redis, the store, the event log, tools, a model.

A worker is built from the user's own code (``incremental.worker.settings`` or ``Runner``): its tool
sets by name, its model client, and the shared state its start-up hook filled. None of that is ever in
Redis: a run names a tool set, never an import path or a credential, because runs can come from HTTP
requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arq.connections import ArqRedis

from ..adapters import _arq
from ..adapters._control import RedisControl
from ..adapters._eventlog import EventLog
from ..adapters._messages_client import MessagesClient
from ..adapters._model_clients import ModelClient
from ..adapters._retention import Retention
from ..adapters._store import RunRecord, TurnStore
from ..exceptions import UnknownToolsetError
from ..tools import ToolRegistry, simulated_registry
from ._deadlines import Drain, StreamLimits

__all__ = ["Services", "UnknownToolsetError", "describe"]


@dataclass
class Services:
    """Redis store, event log, control channel and arq queue; the worker's tool sets and model client.

    ``model_client``: None means the built-in ``MessagesClient``, configured from the environment
    (``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``) when it is first needed. ``state`` is what the
    tools see as ``ToolContext.state``. ``stream_limits`` bound every wait for the model; ``drain`` is
    the worker's shutdown as its jobs see it (``_deadlines``). ``retention``: what the runs this
    process starts are recorded with (and what ends a run recorded without one), ``_retention``.
    """

    pool: ArqRedis
    registries: Mapping[str, ToolRegistry] = field(default_factory=dict)
    model_client: ModelClient | None = None
    state: dict[str, Any] = field(default_factory=dict)
    monitor_interval_s: float = 5.0
    stream_limits: StreamLimits = field(default_factory=StreamLimits)
    drain: Drain = field(default_factory=Drain)
    retention: Retention = field(default_factory=Retention.configure)
    _simulated: dict[str, ToolRegistry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store: TurnStore = TurnStore(self.pool, self.retention)
        self.events: EventLog = EventLog(self.pool)
        self.control: RedisControl = RedisControl(self.pool)
        self._own_client: MessagesClient | None = None

    # ------------------------------------------------------------ queueing

    async def enqueue_tool(self, job: _arq.ToolJob) -> bool:
        return await _arq.enqueue_tool(self.pool, job)

    # A run's stream and monitor jobs go to its own queue (``RunRecord.queue``: its runner's), not to
    # the queue of the worker at hand: a tool worker on a queue of its own may finish a turn.

    async def enqueue_stream_turn(
        self, run_id: str, turn: int, generation: int = 0, *, queue: str | None = None
    ) -> bool:
        return await _arq.enqueue_stream_turn(self.pool, run_id, turn, generation, queue=queue)

    async def enqueue_monitor(
        self, run_id: str, turn: int, check: int, defer_s: float, *, queue: str | None = None
    ) -> bool:
        return await _arq.enqueue_monitor(self.pool, run_id, turn, check, defer_s, queue=queue)

    async def enqueue_trim(self, run_id: str, defer_s: float, *, queue: str | None = None) -> bool:
        return await _arq.enqueue_trim(self.pool, run_id, defer_s, queue=queue)

    # ------------------------------------------------------------ what a run uses

    def registry_for(self, run: RunRecord) -> ToolRegistry:
        """The tool set the run names; with ``simulate_s``, its simulated twin."""
        name = run.config.get("toolset")
        if name is None:
            if len(self.registries) != 1:
                raise UnknownToolsetError(
                    "the run names no tool set and this worker has "
                    + (
                        f"several ({', '.join(sorted(self.registries))}): name one"
                        if self.registries
                        else "none"
                    )
                )
            [name] = self.registries
        registry = self.registries.get(str(name))
        if registry is None:
            raise UnknownToolsetError(
                f"the run names tool set {name!r}; this worker has "
                f"{', '.join(repr(n) for n in sorted(self.registries)) or 'none'}"
            )
        simulate = run.config.get("simulate_s")
        if simulate is None:
            return registry
        key = f"{name}:{float(simulate)!r}"
        if key not in self._simulated:
            self._simulated[key] = simulated_registry(float(simulate), base=registry)
        return self._simulated[key]

    @staticmethod
    def workspace_for(run: RunRecord) -> Path | None:
        workspace = run.config.get("workspace")
        return Path(workspace) if workspace else None

    def client(self) -> ModelClient:
        """The worker's model client (the built-in one, made on first use, when none was given).

        A worker asks for it as it starts: building the built-in one's HTTP clients (their TLS
        context) takes about 20 ms, which must not land between a turn's last result and the next
        request."""
        if self.model_client is not None:
            return self.model_client
        if self._own_client is None:
            self._own_client = MessagesClient()
        return self._own_client

    async def aclose(self) -> None:
        """Close what these services opened (a model client passed in is its owner's to close)."""
        if self._own_client is not None:
            await self._own_client.aclose()
            self._own_client = None
        await self.control.aclose()


def describe(value: Any, limit: int = 200) -> Any:
    """A short form of a value for the event log (long strings cut, with their length said)."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"… ({len(value)} chars)"
    return value
