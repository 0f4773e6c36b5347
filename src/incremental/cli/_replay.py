"""``incremental replay FILE...``: play a recorded conversation through real workers, live, then summarise."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = ["add_parser"]

_STYLE = {
    "pending": "dim",
    "waiting": "yellow",
    "queued": "yellow",
    "running": "bold cyan",
    "ok": "bold green",
    "error": "bold red",
    "timeout": "bold red",
    "refused": "red",
    "cancelled": "magenta",
    "missing": "red",
    "crashed": "bold red",
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a recorded conversation through real arq workers, live",
        description="Play recorded turns (one file per turn) against a loopback fake Messages API at their "
        "recorded speed, run every tool on arq workers as soon as it is ready, and show it live.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="recorded turns, in order")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed (2 = twice as fast; default 1)")
    p.add_argument(
        "--simulate",
        type=float,
        metavar="SECONDS",
        help="run every tool (any name) as a simulated job of SECONDS that echoes its input",
    )
    p.add_argument("--redis", metavar="URL", help="use this Redis (and its workers) instead of a private one")
    p.add_argument("--workers", type=int, help="in-process arq workers (default 2; 0 with --redis)")
    p.add_argument(
        "--workspace", metavar="DIR", help="folder the app tools work in (default: a temporary one)"
    )
    p.add_argument("--turn-timeout", type=float, default=300.0, metavar="SECONDS", help="a turn's deadline")
    p.add_argument("--json", action="store_true", help="print only the summary, as one JSON object")
    p.set_defaults(run=run)


class LiveView:
    """The state of the run as the event log tells it, rendered as a table."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.tools: dict[str, dict[str, Any]] = {}
        self.turn = 0
        self.phase = "starting"
        self.text_chars = 0
        self.last_text = ""

    def t(self, event: dict[str, Any]) -> float:
        if self.t0 is None:
            self.t0 = event["ts"]
        return float(event["ts"] - self.t0)

    def apply(self, event: dict[str, Any]) -> None:
        kind, now = event["kind"], self.t(event)
        tool_id = event.get("tool_use_id")
        if kind == "request_sent":
            self.turn, self.phase = event.get("turn", 0), "requesting"
        elif kind == "stream_opened":
            self.phase = "streaming"
        elif kind == "text_delta":
            self.text_chars += len(event.get("text", ""))
            self.last_text = (self.last_text + event.get("text", ""))[-80:]
        elif kind == "message_stopped":
            self.phase = f"stream ended ({event.get('stop_reason')})"
        elif kind == "turn_sealed":
            self.phase = "waiting for tools"
        elif kind == "continued":
            self.phase = "continuing"
        elif kind in ("run_completed", "run_failed", "run_ended"):
            self.phase = f"{event.get('state')}: {event.get('reason')}"
        if not tool_id or event.get("server_side"):
            return
        row = self.tools.setdefault(
            tool_id,
            {
                "name": event.get("name"),
                "turn": event.get("turn"),
                "status": "pending",
                "stage": "",
                "times": {},
            },
        )
        if kind == "tool_input_started":
            row["times"]["input"] = now
        elif kind == "tool_field_completed":
            row["stage"] = f"{event.get('field')}: {str(event.get('value'))[:40]}"
        elif kind == "tool_ready":
            row["times"]["ready"] = now
        elif kind == "tool_waiting":
            row["status"] = "waiting"
            row["stage"] = f"after earlier calls on {event.get('concurrency_key')}"
        elif kind == "tool_enqueued":
            row["status"] = "queued"
            row["times"].setdefault("enqueued", now)
        elif kind == "tool_started":
            row["status"] = "running"
            row["times"].setdefault("started", now)
        elif kind == "tool_progress":
            fraction = event.get("fraction")
            row["stage"] = f"{event.get('stage', '')} {'' if fraction is None else f'{fraction:.0%}'}".strip()
        elif kind in ("tool_completed", "tool_failed", "tool_cancelled", "tool_refused"):
            row["status"] = event.get("status", "ok")
            row["times"]["finished"] = now
            row["stage"] = str(event.get("content", ""))[:50].replace("\n", " ")
        elif kind == "tool_rejected":
            row["status"] = "refused"
            row["stage"] = str(event.get("reason", ""))[:50]

    def render(self) -> Group:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("turn", "tool", "id", "status", "ready", "started", "finished", "took", "detail"):
            table.add_column(
                col, no_wrap=True, overflow="ellipsis", max_width=52 if col == "detail" else None
            )
        for tool_id, row in self.tools.items():
            times = row["times"]
            took = ""
            if "started" in times and "finished" in times:
                took = f"{times['finished'] - times['started']:.2f}s"
            spinner = "⠿ " if row["status"] == "running" else ""
            table.add_row(
                str(row["turn"]),
                str(row["name"]),
                tool_id[-10:],
                Text(spinner + row["status"], style=_STYLE.get(row["status"], "")),
                *(f"{times[k]:.2f}" if k in times else "" for k in ("ready", "started", "finished")),
                took,
                row["stage"],
            )
        head = Text(f"turn {self.turn}  {self.phase}  ·  {self.text_chars} chars of text", style="bold")
        return Group(head, table)


