"""Build small streams from event objects, the way the API frames them."""

from __future__ import annotations

import json
from typing import Any


def frame(obj: dict[str, Any], *, t: float | None = None) -> bytes:
    head = f": t={t:.3f}\n" if t is not None else ""
    return f"{head}event: {obj['type']}\ndata: {json.dumps(obj, separators=(',', ':'))}\n\n".encode()


def stream(*objs: dict[str, Any]) -> bytes:
    return b"".join(frame(o) for o in objs)


def message_start(msg_id: str = "msg_test") -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 1},
        },
    }


def text_start(index: int) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}


def text_delta(index: int, text: str) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}


def tool_start(index: int, tool_id: str, name: str) -> dict[str, Any]:
    return {
        "type": "content_block_start",
        "index": index,
        "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}},
    }


def json_delta(index: int, fragment: str) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "input_json_delta", "partial_json": fragment},
    }


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, output_tokens: int = 42) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }


MESSAGE_STOP: dict[str, Any] = {"type": "message_stop"}


def tool_turn(*tools: tuple[str, str, list[str]], stop_reason: str = "tool_use") -> list[dict[str, Any]]:
    """message_start, one text block, then each (id, name, fragments) as a tool_use block."""
    objs = [message_start(), text_start(0), text_delta(0, "On it."), stop(0)]
    for i, (tool_id, name, fragments) in enumerate(tools, start=1):
        objs.append(tool_start(i, tool_id, name))
        objs.extend(json_delta(i, f) for f in fragments)
        objs.append(stop(i))
    objs += [message_delta(stop_reason), MESSAGE_STOP]
    return objs
