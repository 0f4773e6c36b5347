"""``incremental serve``: the HTTP service and its page, with Redis and workers when none are given."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the HTTP API, the live event streams and the dashboard page",
        description=(
            "Start runs over HTTP, watch them over resumable SSE, cancel, pause and resume them, and "
            "see them on the page at /. Without --redis or REDIS_URL a private redis-server is started, "
            "with two in-process arq workers. --demo plays the recorded 8-tool app-builder conversation "
            "from a loopback fake Messages API, so a fresh machine can watch a run live."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one (default: %(default)s)")
    p.add_argument("--redis", metavar="URL", help="Redis to use (default: $REDIS_URL, else a private one)")
    p.add_argument(
        "--workers", type=int, help="in-process arq workers (default: 2 with a private Redis, else 0)"
    )
    p.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="[NAME=]TOKEN",
        help="a service token (repeatable; also INCREMENTAL_TOKENS, comma-separated). None given: one is "
        "made up and printed in the page's address. At least 16 characters",
    )
    p.add_argument(
        "--demo", action="store_true", help="runs go to a fake Messages API playing the demo recording"
    )
    p.add_argument("--speed", type=float, default=1.0, help="demo playback speed (default: %(default)s)")
    p.add_argument("--simulate", type=float, metavar="S", help="run every tool as a simulated S-second job")
    p.add_argument(
        "--toolset",
        action="append",
        default=[],
        metavar="NAME=MODULE:ATTR",
        help="a tool set runs may name: a ToolRegistry importable as MODULE:ATTR (repeatable; also "
        "INCREMENTAL_TOOLSETS). --demo adds the app-builder set as 'app'",
    )
    p.add_argument(
        "--api-base-url",
        default=None,
        help="the Messages API the in-process workers talk to (default: $ANTHROPIC_BASE_URL, else the "
        "real API, with $ANTHROPIC_API_KEY)",
    )
    p.add_argument("--workspace-root", help="runs' workspaces go under here (default: a temporary directory)")
    p.add_argument(
        "--heartbeat", type=float, default=15.0, help="SSE heartbeat seconds (default: %(default)s)"
    )
    p.set_defaults(run=run)


async def _serve(
    args: argparse.Namespace, tokens: dict[str, str], made_up: str | None, tools: dict[str, Any]
) -> None:
    from ..service import ServeOptions, Service

    options = ServeOptions(
        tools=tools,
        tokens=tokens,
        host=args.host,
        port=args.port,
        redis_url=args.redis,
        workers=args.workers,
        demo=args.demo,
        speed=args.speed,
        simulate_s=args.simulate,
        api_base_url=args.api_base_url,
        workspace_root=args.workspace_root,
        heartbeat_s=args.heartbeat,
    )
    loop = asyncio.get_running_loop()
    async with Service(options) as service:
        for sig in (signal.SIGINT, signal.SIGTERM):  # stop as uvicorn would: finish, then close
            loop.add_signal_handler(sig, service.request_stop)
        print(f"incremental serve: {service.url}/", flush=True)
        if made_up is not None:
            print(f"open {service.url}/#token={made_up}", flush=True)
        print(
            f"  redis {_redacted(service.redis_url)}, {service.workers} in-process worker(s)"
            + (", demo recording on a fake Messages API" if args.demo else "")
            + "; Ctrl-C stops",
            flush=True,
        )
        await service.wait()


def _redacted(url: str) -> str:
    """The Redis URL without its password (the terminal may be shared or logged)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def run(args: argparse.Namespace) -> int:
    from ..exceptions import RedisUnavailableError
    from ..service import parse_tokens

    try:
        tokens = parse_tokens([*args.token, os.environ.get("INCREMENTAL_TOKENS", "")])
    except ValueError as exc:
        print(f"incremental serve: {exc}", file=sys.stderr)
        return 2
    from ..worker import load_toolsets

    try:
        tools = load_toolsets(",".join(args.toolset))
    except (ValueError, TypeError, ImportError, AttributeError) as exc:
        print(f"incremental serve: --toolset: {exc}", file=sys.stderr)
        return 2
    made_up = None
    if not tokens:
        made_up = secrets.token_urlsafe(24)
        tokens = {"default": made_up}
    if args.speed < 0 or args.speed != args.speed:
        print(f"incremental serve: --speed must be >= 0, got {args.speed}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(args, tokens, made_up, tools))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("stopped", flush=True)
    except RedisUnavailableError as exc:
        print(f"incremental serve: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"incremental serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
