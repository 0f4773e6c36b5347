"""Starting a run: the request checked, its record in Redis, its first event, its first turn's job.

A run is one Messages API request, carried verbatim (every field but ``messages`` and ``stream``: model,
system, max_tokens, temperature, tool_choice, thinking, metadata, and fields the API adds later), plus
the run's own options (``RunOptions``). ``tools`` may name tools of the run's tool set (the worker puts
their schemas in), hold tool definitions verbatim (a server tool, say), or be left out (every tool of
the set). A malformed request raises ``RequestError`` before anything is stored.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from ..adapters._arq import enqueue_stream_turn
from ..adapters._eventlog import EventLog
from ..adapters._store import TurnStore
from ..events import RunStartedEvent
from ..exceptions import RequestError
from ..tools import ToolRegistry

__all__ = [
    "MAX_REQUEST_DEPTH",
    "RUN_OPTIONS",
    "RequestError",
    "RunConfig",
    "check_request",
    "new_run_id",
    "request_tools",
    "start_run",
]

MAX_REQUEST_DEPTH = 64  # JSON nesting a request may have (messages, tool inputs and results included)
_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
RUN_OPTIONS = frozenset(
    {"max_turns", "turn_timeout_s", "toolset", "simulate_s", "workspace", "betas", "tags"}
)


@dataclass(frozen=True, slots=True)
class RunConfig:
    """What a run asks for: the request (verbatim) and the run's own options. JSON-ready; stored.

    ``toolset`` names one of the worker's tool sets (None: its only one). ``max_turns`` bounds the model
    requests, ``turn_timeout_s`` how long a turn waits for its results after ``message_stop``.
    ``simulate_s`` runs every tool as a simulated job of that many seconds. ``workspace`` is the directory
    file tools work in (``ToolContext.workspace``). ``betas`` become the ``anthropic-beta`` header.
    ``tags`` are yours: kept with the run, never sent to the model.
    """

    request: dict[str, Any]
    toolset: str | None = None
    max_turns: int = 10
    turn_timeout_s: float = 300.0
    simulate_s: float | None = None
    workspace: str | None = None
    betas: list[str] = field(default_factory=list)
    tags: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_run_id() -> str:
    return f"run_{uuid.uuid4().hex[:20]}"


def _fail(where: str, expected: str, got: Any) -> RequestError:
    shown = json.dumps(got, default=repr)[:80] if not isinstance(got, str) else repr(got[:80])
    return RequestError(f"{where}: expected {expected}, got {shown}")


def _depth_ok(value: Any, limit: int) -> bool:
    """Whether ``value`` nests at most ``limit`` levels (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def check_request(messages: Any, request: dict[str, Any], **options: Any) -> RunConfig:
    """Check a run's messages, request fields and options; the ``RunConfig`` to store, or ``RequestError``."""
    if "stream" in request:
        raise RequestError("stream: leave it out (every run streams)")
    if "messages" in request:
        raise RequestError("messages: pass them as the first argument, not as a request field")
    if not isinstance(messages, list) or not messages:
        raise _fail("messages", "a non-empty list of messages", messages)
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _fail(f"messages[{i}]", "an object with role and content", message)
        if message.get("role") not in ("user", "assistant"):
            raise _fail(f"messages[{i}].role", "'user' or 'assistant'", message.get("role"))
        content = message.get("content")
        if not (isinstance(content, str) and content) and not (
            isinstance(content, list) and content and all(isinstance(b, dict) for b in content)
        ):
            raise _fail(f"messages[{i}].content", "a non-empty string or list of content blocks", content)
    if messages[0]["role"] != "user":
        raise RequestError("messages[0].role: expected 'user' (a conversation starts with the user)")
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise _fail("model", "the model's name, a non-empty string", model)
    max_tokens = request.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _fail("max_tokens", "a positive integer", max_tokens)
    _check_optional(request)
    if not _depth_ok([messages, request], MAX_REQUEST_DEPTH):
        raise RequestError(f"the request nests deeper than {MAX_REQUEST_DEPTH} levels")
    try:
        json.dumps([messages, request], allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RequestError(f"the request is not JSON: {exc}") from None
    return _options(request, options)


def _check_optional(request: dict[str, Any]) -> None:
    number = (int, float)
    checks: dict[str, tuple[str, Any]] = {
        "system": ("a string or a list of text blocks", lambda v: isinstance(v, str | list)),
        "temperature": ("a number from 0 to 1", lambda v: isinstance(v, number) and 0 <= v <= 1),
        "top_p": ("a number from 0 to 1", lambda v: isinstance(v, number) and 0 <= v <= 1),
        "top_k": ("a non-negative integer", lambda v: isinstance(v, int) and v >= 0),
        "stop_sequences": (
            "a list of strings",
            lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
        ),
        "tool_choice": ("an object such as {'type': 'auto'}", lambda v: isinstance(v, dict)),
        "thinking": (
            "an object such as {'type': 'enabled', 'budget_tokens': 1024}",
            lambda v: isinstance(v, dict),
        ),
        "metadata": ("an object", lambda v: isinstance(v, dict)),
        "tools": (
            "a list of tool names and tool definitions",
            lambda v: isinstance(v, list) and all(isinstance(t, str | dict) for t in v),
        ),
    }
    for name, (expected, ok) in checks.items():
        value = request.get(name)
        if value is None:
            continue
        if (isinstance(value, bool) and name != "metadata") or not ok(value):
            raise _fail(name, expected, value)


def _options(request: dict[str, Any], options: dict[str, Any]) -> RunConfig:
    unknown = sorted(set(options) - RUN_OPTIONS)
    if unknown:
        raise RequestError(f"unknown run options {unknown}; a run takes {sorted(RUN_OPTIONS)}")
    max_turns = options.get("max_turns", 10)
    if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
        raise _fail("max_turns", "a positive integer", max_turns)
    timeout = options.get("turn_timeout_s", 300.0)
    if (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not timeout > 0
        or math.isinf(timeout)
    ):
        raise _fail("turn_timeout_s", "a positive number of seconds", timeout)
    simulate = options.get("simulate_s")
    if simulate is not None and (not isinstance(simulate, int | float) or not simulate >= 0):
        raise _fail("simulate_s", "a non-negative number of seconds, or None", simulate)
    toolset = options.get("toolset")
    if toolset is not None and not isinstance(toolset, str):
        raise _fail("toolset", "a tool set's name", toolset)
    workspace = options.get("workspace")
    betas = options.get("betas") or []
    if isinstance(betas, str):
        betas = [betas]
    if not isinstance(betas, list | tuple) or not all(isinstance(b, str) for b in betas):
        raise _fail("betas", "a list of beta names", betas)
    tags = options.get("tags") or {}
    if not isinstance(tags, dict):
        raise _fail("tags", "an object", tags)
    return RunConfig(
        request=dict(request),
        toolset=toolset,
        max_turns=max_turns,
        turn_timeout_s=float(timeout),
        simulate_s=None if simulate is None else float(simulate),
        workspace=None if workspace is None else str(workspace),
        betas=list(betas),
        tags=dict(tags),
    )


def request_tools(spec: Any, registry: ToolRegistry) -> list[dict[str, Any]]:
    """The request's ``tools``: every tool of the set (None), or names resolved and definitions kept.

    Raises ``RequestError`` for a name the set does not have."""
    if spec is None:
        return registry.api_tools()
    tools: list[dict[str, Any]] = []
    for item in spec:
        if isinstance(item, str):
            if item not in registry:
                has = ", ".join(registry.names()) or "none"
                raise RequestError(f"tools: no tool {item!r} in this tool set (it has {has})")
            tools.extend(registry.api_tools([item]))
        else:
            tools.append(item)
    return tools


async def start_run(
    store: TurnStore,
    events: EventLog,
    pool: Any,
    config: RunConfig,
    messages: list[dict[str, Any]],
    *,
    run_id: str | None = None,
    record: dict[str, str] | None = None,
) -> str:
    """Record the run and enqueue its first turn. Returns the run id at once.

    ``record``: extra fields for the run's hash (the service keeps its owner there)."""
    run_id = run_id or new_run_id()
    if not _RUN_ID.match(run_id):
        raise RequestError(f"run_id: expected 1 to 128 letters, digits, '_', '.' or '-', got {run_id!r}")
    data = config.to_dict()
    queue = getattr(pool, "default_queue_name", None)
    fields = {**(record or {}), **({"queue": queue} if queue else {})}
    await store.create_run(run_id, data, messages, record=fields)
    await events.append(RunStartedEvent(run_id=run_id, turn=0, config=data))
    await enqueue_stream_turn(pool, run_id, 0, queue=queue)
    return run_id
