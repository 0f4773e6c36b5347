"""``incremental serve`` refuses bad set-ups with one line and an exit code, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

TOKEN = "t-" + "x" * 30


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "INCREMENTAL_TOKENS")}
    return subprocess.run(
        [sys.executable, "-m", "incremental", "serve", "--port", "0", *args],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def test_an_unreachable_redis_is_one_line_and_exit_1() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = serve("--redis", f"redis://127.0.0.1:{port}/0", "--workers", "0", f"--token={TOKEN}")
    assert done.returncode == 1
    assert done.stderr.startswith("incremental serve: cannot reach Redis at")
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_a_short_token_is_refused_before_anything_starts() -> None:
    done = serve("--token=short")
    assert done.returncode == 2
    assert "too short" in done.stderr and "Traceback" not in done.stderr


def test_a_taken_port_is_one_line_and_exit_1(redis_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env_args = ["--redis", redis_url, "--workers", "0", f"--token={TOKEN}"]
        done = subprocess.run(
            [sys.executable, "-m", "incremental", "serve", "--port", str(port), *env_args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
