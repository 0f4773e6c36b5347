"""Model clients: what a worker asks for a turn's stream, and the user's own ``anthropic`` client behind it.

A model client lives on the worker, never in Redis: it holds the credentials. Two kinds serve::

    MessagesClient(api_key=..., base_url=...)   the built-in httpx client (``_messages_client``): the
                                                response's bytes go straight into the parser
    AnthropicClient(anthropic.AsyncAnthropic()) the user's SDK client (or its Bedrock or Vertex
                                                variant): its raw stream events go into the parser

Both satisfy ``ModelClient``: ``stream(request, betas=...)`` is an async context manager whose value has
a ``request_id`` and iterates chunks, each either ``bytes`` (fed to ``StreamParser.feed``) or one
decoded event (a dict or an SDK event model, fed to ``StreamParser.feed_event``). Errors are ours:
``APIStatusError`` (the API answered with an error) and ``APIConnectionError`` (no answer, or the
stream broke).

``as_model_client(obj)`` takes what a user passes as ``model_client=``: one of ours, an SDK client
(wrapped), or None (the built-in client, from the environment).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, runtime_checkable

from ._messages_client import APIConnectionError, APIStatusError

__all__ = ["AnthropicClient", "ModelClient", "ModelStream", "as_model_client"]


class ModelStream(Protocol):
    """An open model stream: iterate it once, inside its ``async with`` block."""

    request_id: str | None

    def __aiter__(self) -> AsyncIterator[Any]: ...


@runtime_checkable
class ModelClient(Protocol):
    def stream(
        self, request: Mapping[str, Any], *, betas: Sequence[str] = ()
    ) -> AbstractAsyncContextManager[ModelStream]: ...

    async def aclose(self) -> None: ...


class _SDKStream:
    """The SDK's ``AsyncStream`` of raw events, with its errors turned into ours.

    The SDK raises on an ``event: error`` in a 200 stream (an ``overloaded_error`` mid-stream): that
    error is handed to the parser as the event it was, so the stream fails the same way on either client.
    """

    def __init__(self, stream: Any, sdk: Any) -> None:
        self._stream = stream
        self._sdk = sdk
        response = getattr(stream, "response", None)
        headers = getattr(response, "headers", None)
        self.request_id: str | None = headers.get("request-id") if headers is not None else None

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._events()

    async def _events(self) -> AsyncIterator[Any]:
        sdk = self._sdk
        try:
            async for event in self._stream:
                yield event
        except sdk.APIStatusError as exc:
            body = exc.body if isinstance(exc.body, dict) else None
            if body is not None and body.get("type") == "error":
                yield body  # the stream's own error event: the parser fails the stream with it
                return
            raise _status_error(exc) from exc
        except sdk.APIConnectionError as exc:
            raise APIConnectionError(
                f"the 200 stream broke: {type(exc).__name__}: {exc} "
                "(not retried: a failed stream fails the turn)"
            ) from exc


def _status_error(exc: Any) -> APIStatusError:
    body = exc.body if isinstance(exc.body, dict) else {}
    found = body.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    response = getattr(exc, "response", None)
    request_id = response.headers.get("request-id") if response is not None else None
    return APIStatusError(
        int(getattr(exc, "status_code", 0) or 0),
        str(error.get("type") or type(exc).__name__),
        str(error.get("message") or exc),
        request_id=request_id,
    )


class AnthropicClient:
    """The user's ``anthropic.AsyncAnthropic`` (or ``AsyncAnthropicBedrock``, ``AsyncAnthropicVertex``).

    Requests go through ``client.messages.create(stream=True)`` (``client.beta.messages.create`` with
    ``betas``); the SDK's own retries and timeouts apply. ``aclose`` leaves the client open: it is yours.
    """

    def __init__(self, client: Any) -> None:
        import anthropic  # the sdk extra

        self.client = client
        self._sdk = anthropic

    def stream(
        self, request: Mapping[str, Any], *, betas: Sequence[str] = ()
    ) -> AbstractAsyncContextManager[_SDKStream]:
        return self._open(dict(request), list(betas))

    @asynccontextmanager
    async def _open(self, request: dict[str, Any], betas: list[str]) -> AsyncIterator[_SDKStream]:
        request.pop("stream", None)
        try:
            if betas:
                stream = await self.client.beta.messages.create(**request, betas=betas, stream=True)
            else:
                stream = await self.client.messages.create(**request, stream=True)
        except self._sdk.APIStatusError as exc:
            raise _status_error(exc) from exc
        except self._sdk.APIConnectionError as exc:
            raise APIConnectionError(
                f"expected 200 from POST /v1/messages, could not get a response: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            yield _SDKStream(stream, self._sdk)
        finally:
            await stream.close()

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<AnthropicClient {type(self.client).__name__}>"


def as_model_client(value: Any) -> ModelClient | None:
    """What ``model_client=`` may be: None (the built-in client, from the environment), one of ours, or
    an ``anthropic`` async client (wrapped in ``AnthropicClient``)."""
    if value is None or isinstance(value, ModelClient):
        return value
    messages = getattr(value, "messages", None)
    if messages is not None and callable(getattr(messages, "create", None)):
        return AnthropicClient(value)
    raise TypeError(
        "model_client must be incremental's MessagesClient, an anthropic async client, or None; "
        f"got {value!r}"
    )
