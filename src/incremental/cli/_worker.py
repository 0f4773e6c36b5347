"""``incremental worker SETTINGS``: an arq worker of your module, supervised (see ``incremental.worker``)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

__all__ = ["add_parser", "load_settings"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "worker",
        help="run an arq worker of your WorkerSettings: reconnects after a Redis outage, drains on SIGTERM",
        description=(
            "Run one worker of SETTINGS (module.WorkerSettings or module:WorkerSettings, a class made by "
            "incremental.worker.settings), as `arq SETTINGS` does, with two differences: when Redis "
            "fails under the worker's loop the loop starts again, keeping the jobs that run; and the "
            "first SIGTERM or SIGINT stops it gracefully (no new jobs, a grace period, then what can be "
            "handed over goes back to the queue), a second one at once."
        ),
    )
    p.add_argument("settings", metavar="SETTINGS", help="module.WorkerSettings (or module:WorkerSettings)")
    p.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    p.set_defaults(run=run)


def load_settings(spec: str) -> Any:
    """The class ``spec`` names, imported with the current directory on ``sys.path`` (as ``arq`` does)."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"expected module.WorkerSettings or module:WorkerSettings, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return getattr(importlib.import_module(module_name), attr)


def run(args: argparse.Namespace) -> int:
    from ..worker import run_worker

    try:
        settings = load_settings(args.settings)
    except (ValueError, ImportError, AttributeError) as exc:
        print(f"incremental worker: {args.settings}: {exc}", file=sys.stderr)
        return 2
    overrides = {"burst": True} if args.burst else {}
    try:
        run_worker(settings, **overrides)
    except KeyboardInterrupt:
        pass
    return 0
