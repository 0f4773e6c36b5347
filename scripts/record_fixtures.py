"""Make the recordings in fixtures/recorded/ with `incremental record` in front of the fake Messages API.

    .venv/bin/python scripts/record_fixtures.py

Each recording is a real exchange over loopback HTTP: the anthropic SDK (as an app uses it) talks to
the `incremental record` command, which forwards to a FakeMessagesAPI playing synthetic fixtures at
their recorded speed. The timing comments are measured on this machine, so a new run differs from the
committed files in its `: t=` values and request ids; the events themselves are the same.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import anthropic

from incremental.examples.app_builder import RECORDINGS
from incremental.fake_api import FakeMessagesAPI, Fault

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
OUT = FIXTURES / "recorded"
MODEL = "claude-sonnet-4-5-20250929"
KEY = "sk-ant-fixture-not-a-key"  # the proxy forwards it and never writes it


def _tools() -> list[dict[str, Any]]:
    from incremental.examples.app_builder.tools import registry

    return list(registry.api_tools())


async def _conversation(base_url: str, prompt: str, turns: int, *, max_retries: int = 0) -> None:
    """Stream each turn, echo its content with model_dump(), answer every tool_use, as apps do."""
    client = anthropic.AsyncAnthropic(base_url=base_url, api_key=KEY, max_retries=max_retries)
    messages: list[Any] = [{"role": "user", "content": prompt}]
    try:
        for _ in range(turns):
            async with client.messages.stream(
                model=MODEL, max_tokens=8192, messages=messages, tools=_tools()
            ) as stream:
                final = await stream.get_final_message()
            results = [
                {"type": "tool_result", "tool_use_id": b.id, "content": f"{b.name}: done"}
                for b in final.content
                if b.type == "tool_use"
            ]
            messages += [
                {"role": "assistant", "content": [b.model_dump() for b in final.content]},
                {"role": "user", "content": results},
            ]
    finally:
        await client.close()


async def _record(
    name: str, turns: list[Path], prompt: str, *, faults: dict[int, Fault] | None = None, retries: int = 0
) -> None:
    async with FakeMessagesAPI(turns, speed=1.0, faults=faults) as api:
        with tempfile.TemporaryDirectory(prefix="incremental-record-") as tmp:
            command = [sys.executable, "-m", "incremental.cli", "record", "--out", tmp, "--upstream", api.url]
            process = await asyncio.create_subprocess_exec(
                *command, "--port", "0", stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            assert process.stdout is not None
            try:
                first = (await process.stdout.readline()).decode()
                if not first.startswith("listening on "):
                    raise RuntimeError(f"incremental record did not start: {first!r}")
                await _conversation(first.split()[-1], prompt, len(turns), max_retries=retries)
            finally:
                process.terminate()
                out, err = await process.communicate()
            print(f"{name}:\n{first}{out.decode()}", end="")
            if process.returncode != 0:
                raise RuntimeError(f"incremental record exited {process.returncode}: {err.decode()}")
            target = OUT / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(Path(tmp) / "conv-001", target)


async def main() -> None:
    await _record(
        "app_builder",
        list(RECORDINGS),
        "Build me a habit tracker: React + TypeScript + Vite, streaks per habit, saved in localStorage.",
    )
    await _record(
        "web_search_retried",
        [FIXTURES / "server_tool_web_search.sse"],
        "Set up Tailwind CSS v4 in this Vite project.",
        faults={0: Fault("status", status=529, retry_after=0.5)},
        retries=2,
    )


if __name__ == "__main__":
    asyncio.run(main())
