"""``GET /metrics`` (Prometheus text, via prometheus-client) and ``GET /v1/stats`` (the page's panel).

Two sources: the pipeline's figures, which every worker adds to in Redis (``adapters._metrics``), read
at each scrape and exposed as metric families; and this process's own SSE counters, which live in a
registry of the app's own (never the global one, so two apps in one process do not collide).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..adapters._metrics import Histogram, MetricsSnapshot

if TYPE_CHECKING:
    from ._fanout import Fanout

__all__ = ["ServiceMetrics"]


def _hist(name: str, doc: str, hist: Histogram, labels: list[str] | None = None) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["tool"] if labels else None)
    family.add_metric(labels or [], buckets=hist.cumulative(), sum_value=hist.sum)
    return family


class _PipelineCollector:
    """Yields the families of the last snapshot read from Redis."""

    def __init__(self) -> None:
        self.snapshot: MetricsSnapshot | None = None
        self.fanout: Fanout | None = None

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        if snap is None:
            return
        durations = HistogramMetricFamily(
            "incremental_tool_duration_seconds", "Tool run time, start to result, by tool", labels=["tool"]
        )
        for tool, hist in snap.tool_duration.items():
            durations.add_metric([tool], buckets=hist.cumulative(), sum_value=hist.sum)
        yield durations
        results = CounterMetricFamily(
            "incremental_tool_results",
            "Tool results by tool and status (ok is success)",
            labels=["tool", "status"],
        )
        for (tool, status), n in sorted(snap.results.items()):
            results.add_metric([tool, status], n)
        yield results
        rate = GaugeMetricFamily("incremental_tool_success_ratio", "Share of tool results that are ok")
        success = snap.success_rate()
        rate.add_metric([], success if success is not None else float("nan"))
        yield rate
        yield _hist(
            "incremental_dispatch_latency_seconds",
            "From a tool call becoming ready (its content_block_stop) to its start on a worker",
            snap.dispatch_latency,
        )
        yield _hist(
            "incremental_continuation_latency_seconds",
            "From a turn's last result to the next model request",
            snap.continuation_latency,
        )
        saved = CounterMetricFamily(
            "incremental_time_saved_seconds",
            "Seconds each turn finished before dispatch-after-stream would have (sum over turns)",
        )
        saved.add_metric([], snap.saved_s)
        yield saved
        active = GaugeMetricFamily("incremental_runs_in_flight", "Runs started and not yet ended")
        active.add_metric([], snap.runs_active)
        yield active
        finished = CounterMetricFamily(
            "incremental_runs_finished", "Runs ended, by final state", labels=["state"]
        )
        for run_state, n in sorted(snap.runs_finished.items()):
            finished.add_metric([run_state], n)
        yield finished
        if self.fanout is not None:
            feeds = GaugeMetricFamily("incremental_sse_feeds", "Runs this process is reading for watchers")
            feeds.add_metric([], len(self.fanout.feeds))
            yield feeds


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sse_open = Gauge("incremental_sse_connections", "Open event streams", registry=self.registry)
        self.sse_events = Counter("incremental_sse_events", "Events sent to watchers", registry=self.registry)
        self.sse_cut_off = Counter(
            "incremental_sse_cut_off", "Watchers cut off for falling behind", registry=self.registry
        )
        self.snapshots = Counter(
            "incremental_sse_snapshots", "Snapshots sent for trimmed offsets", registry=self.registry
        )
        self._pipeline = _PipelineCollector()
        self.registry.register(self._pipeline)

    def exposition(self, snapshot: MetricsSnapshot, fanout: Fanout | None = None) -> tuple[bytes, str]:
        self._pipeline.snapshot = snapshot
        self._pipeline.fanout = fanout
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    @staticmethod
    def stats(snapshot: MetricsSnapshot) -> dict[str, Any]:
        tools = {}
        for tool, hist in snapshot.tool_duration.items():
            tools[tool] = {
                "count": hist.count,
                "mean_s": round(hist.mean, 4) if hist.mean is not None else None,
                "success_rate": snapshot.success_rate(tool),
            }
        for tool, _status in snapshot.results:
            tools.setdefault(tool, {"count": 0, "mean_s": None, "success_rate": snapshot.success_rate(tool)})
        return {
            "tools": tools,
            "success_rate": snapshot.success_rate(),
            "saved_s": round(snapshot.saved_s, 3),
            "turns": snapshot.turns,
            "runs_in_flight": snapshot.runs_active,
            "runs_finished": snapshot.runs_finished,
            "dispatch_latency_mean_s": snapshot.dispatch_latency.mean,
            "continuation_latency_mean_s": snapshot.continuation_latency.mean,
        }
