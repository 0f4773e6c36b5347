"""The per-block record a parser keeps, and how each block type is assembled into API JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ._jsonscan import JsonScanner
from ._states import BlockStatus

__all__ = ["Block", "strict_object"]


def reject_constant(name: str) -> Any:
    """``parse_constant`` for strict JSON: NaN, Infinity and -Infinity are Python's, not JSON's."""
    raise ValueError(f"{name} is not valid JSON")


def finite_float(text: str) -> float:
    """``parse_float`` for strict JSON: ``1e400`` is valid JSON, but as infinity no encoder takes it back."""
    value = float(text)
    if value - value != 0.0:  # inf - inf and nan - nan are nan: only finite numbers give 0
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def strict_object(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """Parse a whole tool input strictly. Returns (object, None) or (None, why it is not one).

    Only for text whose nesting is known to be bounded (the scanner checked it): json.loads recurses.
    Whatever it accepts, json.dumps gives back: no NaN/Infinity, no overflowing float, no integer
    longer than Python's int-to-string limit."""
    if not text.strip():
        return {}, None  # the API's way of sending an empty input: no fragment, or only ""
    try:
        value = json.loads(text, parse_constant=reject_constant, parse_float=finite_float)
    except ValueError as exc:  # JSONDecodeError is a ValueError; so are NaN, 1e400 and huge integers
        return None, f"input is not valid JSON: {exc}"
    except RecursionError:  # not reached when the scanner checked the nesting first; kept as a guard
        return None, "input is not valid JSON: nested too deep to read"
    if not isinstance(value, dict):
        return None, f"input must be a JSON object, got {type(value).__name__}"
    return value, None


@dataclass(slots=True, eq=False)
class Block:
    """Everything known about one content block, by index. Mutable; owned by one parser."""

    index: int
    type: str
    start: dict[str, Any]  # the content_block of content_block_start, verbatim
    status: BlockStatus = BlockStatus.STREAMING
    started_at: float | None = None  # from the fixture's timing comments, when there are any
    stopped_at: float | None = None
    chunks: list[str] = field(default_factory=list)  # text or thinking fragments
    scanner: JsonScanner | None = None  # tool input fragments, scanned as they arrive
    signature: str | None = None
    citations: list[Any] = field(default_factory=list)
    extra_deltas: list[dict[str, Any]] = field(default_factory=list)  # unknown or misplaced, verbatim
    chars: int = 0  # characters streamed into this block
    input: Any = None  # the final input of a tool block, once stopped
    reason: str | None = None  # why a tool call must not run
    dropped: bool = False  # a tool input over the block limit: no longer kept, the call will be rejected

    tool_id: str | None = None  # the block's "id" and "name", when they are strings
    tool_name: str | None = None

    def __post_init__(self) -> None:
        tool_id, name = self.start.get("id"), self.start.get("name")
        self.tool_id = tool_id if isinstance(tool_id, str) else None
        self.tool_name = name if isinstance(name, str) else None

    def raw_input(self) -> str:
        """The tool input's JSON text as streamed (empty for blocks without one)."""
        return self.scanner.text() if self.scanner is not None else ""

    def assembled(self) -> dict[str, Any]:
        """This block as the API returns it in a non-streamed message."""
        out = dict(self.start)
        if self.type == "text":
            if self.chunks:
                out["text"] = str(out.get("text") or "") + "".join(self.chunks)
            if self.citations:
                out["citations"] = list(out.get("citations") or []) + self.citations
        elif self.type == "thinking":
            if self.chunks:
                out["thinking"] = str(out.get("thinking") or "") + "".join(self.chunks)
            if self.signature is not None:
                out["signature"] = self.signature
        elif self.scanner is not None and self.scanner.size:
            out["input"] = self._assembled_input()
        return out

    def _assembled_input(self) -> Any:
        assert self.scanner is not None
        if self.status is BlockStatus.READY or (
            self.status is BlockStatus.SERVER_SIDE and self.input is not None
        ):
            return self.input
        if self.status is BlockStatus.INVALID:
            # The documented way to hand invalid JSON back to the model: wrapped in an object.
            return {"INVALID_JSON": self.scanner.text()}
        # Still streaming or cut off: what arrived, as the SDK's partial parse shows it. A preview may
        # hold what strict JSON refuses (1e999 as infinity, a 5000-digit integer): this message may be
        # sent back, so such a preview is left out.
        preview = self.scanner.preview(trailing_strings=False)
        if not isinstance(preview, dict):
            return {}
        try:
            json.dumps(preview, allow_nan=False)
        except ValueError:
            return {}
        return preview
