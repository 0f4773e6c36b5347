"""Running one tool call: ``execute`` validates, runs under a timeout, retries, and always returns a result.

Outcomes (the ``ToolResult.status``):

- ``ok``        the function returned: a ``str`` is the content as is, a dict or list compact JSON,
                None the text ``ok``, a pydantic model its JSON;
- ``refused``   the input did not validate (or was too large): the function never ran;
- ``timeout``   an attempt ran past ``spec.timeout_s``;
- ``error``     ``ToolError`` (its message), any other exception (``TypeName: message``), or a
                ``RetryableToolError`` still failing after ``spec.retries`` extra attempts;
- ``cancelled`` ``ctx.cancel_event`` was set before an attempt (the function was not started again).

Only ``asyncio.CancelledError`` escapes: the task running the call was cancelled, and the caller owns
what that means.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from pydantic import BaseModel

from ._context import RetryableToolError, ToolContext, ToolError
from ._plan import check_input
from ._registry import ToolSpec
from ._results import ResultStatus, ToolResult

__all__ = ["MAX_BACKOFF_S", "execute"]

MAX_BACKOFF_S = 30.0
MAX_ERROR_CHARS = 2000


async def execute(spec: ToolSpec, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    """Run ``spec`` on ``args`` for the call ``ctx`` describes; never raises but ``CancelledError``."""
    name, tool_use_id = ctx.name, ctx.tool_use_id
    checked = check_input(spec, name, args)
    if isinstance(checked, str):
        return ToolResult.failure(tool_use_id, name, "refused", checked).with_(finished_at=time.time())

    started_at: float | None = None
    attempts = 0

    def done(status: ResultStatus, content: str) -> ToolResult:
        return ToolResult(
            tool_use_id=tool_use_id,
            name=name,
            status=status,
            content=content,
            is_error=status != "ok",
            attempts=attempts,
            started_at=started_at,
            finished_at=time.time(),
        )

    while True:
        if ctx.cancelled:
            if attempts == 0:
                return done("cancelled", f"tool {name} was cancelled before it ran; nothing was done.")
            return done(
                "cancelled",
                f"tool {name} was cancelled after attempt {attempts} failed; it was not tried again.",
            )
        attempts += 1
        ctx.attempt = attempts
        if started_at is None:
            started_at = time.time()
        deadline = asyncio.timeout(spec.timeout_s)
        try:
            async with deadline:
                value = await spec.fn(checked.model_copy(deep=True), ctx)
        except TimeoutError as exc:
            if deadline.expired():
                return done(
                    "timeout",
                    f"tool {name} did not finish within its time limit of {spec.timeout_s:g} s and was "
                    "stopped; it may have done part of its work.",
                )
            return done("error", _unexpected(name, exc))
        except RetryableToolError as exc:
            if attempts <= spec.retries:
                await _backoff(spec.backoff_s * 2 ** (attempts - 1), ctx)
                continue
            tries = f"after {attempts} attempts" if attempts > 1 else "and was not retried"
            return done("error", f"tool {name} failed {tries}: {_message(exc)}")
        except ToolError as exc:
            return done("error", _message(exc) or f"tool {name} failed ({type(exc).__name__}).")
        except Exception as exc:
            return done("error", _unexpected(name, exc))
        try:
            content = _content(value)
        except (TypeError, ValueError) as exc:
            return done(
                "error",
                f"tool {name} returned a value that is not text or JSON ({type(value).__name__}: {exc}).",
            )
        return done("ok", content)


def _content(value: object) -> str:
    """The text the model reads for a tool's return value."""
    if value is None:
        return "ok"
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, dict | list | int | float | bool):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    raise TypeError(f"expected str, dict, list or None, got {type(value).__name__}")


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + " [...]"


def _unexpected(name: str, exc: BaseException) -> str:
    text = _message(exc)
    return (
        f"tool {name} failed: {type(exc).__name__}: {text}"
        if text
        else f"tool {name} failed: {type(exc).__name__}"
    )


async def _backoff(delay: float, ctx: ToolContext) -> None:
    """Wait before the next attempt; a cancellation of the run ends the wait at once."""
    delay = min(delay, MAX_BACKOFF_S)
    if delay <= 0:
        return
    try:
        async with asyncio.timeout(delay):
            await ctx.cancel_event.wait()
    except TimeoutError:
        pass
