"""The dispatch pipeline: start runs, and the job coroutines arq workers (or ``LocalServices``) run."""

from ._jobs import monitor_turn as monitor_turn_job
from ._jobs import run_tool as run_tool_job
from ._jobs import stream_turn as stream_turn_job
from ._local import LocalServices, MemoryEventLog, MemoryTurnStore, replay_local, run_local
from ._run import RunConfig, start_run
from ._services import Services
from ._summary import summarize

__all__ = [
    "LocalServices",
    "MemoryEventLog",
    "MemoryTurnStore",
    "RunConfig",
    "Services",
    "monitor_turn_job",
    "replay_local",
    "run_local",
    "run_tool_job",
    "start_run",
    "stream_turn_job",
    "summarize",
]
