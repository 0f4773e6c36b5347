"""``incremental inspect FILE...``: the timeline of each captured stream, or one JSON line per file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..inspection import StreamReport, inspect_bytes

__all__ = ["add_parser", "render"]

_STATUS_STYLE = {
    "ready": "bold green",
    "done": "green",
    "invalid": "bold red",
    "truncated": "bold red",
    "server_side": "cyan",
    "unknown": "yellow",
    "streaming": "yellow",
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "inspect",
        help="show the timeline of captured streams (SSE or JSON Lines)",
        description="Show each stream's blocks, tool calls, timing, warnings, stop reason and usage.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="a captured stream; '-' reads standard input")
    p.add_argument("--json", action="store_true", help="one JSON object per line per file")
    p.set_defaults(run=run)


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    return Path(name).read_bytes()


def run(args: argparse.Namespace) -> int:
    missing = [f for f in args.files if f != "-" and not Path(f).is_file()]
    if missing:
        print(f"incremental inspect: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.files.count("-") > 1:
        print("incremental inspect: '-' (standard input) may be given once", file=sys.stderr)
        return 2
    # Piped output (a file, a CI log) gets a wide page rather than 80 columns.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    failed = False
    for name in args.files:
        report = inspect_bytes(_read(name), file=name)
        failed = failed or report.error is not None
        if args.json:
            sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            render(report, console)
    return 1 if failed else 0


def _s(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def render(report: StreamReport, console: Console) -> None:
    """The human view of one stream."""
    msg = report.message
    head = Text()
    head.append(report.file, style="bold")
    if msg:
        head.append(f"  {msg.get('id', '?')}  {msg.get('model', '?')}", style="dim")
    head.append(f"  stop_reason={report.stop_reason}")
    if report.stopped_at is not None:
        head.append(f"  message_stop at {report.stopped_at:.2f}s")
    head.append(f"  {report.events} events")
    console.print(head)

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col, justify in (
        ("idx", "right"),
        ("type", "left"),
        ("tool", "left"),
        ("id", "left"),
        ("bytes", "right"),
        ("start s", "right"),
        ("ready s", "right"),
        ("status", "left"),
        ("earlier than message_stop", "right"),
    ):
        table.add_column(col, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
    for b in report.blocks:
        status = Text(b.status, style=_STATUS_STYLE.get(b.status, ""))
        table.add_row(
            str(b.index),
            b.type,
            b.tool_name or "",
            b.tool_id or "",
            f"{b.bytes:,}",
            _s(b.started_at),
            _s(b.ready_at),
            status,
            f"{b.head_start_s:.2f}s" if b.head_start_s is not None else "",
        )
    console.print(table)

    for r in report.rejected:
        console.print(
            Text(f"  rejected {r['name']} {r['id']} (index {r['index']}): {r['reason']}", style="red")
        )
    for w in report.warnings:
        console.print(Text(f"  warning: {w}", style="yellow"))
    usage = msg.get("usage") if msg else None
    if isinstance(usage, dict):
        parts = [f"{k}={v}" for k, v in usage.items() if isinstance(v, int | str)]
        console.print(Text("  usage: " + " ".join(parts), style="dim"))
    ready = [b for b in report.blocks if b.head_start_s is not None]
    if ready:
        starts = [b.head_start_s or 0.0 for b in ready]
        console.print(
            f"  {len(ready)} tool call(s) ready before message_stop; "
            f"head start {sum(starts) / len(starts):.2f}s on average, {max(starts):.2f}s at most"
        )
    if report.error is not None:
        console.print(Text(f"  error: {report.error}", style="bold red"))
    console.print()
