"""The dispatch pipeline: the jobs arq workers run, the one reducer of a run's log, and run control.

``cancel_run``, ``cancel_tool``, ``pause_run`` and ``resume_run`` control a run from anywhere that has
``Services`` over its Redis (an HTTP handler, a CLI, a ``Run`` handle). Users start and follow runs
through ``incremental.Runner``; workers come from ``incremental.worker.settings``.
"""

from ._control import cancel_run, cancel_tool, pause_run, resume_run
from ._jobs import monitor_turn as monitor_turn_job
from ._jobs import run_tool as run_tool_job
from ._jobs import stream_turn as stream_turn_job
from ._run import RequestError, RunConfig, check_request, start_run
from ._services import Services, UnknownToolsetError
from ._view import IN_FLIGHT, RunView, ToolView, TurnView, summarize

__all__ = [
    "IN_FLIGHT",
    "RequestError",
    "RunConfig",
    "RunView",
    "Services",
    "ToolView",
    "TurnView",
    "UnknownToolsetError",
    "cancel_run",
    "cancel_tool",
    "check_request",
    "monitor_turn_job",
    "pause_run",
    "resume_run",
    "run_tool_job",
    "start_run",
    "stream_turn_job",
    "summarize",
]
