"""The service protects itself: deep bodies get a 400 before anything is stored; slow, idle and surplus
connections are closed, so they cannot hold the service's descriptors; accept errors cannot flood the log.
Real uvicorn on loopback, raw sockets for the misbehaving clients."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from incremental.adapters._arq import connect
from incremental.service._guard import ConnectionLimits, install_log_guard, json_nesting_ok

from ._service import ALICE, auth, served

LIMITS = ConnectionLimits(header_timeout_s=0.5, body_timeout_s=0.5, idle_timeout_s=1.0, max_connections=8)


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


async def run_keys(redis_url: str) -> int:
    pool = await connect(redis_url)
    try:
        return len(await pool.keys("inc:run:*"))
    finally:
        await pool.aclose()


async def test_a_deeply_nested_body_gets_a_400_before_anything_is_stored(
    redis_url: str, tmp_path: Path
) -> None:
    async with (
        served(redis_url, workspace_root=str(tmp_path)) as service,
        httpx.AsyncClient(base_url=service.url, timeout=30) as client,
    ):
        before = await run_keys(redis_url)
        message = '{"role": "user", "content": "hi"}'
        bodies = {
            "system": f'{{"messages": [{message}], "system": {deep(900)}}}',
            "content": '{"messages": [{"role": "user", "content": [{"type": "text", "x": '
            + deep(5000)
            + "}]}]}",
            "metadata": f'{{"messages": [{message}], "metadata": {{"a": {deep(100_000)}}}}}',
            "just over": f'{{"messages": [{message}], "metadata": {{"a": {deep(63)}}}}}',
        }
        for where, body in bodies.items():
            response = await client.post(
                "/v1/runs", content=body, headers={**auth(ALICE), "content-type": "application/json"}
            )
            assert response.status_code == 400, (where, response.text)
            assert "deeper than" in response.json()["error"]["message"], where
            assert response.headers.get("connection") != "close"  # a 400, not a 500: the connection stays
        assert await run_keys(redis_url) == before
        assert list(tmp_path.iterdir()) == []  # no workspace made either
        # A request within the bound still starts a run.
        response = await client.post(
            "/v1/runs",
            json={"messages": [{"role": "user", "content": "hi"}], "metadata": {"a": [[[["deep enough"]]]]}},
            headers=auth(ALICE),
        )
        assert response.status_code == 201, response.text


def test_the_nesting_scan_skips_strings() -> None:
    assert json_nesting_ok(b'{"a": "[[[[[[[[[[", "b": "\\"[[[["}', 2)
    assert not json_nesting_ok(b'{"a": [[1]]}', 2)
    assert json_nesting_ok(b'{"a": [1, {"b": 2}]}', 3)


async def _open(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port)


async def _closed_by_server(reader: asyncio.StreamReader, within: float = 10.0) -> bool:
    """True when the server closes the connection (EOF) within ``within`` seconds, whatever it sent."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def test_slow_idle_and_surplus_connections_are_closed(redis_url: str) -> None:
    async with served(redis_url, limits=LIMITS) as service:
        parts = urlsplit(service.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80

        # Headers a byte at a time (slowloris), never finished.
        reader, writer = await _open(host, port)
        writer.write(b"POST /v1/runs HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        for _ in range(3):
            writer.write(b"X")
            await writer.drain()
        assert await _closed_by_server(reader)
        writer.close()

        # A connection that never sends anything.
        reader, writer = await _open(host, port)
        assert await _closed_by_server(reader)
        writer.close()

        # A body that never arrives in full.
        reader, writer = await _open(host, port)
        writer.write(
            b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {ALICE}\r\nContent-Length: 1000\r\n\r\n".encode()
            + b'{"messages": ['
        )
        await writer.drain()
        assert await _closed_by_server(reader)
        writer.close()

        # More idle connections than the cap: the surplus is closed at once, the rest after the header
        # timeout; then the service answers again.
        opened = [await _open(host, port) for _ in range(20)]
        closed = await asyncio.gather(*(_closed_by_server(r) for r, _ in opened))
        assert all(closed)
        for _, w in opened:
            w.close()
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            assert (await client.get("/healthz")).status_code == 200


async def test_connections_over_the_cap_are_closed_at_once(redis_url: str) -> None:
    limits = ConnectionLimits(header_timeout_s=60, max_connections=8)
    async with served(redis_url, limits=limits) as service:
        parts = urlsplit(service.url)
        opened = [await _open(parts.hostname or "127.0.0.1", parts.port or 80) for _ in range(20)]
        closed = await asyncio.gather(*(_closed_by_server(r, within=3.0) for r, _ in opened))
        for _, w in opened:
            w.close()
    assert sum(closed) == 12  # the 8 within the cap wait for their headers (60 s here)


def test_accept_errors_are_logged_once_in_a_while() -> None:
    guard = install_log_guard()
    assert install_log_guard() is guard
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    target = logging.getLogger("asyncio")
    handler = Keep()
    target.addHandler(handler)
    try:
        for _ in range(1000):
            target.error("socket.accept() out of system resource", exc_info=False)
        target.error("something else")
    finally:
        target.removeHandler(handler)
    accepts = [r for r in seen if "socket.accept()" in str(r.msg)]
    assert len(accepts) <= 1 and [r.msg for r in seen][-1] == "something else"
