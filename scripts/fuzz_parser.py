"""Feed mutated fixture streams to the parser and count exceptions that are not the parser's own.

    .venv/bin/python scripts/fuzz_parser.py [--cases 100000] [--seconds 1200] [--seed 0] [--save DIR]

Each case takes a recorded stream (``fixtures/*.sse`` and ``*.jsonl`` up to ``--max-bytes``, and the
app-builder recordings the package ships), applies 1 to 4
mutations and feeds the result in random chunks (one case in ten as decoded event objects through
``feed_event``), then ``end()``. Mutations work on bytes (flip, insert, delete, duplicate a range), on
events (drop, repeat, swap), on an event's JSON (a node replaced by a hostile value: the wrong type,
nesting 1,000 deep, NaN, 1e999, a 5,000-digit integer, a lone surrogate) and on tool blocks (an id
used twice, a tool input nested past the limit).

A case fails when anything escapes that is not an ``IncrementalError``: from ``feed``/``feed_event``/
``end``, from ``to_dict()`` of any event, or from encoding the assembled message as the next request
would (``encode_request``). It stops after ``--cases`` cases or ``--seconds`` seconds, whichever comes
first, and prints what it tried and what escaped (``--save DIR`` keeps each failing input).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from incremental import IncrementalError, StreamParser
from incremental.adapters._messages_client import encode_request
from incremental.examples.app_builder import RECORDINGS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# Values a node may become (as JSON), and raw text one may become (what json.dumps will not write).
_HOSTILE: list[Any] = [
    7,
    -1,
    "x",
    "",
    None,
    True,
    [],
    {},
    [1, "a"],
    {"type": 7},
    "\ud83d",
]
_RAW_HOSTILE = [b"NaN", b"-Infinity", b"1e999", b"[" * 1000 + b"]" * 1000, b'"\\ud83d"', b"9" * 5000]


def _json_mutation(rng: random.Random, frame: bytes) -> bytes:
    """Replace one node of the frame's data JSON (or add a key) with something hostile."""
    head, sep, data = frame.rpartition(b"data: ")
    if not sep:
        return frame
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return frame
    if not isinstance(obj, dict):
        return frame
    nodes: list[tuple[Any, Any]] = []  # (container, key)
    stack: list[Any] = [obj]
    while stack and len(nodes) < 200:
        value = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            nodes.append((value, key))
            if isinstance(child, dict | list):
                stack.append(child)
    raw_marker = "\x00raw\x00"
    hostile: Any = rng.choice(_HOSTILE) if rng.random() < 0.7 else raw_marker
    if nodes and rng.random() < 0.8:
        container, key = rng.choice(nodes)
        container[key] = hostile
    else:
        obj[rng.choice(["type", "index", "delta", "content_block", "citations", "extra"])] = hostile
    try:
        text = json.dumps(obj, separators=(",", ":") if rng.random() < 0.7 else None)
    except (ValueError, RecursionError):
        return frame
    encoded = text.encode()
    if hostile is raw_marker:
        encoded = encoded.replace(json.dumps(raw_marker).encode(), rng.choice(_RAW_HOSTILE))
    return head + sep + encoded


def _tool_mutation(rng: random.Random, frames: list[bytes]) -> None:
    starts = [i for i, f in enumerate(frames) if b'"tool_use"' in f and b"content_block_start" in f]
    deltas = [i for i, f in enumerate(frames) if b"input_json_delta" in f]
    if len(starts) >= 2 and rng.random() < 0.5:  # the same id in two blocks
        a, b = rng.sample(starts, 2)
        try:
            ids = [json.loads(frames[i].rpartition(b"data: ")[2])["content_block"]["id"] for i in (a, b)]
            frames[b] = frames[b].replace(str(ids[1]).encode(), str(ids[0]).encode())
        except (ValueError, KeyError, TypeError, RecursionError):
            pass  # an earlier mutation broke one of them
    elif deltas:  # a tool input nested past the limit
        i = rng.choice(deltas)
        depth = rng.choice([129, 600, 3000])
        frames[i] = frames[i].replace(b'"partial_json":"', b'"partial_json":"' + b"[" * depth, 1)


