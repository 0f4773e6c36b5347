"""A running service: uvicorn on a bound socket, plus what a fresh machine lacks (Redis, workers, a model).

``incremental serve`` uses it, and so do the tests and ``scripts/bench_service.py``::

    async with Service(ServeOptions(tokens={"me": token}, demo=True)) as service:
        print(service.url)

- Redis: ``redis_url``, else ``$REDIS_URL``, else a private ``redis-server`` for the service's life.
- Tool sets: ``tools`` by name (and ``INCREMENTAL_TOOLSETS``); runs name one (``toolset``).
- Workers: ``workers`` in-process arq workers (default: 2 with a private Redis, 0 with yours, where
  your own worker processes, built with ``incremental.worker.settings``, do the work). Their model
  client is ``model_client``, else the built-in one on ``api_base_url``.
- ``demo``: a loopback fake Messages API plays the recorded 8-tool app-builder conversation; every run
  goes to it, runs use the app-builder tool set, and each run's workspace starts as the Vite starter
  project the recording edits.

Runs are started through the same ``Runner`` as any backend's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .._serving import LoopbackServer, start_server
from ..adapters._messages_client import MessagesClient
from ..adapters._redis_server import RedisServer
from ..examples.app_builder import RECORDINGS
from ..exceptions import RedisUnavailableError
from ..fake_api import FakeMessagesAPI
from ..runner import Runner
from ..tools import ToolRegistry
from ._app import create_app
from ._config import ServiceConfig
from ._guard import ConnectionLimits, install_log_guard, uvicorn_options

__all__ = ["DEMO_FILES", "ServeOptions", "Service"]

DEMO_FILES = RECORDINGS


@dataclass
class ServeOptions:
    tokens: dict[str, str]
    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str | None = None
    workers: int | None = None
    tools: dict[str, ToolRegistry] = field(default_factory=dict)
    toolset: str | None = None
    model_client: Any = None
    demo: bool = False
    speed: float = 1.0  # demo playback speed
    simulate_s: float | None = None
    api_base_url: str | None = None  # the built-in client's; None: $ANTHROPIC_BASE_URL or the real API
    workspace_root: str | None = None
    heartbeat_s: float = 15.0
    send_timeout_s: float = 30.0
    max_pending_events: int = 2000
    poll_delay_s: float = 0.005
    event_log: dict[str, Any] = field(default_factory=dict)
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)  # slow, idle and too many clients


class Service:
    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.url = ""
        self.redis_url = ""
        self.app: Any = None
        self._redis: RedisServer | None = None
        self._api: FakeMessagesAPI | None = None
        self._runner: Runner | None = None
        self._client: MessagesClient | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._server: LoopbackServer | None = None
        self._workspace: tempfile.TemporaryDirectory[str] | None = None

    async def start(self) -> None:
        opts = self.options
        url = opts.redis_url or os.environ.get("REDIS_URL")
        if url is None:
            self._redis = RedisServer()
            url = self._redis.start()
        self.redis_url = url
        await _check_redis(url)
        n_workers = opts.workers if opts.workers is not None else (2 if self._redis is not None else 0)
        tools = dict(opts.tools)
        toolset = opts.toolset
        model_client = opts.model_client
        demo_request = None
        prepare = None
        if opts.demo:
            from ..examples.app_builder.tools import registry as app_registry
            from ..examples.app_builder.tools import seed_vite_starter

            tools.setdefault("app", app_registry)
            toolset = toolset or "app"
            prepare = seed_vite_starter
            self._api = FakeMessagesAPI(list(DEMO_FILES), speed=opts.speed)
            await self._api.start()
            model_client = self._client = MessagesClient(base_url=self._api.url, api_key="demo")
            demo_request = {
                "model": "claude-sonnet-4-5",
                "max_tokens": 8192,
                "messages": [{"role": "user", "content": "Build me a todo app with Vite and React."}],
                "toolset": "app",
                "limits": {"max_turns": len(DEMO_FILES)},
                "tags": {"demo": "app_builder_8_tools"},
            }
        elif model_client is None and opts.api_base_url is not None:
            model_client = self._client = MessagesClient(base_url=opts.api_base_url)
        workspace_root = opts.workspace_root
        if workspace_root is None:
            self._workspace = tempfile.TemporaryDirectory(prefix="incremental-serve-")
            workspace_root = self._workspace.name
        self._runner = Runner(
            tools=tools,
            redis_url=url,
            workers=n_workers,
            model_client=model_client,
            poll_delay=opts.poll_delay_s,
        )
        await self._runner.open()
        config = ServiceConfig(
            redis_url=url,
            tokens=opts.tokens,
            tools=self._runner.tools,
            toolset=toolset,
            runner=self._runner,
            simulate_s=opts.simulate_s,
            workspace_root=Path(workspace_root),
            prepare_workspace=prepare,
            demo_request=demo_request,
            heartbeat_s=opts.heartbeat_s,
            send_timeout_s=opts.send_timeout_s,
            max_pending_events=opts.max_pending_events,
            event_log=opts.event_log,
        )
        self.app = create_app(config)
        install_log_guard()
        server, task, port = await start_server(
            self.app,
            opts.host,
            opts.port,
            name="the service",
            access_log=False,  # an access log is where tokens leak; ours logs none
            timeout_graceful_shutdown=3,
            **uvicorn_options(opts.limits),
        )
        self._server = server
        self._tasks.append(task)
        host = f"[{opts.host}]" if ":" in opts.host else opts.host
        self.url = f"http://{host}:{port}"

    async def wait(self) -> None:
        """Until the server stops (``stop()``, or uvicorn's own exit)."""
        if self._server is not None:
            await self._tasks[-1]

    @property
    def workers(self) -> int:
        """In-process arq workers running."""
        return self._runner.workers if self._runner is not None else 0

    def request_stop(self) -> None:
        """Ask the HTTP server to finish (``wait()`` then returns); safe from a signal handler."""
        if self._server is not None:
            self._server.should_exit = True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._tasks[-1]
            self._server = None
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.aclose()
            self._runner = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._api is not None:
            await self._api.stop()
            self._api = None
        if self._redis is not None:
            self._redis.stop()
            self._redis = None
        if self._workspace is not None:
            self._workspace.cleanup()
            self._workspace = None

    async def __aenter__(self) -> Service:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def _check_redis(url: str) -> None:
    """Fail with one clear, typed error before anything starts, rather than in uvicorn's startup."""
    client = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        raise RedisUnavailableError(f"cannot reach Redis at {url}: {exc}") from exc
    finally:
        await client.aclose()
