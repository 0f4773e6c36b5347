"""The dispatch pipeline: start runs, and the job coroutines arq workers (or ``LocalServices``) run.

``cancel_run``, ``cancel_tool``, ``pause_run`` and ``resume_run`` control a run from anywhere that has
its ``Services`` (an HTTP handler, a CLI, a test), on Redis or in process alike.
"""

from ._control import cancel_run, cancel_tool, pause_run, resume_run
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
    "cancel_run",
    "cancel_tool",
    "monitor_turn_job",
    "pause_run",
    "replay_local",
    "resume_run",
    "run_local",
    "run_tool_job",
    "start_run",
    "stream_turn_job",
    "summarize",
]