def _summary_table(summary: dict[str, Any]) -> Group:
    cf = summary["counterfactual"]
    total = summary.get("total_s")
    lines = Table(box=None, header_style="bold", pad_edge=False)
    lines.add_column("this run and its counterfactuals")
    lines.add_column("seconds", justify="right")
    lines.add_row(Text("measured (tools run as each became ready)", style="bold green"), f"{total:.2f}")
    lines.add_row("sequential after the stream", f"{cf['sequential_s']:.2f}")
    lines.add_row("parallel after the stream", f"{cf['parallel_after_stream_s']:.2f}")
    lines.add_row("ideal: max(stream end, ready + duration)", f"{cf['ideal_s']:.2f}")
    state = Text(f"run {summary.get('state')}: {summary.get('reason')}")
    return Group(state, lines)


def run(args: argparse.Namespace) -> int:
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        print(f"incremental replay: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.speed < 0 or (args.simulate is not None and args.simulate < 0):
        print("incremental replay: --speed and --simulate take non-negative numbers", file=sys.stderr)
        return 2
    from ..core import IncrementalError
    from ..replay import ReplayOptions, replay

    options = ReplayOptions(
        files=args.files,
        speed=args.speed,
        simulate_s=args.simulate,
        redis_url=args.redis,
        workers=args.workers,
        workspace=args.workspace,
        turn_timeout_s=args.turn_timeout,
    )
    try:
        return _run(args, options, replay)
    except IncrementalError as exc:  # Redis unreachable, and the like: said plainly, no traceback
        print(f"incremental replay: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, options: Any, replay: Any) -> int:
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    view = LiveView()
    if args.json:
        summary = asyncio.run(replay(options))
        print(json.dumps(summary))
        return 0 if summary.get("state") == "completed" else 1
    if console.is_terminal:
        with Live(view.render(), console=console, refresh_per_second=12, transient=False) as live:

            def on_event(event: dict[str, Any]) -> None:
                view.apply(event)
                live.update(view.render())

            summary = asyncio.run(replay(options, on_event))
    else:

        def on_event(event: dict[str, Any]) -> None:
            view.apply(event)
            kind = event["kind"]
            if kind in (
                "tool_ready",
                "tool_started",
                "tool_completed",
                "tool_failed",
                "continued",
                "run_completed",
                "run_failed",
                "run_ended",
                "message_stopped",
                "tool_rejected",
                "tool_refused",
            ):
                at = view.t(event)
                what = event.get("name") or event.get("stop_reason") or event.get("reason") or ""
                console.print(f"{at:8.3f}s  {kind:<16} {what} {event.get('tool_use_id', '')}")

        summary = asyncio.run(replay(options, on_event))
        console.print(view.render())
    console.print()
    console.print(_summary_table(summary))
    return 0 if summary.get("state") == "completed" else 1
