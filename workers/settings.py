"""The deployment entry point: ``arq workers.settings.WorkerSettings``, from a checkout of this repo.

It serves the app-builder tool set (``toolset="app"``) plus any named in ``INCREMENTAL_TOOLSETS``,
with the built-in model client (``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``). Every tunable is an
environment variable documented in ``incremental.worker``; your own worker module calls
``incremental.worker.settings(tools=...)`` the same way.
"""

from __future__ import annotations

import incremental.worker
from incremental.examples.app_builder.tools import registry as app_registry

__all__ = ["WorkerSettings"]

WorkerSettings = incremental.worker.settings(tools={"app": app_registry})
