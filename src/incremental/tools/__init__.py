"""The tool layer: define tools, check ready calls against them, and run them.

- ``ToolRegistry`` / ``ToolSpec``: tools, their input models, API schemas and dispatch policies;
- ``plan_call`` / ``refuse_rejected``: pure checks of a ready call (``Planned``), or the refusal the
  model reads when a call must never run;
- ``execute``: one call on a worker, with timeout and retries, always ending in a ``ToolResult``;
- ``simulated_registry``: tools that only take time, for replays with ``--simulate``.
"""

from ._context import ProgressSink, RetryableToolError, ToolContext, ToolError
from ._execute import execute
from ._plan import Planned, plan_call, refuse_rejected
from ._registry import Policy, ToolRegistry, ToolSpec
from ._results import ResultStatus, ToolResult
from ._simulate import simulated_registry

__all__ = [
    "Planned",
    "Policy",
    "ProgressSink",
    "ResultStatus",
    "RetryableToolError",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "ToolSpec",
    "execute",
    "plan_call",
    "refuse_rejected",
    "simulated_registry",
]
