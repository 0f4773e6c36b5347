"""Worker processes of a user's own module, started by ``arq`` the way a deployment starts them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """One ``arq MODULE.WorkerSettings`` process; ``log`` is its stderr once it has stopped."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.log = ""


@contextlib.asynccontextmanager
async def arq_worker(
    settings: str, *, redis_url: str, api_url: str, cwd: Path = ROOT, **env: str
) -> AsyncIterator[WorkerProcess]:
    """``arq settings`` with ``REDIS_URL`` and the built-in model client's environment pointed at the
    fake API (``ANTHROPIC_BASE_URL``, a test key); ``env`` adds variables (``INCREMENTAL_QUEUE``...)."""
    variables = {
        **os.environ,
        "REDIS_URL": redis_url,
        "ANTHROPIC_BASE_URL": api_url,
        "ANTHROPIC_API_KEY": "sk-test",
        **env,
    }
    variables.pop("INCREMENTAL_TOOLSETS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "arq", settings],
        cwd=cwd,
        env=variables,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    worker = WorkerProcess(proc)
    try:
        yield worker
    finally:
        if proc.poll() is None:
            proc.terminate()
        _, err = await asyncio.to_thread(proc.communicate, timeout=20)
        worker.log = err.decode(errors="replace")[-3000:]
