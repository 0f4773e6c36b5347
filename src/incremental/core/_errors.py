"""The typed errors of the stream core.

::

    IncrementalError                 everything this package raises
    ├── StreamError                  the stream is unusable from this point; carries where it happened
    │   ├── ProtocolError            events out of the documented order (a delta for a block never
    │   │   │                        started, a second start for an index, an event after message_stop)
    │   │   └── MalformedEventError  a data line that is not a JSON object of the expected shape
    │   ├── LimitExceededError       a configured memory bound was crossed (line, block count, buffer)
    │   ├── UpstreamError            the API sent ``event: error`` (e.g. ``overloaded_error``) mid-stream
    │   └── IncompleteStreamError    the bytes ended before ``message_stop``
    └── ParserClosedError            input fed to a parser that already finished or failed

Stream errors never escape ``StreamParser.feed``: they arrive as a ``StreamFailed`` event (after every
event that came before them) and stay on ``parser.error``. ``ParserClosedError`` is raised, because it
is a bug in the caller, not in the stream.
"""

from __future__ import annotations

__all__ = [
    "IncompleteStreamError",
    "IncrementalError",
    "LimitExceededError",
    "MalformedEventError",
    "ParserClosedError",
    "ProtocolError",
    "StreamError",
    "UpstreamError",
]


class IncrementalError(Exception):
    """Base of every error this package raises."""


class StreamError(IncrementalError):
    """The stream cannot be read past this point.

    ``index`` is the content block index involved (if any), ``event`` the event type being handled,
    ``state`` the parser state at the time, ``event_number`` the 0-based count of events read before it.
    """

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        event: str | None = None,
        state: str | None = None,
        event_number: int | None = None,
    ) -> None:
        self.message = message
        self.index = index
        self.event = event
        self.state = state
        self.event_number = event_number
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = [
            f"{name}={value}"
            for name, value in (
                ("event", self.event),
                ("index", self.index),
                ("state", self.state),
                ("event_number", self.event_number),
            )
            if value is not None
        ]
        return f"{self.message} ({', '.join(where)})" if where else self.message

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description: the error class and its context."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "index": self.index,
            "event": self.event,
            "state": self.state,
            "event_number": self.event_number,
        }


class ProtocolError(StreamError):
    """Events arrived out of the order the Messages API documents."""


class MalformedEventError(ProtocolError):
    """An SSE ``data`` payload that is not a JSON object of the expected shape."""


class LimitExceededError(StreamError):
    """A configured bound on memory per stream was crossed."""


class UpstreamError(StreamError):
    """The API reported an error inside the stream (``event: error``), e.g. ``overloaded_error``."""

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        index: int | None = None,
        event: str | None = None,
        state: str | None = None,
        event_number: int | None = None,
    ) -> None:
        self.error_type = error_type
        super().__init__(
            f"upstream {error_type}: {message}",
            index=index,
            event=event,
            state=state,
            event_number=event_number,
        )

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "error_type": self.error_type}


class IncompleteStreamError(StreamError):
    """The stream ended (connection closed, file ended) before ``message_stop``."""


class ParserClosedError(IncrementalError):
    """Input was fed to a parser that has already finished or failed."""
