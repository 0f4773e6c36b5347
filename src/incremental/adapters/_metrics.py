"""Service-wide metrics, kept in Redis so every worker and every service process adds to the same figures.

The event log feeds them: each appended event that carries a measurement adds to a counter or a
histogram here, in the same Lua call as the append (``ops`` are the append script's last arguments).
``read()`` returns them as plain numbers; the service turns them into Prometheus metrics and into the
dashboard's panel.

Keys (no TTL: these are the service's running totals)::

    inc:metrics:tools                   set    tool names seen
    inc:metrics:hist:{name}[:{tool}]    hash   b0..bN (count per bucket, not cumulative), sum, count
    inc:metrics:results                 hash   "{tool}\\x1f{status}" -> count
    inc:metrics:counters                hash   saved_s, turns, runs:{state}
    inc:metrics:runs_active             set    run ids started and not yet ended
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from ..events import RUN_FINAL_KINDS

__all__ = ["BUCKETS", "METRICS_LUA", "Histogram", "MetricsSnapshot", "MetricsStore"]

# Applies ``MetricsStore.ops`` given as the script's arguments from ``first`` on.
METRICS_LUA = """
local function apply_ops(first, last)
  for i = first, last - 3, 4 do
    local op, key, name, amount = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    if op == 'hincrby' then
      redis.call('HINCRBY', key, name, amount)
    elseif op == 'hincrbyfloat' then
      redis.call('HINCRBYFLOAT', key, name, amount)
    elseif op == 'sadd' then
      redis.call('SADD', key, name)
    elseif op == 'srem' then
      redis.call('SREM', key, name)
    end
  end
end
local function apply_metrics(first)
  apply_ops(first, #ARGV)
end
"""

# Seconds. Wide enough for ~1 ms dispatch latencies and minute-long tools alike.
BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)

_PREFIX = "inc:metrics"
_TOOL_FINAL = frozenset({"tool_completed", "tool_failed", "tool_cancelled", "tool_refused"})
_RUN_FINAL = RUN_FINAL_KINDS
_SEP = "\x1f"


@dataclass
class Histogram:
    """Counts per bucket (not cumulative; the last one is +Inf), their sum and count."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    sum: float = 0.0
    count: int = 0

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs as Prometheus wants them, ending with ``+Inf``."""
        out, total = [], 0
        for bound, n in zip([*map(str, BUCKETS), "+Inf"], self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


@dataclass
class MetricsSnapshot:
    tool_duration: dict[str, Histogram]
    results: dict[tuple[str, str], int]  # (tool, status) -> count
    dispatch_latency: Histogram
    continuation_latency: Histogram
    saved_s: float
    turns: int
    runs_active: int
    runs_finished: dict[str, int]  # final state -> count

    def success_rate(self, tool: str | None = None) -> float | None:
        chosen = [(n, s) for (t, s), n in self.results.items() if tool is None or t == tool]
        total = sum(n for n, _ in chosen)
        return sum(n for n, s in chosen if s == "ok") / total if total else None


def _hist_key(name: str, label: str | None = None) -> str:
    return f"{_PREFIX}:hist:{name}" + (f":{label}" if label else "")


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class MetricsStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def ops(self, event: dict[str, Any]) -> list[str]:
        """What ``event`` adds to the metrics, as flat ``op, key, field, amount`` quadruples (``op`` one
        of hincrby, hincrbyfloat, sadd, srem; ``amount`` unused by the set ops). The event log's append
        script applies them in the same call (``METRICS_LUA``); nothing when the event carries no figure.
        """
        out: list[str] = []
        kind = event["kind"]
        if kind in _TOOL_FINAL:
            started, finished = _float(event.get("started_at")), _float(event.get("finished_at"))
            # Only calls that ran have a tool set's name; a refused one may carry any name the model
            # wrote, which must not become a label of its own.
            tool = str(event.get("name") or "?") if started is not None else "_not_run"
            out += ["sadd", f"{_PREFIX}:tools", tool, ""]
            out += ["hincrby", f"{_PREFIX}:results", f"{tool}{_SEP}{event.get('status') or '?'}", "1"]
            if started is not None and finished is not None:
                out += self._observe(_hist_key("tool_duration", tool), finished - started)
        elif kind == "tool_started":
            ready = _float(event.get("ready_at"))
            if ready is not None:
                out += self._observe(_hist_key("dispatch_latency"), event["ts"] - ready)
        elif kind == "request_sent":
            since = _float(event.get("since_continue_s"))
            if since is not None:
                out += self._observe(_hist_key("continuation_latency"), since)
        elif kind == "turn_completed":
            saved = _float(event.get("saved_s"))
            if saved is not None:
                out += ["hincrbyfloat", f"{_PREFIX}:counters", "saved_s", repr(saved)]
                out += ["hincrby", f"{_PREFIX}:counters", "turns", "1"]
        elif kind == "run_started":
            out += ["sadd", f"{_PREFIX}:runs_active", event["run_id"], ""]
        elif kind in _RUN_FINAL:
            out += ["srem", f"{_PREFIX}:runs_active", event["run_id"], ""]
            out += ["hincrby", f"{_PREFIX}:counters", f"runs:{event.get('state') or kind}", "1"]
        return out

    @staticmethod
    def _observe(key: str, value: float) -> list[str]:
        value = max(0.0, value)
        return [
            *("hincrby", key, f"b{bisect.bisect_left(BUCKETS, value)}", "1"),
            *("hincrbyfloat", key, "sum", repr(value)),
            *("hincrby", key, "count", "1"),
        ]

    async def read(self) -> MetricsSnapshot:
        tools = sorted(_s(t) for t in await self.redis.smembers(f"{_PREFIX}:tools"))  # type: ignore[misc]
        async with self.redis.pipeline(transaction=False) as pipe:
            for tool in tools:
                pipe.hgetall(_hist_key("tool_duration", tool))
            pipe.hgetall(_hist_key("dispatch_latency"))
            pipe.hgetall(_hist_key("continuation_latency"))
            pipe.hgetall(f"{_PREFIX}:results")
            pipe.hgetall(f"{_PREFIX}:counters")
            pipe.scard(f"{_PREFIX}:runs_active")
            replies = await pipe.execute()
        *durations, dispatch, continuation, results, counters, active = replies
        counters = {_s(k): _s(v) for k, v in counters.items()}
        parsed_results: dict[tuple[str, str], int] = {}
        for key, value in results.items():
            tool, _, status = _s(key).partition(_SEP)
            parsed_results[(tool, status)] = int(value)
        return MetricsSnapshot(
            tool_duration={tool: _hist(h) for tool, h in zip(tools, durations, strict=True)},
            results=parsed_results,
            dispatch_latency=_hist(dispatch),
            continuation_latency=_hist(continuation),
            saved_s=float(counters.get("saved_s") or 0.0),
            turns=int(counters.get("turns") or 0),
            runs_active=int(active),
            runs_finished={k[5:]: int(v) for k, v in counters.items() if k.startswith("runs:")},
        )


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _hist(raw: dict[Any, Any]) -> Histogram:
    data = {_s(k): _s(v) for k, v in raw.items()}
    hist = Histogram()
    for i in range(len(hist.counts)):
        hist.counts[i] = int(data.get(f"b{i}") or 0)
    hist.sum = float(data.get("sum") or 0.0)
    hist.count = int(data.get("count") or 0)
    return hist
