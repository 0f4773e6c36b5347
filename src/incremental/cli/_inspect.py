"""``incremental inspect FILE...``: the timeline of each captured stream, or one JSON line per file.

Every file is reported, whatever the others hold. Exit codes: 0 every stream was read to its end; 1 a
stream failed, or a file was empty or held no stream; 2 a file could not be read (missing, a
directory, unreadable) or the arguments were wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..inspection import BlockReport, StreamReport, inspect_file

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
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show each block's text and each tool's input (pretty-printed, cut when long)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.files.count("-") > 1:
        print("incremental inspect: '-' (standard input) may be given once", file=sys.stderr)
        return 2
    # Piped output (a file, a CI log) gets a wide page rather than 80 columns.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    failed = unreadable = False
    for name in args.files:
        report = inspect_file(name)
        failed = failed or report.error is not None
        if report.error_kind == "unreadable":
            unreadable = True
            sys.stdout.flush()
            print(f"incremental inspect: {name}: {report.error}", file=sys.stderr, flush=True)
        if args.json:
            sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
            sys.stdout.flush()
        elif report.error_kind != "unreadable":
            render(report, console, verbose=args.verbose)
    return 2 if unreadable else 1 if failed else 0


def _s(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


_CUT_STRING = 200  # characters of one string value shown in a tool's input
_CUT_LINES = 40  # lines of one tool's pretty-printed input
_CUT_TEXT = 1500  # characters of one block's text


def _cut_strings(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _CUT_STRING:
        return f"{value[:_CUT_STRING]}… ({len(value):,} characters)"
    if isinstance(value, dict):
        return {k: _cut_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_strings(v) for v in value]
    return value


def _pretty_input(block: BlockReport) -> str:
    if block.input is None or (isinstance(block.input, dict) and "INVALID_JSON" in block.input):
        raw = block.raw_input or ""
        shown = raw if len(raw) <= _CUT_TEXT else f"{raw[:_CUT_TEXT]}… ({len(raw):,} characters)"
        return f"(not valid JSON, as streamed) {shown}"
    lines = json.dumps(_cut_strings(block.input), indent=2, ensure_ascii=False).splitlines()
    if len(lines) > _CUT_LINES:
        lines = [*lines[:_CUT_LINES], f"… ({len(lines) - _CUT_LINES:,} more lines)"]
    return "\n".join(lines)


def _details(report: StreamReport, console: Console) -> None:
    """``--verbose``: each block's text, and each tool's input."""
    for b in report.blocks:
        if b.text is not None:
            text = (
                b.text if len(b.text) <= _CUT_TEXT else f"{b.text[:_CUT_TEXT]}… ({len(b.text):,} characters)"
            )
            head, body = f"  [{b.index}] {b.type}", text
        elif b.tool_name is not None:
            head, body = f"  [{b.index}] {b.type} {b.tool_name} {b.tool_id} input:", _pretty_input(b)
        else:
            continue
        console.print(Text(head, style="bold"))
        console.print(Text("\n".join("      " + line for line in (body or "(empty)").splitlines())))


def render(report: StreamReport, console: Console, *, verbose: bool = False) -> None:
    """The human view of one stream."""
    if report.error_kind in ("empty", "not_a_stream", "unreadable"):
        head = Text()
        head.append(report.file, style="bold")
        head.append(f"  error: {report.error}", style="bold red")
        console.print(head, soft_wrap=True)
        console.print()
        return
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

    timed = report.timed
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = [("idx", "right"), ("type", "left"), ("tool", "left"), ("id", "left"), ("bytes", "right")]
    if timed:
        columns += [("start s", "right"), ("ready s", "right")]
    columns.append(("status", "left"))
    if timed:
        columns.append(("earlier than message_stop", "right"))
    for col, justify in columns:
        table.add_column(col, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
    for b in report.blocks:
        status = Text(b.status, style=_STATUS_STYLE.get(b.status, ""))
        row: list[str | Text] = [str(b.index), b.type, b.tool_name or "", b.tool_id or "", f"{b.bytes:,}"]
        if timed:
            row += [_s(b.started_at), _s(b.ready_at)]
        row.append(status)
        if timed:
            row.append(f"{b.head_start_s:.2f}s" if b.head_start_s is not None else "")
        table.add_row(*row)
    if report.blocks:
        console.print(table)
    if not timed:
        console.print(
            Text(
                "  untimed: this capture has no `: t=SECONDS` timing comments, so there are no start, ready "
                "or head-start times (`incremental record` saves timed captures)",
                style="dim",
            )
        )
    if verbose:
        _details(report, console)

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
