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

SRC = Path(incremental.__file__).resolve().parent

# What the core may import: the standard library's pure parts and its own modules.
CORE_ALLOWED = {"__future__", "collections", "dataclasses", "enum", "json", "re", "typing"}
IO_MODULES = ("asyncio", "socket", "ssl", "selectors", "httpx", "httpx_sse", "redis", "arq", "anyio", "trio")


@pytest.mark.parametrize("module", [incremental, incremental.core], ids=lambda m: m.__name__)
def test_all_is_sorted_and_complete(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert names == sorted(names)
    for name in names:
        assert hasattr(module, name), name
    public = {
        n for n, v in vars(module).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert public - {"annotations"} == set(names) - {"__version__"}


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
