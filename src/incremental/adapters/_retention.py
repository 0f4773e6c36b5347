"""How long a finished run stays in Redis, and what of it stays: ``Retention``.

While a run is running, each of its keys expires ``TurnStore.TTL_S`` (7 days) after its last write, as
it always has. When the run ends, its ``Retention`` takes over:

``retention_s``   every key of the run expires this long after the run ended (default a day): its
                  record (``inc:run:{run}``), its conversation, its results ledger, its event log. A
                  write that comes after the end (a tool that reports late) gets what the record has
                  left, never more, so nothing of the run outlives it. ``None``: off (keys keep
                  expiring 7 days after their last write).
``trim_after_s``  this long after the end (default 5 minutes) the run is trimmed: its event log keeps
                  every milestone and every text delta, and of the high-volume previews only the last
                  of each tool field and each tool's last progress report; the milestones stream goes
                  (the log now is its milestones, plus those); the records only a running run needs
                  (turn records, start tokens, generations, held jobs, cancels, stored tool inputs,
                  execution counters, the control channel) are deleted. ``None``: never trimmed.

What stays is what readers of a finished run use, and they read it as before: ``GET /v1/runs/{id}``
and resumable SSE fold the trimmed log to the same state (the same text, fields, progress, tools and
timings: only superseded previews are gone), ``runner.attach(run_id).result()`` has the conversation
and every result, ``cancel_tool`` still finds the run's tool ids.

The run takes its retention from the process that started it (written into its record), so whichever
process ends it (a worker, a runner's cancel, the service) applies the same one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_RETENTION_S",
    "DEFAULT_TRIM_AFTER_S",
    "RUN_TTL_LUA",
    "Retention",
    "compact",
    "run_key",
]

DEFAULT_RETENTION_S = 24 * 3600.0
DEFAULT_TRIM_AFTER_S = 300.0
_OFF = "off"


def run_key(run_id: str) -> str:
    """The run's record (``TurnStore``): what the retention of each of its keys is read from."""
    return f"inc:run:{run_id}"


# Lua, for every script that writes a key of a run after it may have ended: the TTL to give that key.
# ``ttl`` while the run runs (or has no record); once it ended under a retention (``retained``), what
# its record has left, so that a late write never outlives the run.
RUN_TTL_LUA = """
local function run_ttl(run, ttl)
  if redis.call('HEXISTS', run, 'retained') == 1 then
    local left = redis.call('TTL', run)
    if left > 0 then return left end
  end
  return ttl
end
"""

# Kinds of which a finished run's log keeps only the last per key: each is a preview superseded by
# the next one of the same key (RunView keeps the last value of each tool field, the last progress).
_LAST_WINS = {"tool_field_completed": ("tool_use_id", "field"), "tool_progress": ("tool_use_id",)}


def _seconds(value: float | str | None, variable: str, default: float) -> float | None:
    """Seconds from an option or its variable; ``None`` for ``off``."""
    given: Any = value if value is not None else os.environ.get(variable) or default
    if isinstance(given, str):
        if given.strip().lower() == _OFF:
            return None
        given = float(given)
    if given is None:
        return None
    seconds = float(given)
    if not seconds >= 0 or math.isinf(seconds):
        raise ValueError(f"{variable}: expected a number of seconds (or 'off'), got {given!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class Retention:
    """What happens to a run's keys once it has ended (see the module docstring). ``None``: off."""

    retention_s: float | None = DEFAULT_RETENTION_S
    trim_after_s: float | None = DEFAULT_TRIM_AFTER_S

    @classmethod
    def configure(
        cls, retention_s: float | str | None = None, trim_after_s: float | str | None = None
    ) -> Retention:
        """The options as given, else ``INCREMENTAL_RETENTION`` and ``INCREMENTAL_TRIM_AFTER`` (seconds,
        or ``off``), else the defaults."""
        return cls(
            retention_s=_seconds(retention_s, "INCREMENTAL_RETENTION", DEFAULT_RETENTION_S),
            trim_after_s=_seconds(trim_after_s, "INCREMENTAL_TRIM_AFTER", DEFAULT_TRIM_AFTER_S),
        )

    @classmethod
    def off(cls) -> Retention:
        """Keys expire 7 days after their last write and nothing is trimmed: the behaviour before."""
        return cls(None, None)

    def record(self) -> dict[str, str]:
        """The fields a new run's record carries, so whoever ends it applies this retention."""
        return {"retention_s": _text(self.retention_s), "trim_after_s": _text(self.trim_after_s)}

    @classmethod
    def of_run(cls, record: Mapping[str, Any], default: Retention) -> Retention:
        """The retention a run's record carries (``default`` for a run recorded without one)."""
        if "retention_s" not in record and "trim_after_s" not in record:
            return default
        return cls(_number(record.get("retention_s")), _number(record.get("trim_after_s")))

    @property
    def ttl_s(self) -> int | None:
        """``retention_s`` as Redis's EXPIRE takes it (whole seconds, at least 1)."""
        return None if self.retention_s is None else max(1, math.ceil(self.retention_s))

    @property
    def trims(self) -> bool:
        """Whether a finished run is trimmed before its keys expire."""
        return self.trim_after_s is not None and (
            self.retention_s is None or self.trim_after_s < self.retention_s
        )


def _text(value: float | None) -> str:
    return _OFF if value is None else repr(float(value))


def _number(value: Any) -> float | None:
    if value is None or str(value) == _OFF:
        return None
    return float(value)


def compact(entries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The entries a finished run's log keeps, in order: all but the superseded previews (a tool
    field's or a tool's progress report that a later one of the same key replaces).

    Folding what is kept gives the same ``RunView`` as folding everything, and so does folding what is
    kept after any offset on top of a view of everything up to it: a reader resuming anywhere ends with
    the same state. ``entries`` are (stream id, the event's JSON)."""
    last: dict[tuple[Any, ...], int] = {}
    superseded: set[int] = set()
    for position, (_, raw) in enumerate(entries):
        if '"tool_field_completed"' not in raw and '"tool_progress"' not in raw:
            continue  # the common case, without parsing
        event = json.loads(raw)
        fields = _LAST_WINS.get(event.get("kind"))
        if fields is None:
            continue
        key = (event.get("kind"), *(str(event.get(f)) for f in fields))
        if key in last:
            superseded.add(last[key])
        last[key] = position
    return [entry for position, entry in enumerate(entries) if position not in superseded]
