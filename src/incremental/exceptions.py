"""Every error incremental raises, in one small tree; catch ``IncrementalError`` for all of them.

::

    IncrementalError                    everything this package raises
    ├── StreamError                     a model stream is unusable from this point (the parser's)
    │   ├── ProtocolError               events out of the documented order
    │   │   └── MalformedEventError     a data line that is not a JSON object of the expected shape
    │   ├── LimitExceededError          a configured memory bound was crossed
    │   ├── UpstreamError               the API sent ``event: error`` mid-stream (e.g. overloaded)
    │   └── IncompleteStreamError       the bytes ended before ``message_stop``
    ├── ParserClosedError               input fed to a parser that already finished or failed
    ├── APIError                        a request to the Messages API failed (``attempts`` made)
    │   ├── APIStatusError              it answered with an error status (``status_code``, ``error_type``)
    │   ├── APIConnectionError          no answer, or the 200 stream broke mid-way
    │   │   └── StreamTimeoutError      no headers, or a stream gone quiet or past its deadline (``kind``)
    │   └── MissingCredentialsError     the built-in client has no API key
    ├── RequestError                    a run's request is malformed (raised before anything is stored)
    ├── UnknownToolsetError             a run names a tool set the worker does not have
    ├── RunNotFoundError                no run with that id (never started, or expired)
    ├── RedisUnavailableError           no redis-server could be found, started or reached
    ├── UnknownEventKindError           ``parse_event(..., strict=True)`` met a kind it does not know
    └── ToolError                       raised by a tool: the model reads its message
        └── RetryableToolError          a transient failure: the call is tried again

A run that fails says which of these failed it: ``RunResult.error.type`` (and the ``run_failed``
event's ``error_type``); ``UnreadableJobError`` there means a job's payload could not be read (it was
enqueued with pickle, or by another version).
"""

from __future__ import annotations

from .core._errors import (
    IncompleteStreamError,
    IncrementalError,
    LimitExceededError,
    MalformedEventError,
    ParserClosedError,
    ProtocolError,
    StreamError,
    UpstreamError,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "IncompleteStreamError",
    "IncrementalError",
    "LimitExceededError",
    "MalformedEventError",
    "MissingCredentialsError",
    "ParserClosedError",
    "ProtocolError",
    "RedisUnavailableError",
    "RequestError",
    "RetryableToolError",
    "RunNotFoundError",
    "StreamError",
    "StreamTimeoutError",
    "ToolError",
    "UnknownEventKindError",
    "UnknownToolsetError",
    "UpstreamError",
]

_ENDPOINT = "POST /v1/messages"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


class APIError(IncrementalError):
    """A request to the Messages API failed. ``attempts`` is how many HTTP attempts were made."""

    attempts: int


class APIStatusError(APIError):
    """The API answered with something other than a 200 event stream.

    ``message`` is the API's own ``error.message`` (or a short excerpt of the body); ``str(error)`` says
    what was expected and what arrived. ``retry_after`` is the wait in seconds the API asked for, if any.
    """

    def __init__(
        self,
        status_code: int,
        error_type: str,
        message: str,
        *,
        request_id: str | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        self.status_code = status_code
        self.error_type = error_type
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        self.attempts = attempts
        expected = "a text/event-stream 200" if status_code == 200 else "200"
        rid = f", request-id {request_id}" if request_id else ""
        super().__init__(
            f"expected {expected} from {_ENDPOINT}, got {status_code} {error_type}: {message}"
            f" (after {_count(attempts, 'attempt')}{rid})"
        )


class APIConnectionError(APIError):
    """No response could be had, or the 200 stream broke mid-way (the message says which, and why)."""

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        self.attempts = attempts
        super().__init__(message)


class StreamTimeoutError(APIConnectionError):
    """A wait for the model ran past its limit: ``kind`` is ``"headers"`` (no response headers in time),
    ``"idle"`` (no event, ping included, for ``seconds``) or ``"total"`` (the turn's stream deadline).

    A turn whose stream timed out before any tool was dispatched is sent again; otherwise it fails with
    this error (``RunResult.error.type == "StreamTimeoutError"``)."""

    def __init__(self, kind: str, seconds: float, message: str, *, attempts: int = 1) -> None:
        self.kind = kind
        self.seconds = seconds
        super().__init__(message, attempts=attempts)


class MissingCredentialsError(APIError):
    """No API key (nor an ``authorization`` header) was given to the built-in client or its environment."""

    def __init__(self, url: str) -> None:
        self.attempts = 0
        super().__init__(
            f"no API key for {url}: pass MessagesClient(api_key=...) or set ANTHROPIC_API_KEY where the "
            "workers run (or give the workers your own anthropic client as model_client=)"
        )


class RequestError(IncrementalError, ValueError):
    """A run's request is malformed: the message names the field and says what was expected."""


class UnknownToolsetError(IncrementalError):
    """A run names a tool set this worker does not have (or names none, and the worker has several)."""


class RunNotFoundError(IncrementalError, LookupError):
    """No run with that id in this Redis (never started here, or expired)."""


class RedisUnavailableError(IncrementalError):
    """No ``redis-server`` could be found or started, or the Redis given cannot be reached."""


class UnknownEventKindError(IncrementalError, ValueError):
    """``parse_event(..., strict=True)`` got a kind it does not know."""

    def __init__(self, kind: object) -> None:
        from .events import EVENT_KINDS

        self.kind = kind
        super().__init__(f"unknown event kind {kind!r} (known: {', '.join(sorted(EVENT_KINDS))})")


class ToolError(IncrementalError):
    """The tool failed in a way the model should read. Its message becomes the tool_result's content."""


class RetryableToolError(ToolError):
    """A transient failure: the call is tried again, up to ``spec.retries`` extra times, with backoff."""
