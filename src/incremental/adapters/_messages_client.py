"""An async client for the streaming Messages API: ``POST /v1/messages`` in, the response's bytes out.

The stream yields the 200 body's byte chunks as they arrive, for ``StreamParser.feed``: SSE framing and
JSON are the parser's, read once, in one place (the way an h11 user feeds ``receive_data``)::

    parser = StreamParser()
    async with client.stream(request) as stream:
        async for chunk in stream:
            for event in parser.feed(chunk):
                ...
    parser.end()

The request body is encoded here, as ASCII JSON (``ensure_ascii``): whatever JSON the model sent back,
a lone surrogate (``"\\ud83d"`` is valid JSON) included, goes out again as the escape it came in as;
encoding it as UTF-8 would fail. Values no JSON can hold (NaN, infinities) raise ``ValueError``
before anything is sent.

Retry policy (``tenacity``): only getting the 200 is retried, never a stream that has started.

- Retried, up to ``max_retries`` times after the first attempt: connect errors and timeouts (any
  ``httpx.TimeoutException``, ``httpx.NetworkError`` or ``httpx.RemoteProtocolError`` raised before the
  response headers arrive) and the statuses 429, 500-504 and 529 (``is_retryable_status``).
- The wait honours ``retry-after-ms`` (milliseconds), else ``retry-after`` (seconds, may be fractional),
  capped at ``4 * backoff_max``. Without them it is exponential with jitter: attempt *n* waits
  ``backoff_base * 2**(n-1)`` times a random factor in [1, 1.25), never more than ``backoff_max``.
- Not retried: any other status (400, 401, 403, 404, 413, ...), a 200 that is not ``text/event-stream``,
  and anything once the 200's headers are in. A stream that breaks mid-way raises ``APIConnectionError``
  from the iteration: the turn fails rather than risk running its tools twice; the caller decides.

Errors are ``APIStatusError`` (with the status, the API's ``error.type`` and message, ``request-id``,
``retry-after``) or ``APIConnectionError``; both carry ``attempts``. What the bytes mean (and whether
they are well-formed) is the parser's to say.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ..exceptions import APIConnectionError, APIError, APIStatusError, MissingCredentialsError

if TYPE_CHECKING:
    from ..recording import Recorder

_ENDPOINT = "POST /v1/messages"
_RETRYABLE_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_MAX_ERROR_BODY = 64 * 1024  # bytes of a non-200 body read to find the error's type and message

# httpx's default pool allows 100 connections and makes the 101st stream wait for one (and then time out
# waiting for its headers): a worker streams as many turns at once as it has turn slots, so the pool
# does not bound them; it keeps up to 100 idle connections for the next requests.
HTTP_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=100)

# httpcore's pool walks its connections at every request's start and every response's close, and for
# each idle one walks them all again: with a worker's 100 streams on one pool, those walks were 12% of
# the worker's samples (py-spy, 200 runs on 2 workers). A request takes the one of this many pools with
# the fewest streams open: a run's requests one after another keep reusing one pool's connection.
HTTP_SHARDS = 8


def http_clients(
    shards: int = HTTP_SHARDS, *, timeout: httpx.Timeout | float | None = None
) -> tuple[httpx.AsyncClient, ...]:
    """``shards`` HTTP clients for one ``MessagesClient`` to spread its streams over: they share one
    TLS context (building one takes about 20 ms), each with its own pool of ``HTTP_LIMITS``."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    tls = httpx.create_ssl_context()
    return tuple(httpx.AsyncClient(timeout=timeout, limits=HTTP_LIMITS, verify=tls) for _ in range(shards))


__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "MessageStream",
    "MessagesClient",
    "MissingCredentialsError",
    "encode_request",
    "http_clients",
    "is_retryable_status",
]


def is_retryable_status(status: int) -> bool:
    """429 (rate limited), 500-504 and 529 (overloaded) are worth another attempt; nothing else is."""
    return status == 429 or 500 <= status <= 504 or status == 529


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _retry_after(headers: httpx.Headers) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            value = float(headers.get(name, "")) * scale
        except ValueError:
            continue  # absent, or an HTTP date: fall back to backoff
        if value >= 0:
            return value
    return None


