"""``incremental inspect``: the human timeline and the ``--json`` contract, through the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ._support import APP_BUILDER, FIXTURES, all_fixtures

KEYS = ["file", "message", "tool_calls", "rejected", "warnings", "error"]
FATAL = {"overloaded_midstream.sse"}


def incremental(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """The command as users run it: bytes in (gzip, noise), text out."""
    done = subprocess.run(
        [sys.executable, "-m", "incremental.cli", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
    )
    out, err = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
    return subprocess.CompletedProcess(done.args, done.returncode, out, err)


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
    result = incremental("inspect", str(APP_BUILDER[0]))
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


def _binary(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str, int]]:
    """name: (file, the words its error must hold, exit code)."""
    import gzip
    import random

    noise = random.Random(7).randbytes(4096)
    return {
        "empty file": (_binary(tmp / "empty.sse", b""), "empty input: the file holds no bytes", 1),
        "whitespace": (
            _binary(tmp / "blank.sse", b"\n \r\n\n"),
            "empty input: the file holds only whitespace",
            1,
        ),
        "random bytes": (
            _binary(tmp / "noise.bin", noise),
            "no SSE or JSON Lines events found in 4,096 bytes",
            1,
        ),
        "gzip": (
            _binary(tmp / "single.sse.gz", gzip.compress((FIXTURES / "single_tool.sse").read_bytes())),
            "no SSE or JSON Lines events found in",
            1,
        ),
        "plain text": (_binary(tmp / "notes.txt", b"hello\nworld\n"), "text that starts 'hello'", 1),
        "a JSON document": (
            _binary(tmp / "doc.json", json.dumps({"a": 1}, indent=2).encode()),
            "one JSON document (dict), not one event object per line",
            1,
        ),
        "a non-streamed message": (
            _binary(tmp / "message.json", json.dumps({"type": "message", "content": []}).encode()),
            "one whole Messages API response",
            1,
        ),
        "a directory": (tmp, "is a directory", 2),
        "a missing file": (tmp / "nope.sse", "no such file", 2),
    }


BAD_INPUTS = [
    "empty file",
    "whitespace",
    "random bytes",
    "gzip",
    "plain text",
    "a JSON document",
    "a non-streamed message",
    "a directory",
    "a missing file",
]


def test_every_bad_input_case_is_tested(tmp_path: Path) -> None:
    assert list(_bad_inputs(tmp_path)) == BAD_INPUTS


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_each_bad_input_gets_its_own_error(case: str, tmp_path: Path) -> None:
    path, words, code = _bad_inputs(tmp_path)[case]
    result = incremental("inspect", "--json", str(path))
    assert result.returncode == code, result.stderr
    line = json.loads(result.stdout)
    assert list(line) == KEYS and line["file"] == str(path)
    assert words in line["error"], line["error"]
    assert "expected message_stop" not in line["error"]
    human = incremental("inspect", str(path))
    assert human.returncode == code
    if code == 1:  # read, but not a stream: reported on standard output like any stream
        assert words in human.stdout and not human.stderr
    else:  # could not be read: said on standard error
        assert words in human.stderr and str(path) in human.stderr


def test_gzip_gets_a_hint_and_empty_stdin_says_stdin() -> None:
    import gzip

    data = gzip.compress((FIXTURES / "single_tool.sse").read_bytes())
    result = incremental("inspect", "--json", "-", stdin=data)
    assert "gzip-compressed: decompress it first" in json.loads(result.stdout)["error"]
    empty = incremental("inspect", "--json", "-", stdin=b"")
    assert json.loads(empty.stdout)["error"] == "empty input: standard input holds no bytes"
    assert empty.returncode == 1


def test_a_directory_of_recordings_says_which_files_to_give(tmp_path: Path) -> None:
    (tmp_path / "turn-00.sse").write_bytes((FIXTURES / "single_tool.sse").read_bytes())
    result = incremental("inspect", str(tmp_path))
    assert result.returncode == 2
    assert f"is a directory (it holds 1 .sse file(s): give them, e.g. {tmp_path}/*.sse)" in result.stderr


@pytest.mark.parametrize(
    "unreadable",
    [
        pytest.param("chmod", marks=pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")),
        pytest.param(
            "/proc/self/mem", marks=pytest.mark.skipif(sys.platform != "linux", reason="Linux only")
        ),
    ],
)
def test_an_unreadable_file_says_so(unreadable: str, tmp_path: Path) -> None:
    path = tmp_path / "locked.sse"
    if unreadable == "chmod":
        path.write_bytes((FIXTURES / "single_tool.sse").read_bytes())
        path.chmod(0)
        expected = "cannot read it: permission denied"
    else:
        path = Path(unreadable)  # a regular file whose read fails (input/output error)
        expected = "cannot read it: Input/output error"
    result = incremental("inspect", "--json", str(path))
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"] == expected
    assert f"incremental inspect: {path}: {expected}" in result.stderr


def test_one_bad_file_does_not_hide_the_others(tmp_path: Path) -> None:
    good, missing, empty = FIXTURES / "single_tool.sse", tmp_path / "gone.sse", tmp_path / "empty.sse"
    empty.write_bytes(b"")
    result = incremental(
        "inspect", "--json", str(good), str(missing), str(empty), str(FIXTURES / "text_only.sse")
    )
    assert result.returncode == 2  # a file could not be read
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [
        str(good),
        str(missing),
        str(empty),
        str(FIXTURES / "text_only.sse"),
    ]
    assert [line["error"] is None for line in lines] == [True, False, False, True]
    assert len(lines[0]["tool_calls"]) == 1
    human = incremental("inspect", str(good), str(missing), str(FIXTURES / "text_only.sse"))
    assert human.returncode == 2
    assert "toolu_01TAH2baawRRIA2x9oNAcAOw" in human.stdout and "stop_reason=end_turn" in human.stdout
    assert f"{missing}: no such file" in human.stderr
    only_empty = incremental("inspect", str(good), str(empty))
    assert only_empty.returncode == 1  # read, but not a stream


def test_verbose_shows_tool_inputs_pretty_printed_and_cut_and_the_text() -> None:
    result = incremental("inspect", "--verbose", str(APP_BUILDER[0]))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '"path": "src/App.tsx",' in out and '"name": "Streak — Habit Tracker"' in out
    assert "… (2,550 characters)" in out  # the file's content, cut
    assert "I'll set up a small habit tracker called **Streak**" in out
    assert '"start_line": 1,' in out  # one key per line
    plain = incremental("inspect", str(APP_BUILDER[0])).stdout
    assert '"path": "src/App.tsx"' not in plain and "habit tracker called" not in plain
    invalid = incremental("inspect", "-v", str(FIXTURES / "invalid_tool_json.sse")).stdout
    assert '(not valid JSON, as streamed) {"path": "NOTES.md"' in invalid


def test_untimed_captures_say_so_instead_of_blank_time_columns() -> None:
    untimed = incremental("inspect", str(FIXTURES / "capture.jsonl"))
    assert untimed.returncode == 0
    assert "untimed: this capture has no `: t=SECONDS` timing comments" in untimed.stdout
    assert "start s" not in untimed.stdout and "earlier than message_stop" not in untimed.stdout
    timed = incremental("inspect", str(FIXTURES / "single_tool.sse")).stdout
    assert "untimed" not in timed and "start s" in timed
