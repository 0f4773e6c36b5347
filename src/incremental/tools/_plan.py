"""Planning (pure, no IO): a ready ``ToolCall`` becomes a ``Planned`` call, or a refusal the model reads.

Nothing is enqueued for a call that fails here: a call runs only once it is whole and valid. In order:

1. the tool name must be registered (or the registry must have a fallback);
2. the input's JSON size must be at most the tool's ``max_input_bytes``;
3. the input must validate against the tool's input model.

Each refusal is a ``ToolResult`` with status ``refused`` and ``is_error`` whose content says what was
wrong and that nothing ran. ``refuse_rejected`` does the same for calls the stream parser rejected
(invalid or truncated JSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..core import ToolCall, ToolRejected
from ._registry import Policy, ToolRegistry, ToolSpec
from ._results import ToolResult

__all__ = ["Planned", "check_input", "plan_call", "refuse_rejected", "summarize_validation_error"]

MAX_ERROR_LINES = 10


@dataclass(frozen=True)
class Planned:
    """A call that passed every check: ``args`` is the validated input as JSON-ready data."""

    call: ToolCall
    spec: ToolSpec
    args: dict[str, Any]
    concurrency_key: str | None

    @property
    def policy(self) -> Policy:
        return self.spec.policy


def plan_call(call: ToolCall, registry: ToolRegistry, workspace: Path | None = None) -> Planned | ToolResult:
    """Check one ready call against the registry: a ``Planned`` call, or a ``refused`` result.
    ``workspace``: the run's, for concurrency keys that name real files."""
    spec = registry.get(call.name)
    if spec is None:
        known = sorted(registry.names())
        available = ", ".join(known) if known else "none"
        return _refused(
            call.id,
            call.name,
            f"there is no tool named {call.name!r}; nothing was run. The available tools are: {available}.",
        )
    checked = check_input(spec, call.name, call.input)
    if isinstance(checked, str):
        return _refused(call.id, call.name, checked)
    try:
        key = spec.key_for(checked, workspace)
    except Exception as exc:  # a bug in the tool's key function must not escape the dispatcher
        return _refused(
            call.id,
            call.name,
            f"tool {call.name} could not be scheduled: its concurrency key failed "
            f"({type(exc).__name__}: {exc}); nothing was run.",
        )
    return Planned(call=call, spec=spec, args=checked.model_dump(mode="json"), concurrency_key=key)


def refuse_rejected(event: ToolRejected) -> ToolResult:
    """The ``refused`` result for a call the stream parser rejected: it never runs."""
    name = event.tool_name
    if event.status == "truncated":
        text = (
            f"your input for tool {name} was cut off before it ended ({event.reason}); nothing was run. "
            "Send the call again; if its input is long, split the work into smaller calls."
        )
    elif event.status == "invalid":
        text = (
            f"your input for tool {name} was not valid JSON ({event.reason}); nothing was run. "
            "Send the call again with the whole input as one valid JSON object."
        )
    else:
        text = f"your call to tool {name} was rejected ({event.reason}); nothing was run."
    return _refused(event.tool_id, name, text)


def check_input(spec: ToolSpec, name: str, args: Any) -> BaseModel | str:
    """The validated input model, or the text that says why the input is refused.

    ``name`` is the name the model called (it differs from ``spec.name`` for a fallback).
    """
    try:
        size = len(json.dumps(args, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        return f"your input for tool {name} is not JSON data ({exc}); nothing was run."
    if size > spec.max_input_bytes:
        return (
            f"your input for tool {name} is {size:,} bytes of JSON, over the tool's limit of "
            f"{spec.max_input_bytes:,} bytes; nothing was run. Split the work into smaller calls."
        )
    try:
        return spec.input_model.model_validate(args)
    except ValidationError as exc:
        return (
            f"your input for tool {name} does not match its input schema; nothing was run. "
            f"Fix these and call it again:\n{summarize_validation_error(exc)}"
        )


def summarize_validation_error(exc: ValidationError, limit: int = MAX_ERROR_LINES) -> str:
    """Pydantic's errors as ``field: message`` lines, at most ``limit`` of them."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    lines = []
    for err in errors[:limit]:
        where = ".".join(str(part) for part in err["loc"]) or "(input)"
        lines.append(f"- {where}: {err['msg']}")
    if len(errors) > limit:
        lines.append(f"- ... and {len(errors) - limit} more")
    return "\n".join(lines)


def _refused(tool_use_id: str, name: str, content: str) -> ToolResult:
    return ToolResult.failure(tool_use_id, name, "refused", content)
