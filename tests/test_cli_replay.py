"""``incremental replay`` through the real entry point: it starts its own redis-server and workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ._support import APP_BUILDER, FIXTURES

KEYS = {"tools", "turns", "stream_end_at", "continued_at", "total_s", "counterfactual"}
TOOL_KEYS = ["id", "name", "ready_at", "enqueued_at", "started_at", "finished_at", "status", "executions"]


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # the command starts its own Redis
    return subprocess.run(
        [sys.executable, "-m", "incremental.cli", "replay", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def test_json_summary_of_the_app_builder_conversation() -> None:
    files = [str(p) for p in APP_BUILDER]
    result = replay(*files, "--speed", "20", "--simulate", "0.2", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary) >= KEYS
    assert len(summary["tools"]) == 8
    for tool in summary["tools"]:
        assert list(tool) == TOOL_KEYS
        assert tool["status"] == "ok" and tool["executions"] == 1
        assert tool["ready_at"] <= tool["enqueued_at"] <= tool["started_at"] < tool["finished_at"]
    cf = summary["counterfactual"]
    assert set(cf) == {"sequential_s", "parallel_after_stream_s", "ideal_s"}
    assert cf["ideal_s"] <= cf["parallel_after_stream_s"] <= cf["sequential_s"]
    assert summary["total_s"] >= cf["ideal_s"]
    # The three file writes (ready at 16.7, 28.2 and 39.1 of the stream's 45.5 recorded seconds) were done
    # before the model's stream ended.
    assert sum(t["finished_at"] < summary["stream_end_at"] for t in summary["tools"]) >= 3
    assert summary["continued_at"] > summary["stream_end_at"]


def test_the_shipped_demo_replays_with_the_app_builder_tools(tmp_path: Path) -> None:
    """``--demo`` plays the two packaged turns; the tools are the app builder's, run for real."""
    workspace = tmp_path / "app"
    workspace.mkdir()
    result = replay("--demo", "--speed", "0", "--workspace", str(workspace), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "completed"
    assert [t["status"] for t in summary["tools"]] == ["ok"] * 8
    assert json.loads((workspace / "app.json").read_text())["name"] == "Streak — Habit Tracker"
    assert (workspace / "src" / "components" / "HabitList.tsx").is_file()


def test_files_or_demo_one_of_them() -> None:
    assert replay().returncode == 2
    both = replay("--demo", str(FIXTURES / "single_tool.sse"))
    assert both.returncode == 2 and "one of them" in both.stderr


def test_human_view_and_usage_errors() -> None:
    result = replay(str(FIXTURES / "single_tool.sse"), "--speed", "0", "--simulate", "0")
    # One recorded turn that asks for a tool: the run stops at the turn limit, after the tool ran.
    assert result.returncode == 1
    assert "read_file" in result.stdout and "turn limit" in result.stdout
    assert "sequential after the stream" in result.stdout
    assert replay("/no/such.sse").returncode == 2
    assert replay(str(FIXTURES / "single_tool.sse"), "--speed", "-1").returncode == 2


def test_unreachable_redis_is_a_clear_error_not_a_traceback() -> None:
    result = replay(str(FIXTURES / "single_tool.sse"), "--redis", "redis://127.0.0.1:1/0", "--workers", "1")
    assert result.returncode == 1
    assert "incremental replay: cannot reach Redis at redis://127.0.0.1:1/0" in result.stderr
    assert "Traceback" not in result.stderr