def mutate(rng: random.Random, data: bytes) -> bytes:
    sep = b"\r\n\r\n" if b"\r\n\r\n" in data else b"\n\n"
    frames = data.split(sep)
    for _ in range(rng.randint(1, 4)):
        if not frames:
            frames = [b""]
        op = rng.randrange(10)
        i = rng.randrange(len(frames))
        frame = frames[i]
        if op == 0:  # flip a byte
            if frame:
                at = rng.randrange(len(frame))
                frames[i] = frame[:at] + bytes([rng.randrange(256)]) + frame[at + 1 :]
        elif op == 1:  # insert bytes
            at = rng.randrange(len(frame) + 1)
            junk = rng.choice([b"\n", b"\r", b"\\", b'"', b"{", b"[", b"\xff", b"\xc3", b"\x00", b"\n\n"])
            frames[i] = frame[:at] + junk * rng.randint(1, 3) + frame[at:]
        elif op == 2:  # delete a range
            a = rng.randrange(len(frame) + 1)
            frames[i] = frame[:a] + frame[a + rng.randint(1, 20) :]
        elif op == 3:
            del frames[i]
        elif op == 4:
            frames.insert(i, frames[rng.randrange(len(frames))])
        elif op == 5:
            j = rng.randrange(len(frames))
            frames[i], frames[j] = frames[j], frames[i]
        elif op in (6, 7, 8):
            frames[i] = _json_mutation(rng, frame)
        else:
            _tool_mutation(rng, frames)
    out = sep.join(frames)
    if rng.random() < 0.2:
        out = out[: rng.randrange(len(out) + 1)]  # cut anywhere
    return out


def _events_of(data: bytes) -> list[Any]:
    """The data of each frame, decoded where it decodes (for feed_event)."""
    objs: list[Any] = []
    for frame in data.replace(b"\r\n", b"\n").split(b"\n\n"):
        _, sep, raw = frame.rpartition(b"data: ")
        if sep:
            try:
                objs.append(json.loads(raw))
            except (ValueError, RecursionError):
                objs.append(raw.decode("utf-8", "replace"))
    return objs


def run_case(rng: random.Random, data: bytes) -> tuple[str, BaseException] | None:
    """None, or (stage, the foreign exception)."""
    parser = StreamParser(format="auto")
    stage = "feed"
    events: list[Any] = []
    try:
        if rng.random() < 0.1:
            stage = "feed_event"
            for obj in _events_of(data):
                events += parser.feed_event(obj)
                if parser.error is not None:
                    break
        else:
            size = rng.choice([1, 3, 17, 256, 4096, 16384, 1 << 30])
            for i in range(0, len(data), size):
                events += parser.feed(data[i : i + size])
                if parser.error is not None:
                    break
        if parser.error is None:
            stage = "end"
            events += parser.end()
        stage = "to_dict"
        for event in events:
            event.to_dict()
        stage = "next request"
        encode_request({"messages": [{"role": "assistant", "content": parser.message().get("content", [])}]})
    except IncrementalError:
        if stage in ("to_dict", "next request"):
            return stage, sys.exc_info()[1] or RuntimeError()
        return None
    except Exception as exc:
        return stage, exc
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=1200.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-bytes", type=int, default=100_000, help="skip larger fixtures")
    ap.add_argument("--save", type=Path, help="write each failing input here")
    args = ap.parse_args()

    found = [*FIXTURES.iterdir(), *RECORDINGS]
    fixtures = sorted(
        (p for p in found if p.suffix in (".sse", ".jsonl") and p.stat().st_size <= args.max_bytes),
        key=lambda p: p.name,
    )
    sources = [p.read_bytes() for p in fixtures]
    rng = random.Random(args.seed)
    failures: Counter[str] = Counter()
    shown = 0
    start = time.monotonic()
    tried = 0
    while tried < args.cases and time.monotonic() - start < args.seconds:
        k = rng.randrange(len(sources))
        case_rng = random.Random(rng.getrandbits(64))
        data = mutate(case_rng, sources[k])
        tried += 1
        failure = run_case(case_rng, data)
        if failure is None:
            continue
        stage, exc = failure
        key = f"{stage}: {type(exc).__name__}"
        failures[key] += 1
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            (args.save / f"case-{tried}-{fixtures[k].stem}.bin").write_bytes(data)
        if shown < 5:
            shown += 1
            print(f"case {tried} ({fixtures[k].name}), {key}:", file=sys.stderr)
            traceback.print_exception(exc, limit=-3, file=sys.stderr)
    elapsed = time.monotonic() - start
    total = sum(failures.values())
    print(
        f"{tried:,} mutated streams from {len(fixtures)} fixtures in {elapsed:.0f} s (seed {args.seed}): "
        f"{total:,} raised an exception that is not the parser's own"
    )
    for key, count in failures.most_common():
        print(f"  {count:>7,}  {key}")
    return 1 if total else 0


if __name__ == "__main__":
    raise SystemExit(main())
