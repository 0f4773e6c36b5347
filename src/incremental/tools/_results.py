"""``ToolResult``: what one tool_use id ends with, exactly once: JSON in Redis, tool_result for the API."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

__all__ = ["ResultStatus", "ToolResult"]

# ok         the tool ran and returned
# error      the tool ran and failed (raised, or a ToolError), after its retries
# timeout    the tool ran past its timeout
# refused    never ran: unknown tool, schema failure, input too large, invalid or truncated JSON
# cancelled  never ran (or was told to stop): the run or the turn was cancelled or failed
# missing    no result by the turn's deadline
# crashed    the worker running a non-idempotent tool died mid-run: it may or may not have taken effect
ResultStatus = Literal["ok", "error", "timeout", "refused", "cancelled", "missing", "crashed"]


@dataclass(frozen=True, slots=True)
class ToolResult:
    tool_use_id: str
    name: str
    status: ResultStatus
    content: str  # the text the model reads
    is_error: bool
    attempts: int = 0  # how many times the tool function was started for this id
    started_at: float | None = None  # wall clock (time.time()) of the first start
    finished_at: float | None = None

    def to_block(self) -> dict[str, Any]:
        """The ``tool_result`` content block for the next request."""
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": self.tool_use_id,
            "content": self.content,
        }
        if self.is_error:
            block["is_error"] = True
        return block

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolResult:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @classmethod
    def from_json(cls, text: str | bytes) -> ToolResult:
        return cls.from_dict(json.loads(text))

    def with_(self, **changes: Any) -> ToolResult:
        return replace(self, **changes)

    @classmethod
    def failure(cls, tool_use_id: str, name: str, status: ResultStatus, content: str) -> ToolResult:
        """A result that is an error the model should read (never ``ok``)."""
        return cls(tool_use_id=tool_use_id, name=name, status=status, content=content, is_error=True)
