"""Generate realistic streams for the benchmarks: a tool writing a file of a given size, in small deltas."""

from __future__ import annotations

import json
import random
from typing import Any

_WORDS = [
    "const",
    "let",
    "return",
    "import",
    "export",
    "from",
    "function",
    "async",
    "await",
    "props",
    "state",
    "useEffect",
    "className",
    "render",
    "value",
    "items",
    "map",
    "filter",
    "index",
    "key",
    "onClick",
    "handler",
    "data",
    "error",
    "loading",
    "true",
    "false",
    "null",
]


def code_text(size: int, seed: int = 7) -> str:
    """Source-like text: lines of identifiers, quotes, backslashes, braces and some non-ASCII."""
    rng = random.Random(seed)
    lines: list[str] = []
    total = 0
    while total < size:
        indent = "  " * rng.randint(0, 4)
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 9)))
        flavour = rng.random()
        if flavour < 0.2:
            line = f'{indent}{words} = "{rng.choice(_WORDS)}\\n";'
        elif flavour < 0.3:
            line = f"{indent}// {words} — naïve café ✓"
        elif flavour < 0.4:
            line = f"{indent}{words}({{ '{rng.choice(_WORDS)}': `${{{rng.choice(_WORDS)}}}` }});"
        else:
            line = f"{indent}{words};"
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)[:size]


def _frame(obj: dict[str, Any]) -> str:
    return f"event: {obj['type']}\ndata: {json.dumps(obj, separators=(',', ':'))}\n\n"


def tool_stream(input_size: int, seed: int = 1) -> bytes:
    """One message: a short text block, then one write_file tool_use of about ``input_size`` bytes."""
    rng = random.Random(seed)
    tool_input = json.dumps({"path": "src/generated/Big.tsx", "content": code_text(input_size, seed)})
    parts = [
        _frame(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_bench",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5-20250929",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 100, "output_tokens": 1},
                },
            }
        ),
        _frame({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        _frame(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Writing."}}
        ),
        _frame({"type": "content_block_stop", "index": 0}),
        _frame(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_bench", "name": "write_file", "input": {}},
            }
        ),
    ]
    i = 0
    while i < len(tool_input):
        n = rng.randint(3, 40)  # a few to a few dozen characters per delta
        delta = {"type": "input_json_delta", "partial_json": tool_input[i : i + n]}
        parts.append(_frame({"type": "content_block_delta", "index": 1, "delta": delta}))
        i += n
    parts += [
        _frame({"type": "content_block_stop", "index": 1}),
        _frame(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": input_size // 4},
            }
        ),
        _frame({"type": "message_stop"}),
    ]
    return "".join(parts).encode()
