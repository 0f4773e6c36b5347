"""The body of ``POST /v1/runs``, validated: anything else gets a 400 that names the field.

A body is a Messages API request (every field but ``stream``, passed to the model verbatim: ``model``,
``max_tokens``, ``system``, ``tools`` as names of the tool set or definitions, ``temperature``,
``tool_choice``, ``thinking``, ``metadata``, and fields the API adds later) plus the run's own options:
``toolset``, ``limits`` (``max_turns``, ``turn_timeout_s``) and ``tags`` (kept with the run, never sent).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["CreateRun", "Limits", "Message", "describe_validation_error"]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]] = Field(min_length=1)


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_turns: int = Field(10, ge=1, le=100, description="model requests at most, tool rounds included")
    turn_timeout_s: float = Field(
        300.0, gt=0, le=3600, description="after message_stop, how long a turn waits for its results"
    )


class CreateRun(BaseModel):
    model_config = ConfigDict(extra="allow")  # the request's other fields pass through to the model

    messages: list[Message] = Field(min_length=1)
    toolset: str | None = Field(
        None, min_length=1, max_length=200, description="one of the service's tool sets"
    )
    limits: Limits = Field(default_factory=lambda: Limits.model_validate({}))
    tags: dict[str, str | int | float | bool] | None = Field(
        None, description="kept with the run; never sent"
    )

    @model_validator(mode="after")
    def _starts_with_user(self) -> CreateRun:
        if self.messages[0].role != "user":
            raise ValueError("messages[0] must be a user message")
        return self

    def request(self) -> dict[str, Any]:
        """The pass-through request fields, as the client sent them."""
        return dict(self.model_extra or {})


def describe_validation_error(exc: ValidationError) -> str:
    """``messages.0.role: Input should be 'user' or 'assistant'; ...`` (at most five problems)."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
