"""What a running tool gets besides its input (``ToolContext``), and the errors a tool raises.

::

    IncrementalError           (incremental.core)
    └── ToolError              the tool failed in a way the model should read; never retried
        └── RetryableToolError transient (a busy service, a lock): retried up to ``spec.retries`` times

Any other exception a tool raises is a bug or an outage: it becomes an ``error`` result that names the
exception type, and it is not retried.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import RetryableToolError, ToolError

__all__ = ["ProgressSink", "RetryableToolError", "ToolContext", "ToolError"]

logger = logging.getLogger(__name__)

# Receives {"stage": str, "fraction": float | None, "message": str | None} for each progress report.
ProgressSink = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class ToolContext:
    """One run of one tool call: who it is, where it works, and how it reports progress.

    ``state`` is shared by every tool run of a worker (clients, pools); ``workspace`` is the directory
    file tools work in; ``cancel_event`` is set when the run or the turn is cancelled, for long tools
    that want to stop early. ``attempt`` is 1 on the first try and counts retries.
    """

    tool_use_id: str
    name: str
    run_id: str = ""
    attempt: int = 1
    workspace: Path | None = None
    state: dict[str, Any] = field(default_factory=dict)
    progress_sink: ProgressSink | None = None
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def progress(self, stage: str, fraction: float | None = None, message: str | None = None) -> None:
        """Report progress: ``stage`` names the step, ``fraction`` (0 to 1) how far it is, if known.

        Progress is best effort: a sink that fails is logged and does not fail the tool.
        """
        if not isinstance(stage, str) or not stage:
            raise ValueError(f"progress stage must be a non-empty string, got {stage!r}")
        if fraction is not None:
            if isinstance(fraction, bool) or not isinstance(fraction, int | float):
                raise ValueError(f"progress fraction must be a number from 0 to 1, got {fraction!r}")
            if math.isnan(fraction) or not 0.0 <= fraction <= 1.0:
                raise ValueError(f"progress fraction must be from 0 to 1, got {fraction!r}")
            fraction = float(fraction)
        if self.progress_sink is None:
            return
        try:
            await self.progress_sink({"stage": stage, "fraction": fraction, "message": message})
        except Exception:
            logger.warning("progress sink failed for %s (%s)", self.tool_use_id, self.name, exc_info=True)

    @property
    def cancelled(self) -> bool:
        """True once the run or the turn was cancelled: a long tool should stop at its next step."""
        return self.cancel_event.is_set()
