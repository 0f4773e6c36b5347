"""``incremental replay FILE...``: play a recorded conversation through real workers, live, then summarise."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # imported when used: the base install (inspect, beside this command) has no pydantic
    from ..pipeline._view import ToolView

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


# The steps a piped replay prints, one line each (a terminal gets the live table instead).
_PRINTED = frozenset(
    {
        "tool_ready",
        "tool_started",
        "tool_completed",
        "tool_failed",
        "tool_rejected",
        "tool_refused",
        "continued",
        "message_stopped",
    }
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a recorded conversation through real arq workers, live",
        description="Play recorded turns (one file per turn) against a loopback fake Messages API at their "
        "recorded speed, run every tool on arq workers as soon as it is ready, and show it live. Tools run "
        "from the app-builder demo's tool set (incremental.examples.app_builder), or all simulated.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="recorded turns, in order")
    p.add_argument(
        "--demo", action="store_true", help="replay the app-builder demo's two recorded turns (shipped)"
    )
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
    p.add_argument(
        "--api-port",
        type=int,
        default=0,
        metavar="PORT",
        help="the fake Messages API's port (default: a free one); with --redis, point your workers' "
        "ANTHROPIC_BASE_URL at it",
    )
    p.add_argument("--json", action="store_true", help="print only the summary, as one JSON object")
    p.set_defaults(run=run)


class LiveView:
    """The run as its event log tells it (the one reducer, ``RunView``), rendered as a table."""

    def __init__(self) -> None:
        from ..events import RUN_FINAL_KINDS
        from ..pipeline._view import RunView

        self.final_kinds = RUN_FINAL_KINDS
        self.view = RunView("")
        self.phase = "starting"

    def t(self, event: dict[str, Any]) -> float:
        t0 = self.view.created_at if self.view.created_at is not None else self.view.first_ts
        return float(event["ts"] - (t0 if t0 is not None else event["ts"]))

    def apply(self, event: dict[str, Any]) -> None:
        self.view.apply(event)
        kind = event["kind"]
        phases = {
            "request_sent": "requesting",
            "stream_opened": "streaming",
            "turn_sealed": "waiting for tools",
            "continued": "continuing",
        }
        if kind in phases:
            self.phase = phases[kind]
        elif kind == "message_stopped":
            self.phase = f"stream ended ({event.get('stop_reason')})"
        elif kind in self.final_kinds:
            self.phase = f"{event.get('state')}: {event.get('reason')}"

    def _rel(self, value: float | None) -> str:
        t0 = self.view.created_at if self.view.created_at is not None else self.view.first_ts
        return "" if value is None or t0 is None else f"{value - t0:.2f}"

    @staticmethod
    def _status(tool: ToolView) -> str:
        if tool.result_status is not None:
            return tool.result_status
        return tool.status if tool.status in ("waiting", "queued", "running") else "pending"

    @staticmethod
    def _detail(tool: ToolView) -> str:
        if tool.result is not None:
            return tool.result[:50].replace("\n", " ")
        if tool.status == "running" and tool.progress:
            fraction = tool.progress.get("fraction")
            share = "" if fraction is None else f"{fraction:.0%}"
            return f"{tool.progress.get('stage') or ''} {share}".strip()
        if tool.status == "waiting" and tool.concurrency_key:
            return f"after earlier calls on {tool.concurrency_key}"
        return tool.last_field or ""

    def render(self) -> Group:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("turn", "tool", "id", "status", "ready", "started", "finished", "took", "detail"):
            table.add_column(
                col, no_wrap=True, overflow="ellipsis", max_width=52 if col == "detail" else None
            )
        for tool in self.view.tools.values():
            status = self._status(tool)
            finished = tool.reported_at
            took = (
                f"{finished - tool.started_at:.2f}s"
                if finished is not None and tool.started_at is not None
                else ""
            )
            spinner = "⠿ " if status == "running" else ""
            table.add_row(
                str(tool.turn),
                tool.name,
                tool.tool_use_id[-10:],
                Text(spinner + status, style=_STYLE.get(status, "")),
                self._rel(tool.ready_at),
                self._rel(tool.started_at),
                self._rel(finished),
                took,
                self._detail(tool),
            )
        text_chars = sum(len(t) for t in self.view.text)
        head = Text(f"turn {self.view.turn}  {self.phase}  ·  {text_chars} chars of text", style="bold")
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
    if args.demo == bool(args.files):
        print("incremental replay: give the recorded turns (FILE...) or --demo, one of them", file=sys.stderr)
        return 2
    if args.demo:
        from ..examples.app_builder import RECORDINGS

        args.files = [str(path) for path in RECORDINGS]
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        print(f"incremental replay: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.speed < 0 or (args.simulate is not None and args.simulate < 0):
        print("incremental replay: --speed and --simulate take non-negative numbers", file=sys.stderr)
        return 2
    from ..core import IncrementalError
    from ..examples.app_builder.tools import registry as app_registry
    from ..examples.app_builder.tools import seed_vite_starter
    from ..replay import ReplayOptions, replay

    options = ReplayOptions(
        files=args.files,
        tools=app_registry,
        toolset="app",
        speed=args.speed,
        simulate_s=args.simulate,
        redis_url=args.redis,
        workers=args.workers,
        workspace=args.workspace,
        prepare_workspace=seed_vite_starter,  # the app-builder recordings edit a Vite starter project
        turn_timeout_s=args.turn_timeout,
        api_port=args.api_port,
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
            if kind in _PRINTED or kind in view.final_kinds:
                at = view.t(event)
                what = event.get("name") or event.get("stop_reason") or event.get("reason") or ""
                console.print(f"{at:8.3f}s  {kind:<16} {what} {event.get('tool_use_id', '')}")

        summary = asyncio.run(replay(options, on_event))
        console.print(view.render())
    console.print()
    console.print(_summary_table(summary))
    return 0 if summary.get("state") == "completed" else 1
