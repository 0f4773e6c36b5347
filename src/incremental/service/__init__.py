"""The live service: runs over HTTP, their events over resumable SSE, control, metrics and the page."""

from ..pipeline._view import RunView, ToolView
from ._app import create_app
from ._auth import Auth, Principal, parse_tokens
from ._config import ServiceConfig
from ._events import build_view
from ._server import DEMO_FILES, ServeOptions, Service

__all__ = [
    "DEMO_FILES",
    "Auth",
    "Principal",
    "RunView",
    "ServeOptions",
    "Service",
    "ServiceConfig",
    "ToolView",
    "build_view",
    "create_app",
    "parse_tokens",
]