async def _status_error(response: httpx.Response, attempts: int) -> APIStatusError:
    body = b""
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= _MAX_ERROR_BODY:
                break
    except httpx.TransportError:
        pass  # the status says enough
    error_type, message = f"http_{response.status_code}", response.reason_phrase or "(no body)"
    try:
        error = json.loads(body)["error"]
        error_type, message = str(error["type"]), str(error.get("message", message))
    except (ValueError, KeyError, TypeError):
        if response.status_code == 200:
            content_type = response.headers.get("content-type", "")
            error_type, message = "unexpected_content_type", f"content-type {content_type!r}"
        elif body:
            message = body[:200].decode("utf-8", "replace")
    return APIStatusError(
        response.status_code,
        error_type,
        message,
        request_id=response.headers.get("request-id"),
        retry_after=_retry_after(response.headers),
        attempts=attempts,
    )


def _should_retry(exc: BaseException) -> bool:
    if isinstance(exc, APIStatusError):
        return is_retryable_status(exc.status_code)
    return isinstance(exc, APIConnectionError) and isinstance(exc.__cause__, _RETRYABLE_TRANSPORT)


def encode_request(body: Mapping[str, Any]) -> bytes:
    """The request body as compact ASCII JSON: lone surrogates and all non-ASCII text go out as
    ``\\uXXXX`` escapes, which every JSON reader takes; NaN and infinities raise ``ValueError``."""
    return json.dumps(body, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")


class MessageStream:
    """An open 200 response: iterate its body's byte chunks, in order, as they arrive.

    Iterate it once, inside the ``async with client.stream(...)`` block that produced it.
    """

    def __init__(
        self, response: httpx.Response, *, request_id: str | None, attempts: int, first_byte_at: float
    ) -> None:
        self.request_id = request_id  # the `request-id` response header
        self.attempts = attempts  # HTTP attempts it took to get this 200
        self.first_byte_at = first_byte_at  # time.monotonic() when the 200 headers arrived
        self.bytes_received = 0
        self._closed = False
        self._response = response
        self._chunks = self._iterate(response)

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._closed:
            raise RuntimeError("this MessageStream is closed: iterate it inside its `async with` block")
        return self._chunks

    async def _iterate(self, response: httpx.Response) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in response.aiter_bytes():  # closing the response closes this
                if chunk:
                    self.bytes_received += len(chunk)
                    yield chunk
        except httpx.TransportError as exc:  # nothing is thrown in at `yield`: this is the connection
            raise APIConnectionError(
                f"the 200 stream of {_ENDPOINT} broke after {_count(self.bytes_received, 'byte')}: "
                f"{_describe(exc)} (not retried: a failed stream fails the turn)",
                attempts=self.attempts,
            ) from exc

    async def _close(self) -> None:
        self._closed = True
        await self._chunks.aclose()
        await self._response.aclose()


class MessagesClient:
    """Streams ``POST {base_url}/v1/messages``; see the module docstring for the retry policy.

    Like the ``anthropic`` SDK, ``api_key`` and ``base_url`` default to ``ANTHROPIC_API_KEY`` and
    ``ANTHROPIC_BASE_URL`` (else the real API). Without a key (or an ``authorization`` header in
    ``headers``) the first request raises ``MissingCredentialsError``. ``headers`` are sent with every
    request; ``betas`` (here and per request) become the ``anthropic-beta`` header.
    ``timeout`` (read/write/pool) and ``connect_timeout`` apply to every request, also on an ``http``
    client you pass in (which ``aclose`` leaves open: it is yours). ``http`` may be several clients
    (``http_clients``): a request takes the one with the fewest of this client's streams open, the
    first of them on a tie. Without one, the client makes ``HTTP_SHARDS``.
    ``record_to`` (a folder or an ``incremental.recording.Recorder``) saves every attempt as
    ``incremental record`` does.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        anthropic_version: str = "2023-06-01",
        betas: Sequence[str] = (),
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        http: httpx.AsyncClient | Sequence[httpx.AsyncClient] | None = None,
        record_to: str | os.PathLike[str] | Recorder | None = None,
        _sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        base = base_url or os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"
        self._url = base.rstrip("/") + "/v1/messages"
        key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY") or None
        self._headers = {
            "anthropic-version": anthropic_version,
            "content-type": "application/json",
            "accept": "text/event-stream",
            **{k.lower(): v for k, v in (headers or {}).items()},
        }
        if key:
            self._headers["x-api-key"] = key
        self._credentials = bool(key) or "authorization" in self._headers
        self._betas = [betas] if isinstance(betas, str) else list(betas)
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._sleep = _sleep
        self._recorder: Recorder | None = None
        if record_to is not None:
            from ..recording import Recorder

            self._recorder = record_to if isinstance(record_to, Recorder) else Recorder(record_to)
        self._owns_http = http is None
        if http is None:
            self._https = http_clients(timeout=self._timeout)
        elif isinstance(http, httpx.AsyncClient):
            self._https = (http,)
        else:
            self._https = tuple(http)
            if not self._https:
                raise ValueError("http: give at least one client, or None for the client's own")
            strays = [type(h).__name__ for h in self._https if not isinstance(h, httpx.AsyncClient)]
            if strays:
                raise TypeError(f"http: expected httpx.AsyncClient clients, got {', '.join(strays)}")
        self._open = [0] * len(self._https)  # this client's requests and streams open, per client

    async def __aenter__(self) -> MessagesClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            for http in self._https:
                await http.aclose()

    @property
    def url(self) -> str:
        return self._url

    def stream(
        self, request: Mapping[str, Any], *, betas: Sequence[str] = ()
    ) -> AbstractAsyncContextManager[MessageStream]:
        """POST ``{**request, "stream": True}``; the block gets the open 200 stream, closed on exit.

        The body is encoded at once (``encode_request``): a value no JSON can hold raises ``ValueError``
        here, before any attempt."""
        headers = self._headers
        all_betas = [*self._betas, *(b for b in betas if b not in self._betas)]
        if all_betas:
            headers = {**headers, "anthropic-beta": ",".join(all_betas)}
        return self._stream(encode_request({**request, "stream": True}), headers)

    @asynccontextmanager
    async def _stream(self, body: bytes, headers: dict[str, str]) -> AsyncIterator[MessageStream]:
        if not self._credentials:
            raise MissingCredentialsError(self._url)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(_should_retry),
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                at = min(range(len(self._open)), key=self._open.__getitem__)
                self._open[at] += 1
                try:
                    stream = await self._attempt(
                        self._https[at], body, headers, attempt.retry_state.attempt_number
                    )
                except BaseException:
                    self._open[at] -= 1
                    raise
        try:
            yield stream
        finally:
            try:
                await stream._close()
            finally:
                self._open[at] -= 1

    async def _attempt(
        self, http: httpx.AsyncClient, body: bytes, headers: dict[str, str], attempt: int
    ) -> MessageStream:
        request = http.build_request("POST", self._url, content=body, headers=headers, timeout=self._timeout)
        exchange = self._recorder.begin_request(request) if self._recorder is not None else None
        try:
            response = await http.send(request, stream=True)
        except httpx.TransportError as exc:
            if exchange is not None:
                exchange.finish(f"the upstream could not be reached: {_describe(exc)}")
            raise APIConnectionError(
                f"expected 200 from {_ENDPOINT}, could not get a response: {_describe(exc)} "
                f"(after {_count(attempt, 'attempt')})",
                attempts=attempt,
            ) from exc
        first_byte_at = time.monotonic()
        if exchange is not None:
            exchange.follow(response)  # the body is recorded as it is read; closing it saves the exchange
        content_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if response.status_code != 200 or content_type != "text/event-stream":
            try:
                raise await _status_error(response, attempt)
            finally:
                await response.aclose()
        return MessageStream(
            response,
            request_id=response.headers.get("request-id"),
            attempts=attempt,
            first_byte_at=first_byte_at,
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, APIStatusError) and exc.retry_after is not None:
            return min(exc.retry_after, 4 * self._backoff_max)
        delay = self._backoff_base * 2.0 ** (state.attempt_number - 1) * (1 + 0.25 * random.random())
        return min(delay, self._backoff_max)
