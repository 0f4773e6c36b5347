"""Argument parsing and dispatch to the sub-commands. Exit codes: 0 ok, 1 a stream failed, 2 usage."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import _fake_api, _inspect, _record, _replay, _serve

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="incremental",
        description="Read Claude's streamed tool calls as they arrive.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _inspect.add_parser(sub)
    _fake_api.add_parser(sub)
    _record.add_parser(sub)
    _replay.add_parser(sub)
    _serve.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except BrokenPipeError:  # `incremental inspect ... | head`
        sys.stderr.close()
        return 0
    return code
