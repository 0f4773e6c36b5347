"""The dispatch pipeline: start runs, and the job coroutines arq workers run."""

from ._jobs import monitor_turn as monitor_turn_job
from ._jobs import run_tool as run_tool_job
from ._jobs import stream_turn as stream_turn_job
from ._run import RunConfig, start_run
from ._services import Services
from ._summary import summarize

__all__ = [
    "RunConfig",
    "Services",
    "monitor_turn_job",
    "run_tool_job",
    "start_run",
    "stream_turn_job",
    "summarize",
]
