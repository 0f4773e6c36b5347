"""Tool definitions: ``ToolSpec`` (one tool and how it is dispatched) and ``ToolRegistry`` (the set).

A tool is an ``async def fn(args: InputModel, ctx: ToolContext)`` whose first parameter is annotated
with a pydantic model: the model validates the input, and its JSON Schema is what the Messages API
gets in its ``tools`` list::

    registry = ToolRegistry()

    class WriteFile(BaseModel):
        path: str
        content: str

    @registry.tool(concurrency_key="path")
    async def write_file(args: WriteFile, ctx: ToolContext) -> str:
        "Write a whole file."
        ...

Policies: ``eager`` tools are dispatched at their block's ``content_block_stop``;
``after_message`` tools only once ``message_stop`` arrives with stop_reason ``tool_use``. Calls with the
same concurrency key run in stream order; calls with different keys (or none) run in parallel.
"""

from __future__ import annotations

import inspect
import re
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel

from ._context import ToolContext

__all__ = ["DEFAULT_MAX_INPUT_BYTES", "Policy", "ToolFn", "ToolRegistry", "ToolSpec"]

Policy = Literal["eager", "after_message"]
POLICIES: tuple[Policy, ...] = ("eager", "after_message")

DEFAULT_MAX_INPUT_BYTES = 2 * 1024 * 1024

# What the Messages API accepts as a tool name.
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

ToolFn = Callable[[Any, ToolContext], Awaitable[object]]
KeyFn = Callable[[Any], "str | None"] | Callable[[Any, "Path | None"], "str | None"]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, what the model reads about it, its input model, its function and its policy.

    ``concurrency_key`` is a field name of the input model, or a function of the validated model (or of
    the model and the run's workspace, ``fn(args, workspace)``, for a key that names a real file);
    calls whose key is equal run one after another in stream order. ``retries`` counts extra attempts after a
    ``RetryableToolError``, with exponential backoff from ``backoff_s``. ``idempotent`` says the tool is
    safe to run again after a worker died mid-run. ``queue`` is the arq queue for this tool (None: the
    default). ``max_input_bytes`` bounds the input's JSON size; a larger input is refused before anything
    runs. ``input_schema``, when given, replaces the schema derived from ``input_model`` in ``api()``.
    """

    name: str
    description: str
    input_model: type[BaseModel]
    fn: ToolFn
    policy: Policy = "eager"
    concurrency_key: str | KeyFn | None = None
    timeout_s: float = 60.0
    retries: int = 0
    backoff_s: float = 0.25
    idempotent: bool = True
    queue: str | None = None
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    input_schema: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"tool name must match {_NAME.pattern} (the Messages API's rule), got {self.name!r}"
            )
        if not (isinstance(self.input_model, type) and issubclass(self.input_model, BaseModel)):
            raise TypeError(
                f"tool {self.name}: input_model must be a pydantic BaseModel subclass, "
                f"got {self.input_model!r}"
            )
        if not callable(self.fn):
            raise TypeError(f"tool {self.name}: fn must be an async function, got {self.fn!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"tool {self.name}: policy must be one of {POLICIES}, got {self.policy!r}")
        key = self.concurrency_key
        if isinstance(key, str):
            if key not in self.input_model.model_fields:
                fields = ", ".join(self.input_model.model_fields) or "none"
                raise ValueError(
                    f"tool {self.name}: concurrency_key {key!r} is not a field of "
                    f"{self.input_model.__name__} (fields: {fields})"
                )
        elif key is not None and not callable(key):
            raise TypeError(
                f"tool {self.name}: concurrency_key must be a field name, a function or None, got {key!r}"
            )
        if not self.timeout_s > 0:
            raise ValueError(f"tool {self.name}: timeout_s must be positive, got {self.timeout_s!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"tool {self.name}: retries must be an integer >= 0, got {self.retries!r}")
        if not self.backoff_s >= 0:
            raise ValueError(f"tool {self.name}: backoff_s must be >= 0, got {self.backoff_s!r}")
        if isinstance(self.max_input_bytes, bool) or not isinstance(self.max_input_bytes, int):
            raise ValueError(
                f"tool {self.name}: max_input_bytes must be an integer, got {self.max_input_bytes!r}"
            )
        if self.max_input_bytes <= 0:
            raise ValueError(
                f"tool {self.name}: max_input_bytes must be positive, got {self.max_input_bytes}"
            )

    def api(self) -> dict[str, Any]:
        """This tool as an entry of the Messages API's ``tools`` list."""
        schema = dict(self.input_schema) if self.input_schema is not None else _api_schema(self.input_model)
        entry: dict[str, Any] = {"name": self.name}
        if self.description:
            entry["description"] = self.description
        entry["input_schema"] = schema
        return entry

    def key_for(self, args: BaseModel, workspace: Path | None = None) -> str | None:
        """The concurrency key of a validated input, or None when the call may run beside any other.
        ``workspace``: the run's, for a key function that takes it."""
        key = self.concurrency_key
        if key is None:
            return None
        if isinstance(key, str):
            value = getattr(args, key, None)
        elif _takes_workspace(key):
            value = key(args, workspace)  # type: ignore[call-arg]
        else:
            value = key(args)  # type: ignore[call-arg]
        if value is None:
            return None
        return value if isinstance(value, str) else str(value)


def _takes_workspace(fn: Callable[..., Any]) -> bool:
    """Whether a key function takes ``(args, workspace)`` rather than ``(args)``: read once a function
    (a signature costs more than most keys), each time for one that cannot be a dict key."""
    try:
        return _KEY_TAKES_WORKSPACE[fn]
    except KeyError:
        pass
    except TypeError:
        return _binds_two(fn)
    takes = _KEY_TAKES_WORKSPACE[fn] = _binds_two(fn)
    return takes


_KEY_TAKES_WORKSPACE: weakref.WeakKeyDictionary[Callable[..., Any], bool] = weakref.WeakKeyDictionary()


def _binds_two(fn: Callable[..., Any]) -> bool:
    try:
        inspect.signature(fn).bind(None, None)
    except (TypeError, ValueError):
        return False
    return True


def _api_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema in the shape the API wants: an object with properties and required."""
    raw = model.model_json_schema()
    if raw.get("type") != "object":
        raise TypeError(f"{model.__name__}: a tool's input schema must be an object, got {raw.get('type')!r}")
    schema: dict[str, Any] = {"type": "object", "properties": raw.get("properties", {})}
    schema["required"] = list(raw.get("required", []))
    for k, v in raw.items():
        if k not in ("type", "properties", "required", "title"):
            schema[k] = v  # $defs, additionalProperties, the model's own description...
    return schema


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    """fn's signature, checked to take (args, ctx) positionally; TypeError otherwise."""
    label = getattr(fn, "__qualname__", repr(fn))
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"tool function {label}: cannot read its signature ({exc})") from exc
    try:
        sig.bind(None, None)
    except TypeError:
        raise TypeError(
            f"tool function {label} must accept two positional arguments (args, ctx), got {sig}"
        ) from None
    return sig


