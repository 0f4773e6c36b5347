"""arq `WorkerSettings`: `arq workers.settings.WorkerSettings` on any number of machines sharing a Redis.

Settings that matter, all from the environment so one image serves every role:

    REDIS_URL                     the Redis every worker and the service share
    INCREMENTAL_POLL_DELAY        seconds between queue polls when idle (default 0.005). arq polls; this is
                                  the upper bound on "enqueued -> started" latency. Lower costs Redis CPU.
    INCREMENTAL_MAX_JOBS          jobs one worker runs at once (default 32); tools are mostly IO-bound
    INCREMENTAL_JOB_TIMEOUT       seconds a job may run (default 900). arq redelivers a job whose worker
                                  died after this + 10 s, so a tool-only worker can use a small value
    INCREMENTAL_QUEUE             the queue this worker serves (default arq's). A tool declared with
                                  ``queue="gpu"`` is only picked up by workers started with that queue:
                                  one queue per tool class, each scaled on its own
    INCREMENTAL_TOOLSETS          extra tool sets runs may name: ``name=module:attr,...``
"""

from __future__ import annotations

import os
from typing import Any

from arq import func
from arq.connections import RedisSettings
from arq.constants import default_queue_name

from incremental.adapters._arq import (
    JOB_MONITOR_TURN,
    JOB_RUN_TOOL,
    JOB_STREAM_TURN,
    json_deserializer,
    json_serializer,
)

from .jobs import monitor_turn, run_tool, shutdown, startup, stream_turn

__all__ = ["WorkerSettings", "worker_options"]


def worker_options(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``arq.worker.Worker``; the class below and in-process workers share them."""
    options: dict[str, Any] = {
        "functions": [
            func(run_tool, name=JOB_RUN_TOOL, max_tries=5),
            func(stream_turn, name=JOB_STREAM_TURN, max_tries=5),
            func(monitor_turn, name=JOB_MONITOR_TURN, max_tries=5),
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "job_serializer": json_serializer,
        "job_deserializer": json_deserializer,
        "poll_delay": float(os.environ.get("INCREMENTAL_POLL_DELAY", "0.005")),
        "max_jobs": int(os.environ.get("INCREMENTAL_MAX_JOBS", "32")),
        "job_timeout": float(os.environ.get("INCREMENTAL_JOB_TIMEOUT", "900")),
        "queue_name": os.environ.get("INCREMENTAL_QUEUE", default_queue_name),
        "keep_result": 3600,
        "health_check_interval": 30,
    }
    options.update(overrides)
    return options


class WorkerSettings:
    """Read by the ``arq`` command line."""

    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    _options = worker_options()
    functions = _options["functions"]
    on_startup = _options["on_startup"]
    on_shutdown = _options["on_shutdown"]
    job_serializer = _options["job_serializer"]
    job_deserializer = _options["job_deserializer"]
    poll_delay = _options["poll_delay"]
    max_jobs = _options["max_jobs"]
    job_timeout = _options["job_timeout"]
    queue_name = _options["queue_name"]
    keep_result = _options["keep_result"]
    health_check_interval = _options["health_check_interval"]
