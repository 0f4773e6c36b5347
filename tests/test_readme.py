"""README can't rot: every Python example in it runs here, and prints what README says it prints.

Each example runs as its own process, the way a reader would paste it. The model is the fake Messages
API, reached the way any user's code reaches another endpoint (``ANTHROPIC_BASE_URL``); Redis is the
examples' own (the Runner's private redis-server) or the session's, for the worker module.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from incremental import Runner
from incremental.testing import FakeMessagesAPIFactory

from ._streams import (
    MESSAGE_STOP,
    json_delta,
    message_delta,
    message_start,
    stop,
    stream,
    text_delta,
    text_start,
    tool_start,
)
from ._workers import arq_worker

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```\n(?:\n```\n(.*?)```\n)?", README, re.S)


def example(marker: str) -> tuple[str, str]:
    """The Python block holding ``marker``, and the plain block right after it (its output), if any."""
    found = [(code, out) for code, out in BLOCKS if marker in code]
    assert len(found) == 1, f"{len(found)} README examples hold {marker!r}"
    return found[0]


def weather_turns() -> list[bytes]:
    calls = []
    for i, (tool_id, city) in enumerate([("toolu_paris", "Paris"), ("toolu_oslo", "Oslo")], start=1):
        calls += [tool_start(i, tool_id, "get_weather"), json_delta(i, json.dumps({"city": city})), stop(i)]
    first = stream(
        message_start(),
        text_start(0),
        text_delta(0, "Let me look."),
        stop(0),
        *calls,
        message_delta("tool_use"),
        MESSAGE_STOP,
    )
    final = stream(
        message_start("msg_final"),
        text_start(0),
        text_delta(0, "Sunny in Paris, snow in Oslo."),
        stop(0),
        message_delta("end_turn"),
        MESSAGE_STOP,
    )
    return [first, final]


def run_python(code: str, env: dict[str, str], cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def model_env(api_url: str) -> dict[str, str]:
    env = {**os.environ, "ANTHROPIC_BASE_URL": api_url, "ANTHROPIC_API_KEY": "sk-test"}
    env.pop("REDIS_URL", None)
    env.pop("INCREMENTAL_TOOLSETS", None)
    return env


def test_every_python_example_is_covered_here() -> None:
    markers = ["StreamParser()", "Runner(tools=registry", "incremental.worker.settings(", "def write_file("]
    for code, _ in BLOCKS:
        assert any(m in code for m in markers), f"a README example no test runs:\n{code[:300]}"


async def test_the_runner_example_prints_what_readme_says(fake_messages_api: FakeMessagesAPIFactory) -> None:
    code, shown = example("Runner(tools=registry")
    api = await fake_messages_api(weather_turns(), speed=0)
    out = await asyncio.to_thread(run_python, code, model_env(api.url))
    got, want = out.splitlines(), shown.splitlines()
    # The two tools run at once: their completions may come in either order.
    completed = [line for line in want if line.startswith("tool_completed")]
    assert sorted(got[2:4]) == sorted(completed) and got[:2] + got[4:] == [
        line for line in want if line not in completed
    ]
    assert api.rejections == [] and len(api.requests) == 2
    assert api.requests[0]["temperature"] == 0.2


async def test_the_worker_module_example_serves_runs_under_arq(
    redis_url: str, tmp_path: Path, fake_messages_api: FakeMessagesAPIFactory
) -> None:
    runner_code, _ = example("Runner(tools=registry")
    worker_code, _ = example("incremental.worker.settings(")
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tools.py").write_text(runner_code.split("async def main")[0])  # its registry and hook
    (package / "worker.py").write_text(worker_code)
    api = await fake_messages_api(weather_turns(), speed=0)
    queue = f"readme-{uuid.uuid4().hex[:8]}"
    async with (
        arq_worker(
            "myapp.worker.WorkerSettings",
            redis_url=redis_url,
            api_url=api.url,
            cwd=tmp_path,
            INCREMENTAL_QUEUE=queue,
            PYTHONPATH=str(tmp_path),
        ) as worker,
        Runner(redis_url=redis_url, queue=queue) as runner,
    ):
        messages: list[dict[str, Any]] = [{"role": "user", "content": "Paris and Oslo?"}]
        result = await runner.run(
            messages, model="claude-sonnet-4-5", max_tokens=1024, toolset="myapp", timeout=60
        )
    assert result.state == "completed", (result.reason, worker.log)
    assert [t.content for t in result.tools] == ["sunny, 21 °C", "snow, -3 °C"]


@pytest.mark.parametrize("marker", ["StreamParser()", "def write_file("])
def test_the_library_examples_run(marker: str) -> None:
    code, shown = example(marker)
    out = run_python(code, {**os.environ})
    expected = [line for line in shown.splitlines() if line.strip() != "..."]
    lines = out.splitlines()
    position = 0
    for line in expected:  # README shows some lines of the output, in order ("..." elides the rest)
        assert line in lines[position:], f"README shows {line!r}; the example printed:\n{out}"
        position = lines.index(line, position) + 1
