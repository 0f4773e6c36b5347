"""Helpers for the fault tests and the soak scripts: runs on a Redis we can take down, workers we can kill."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from incremental.adapters._eventlog import EventLog

from ._streams import (
    MESSAGE_STOP,
    frame,
    json_delta,
    message_delta,
    message_start,
    stop,
    text_delta,
    text_start,
    tool_start,
)

ROOT = Path(__file__).resolve().parent.parent
GO = [{"role": "user", "content": "go"}]
REQUEST: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 1024}


def tool_turn(calls: list[tuple[str, str, dict[str, Any]]], *, gap_s: float = 0.0) -> bytes:
    """A turn: text, then each (id, name, input) as a whole tool_use block, then (``gap_s`` later, by
    its timing comment) message_stop with tool_use. Returns the SSE bytes."""
    out = [frame(o) for o in (message_start(), text_start(0), text_delta(0, "On it."), stop(0))]
    for i, (tool_id, name, value) in enumerate(calls, start=1):
        out += [frame(tool_start(i, tool_id, name)), frame(json_delta(i, json.dumps(value))), frame(stop(i))]
    out.append(frame(message_delta("tool_use"), t=gap_s if gap_s else None))
    out.append(frame(MESSAGE_STOP))
    return b"".join(out)


def final_turn(text: str = "Done.") -> bytes:
    objs = [
        message_start("msg_final"),
        text_start(0),
        text_delta(0, text),
        stop(0),
        message_delta("end_turn"),
    ]
    return b"".join(frame(o) for o in [*objs, MESSAGE_STOP])


def worker_process(
    redis_url: str, api_url: str, *, supervised: bool = True, **env: str
) -> subprocess.Popen[bytes]:
    """A worker of the user's module (``tests/_user_worker.py``): ``incremental worker`` (supervised), or
    ``arq`` itself."""
    variables = {
        **os.environ,
        "REDIS_URL": redis_url,
        "ANTHROPIC_BASE_URL": api_url,
        "ANTHROPIC_API_KEY": "sk-test",
        **env,
    }
    variables.pop("INCREMENTAL_TOOLSETS", None)
    command = ["-m", "incremental", "worker"] if supervised else ["-m", "arq"]
    return subprocess.Popen(
        [sys.executable, *command, "tests._user_worker.WorkerSettings"],
        cwd=ROOT,
        env=variables,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> str:
    """Terminate (then kill) a worker process; its stderr's tail."""
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err.decode(errors="replace")[-3000:]


async def wait_event(
    log: EventLog, run_id: str, kinds: set[str], after: str = "0-0", **match: Any
) -> tuple[str, dict[str, Any]]:
    """The next event of one of ``kinds`` matching ``match`` (bounded by the caller's timeout)."""
    while True:
        for entry_id, event in await log.read(run_id, after, block_ms=500):
            after = entry_id
            if event["kind"] in kinds and all(event.get(k) == v for k, v in match.items()):
                return entry_id, event


async def exited(proc: subprocess.Popen[bytes]) -> int:
    """Wait for a process to exit (bounded by the caller's timeout)."""
    return await asyncio.to_thread(proc.wait)
