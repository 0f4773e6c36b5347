"""``incremental fake-api FILE...``: serve recorded turns as a fake Messages API until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "fake-api",
        help="serve recorded turns as a fake Messages API (point ANTHROPIC_BASE_URL at it)",
        description=(
            "Serve POST /v1/messages on loopback: the k-th turn of a conversation gets the k-th FILE, "
            "streamed with its recorded timing; every request is checked (assistant content echoed "
            "verbatim, one tool_result per tool_use, in order) and a bad one gets a 400 saying why."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="a recorded SSE stream, one per turn, in order")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one (default: %(default)s)")
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="playback speed: 2 is twice as fast as recorded, 0 sends without waiting (default: %(default)s)",
    )
    p.set_defaults(run=run)


async def _serve(args: argparse.Namespace) -> None:
    from ..fake_api import FakeMessagesAPI

    api = FakeMessagesAPI(args.files, speed=args.speed, host=args.host, port=args.port)
    task = asyncio.current_task()
    if task is not None:  # `kill` stops it as cleanly as Ctrl-C does
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await api.start()
    try:
        print(f"Fake Messages API on {api.url} ({len(args.files)} turn(s), speed {args.speed:g})", flush=True)
        print(f"  export ANTHROPIC_BASE_URL={api.url}    # Ctrl-C stops", flush=True)
        await asyncio.Event().wait()  # until Ctrl-C or SIGTERM cancels us
    finally:
        await api.stop()


def run(args: argparse.Namespace) -> int:
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        print(f"incremental fake-api: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.speed < 0 or args.speed != args.speed:
        print(f"incremental fake-api: --speed must be >= 0, got {args.speed}", file=sys.stderr)
        return 2
    log = logging.getLogger("incremental.fake_api")  # one line per request, on standard output
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        asyncio.run(_serve(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("stopped", flush=True)
    except OSError as exc:  # e.g. the port is taken
        print(f"incremental fake-api: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
