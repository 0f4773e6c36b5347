"""Argument parsing and dispatch to the sub-commands. Exit codes: 0 ok, 1 a stream failed, 2 usage."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from . import _fake_api, _inspect, _record, _replay, _serve, _worker

__all__ = ["main"]

# The extra each command needs beyond the base install (inspect needs none).
NEEDS = {
    "fake-api": "service",
    "record": "service",
    "replay": "service",
    "serve": "service",
    "worker": "worker",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="incremental",
        description="Read Claude's streamed tool calls as they arrive.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _inspect.add_parser(sub)
    _fake_api.add_parser(sub)
    _record.add_parser(sub)
    _replay.add_parser(sub)
    _serve.add_parser(sub)
    _worker.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except BrokenPipeError:  # `incremental inspect ... | head`
        sys.stderr.close()
        return 0
    except ModuleNotFoundError as exc:
        extra = NEEDS.get(args.command)
        if extra is None or not exc.name or exc.name.partition(".")[0] == "incremental":
            raise
        print(
            f"incremental {args.command}: needs the {extra} extra (no module named {exc.name!r}): "
            f"pip install 'incremental[{extra}]'",
            file=sys.stderr,
        )
        return 1
    return code
