"""A user's own worker module, as a backend team writes one: ``arq tests._user_worker.WorkerSettings``.

Its tools are its own (``tests._toolsets``); the model client is the built-in one, configured by the
environment the test gives the process (``ANTHROPIC_BASE_URL``, ``ANTHROPIC_API_KEY``), and so is Redis
(``REDIS_URL``). Only public names are imported.
"""

from __future__ import annotations

from typing import Any

import incremental.worker

from ._toolsets import registry


async def startup(state: dict[str, Any]) -> None:
    state["greeting"] = "hello from the worker's start-up hook"


WorkerSettings = incremental.worker.settings(tools={"test": registry}, on_startup=startup)
