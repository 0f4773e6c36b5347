"""incremental: run Claude's tool calls the moment their input is complete, while the model streams.

The stream core lives in ``incremental.core`` and is re-exported here. The front door (``Runner``,
``Run``, ``RunResult``, ``run``) and the tool layer (``ToolRegistry``, ``ToolContext``, ``ToolError``)
are imported on first use, so that the parser alone needs neither Redis nor arq.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from .core import (
    Block,
    BlockDelta,
    BlockStarted,
    BlockStatus,
    BlockStopped,
    Event,
    IncompleteStreamError,
    IncrementalError,
    JsonScanner,
    LimitExceededError,
    Limits,
    MalformedEventError,
    MessageDelta,
    MessageStarted,
    MessageState,
    MessageStopped,
    ParserClosedError,
    ParserWarning,
    ProtocolError,
    SSEComment,
    SSEDecoder,
    SSEEvent,
    StreamError,
    StreamFailed,
    StreamParser,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolFieldCompleted,
    ToolInputDelta,
    ToolReady,
    ToolRejected,
    UnknownEvent,
    UpstreamError,
)
from .inspection import StreamReport, inspect_bytes

if _TYPE_CHECKING:
    from .adapters._messages_client import MessagesClient
    from .adapters._model_clients import AnthropicClient
    from .runner import Run, Runner, RunResult, ToolCallResult, run
    from .tools import RetryableToolError, ToolContext, ToolError, ToolRegistry

_LAZY = {
    "AnthropicClient": "adapters._model_clients",
    "MessagesClient": "adapters._messages_client",
    "RetryableToolError": "exceptions",
    "Run": "runner",
    "RunResult": "runner",
    "Runner": "runner",
    "ToolCallResult": "runner",
    "ToolContext": "tools",
    "ToolError": "exceptions",
    "ToolRegistry": "tools",
    "run": "runner",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'incremental' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "AnthropicClient",
    "Block",
    "BlockDelta",
    "BlockStarted",
    "BlockStatus",
    "BlockStopped",
    "Event",
    "IncompleteStreamError",
    "IncrementalError",
    "JsonScanner",
    "LimitExceededError",
    "Limits",
    "MalformedEventError",
    "MessageDelta",
    "MessageStarted",
    "MessageState",
    "MessageStopped",
    "MessagesClient",
    "ParserClosedError",
    "ParserWarning",
    "ProtocolError",
    "RetryableToolError",
    "Run",
    "RunResult",
    "Runner",
    "SSEComment",
    "SSEDecoder",
    "SSEEvent",
    "StreamError",
    "StreamFailed",
    "StreamParser",
    "StreamReport",
    "TextDelta",
    "ThinkingDelta",
    "ToolCall",
    "ToolCallResult",
    "ToolContext",
    "ToolError",
    "ToolFieldCompleted",
    "ToolInputDelta",
    "ToolReady",
    "ToolRegistry",
    "ToolRejected",
    "UnknownEvent",
    "UpstreamError",
    "__version__",
    "inspect_bytes",
    "run",
]
