"""Every fixture, under every chunking: the same events (deltas joined); the SDK's accumulator as oracle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from incremental import StreamParser

from ._support import (
    APP_BUILDER,
    CHUNKINGS,
    FIXTURES,
    WELL_FORMED,
    all_fixtures,
    fixture,
    run_parser,
    sdk_final_message,
)
from .test_parser_properties import joined

ROOT = Path(__file__).resolve().parent.parent

# Per-byte feeding of the multi-megabyte fixture takes minutes and proves nothing the small ones don't.
_PER_BYTE_MAX = 300_000


def _chunkings_for(path: Path) -> list[str]:
    names = list(CHUNKINGS)
    if path.stat().st_size > _PER_BYTE_MAX:
        names.remove("per_byte")
    return names


CASES = [(p, c) for p in all_fixtures() for c in _chunkings_for(p) if c != "whole"]


@pytest.fixture(scope="module")
def reference() -> dict[str, list[dict[str, Any]]]:
    out = {}
    for path in all_fixtures():
        _, events = run_parser([path.read_bytes()], format="auto")
        out[path.name] = joined(events)
    return out


def test_there_are_fixtures_for_every_case_the_readme_lists() -> None:
    names = {p.name for p in all_fixtures()}
    assert set(WELL_FORMED) <= names
    assert {"invalid_tool_json.sse", "overloaded_midstream.sse", "capture.jsonl"} <= names


@pytest.mark.parametrize(("path", "chunking"), CASES, ids=[f"{p.name}-{c}" for p, c in CASES])
def test_same_events_for_any_chunking(
    path: Path, chunking: str, reference: dict[str, list[dict[str, Any]]]
) -> None:
    _, events = run_parser(CHUNKINGS[chunking](path.read_bytes()), format="auto")
    assert joined(events) == reference[path.name]


def _normalise_sdk(message: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """The SDK sets every message_delta field it models, even when the stream never sent it (as null)."""
    return {k: v for k, v in message.items() if k in ours or v is not None}


@pytest.mark.parametrize("name", WELL_FORMED)
def test_assembled_message_equals_the_sdk_accumulator(name: str) -> None:
    data = fixture(name).read_bytes()
    parser, _ = run_parser([data])
    assert parser.error is None
    ours = parser.message()
    assert _normalise_sdk(sdk_final_message(data), ours) == ours


def test_jsonl_capture_reads_like_its_sse_twin() -> None:
    sse, _ = run_parser([(FIXTURES / "single_tool.sse").read_bytes()])
    jsonl = StreamParser(format="auto")
    jsonl.feed((FIXTURES / "capture.jsonl").read_bytes())
    jsonl.end()
    assert jsonl.error is None
    assert jsonl.message() == sse.message()
    assert jsonl.tool_calls == sse.tool_calls


def test_the_main_fixture_has_every_tool_ready_well_before_message_stop() -> None:
    parser, _ = run_parser([APP_BUILDER[0].read_bytes()])
    assert len(parser.tool_calls) == 8
    assert parser.stopped_at is not None and parser.stopped_at >= 20
    first = min(b.stopped_at or 0 for b in parser.blocks if b.type == "tool_use")
    assert parser.stopped_at - first > 10


def test_the_generator_makes_every_fixture_where_it_is_kept() -> None:
    """``scripts/make_fixtures.py`` reproduces each recorded stream byte for byte, at the path it is read
    from (the demo's two turns in the package, the rest in ``fixtures/``), and nothing else."""
    import runpy

    script = runpy.run_path(str(ROOT / "scripts" / "make_fixtures.py"))
    rendered, output_path = script["render_all"](), script["output_path"]
    assert {output_path(name) for name in rendered} == set(all_fixtures())
    assert output_path("app_builder_8_tools.sse") == APP_BUILDER[0]
    for name, (_, data) in rendered.items():
        assert output_path(name).read_bytes() == data, name