def _input_model_of(fn: Callable[..., Any]) -> type[BaseModel]:
    """The pydantic model annotating fn's first parameter; TypeError when there is none."""
    label = getattr(fn, "__qualname__", repr(fn))
    first = next(iter(_signature(fn).parameters.values()))
    annotation = first.annotation
    if annotation is inspect.Parameter.empty:
        raise TypeError(
            f"tool function {label}: annotate its first parameter {first.name!r} with a pydantic model"
        )
    if isinstance(annotation, str):
        namespace = getattr(inspect.unwrap(fn), "__globals__", {})
        try:
            annotation = eval(annotation, namespace)  # what typing.get_type_hints does, for one name
        except Exception as exc:
            raise TypeError(
                f"tool function {label}: cannot resolve the annotation {annotation!r} of {first.name!r} "
                f"({type(exc).__name__}: {exc}); define the model at module level or pass input_model="
            ) from exc
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        raise TypeError(
            f"tool function {label}: its first parameter {first.name!r} must be annotated with a pydantic "
            f"BaseModel subclass, got {annotation!r}"
        )
    return annotation


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class ToolRegistry:
    """The tools one app offers, by name.

    ``fallback`` answers ``get`` for every name not registered (``--simulate`` uses it). ``in``,
    iteration, ``len``, ``names`` and ``api_tools`` see only the registered tools.
    """

    def __init__(self, *, fallback: ToolSpec | None = None) -> None:
        self._specs: dict[str, ToolSpec] = {}
        self.fallback = fallback

    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        policy: Policy = "eager",
        concurrency_key: str | KeyFn | None = None,
        timeout_s: float = 60.0,
        retries: int = 0,
        backoff_s: float = 0.25,
        idempotent: bool = True,
        queue: str | None = None,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
        input_model: type[BaseModel] | None = None,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        policy: Policy = "eager",
        concurrency_key: str | KeyFn | None = None,
        timeout_s: float = 60.0,
        retries: int = 0,
        backoff_s: float = 0.25,
        idempotent: bool = True,
        queue: str | None = None,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
        input_model: type[BaseModel] | None = None,
    ) -> F | Callable[[F], F]:
        """Register an async tool function; usable bare (``@registry.tool``) or with arguments.

        The name defaults to the function's, the description to its docstring, the input model to the
        annotation of its first parameter. Returns the function unchanged; ``get(name)`` gives the spec.
        """

        def decorate(func: F) -> F:
            if not callable(func) or not _is_async(func):
                raise TypeError(f"@tool needs an async function (async def fn(args, ctx)), got {func!r}")
            if input_model is not None:
                _signature(func)
                model = input_model
            else:
                model = _input_model_of(func)
            doc = description if description is not None else inspect.getdoc(func) or ""
            self.register(
                ToolSpec(
                    name=name if name is not None else func.__name__,
                    description=doc,
                    input_model=model,
                    fn=func,
                    policy=policy,
                    concurrency_key=concurrency_key,
                    timeout_s=timeout_s,
                    retries=retries,
                    backoff_s=backoff_s,
                    idempotent=idempotent,
                    queue=queue,
                    max_input_bytes=max_input_bytes,
                )
            )
            return func

        if fn is not None:
            return decorate(fn)
        return decorate

    def register(self, spec: ToolSpec) -> ToolSpec:
        """Add a spec; a name can be registered once (ValueError otherwise)."""
        if not isinstance(spec, ToolSpec):
            raise TypeError(f"register() takes a ToolSpec, got {spec!r}")
        if spec.name in self._specs:
            raise ValueError(f"a tool named {spec.name!r} is already registered")
        self._specs[spec.name] = spec
        return spec

    def get(self, name: str) -> ToolSpec | None:
        """The spec for ``name``: the registered one, else the fallback (None when there is neither)."""
        spec = self._specs.get(name)
        return spec if spec is not None else self.fallback

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._specs)

    def api_tools(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The Messages API ``tools`` list: every registered tool, or the given ones in the given order."""
        if names is None:
            return [spec.api() for spec in self._specs.values()]
        out = []
        for n in names:
            spec = self._specs.get(n)
            if spec is None:
                raise KeyError(f"no tool named {n!r} is registered (registered: {', '.join(self._specs)})")
            out.append(spec.api())
        return out

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        fallback = f", fallback={self.fallback.name!r}" if self.fallback is not None else ""
        return f"ToolRegistry({self.names()!r}{fallback})"
