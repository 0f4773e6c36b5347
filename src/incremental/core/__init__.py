"""The sans-IO core: bytes (or event objects) in, typed events out. Imports no IO library."""

from ._blocks import Block
from ._errors import (
    IncompleteStreamError,
    IncrementalError,
    LimitExceededError,
    MalformedEventError,
    ParserClosedError,
    ProtocolError,
    StreamError,
    UpstreamError,
)
from ._events import (
    BlockDelta,
    BlockStarted,
    BlockStopped,
    Event,
    MessageDelta,
    MessageStarted,
    MessageStopped,
    ParserWarning,
    StreamFailed,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolFieldCompleted,
    ToolInputDelta,
    ToolReady,
    ToolRejected,
    UnknownEvent,
)
from ._jsonscan import JsonScanner
from ._limits import Limits
from ._parser import StreamParser
from ._sse import SSEComment, SSEDecoder, SSEEvent
from ._states import BlockStatus, MessageState

__all__ = [
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
    "ParserClosedError",
    "ParserWarning",
    "ProtocolError",
    "SSEComment",
    "SSEDecoder",
    "SSEEvent",
    "StreamError",
    "StreamFailed",
    "StreamParser",
    "TextDelta",
    "ThinkingDelta",
    "ToolCall",
    "ToolFieldCompleted",
    "ToolInputDelta",
    "ToolReady",
    "ToolRejected",
    "UnknownEvent",
    "UpstreamError",
]
