"""Parser throughput and memory: ours beside the anthropic SDK's accumulator and three floors, in one run.

    .venv/bin/python scripts/bench_parser.py [--repeat N] [--sdk-max-kb KB] [--memory-mb MB] [--no-live]

For tool inputs of 2 KB, 100 KB, 300 KB and 1 MB streamed in deltas of 3 to 40 characters, it prints
MB/s of SSE bytes for:
  ours     StreamParser fed 16 KB chunks (as a socket delivers them), every event pulled, end() called;
  json     the floor of one json.loads per event: decode, split into events, json.loads each data
           payload, nothing else (json.loads on str beats json.loads on bytes here);
  orjson   the same split, orjson.loads per event (on bytes);
  msgspec  the same split, one typed msgspec decode per event (structs for the fields the parser reads);
  sdk      anthropic's client.messages.stream() over the same bytes through a mock transport (httpx2),
           iterated to the end and the final message built.
Then the live path at 300 KB: the bytes served by the loopback fake Messages API (speed 0, in its own
process) and read through ``MessagesClient``, whose stream yields the response's byte chunks, each
fed to ``parser.feed``; beside it the transport alone (the same response, bytes only) and the earlier
live path (httpx-sse, json.loads per event, feed_event).
Then memory: one stream with a tool input of ``--memory-mb`` MB, in a fresh process: the peak RSS
while parsing and the RSS still held (parser alive, events dropped) after end(), above the bytes.

Targets: ours >= 1.0x the json floor at every size; ours >= 100x the SDK at 300 KB; ours linear in
input size (1 MB costs <= 11x what 100 KB costs); memory per stream <= 3x the tool input.
Timings are CPU time of this process (the machine is shared: wall time would also count the turns
other processes get), the best of ``--repeat`` rounds (the SDK above 200 KB: one run); the live path
is wall time, since it waits on a socket.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
import orjson

from _gen import tool_stream
from incremental import StreamParser, ToolReady

CHUNK = 16 * 1024
SIZES = {"2 KB": 2 * 1024, "100 KB": 100 * 1024, "300 KB": 300 * 1024, "1 MB": 1024 * 1024}
LIVE_SIZE = "300 KB"
REQUEST: dict[str, Any] = {
    "model": "bench-model",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "x"}],
}


def ours(data: bytes) -> None:
    parser = StreamParser()
    ready = 0
    for i in range(0, len(data), CHUNK):
        for event in parser.feed(data[i : i + CHUNK]):
            if isinstance(event, ToolReady):
                ready += 1
    parser.end()
    assert ready == 1 and parser.error is None


def floor_json(data: bytes) -> None:
    # The fastest obvious reader: decode once, split on blank lines, json.loads each data payload.
    loads = json.loads
    for block in data.decode().split("\n\n"):
        start = block.find("data: ")
        if start >= 0:
            loads(block[start + 6 :])


def floor_orjson(data: bytes) -> None:
    loads = orjson.loads
    for block in data.split(b"\n\n"):
        start = block.find(b"data: ")
        if start >= 0:
            loads(block[start + 6 :])


class _Delta(msgspec.Struct):
    type: str | None = None  # message_delta's delta has none
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    stop_reason: str | None = None


class _Event(msgspec.Struct):
    """The fields the parser reads, typed; the rest skipped (as msgspec does with unknown fields)."""

    type: str
    index: int | None = None
    delta: _Delta | None = None
    content_block: dict[str, Any] | None = None
    message: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None


_MSGSPEC = msgspec.json.Decoder(_Event)


def floor_msgspec(data: bytes) -> None:
    decode = _MSGSPEC.decode
    for block in data.split(b"\n\n"):
        start = block.find(b"data: ")
        if start >= 0:
            decode(block[start + 6 :])


def sdk(data: bytes) -> None:
    import anthropic
    import httpx2

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=data)

    client = anthropic.Anthropic(
        api_key="bench",
        base_url="http://bench.invalid",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    with client.messages.stream(**REQUEST) as stream:
        for _ in stream:
            pass
        message = stream.get_final_message()
    assert message.content[1].type == "tool_use"


def best_of(fns: dict[str, Callable[[bytes], None]], data: bytes, repeat: int) -> dict[str, float]:
    """CPU seconds per call of each function: the best of ``repeat`` rounds, the functions taking
    turns within each round, so that a change in the machine's load touches them all alike."""
    inner = max(1, 4_000_000 // len(data))  # small streams: enough calls per timing to be measurable
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.process_time()
            for _ in range(inner):
                fn(data)
            best[name] = min(best[name], (time.process_time() - start) / inner)
    return best


# ---------------------------------------------------------------- the live path


def _serve(path: str, ports: Any) -> None:
    """The fake Messages API in its own process: the client's figures are then the client's."""
    from incremental.fake_api import FakeMessagesAPI

    async def main() -> None:
        api = FakeMessagesAPI([Path(path)], speed=0)
        await api.start()
        ports.put(api.port)
        await asyncio.Event().wait()

    asyncio.run(main())


async def _live(url: str, repeat: int) -> dict[str, float]:
    import httpx
    from httpx_sse import aconnect_sse

    from incremental.adapters._messages_client import MessagesClient

    async def live_ours(client: MessagesClient) -> int:
        parser = StreamParser()
        n = 0
        async with client.stream(REQUEST) as stream:
            async for chunk in stream:
                n += len(chunk)
                for _event in parser.feed(chunk):
                    pass
        parser.end()
        assert parser.error is None and len(parser.tool_calls) == 1
        return n

    async def transport(http: httpx.AsyncClient) -> int:
        n = 0
        body = {**REQUEST, "stream": True}
        async with http.stream("POST", f"{url}/v1/messages", json=body) as response:
            async for chunk in response.aiter_bytes():
                n += len(chunk)
        return n

    async def earlier(http: httpx.AsyncClient) -> int:
        parser = StreamParser()
        body = {**REQUEST, "stream": True}
        async with aconnect_sse(http, "POST", f"{url}/v1/messages", json=body) as source:
            async for sse in source.aiter_sse():
                if sse.data:
                    parser.feed_event(json.loads(sse.data))
        parser.end()
        assert parser.error is None and len(parser.tool_calls) == 1
        return 0

    out: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=60) as http, MessagesClient(base_url=url, api_key="bench") as client:
        for name, run in (
            ("ours", lambda: live_ours(client)),
            ("transport", lambda: transport(http)),
            ("earlier", lambda: earlier(http)),
        ):
            await run()  # warm: the connection, the first request's costs
            best = float("inf")
            for _ in range(repeat):
                start = time.perf_counter()
                await run()
                best = min(best, time.perf_counter() - start)
            out[name] = best
    return out


