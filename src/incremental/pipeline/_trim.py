"""Trimming a finished run: the job its end schedules (``Retention.trim_after_s`` later).

``schedule_trim`` runs where a run ends (``end_run``); ``trim_run`` is the job. It drops the records
only a running run needs (``TurnStore.trim_run``), then shrinks the event log to what its readers fold
(``EventLog.trim``); what stays keeps expiring with the run's record. Trimming twice does nothing more.
"""

from __future__ import annotations

from ._services import Services

__all__ = ["schedule_trim", "trim_run"]


async def schedule_trim(svc: Services, run_id: str) -> bool:
    """Enqueue the run's trim, if its retention trims (deferred by ``trim_after_s``). One per run."""
    retention, queue = await svc.store.retention_of(run_id)
    if not retention.trims or retention.trim_after_s is None:
        return False
    return await svc.enqueue_trim(run_id, retention.trim_after_s, queue=queue)


async def trim_run(svc: Services, run_id: str) -> str:
    ttl = await svc.store.trim_run(run_id)
    if ttl is None:
        return "not trimmed: the run is gone or still running"
    counts = await svc.events.trim(run_id, ttl if ttl > 0 else None)
    if counts is None:
        return "trimmed (its log was trimmed before)"
    before, after = counts
    return f"trimmed: its log went from {before} entries to {after}"
