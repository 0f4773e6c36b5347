"""uvicorn on a socket we bind ourselves: the fake Messages API and the service both start this way.

Binding first tells us the port at once (port 0 picks a free one), and ``start_server`` returns only
once uvicorn is listening, or raises with the reason it is not. Signals stay the caller's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Any

import uvicorn

__all__ = ["LoopbackServer", "bind", "start_server"]


class LoopbackServer(uvicorn.Server):
    """uvicorn that says when it listens and leaves the host's signal handlers alone."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


async def start_server(
    app: Any, host: str, port: int, *, name: str, **config: Any
) -> tuple[LoopbackServer, asyncio.Task[None], int]:
    """Serve ``app`` on ``host:port``; returns the server, its task and the bound port once it listens."""
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    options: dict[str, Any] = {"http": "h11", "ws": "none", "log_config": None, **config}
    server = LoopbackServer(uvicorn.Config(app, **options))
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"{name}:{bound}")
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not server.ready.is_set():
        ready.cancel()
        sock.close()
        error = task.exception() if not task.cancelled() else None
        raise RuntimeError(f"{name} did not start on {host}:{port}: {error!r}")
    return server, task, bound
