"""``incremental record --out DIR``: a loopback proxy that records each Messages API exchange."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "record",
        help="record Messages API traffic through a loopback proxy (point ANTHROPIC_BASE_URL at it)",
        description=(
            "Listen on loopback and forward every request unchanged to the upstream (headers, API key "
            "included), streaming each answer back as it arrives. Each POST /v1/messages exchange is "
            "saved under DIR, one folder per conversation: the request (API key and auth headers never "
            "written), the SSE bytes as received with a `: t=SECONDS` comment before each event, and "
            "non-streamed and error answers too. Replay a conversation with "
            "`incremental replay DIR/conv-001/turn-*.sse`."
        ),
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="folder for the recordings (created if needed)"
    )
    p.add_argument(
        "--upstream",
        default="https://api.anthropic.com",
        metavar="URL",
        help="where requests go (default: %(default)s)",
    )
    p.add_argument(
        "--port", type=int, default=8766, help="port on 127.0.0.1; 0 picks a free one (default: %(default)s)"
    )
    p.set_defaults(run=run)


async def _serve(args: argparse.Namespace) -> None:
    from ..recording import RecordingProxy, Saved, describe

    out = Path(args.out)

    def on_saved(saved: Saved) -> None:
        print(f"  {describe(saved, root=out)}", flush=True)

    proxy = RecordingProxy(out, upstream=args.upstream, port=args.port, on_saved=on_saved)
    task = asyncio.current_task()
    if task is not None:  # `kill` stops it as cleanly as Ctrl-C does
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await proxy.start()
    try:
        print(f"listening on {proxy.url}", flush=True)
        print(f"  forwarding to {proxy.upstream}; recordings go to {out}/", flush=True)
        print(f"  export ANTHROPIC_BASE_URL={proxy.url}    # Ctrl-C stops", flush=True)
        await asyncio.Event().wait()  # until Ctrl-C or SIGTERM cancels us
    finally:
        await proxy.stop()
        conversations = sorted({s.conversation for s in proxy.recorder.saved})
        for name in conversations:
            if any((out / name).glob("turn-*.sse")):
                print(f"  replay: incremental replay {out / name}/turn-*.sse", flush=True)


def run(args: argparse.Namespace) -> int:
    import httpx

    try:
        upstream = httpx.URL(args.upstream)
    except httpx.InvalidURL as exc:
        print(f"incremental record: --upstream: {exc}", file=sys.stderr)
        return 2
    if upstream.scheme not in ("http", "https") or not upstream.host:
        print(
            f"incremental record: --upstream must be an http(s) URL, got {args.upstream!r}", file=sys.stderr
        )
        return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"incremental record: --out {out} exists and is not a directory", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"incremental record: --port must be 0-65535, got {args.port}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("stopped", flush=True)
    except OSError as exc:  # the port is taken, DIR cannot be made
        print(f"incremental record: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # uvicorn did not start
        print(f"incremental record: {exc}", file=sys.stderr)
        return 1
    return 0