def live(data: bytes, repeat: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile(suffix=".sse", delete=False) as f:
        f.write(data)
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    server = ctx.Process(target=_serve, args=(f.name, ports), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=60)
        return asyncio.run(_live(f"http://127.0.0.1:{port}", repeat))
    finally:
        server.terminate()
        server.join(10)
        os.unlink(f.name)


# ---------------------------------------------------------------- memory


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(path: str, input_bytes: int) -> None:
    """Run in a fresh process: parse the stream in ``path``, print peak and held RSS above the bytes."""
    import gc

    data = Path(path).read_bytes()
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    base = _rss_kb("VmRSS")
    parser = StreamParser()
    for i in range(0, len(data), CHUNK):
        parser.feed(data[i : i + CHUNK])
    parser.end()
    assert parser.error is None and len(parser.tool_calls) == 1
    gc.collect()
    peak, held = _rss_kb("VmHWM") - base, _rss_kb("VmRSS") - base
    print(
        json.dumps({"peak_kb": peak, "held_kb": held, "input_bytes": input_bytes, "stream_bytes": len(data)})
    )


def memory(mb: int) -> dict[str, Any]:
    size = mb * 1024 * 1024
    data = tool_stream(size)
    tool_input = json.dumps({"path": "src/generated/Big.tsx", "content": ""})  # the envelope ...
    input_bytes = size + len(tool_input)  # ... plus about ``size`` bytes of content
    with tempfile.NamedTemporaryFile(suffix=".sse", delete=False) as f:
        f.write(data)
    try:
        code = (
            f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            f"import bench_parser; bench_parser.memory_child({f.name!r}, {input_bytes})"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return dict(json.loads(out.stdout))
    finally:
        os.unlink(f.name)


# ---------------------------------------------------------------- report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7, help="runs per measurement; the best is kept")
    ap.add_argument("--sdk-max-kb", type=int, default=1024, help="skip the SDK above this input size")
    ap.add_argument("--memory-mb", type=int, default=10, help="tool input size for memory (0: skip)")
    ap.add_argument("--no-live", action="store_true", help="skip the live-path measurement")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    rows = []
    times: dict[str, float] = {}
    floor_times: dict[str, float] = {}
    streams: dict[str, bytes] = {}
    for label, size in SIZES.items():
        data = streams[label] = tool_stream(size)
        mb = len(data) / 1e6
        fns = {"ours": ours, "json": floor_json, "orjson": floor_orjson, "msgspec": floor_msgspec}
        t = best_of(fns, data, args.repeat)
        if size <= args.sdk_max_kb * 1024:
            t |= best_of({"sdk": sdk}, data, 1 if size > 200_000 else args.repeat)
        times[label], floor_times[label] = t["ours"], t["json"]
        rows.append((label, len(data), {k: mb / v for k, v in t.items()}))

    print(
        f"SSE bytes in {CHUNK // 1024} KB chunks; MB/s of CPU time, best of {args.repeat} "
        "(the SDK above 200 KB: one run)\n"
    )
    print(
        "| tool input | stream bytes | ours | json floor | orjson floor | msgspec floor | sdk "
        "| ours / json | ours / orjson | ours / msgspec | ours / sdk |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, nbytes, r in rows:
        sdk_cell = f"{r['sdk']:.2f}" if "sdk" in r else "skipped"
        ratio_sdk = f"{r['ours'] / r['sdk']:.0f}x" if "sdk" in r else "-"
        print(
            f"| {label} | {nbytes:,} | {r['ours']:.1f} | {r['json']:.1f} | {r['orjson']:.1f} "
            f"| {r['msgspec']:.1f} | {sdk_cell} | {r['ours'] / r['json']:.2f}x "
            f"| {r['ours'] / r['orjson']:.2f}x | {r['ours'] / r['msgspec']:.2f}x | {ratio_sdk} |"
        )
    scale = times["1 MB"] / times["100 KB"]
    floor_scale = (streams["1 MB"].__len__() / rows[-1][2]["json"]) / (
        streams["100 KB"].__len__() / rows[1][2]["json"]
    )
    print(
        f"\nours: 1 MB costs {scale:.1f}x what 100 KB costs (input is 10x larger; target <= 11x); "
        f"the json floor's own ratio in this run: {floor_scale:.1f}x"
    )

    if not args.no_live:
        data = streams[LIVE_SIZE]
        mb = len(data) / 1e6
        t = live(data, args.repeat)
        print(f"\nlive path, {LIVE_SIZE} tool input ({len(data):,} bytes) from the loopback fake API, MB/s:")
        print("| path | MB/s |")
        print("|---|---:|")
        print(f"| MessagesClient bytes -> parser.feed | {mb / t['ours']:.1f} |")
        print(f"| httpx bytes only (transport floor) | {mb / t['transport']:.1f} |")
        print(f"| httpx-sse + json.loads + feed_event (earlier path) | {mb / t['earlier']:.1f} |")

    if args.memory_mb:
        m = memory(args.memory_mb)
        mb_in = m["input_bytes"] / 1e6
        peak, held = m["peak_kb"] * 1024 / 1e6, m["held_kb"] * 1024 / 1e6
        print(
            f"\nmemory, {args.memory_mb} MB tool input ({m['input_bytes']:,} bytes, stream "
            f"{m['stream_bytes']:,}): peak +{peak:.1f} MB RSS ({peak / mb_in:.1f}x the input), "
            f"held after end() +{held:.1f} MB ({held / mb_in:.1f}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
