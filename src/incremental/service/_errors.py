"""Every error the service answers is JSON: ``{"error": {"type": ..., "message": ...}}``, with a 4xx
status that says whose fault it is, and a message that says what was wrong."""

from __future__ import annotations

import logging

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

__all__ = ["ApiError", "error_response", "exception_handlers"]

logger = logging.getLogger("incremental.service")

_TYPES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type or _TYPES.get(status, "error")
        self.message = message


def error_response(status: int, type: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="incremental"'} if status == 401 else None
    return JSONResponse({"error": {"type": type, "message": message}}, status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.type, exc.message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if exc.status_code != 404 else f"no route {request.method} {request.url.path}"
    return error_response(exc.status_code, _TYPES.get(exc.status_code, "error"), str(message))


async def _redis_error(request: Request, exc: Exception) -> Response:
    logger.warning("Redis unreachable while serving %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "unavailable", "the service cannot reach Redis right now; try again")


async def _disconnected(request: Request, exc: Exception) -> Response:
    # The client went away mid-body (or was cut off for sending it too slowly): nobody reads this.
    return error_response(400, "invalid_request", "the client disconnected before its body was complete")


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error serving %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")


exception_handlers = {
    ApiError: _api_error,
    HTTPException: _http_error,
    RedisConnectionError: _redis_error,
    RedisTimeoutError: _redis_error,
    ClientDisconnect: _disconnected,
    Exception: _unexpected,
}
