"""Soak: slow and idle clients against ``incremental serve``, while a well-behaved client keeps asking.

    .venv/bin/python scripts/soak_clients.py                 # 30 s: 500 slowloris, 1,100 idle connections
    .venv/bin/python scripts/soak_clients.py --seconds 60 --slow 800 --idle 2000

The service runs as a process of its own (a private redis-server, two in-process workers) with its file
limit lowered to ``--fd-limit`` (1024), on loopback. Three kinds of client, all on loopback:

    slowloris  sends a request's headers a byte every 2 s, never finishing them
    idle       connects and sends nothing
    good       GET /healthz and GET /v1/runs every 0.2 s, each with a 5 s timeout

An attacker whose connection is closed opens another, so the pressure stays on for the whole soak. What
is reported: the good client's answers (how many, how many failed, latency), how many attacking
connections the service closed, the most descriptors the service held, and how much it logged (and how
many accept() errors). It stops by itself after ``--seconds``. Exit status 1 if a good request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _limit_files(limit: int) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))


async def slowloris(host: str, port: int, stop: float, counts: Counter[str]) -> None:
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            counts["slow: connect failed"] += 1
            await asyncio.sleep(0.5)
            continue
        counts["slow: opened"] += 1
        try:
            writer.write(b"GET /v1/runs HTTP/1.1\r\nHost: soak\r\n")
            await writer.drain()
            while time.monotonic() < stop:
                writer.write(b"X")
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1), 2.0) == b"":
                        break
                except TimeoutError:
                    continue
            else:
                writer.close()
                return
            counts["slow: closed by the service"] += 1
        except OSError:
            counts["slow: closed by the service"] += 1
        writer.close()


async def idle(host: str, port: int, stop: float, counts: Counter[str]) -> None:
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            counts["idle: connect failed"] += 1
            await asyncio.sleep(0.5)
            continue
        counts["idle: opened"] += 1
        try:
            left = stop - time.monotonic()
            if left > 0 and await asyncio.wait_for(reader.read(1), left) == b"":
                counts["idle: closed by the service"] += 1
        except TimeoutError:
            pass
        except OSError:
            counts["idle: closed by the service"] += 1
        writer.close()


async def good(url: str, token: str, stop: float, latencies: list[float], counts: Counter[str]) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        while time.monotonic() < stop:
            for path, headers in (("/healthz", {}), ("/v1/runs", {"Authorization": f"Bearer {token}"})):
                began = time.monotonic()
                try:
                    response = await client.get(path, headers=headers)
                    ok = response.status_code == 200
                except httpx.HTTPError as exc:
                    ok = False
                    counts[f"good: {type(exc).__name__}"] += 1
                counts["good: ok" if ok else "good: failed"] += 1
                latencies.append(time.monotonic() - began)
            await asyncio.sleep(0.2)


async def sample_fds(pid: int, stop: float, most: list[int]) -> None:
    while time.monotonic() < stop:
        try:
            most[0] = max(most[0], len(os.listdir(f"/proc/{pid}/fd")))
        except OSError:
            pass
        await asyncio.sleep(0.25)


async def soak(args: argparse.Namespace) -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.slow + args.idle + 256
    if hard < want:
        print(f"this process may open {hard} files; it needs {want}: lower --slow/--idle", file=sys.stderr)
        return 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    token = "soak-" + secrets.token_hex(12)
    log = Path(tempfile.mkdtemp(prefix="incremental-soak-clients-")) / "serve.log"
    env = {**os.environ}
    env.pop("REDIS_URL", None)
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "incremental", "serve", "--port", "0", "--token", f"soak={token}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            preexec_fn=lambda: _limit_files(args.fd_limit),
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
            url = line.decode().split("incremental serve: ", 1)[1].strip().rstrip("/")
            host, port = url.removeprefix("http://").rsplit(":", 1)
            began = time.monotonic()
            stop = began + args.seconds
            counts: Counter[str] = Counter()
            latencies: list[float] = []
            most = [0]
            tasks = [asyncio.create_task(slowloris(host, int(port), stop, counts)) for _ in range(args.slow)]
            tasks += [asyncio.create_task(idle(host, int(port), stop, counts)) for _ in range(args.idle)]
            tasks += [
                asyncio.create_task(good(url, token, stop, latencies, counts)),
                asyncio.create_task(sample_fds(proc.pid, stop, most)),
            ]
            await asyncio.gather(*tasks)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    text = log.read_text(errors="replace")
    latencies.sort()
    report = {
        "seconds": args.seconds,
        "service_file_limit": args.fd_limit,
        "slowloris_clients": args.slow,
        "idle_clients": args.idle,
        "counts": dict(sorted(counts.items())),
        "good_latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "p99": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1) if latencies else None,
            "max": round(latencies[-1] * 1000, 1) if latencies else None,
        },
        "service_most_fds": most[0],
        "service_log_bytes": len(text.encode()),
        "service_log_accept_errors": text.count("socket.accept() out of system resource"),
        "log": str(log),
    }
    print(json.dumps(report, indent=2))
    return 1 if counts["good: failed"] else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--slow", type=int, default=500, help="slowloris clients")
    parser.add_argument("--idle", type=int, default=1100, help="idle clients")
    parser.add_argument("--fd-limit", type=int, default=1024, help="the service's file limit")
    return asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
