"""``incremental inspect``: the human timeline and the ``--json`` contract, through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ._support import FIXTURES, all_fixtures

KEYS = ["file", "message", "tool_calls", "rejected", "warnings", "error"]
FATAL = {"overloaded_midstream.sse"}


def incremental(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "incremental.cli", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def json_lines() -> dict[str, dict[str, object]]:
    files = [str(p) for p in all_fixtures()]
    result = incremental("inspect", "--json", *files)
    assert result.returncode == 1  # one fixture ends in an upstream error
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == files
    return {Path(str(line["file"])).name: line for line in lines}


@pytest.mark.parametrize("path", all_fixtures(), ids=lambda p: p.name)
def test_json_contract_on_every_fixture(path: Path, json_lines: dict[str, dict[str, object]]) -> None:
    line = json_lines[path.name]
    assert list(line) == KEYS
    assert (line["error"] is not None) == (path.name in FATAL)
    for call in line["tool_calls"]:  # type: ignore[attr-defined]
        assert list(call) == ["index", "id", "name", "input", "ready_at"]
        assert isinstance(call["input"], dict)
    for rejected in line["rejected"]:  # type: ignore[attr-defined]
        assert list(rejected) == ["index", "id", "name", "reason"] and rejected["reason"]
    indexes = [c["index"] for c in line["tool_calls"]]  # type: ignore[attr-defined]
    assert indexes == sorted(indexes)


def test_json_values_for_the_edge_fixtures(json_lines: dict[str, dict[str, object]]) -> None:
    cut = json_lines["max_tokens_in_tool.sse"]
    assert [r["name"] for r in cut["rejected"]] == ["write_file"]  # type: ignore[attr-defined]
    assert "max_tokens" in cut["rejected"][0]["reason"]  # type: ignore[index]
    bad = json_lines["invalid_tool_json.sse"]
    assert "not valid JSON" in bad["rejected"][0]["reason"]  # type: ignore[index]
    over = json_lines["overloaded_midstream.sse"]
    assert "overloaded_error" in str(over["error"])
    assert len(over["tool_calls"]) == 1  # type: ignore[arg-type]
    main = json_lines["app_builder_8_tools.sse"]
    assert len(main["tool_calls"]) == 8  # type: ignore[arg-type]
    assert all(c["ready_at"] > 0 for c in main["tool_calls"])  # type: ignore[attr-defined]
    assert json_lines["capture.jsonl"]["tool_calls"][0]["ready_at"] is None  # type: ignore[index]
    assert json_lines["unknown_types.sse"]["warnings"]


def test_human_timeline_of_the_main_fixture() -> None:
    result = incremental("inspect", str(FIXTURES / "app_builder_8_tools.sse"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ("write_file", "replace_lines", "replace_string", "rename_app", "read_file"):
        assert name in out
    assert out.count("ready") >= 8 and "earlier than message_stop" in out and "stop_reason=tool_use" in out


def test_stdin_and_exit_codes() -> None:
    data = (FIXTURES / "single_tool.sse").read_bytes()
    result = incremental("inspect", "--json", "-", stdin=data)
    assert result.returncode == 0
    assert json.loads(result.stdout)["file"] == "-"
    assert incremental("inspect", "--json", "/no/such/file.sse").returncode == 2
    assert incremental("inspect").returncode == 2
    assert incremental("inspect", "--bogus", "x").returncode == 2
    failed = incremental("inspect", str(FIXTURES / "overloaded_midstream.sse"))
    assert failed.returncode == 1 and "overloaded_error" in failed.stdout


def test_garbage_input_is_a_reported_error_not_a_crash() -> None:
    result = incremental("inspect", "--json", "-", stdin=b"data: {nope\n\n")
    assert result.returncode == 1
    line = json.loads(result.stdout)
    assert "expected a JSON object" in line["error"] and not result.stderr
