"""Helpers shared by the tests: fixture paths, chunkings, and the anthropic SDK as an oracle."""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from incremental import Event, StreamParser
from incremental.examples.app_builder import RECORDINGS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
APP_BUILDER = list(RECORDINGS)  # the two-turn app-builder conversation, shipped in the package

# Fixtures whose stream is well-formed end to end: the SDK's accumulator must agree with us on them.
WELL_FORMED = [
    "text_only.sse",
    "single_tool.sse",
    "app_builder_8_tools.sse",
    "app_builder_turn2.sse",
    "thinking_parallel_tools.sse",
    "server_tool_web_search.sse",
    "empty_input_tool.sse",
    "max_tokens_in_tool.sse",
    "unknown_types.sse",
    "crlf_framing.sse",
    "large_file_1mb.sse",
]


def all_fixtures() -> list[Path]:
    """Every recorded stream: ``fixtures/`` and the recordings the package ships."""
    found = [p for p in FIXTURES.iterdir() if p.suffix in (".sse", ".jsonl")]
    return sorted([*found, *RECORDINGS], key=lambda p: p.name)


def fixture(name: str) -> Path:
    """A recorded stream by file name, wherever it is kept."""
    for path in all_fixtures():
        if path.name == name:
            return path
    raise FileNotFoundError(name)


def whole(data: bytes) -> Iterator[bytes]:
    yield data


def per_line(data: bytes) -> Iterator[bytes]:
    yield from data.splitlines(keepends=True)


def per_byte(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]


def random_chunks(seed: int) -> Callable[[bytes], Iterator[bytes]]:
    def chunker(data: bytes) -> Iterator[bytes]:
        rng = random.Random(seed)
        i = 0
        while i < len(data):
            n = rng.choice((1, 2, 3, 7, 64, 500, 4096))
            yield data[i : i + n]
            i += n

    return chunker


CHUNKINGS: dict[str, Callable[[bytes], Iterator[bytes]]] = {
    "whole": whole,
    "per_line": per_line,
    "per_byte": per_byte,
    "random_1": random_chunks(1),
    "random_2": random_chunks(2),
}


def run_parser(chunks: Iterator[bytes] | list[bytes], **kwargs: Any) -> tuple[StreamParser, list[Event]]:
    parser = StreamParser(**kwargs)
    events: list[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
        if parser.error is not None:
            break
    events.extend(parser.end())
    return parser, events


def comparable(events: list[Event]) -> list[dict[str, Any]]:
    """Events as data, for equality across chunkings."""
    return [e.to_dict() for e in events]


def sdk_final_message(data: bytes) -> dict[str, Any]:
    """What the anthropic SDK's own ``messages.stream()`` accumulates from these bytes."""
    return dict(sdk_dump(data, lambda message: message.to_dict(mode="json")))


def sdk_dump(data: bytes, dump: Callable[[Any], Any]) -> Any:
    """``dump(final message)`` of the anthropic SDK's own ``messages.stream()`` over these bytes, with
    the warnings the SDK gives on block types it does not model silenced."""
    import anthropic
    import httpx2

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=data)

    client = anthropic.Anthropic(
        api_key="test-key",
        base_url="http://oracle.invalid",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    with (
        warnings.catch_warnings(),
        client.messages.stream(
            model="oracle-model", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        # Block types the SDK does not model (the unknown_types fixture) make pydantic warn on dump.
        warnings.simplefilter("ignore", UserWarning)
        for _ in stream:
            pass
        return dump(stream.get_final_message())


async def race_results_against_the_seal(store: Any, prefix: str, trials: int = 30) -> None:
    """Results, the seal and a redelivered duplicate, all at once in varying orders: one continuation."""
    import asyncio

    from incremental.tools import ToolResult

    for trial in range(trials):
        run_id, ids = f"{prefix}-{trial}", [f"toolu_{i}" for i in range(6)]
        results = [ToolResult(i, "t", "ok", "done", False) for i in ids]
        steps = [store.add_result(run_id, 0, r) for r in results] + [store.seal(run_id, 0, ids, 1e12)]
        steps += [store.add_result(run_id, 0, results[0])]  # a redelivered duplicate too
        order = list(range(len(steps)))
        # Vary who comes last: the seal, or any of the results.
        order.insert(0, order.pop(trial % len(order)))
        outcomes = await asyncio.gather(*(steps[i] for i in order))
        assert outcomes.count("continue") == 1, outcomes
        assert outcomes.count("dup") == 1
        assert (await store.turn(run_id, 0))["continued"] == "1"
        assert await store.expire_turn(run_id, 0, []) == "already"
        assert await store.block_continuation(run_id, 0, "failed", "late") is False
