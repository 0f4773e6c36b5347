"""The public surface: sorted, explicit exports; a sans-IO core; a typed package."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

import incremental
import incremental.core
import incremental.events
import incremental.exceptions
import incremental.runner
import incremental.worker

SRC = Path(incremental.__file__).resolve().parent

# What the core may import: the standard library's pure parts and its own modules.
# Pure computation only (zlib: the scanner keeps a long string's raw text compressed; no IO).
CORE_ALLOWED = {"__future__", "collections", "dataclasses", "enum", "json", "re", "typing", "zlib"}
IO_MODULES = ("asyncio", "socket", "ssl", "selectors", "httpx", "httpx_sse", "redis", "arq", "anyio", "trio")


PUBLIC_MODULES = [
    incremental,
    incremental.core,
    incremental.events,
    incremental.exceptions,
    incremental.runner,
    incremental.worker,
]


def _isort_style(name: str) -> tuple[int, str]:
    """Constants, then classes, then the rest, each alphabetical (ruff's order for ``__all__``)."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_all_is_sorted_and_complete(module: types.ModuleType) -> None:
    names = module.__all__
    assert names == sorted(names, key=_isort_style)
    for name in names:
        assert hasattr(module, name), name
    if module is incremental:  # its front door is loaded on first use: every lazy name is in __all__
        defined = {n for n in vars(module) if not n.startswith("_")} | set(module._LAZY)
        defined = {n for n in defined if not isinstance(getattr(module, n), types.ModuleType)}
        assert defined - {"annotations"} == set(names) - {"__version__"}
        return
    local = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
    }
    assert local <= set(names), f"public but not exported: {sorted(local - set(names))}"


def test_the_front_door_needs_no_private_import() -> None:
    for name in (
        "Runner",
        "Run",
        "RunResult",
        "ToolRegistry",
        "ToolContext",
        "ToolError",
        "MessagesClient",
        "run",
    ):
        assert name in incremental.__all__, name
    assert callable(incremental.worker.settings) and callable(incremental.worker.worker_options)


def test_every_error_class_is_in_incremental_exceptions() -> None:
    exported = {getattr(incremental.exceptions, n) for n in incremental.exceptions.__all__}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                if path.parent.name == "service" and node.name == "ApiError":
                    continue  # the service's own HTTP answer, never raised to a user
                found = [e for e in exported if e.__name__ == node.name]
                assert found, f"{path.relative_to(SRC)}: {node.name} is not in incremental.exceptions"
    assert all(issubclass(e, incremental.exceptions.IncrementalError) for e in exported)


def test_importing_the_parser_loads_neither_redis_nor_arq() -> None:
    heavy = ("redis", "arq", "starlette", "uvicorn", "httpx")
    code = f"import sys, incremental; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_core_imports_only_pure_standard_modules() -> None:
    for path in sorted((SRC / "core").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level > 0:
                    continue  # its own modules
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= CORE_ALLOWED, f"{path.name} imports {roots - CORE_ALLOWED}"


def test_importing_the_core_loads_no_io_library() -> None:
    code = f"import sys, incremental.core; print(','.join(m for m in {IO_MODULES!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_package_is_typed() -> None:
    assert (SRC / "py.typed").is_file()


def test_every_event_has_a_kind_tag_first() -> None:
    from dataclasses import fields

    from incremental.core import _events

    for name in _events.__all__:
        cls = getattr(_events, name)
        if name in ("Event", "ToolCall"):
            continue
        assert isinstance(cls.kind, str) and cls.kind, name
        assert "kind" not in {f.name for f in fields(cls)}, name  # a class constant, not per event
        assert cls.__slots__ is not None and not hasattr(cls(*[None] * len(fields(cls))), "__dict__"), name
