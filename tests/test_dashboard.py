"""The dashboard (``GET /``) in a real headless browser, against a real ``incremental serve --demo``.

The server runs as a subprocess (its own redis-server, 2 arq workers, the recorded 8-tool app-builder
conversation replayed at 2x, every tool a 1 s simulated job). Playwright drives Debian's Chromium at
``/usr/bin/chromium``; it never downloads a browser. When that binary is missing the tests FAIL (they do
not skip): ``.ci/run`` installs it with apt-get before ``make test``.

What is checked (~60 s in all):
- the token moves from ``#token=`` to sessionStorage, leaves the visible URL, and never appears in a URL
  the page requests; a wrong pasted token is refused and the form comes back;
- "Start demo run": a tool row reaches running/completed while turn 0's model stream is still streaming
  (recorded by a MutationObserver at the moment the row first shows running/completed, reading the turn's
  ``data-stream-state``), and the event log agrees (a ``tool_started`` before turn 0's
  ``message_stopped``); then all 8 turn-0 tools end "completed", the assistant text equals the run view's,
  the run ends "completed" and the metrics panel shows numbers (both time-saved figures);
- the timeline: tool bars are drawn before turn 0's ``message_stop`` line, the faint "after the stream"
  bars only after it, and the timeline built from ``GET /v1/runs/{id}`` (what a snapshot carries) equals
  the live one; a write's input shows its path and its whole content as numbered lines, a replace its
  before and after;
- a second viewer picks the same run in the run picker; its connection is cut twice while turn 0 streams
  (``window.__incremental.dropConnection()``); it comes back by itself with ``Last-Event-ID`` each time
  and ends with the same tools and text as ``GET /v1/runs/{id}``: nothing duplicated, nothing missing;
- Pause, Resume and Cancel run do what they say, on a second demo run, and no call is left streaming;
- hostile model text and tool input (markup, ``javascript:`` links, lines that look like SSE), served
  from a fake API to a page holding a watch token, stay text and forge no event;
- the page's SSE parser (``/static/sse.js``) on split CRLF pairs, multi-line data, comments and
  per-character input.

Screenshot: the full page at the end of the demo run is always saved under pytest's tmp dir; with
``INCREMENTAL_SCREENSHOT=1`` it is also copied to ``docs/dashboard.png`` (the README shows it):

    INCREMENTAL_SCREENSHOT=1 .venv/bin/pytest tests/test_dashboard.py
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parent.parent / "docs"
TURN0_TOOLS = 8
RUN_TIMEOUT_MS = 120_000  # the demo's turn 0 streams for ~23 s at 2x; generous for a loaded CI machine


class Server:
    def __init__(self, base: str, token: str, proc: subprocess.Popen[str], log: Path) -> None:
        self.base, self.token, self.proc, self.log = base, token, proc, log

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's whole event log, read over SSE up to ``event: end``."""
        events: list[dict[str, Any]] = []
        kind = None
        with self.client() as client, client.stream("GET", f"/v1/runs/{run_id}/events") as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:") and kind not in (None, "end", "snapshot"):
                    events.append(json.loads(line[5:]))
                if kind == "end" and line == "":
                    break
        return events


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    token = secrets.token_hex(20)
    log = tmp_path_factory.mktemp("serve") / "stderr.log"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "INCREMENTAL_TOKENS")}
    cmd = [sys.executable, "-m", "incremental", "serve", "--demo", "--port", "0", f"--token={token}"]
    cmd += ["--speed", "2", "--simulate", "1", "--workers", "2"]
    with log.open("w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:  # keep reading, so the server never blocks on a full pipe
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=drain, daemon=True).start()
    try:
        first = lines.get(timeout=60)
    except queue.Empty:
        first = ""
    match = re.match(r"incremental serve: (http://\S+?)/?$", first.strip())
    if match is None:
        proc.kill()
        proc.wait()
        pytest.fail(f"serve did not print its address (got {first!r}):\n{log.read_text()[-3000:]}")
    try:
        yield Server(match.group(1), token, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard tests need Debian's Chromium "
            "(apt-get install -y --no-install-recommends chromium; make test does it)",
            pytrace=False,
        )
    with sync_playwright() as p:
        # launch() gives the browser a fresh temporary profile, removed at close.
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[[], Page]]:
    """Pages in fresh browser contexts (own sessionStorage); none may throw an uncaught error."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    def make() -> Page:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    try:
        yield make
    finally:
        for context in contexts:
            context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def page(new_page: Callable[[], Page]) -> Page:
    return new_page()


def open_dashboard(page: Page, server: Server) -> list[Request]:
    """Open the page with the token in the fragment; returns the requests it makes from then on."""
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    page.goto(f"{server.base}/#token={server.token}")
    expect(page.get_by_test_id("start-demo")).to_be_visible()
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('incremental.token')") == server.token
    return requests


def start_demo(page: Page) -> str:
    page.get_by_test_id("start-demo").click()
    run_id = page.get_by_test_id("run-id")
    expect(run_id).to_have_text(re.compile(r"\S+"))
    return run_id.inner_text()


def wait_until_done(page: Page) -> None:
    done = page.locator('[data-testid="tool-row"][data-turn="0"][data-status="completed"]')
    expect(done).to_have_count(TURN0_TOOLS, timeout=RUN_TIMEOUT_MS)
    state = page.get_by_test_id("run-state")
    expect(state).to_have_attribute("data-state", "completed", timeout=RUN_TIMEOUT_MS)
    expect(page.get_by_test_id("connection")).to_have_attribute("data-conn", "ended", timeout=30_000)


def assert_matches_run_view(page: Page, server: Server, run_id: str) -> dict[str, Any]:
    with server.client() as client:
        response = client.get(f"/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    assert view["state"] == "completed"
    # Each text block is rendered on its own (as markdown); the source it renders is the view's block.
    texts = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('[data-testid="turn"]')]
            .map((t) => [t.dataset.turn, [...t.querySelectorAll('[data-testid="text-block"]')]
                .map((b) => b.source)]))"""
    )
    for turn, blocks in enumerate(view["text_blocks"]):
        assert texts.get(str(turn), []) == blocks, f"turn {turn} text differs from the run view's"
        assert view["text"][turn] == "\n\n".join(blocks)
    assert set(texts) <= {str(n) for n in range(len(view["text"]))}
    rows = page.evaluate(
        """() => [...document.querySelectorAll('[data-testid="tool-row"]')]
            .map((r) => [r.dataset.toolId, r.dataset.status])"""
    )
    assert sorted(map(tuple, rows)) == sorted((t["tool_use_id"], t["status"]) for t in view["tools"])
    return view


# Installed before "Start demo run": the first time a tool row shows running or completed, write down
# what turn 0's stream state was on the page at that very moment.
WATCH_FIRST_TOOL = """() => {
  window.__firstTool = null;
  window.__firstBar = null;    // the first tool bar on the timeline: was message_stop drawn yet?
  window.__firstGhost = null;  // the first faint "after the stream" bar: was message_stop drawn yet?
  const check = () => {
    const stopDrawn = () => Boolean(
      document.querySelector('[data-testid="tl-turn"][data-turn="0"] [data-testid="tl-stop"]'));
    if (!window.__firstBar && document.querySelector('[data-testid="tl-run"]')) {
      window.__firstBar = {stopDrawn: stopDrawn()};
    }
    if (!window.__firstGhost && document.querySelector('[data-testid="tl-ghost"]')) {
      window.__firstGhost = {stopDrawn: stopDrawn()};
    }
    if (window.__firstTool) return;
    const row = document.querySelector(
      '[data-testid="tool-row"][data-status="running"], [data-testid="tool-row"][data-status="completed"]');
    if (!row) return;
    const turn0 = document.querySelector('[data-testid="turn"][data-turn="0"]');
    window.__firstTool = {id: row.dataset.toolId, status: row.dataset.status,
                          streamState: turn0 ? turn0.dataset.streamState : null};
  };
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


# Cuts the page's event stream the way a network failure would; answers turn 0's stream state then.
DROP = """() => {
  const state = document.querySelector('[data-testid="turn"][data-turn="0"]').dataset.streamState;
  window.__incremental.dropConnection();
  return state;
}"""


def test_demo_run_live_and_a_viewer_whose_connection_drops(
    new_page: Callable[[], Page], server: Server, tmp_path: Path
) -> None:
    """Page A starts the demo run and watches it; page B picks the same run and loses its connection twice.

    (One run for both: the demo's turn 0 streams for ~23 s, so the two viewers share it.)
    """
    page, viewer = new_page(), new_page()
    requests = open_dashboard(page, server)
    page.evaluate(WATCH_FIRST_TOOL)
    run_id = start_demo(page)

    # Viewer B: picks the run, drops once while the text streams and once more with a tool on the page.
    viewer_requests = open_dashboard(viewer, server)
    viewer.get_by_test_id("run-picker").select_option(run_id)
    viewer_turn0 = viewer.locator('[data-testid="turn"][data-turn="0"]')
    expect(viewer_turn0.get_by_test_id("turn-text")).not_to_be_empty(timeout=RUN_TIMEOUT_MS)
    assert viewer.evaluate(DROP) == "streaming"  # the model was still streaming turn 0
    expect(viewer.get_by_test_id("tool-row").first).to_be_visible(timeout=RUN_TIMEOUT_MS)
    viewer.wait_for_function("window.__incremental.debug.connections.length >= 2")
    assert viewer.evaluate(DROP) == "streaming"
    viewer.wait_for_function("window.__incremental.debug.connections.length >= 3")

    # Page A: a tool ran while turn 0 was still streaming...
    page.wait_for_function("window.__firstTool !== null", timeout=RUN_TIMEOUT_MS)
    first = page.evaluate("window.__firstTool")
    assert first["streamState"] == "streaming", first
    turn0 = page.locator('[data-testid="turn"][data-turn="0"]')
    expect(turn0).to_have_attribute("data-stream-state", "stopped", timeout=RUN_TIMEOUT_MS)

    wait_until_done(page)
    view = assert_matches_run_view(page, server, run_id)
    assert view["text"][0].strip(), "no assistant text in turn 0"
    assert len(view["text_blocks"][0]) > 1  # the recording's turn 0 has several text blocks
    assert len([t for t in view["tools"] if t["turn"] == 0]) == TURN0_TOOLS

    # ...and so says the event log.
    kinds = [(e["kind"], e.get("turn")) for e in server.events(run_id)]
    assert kinds.index(("tool_started", 0)) < kinds.index(("message_stopped", 0))

    # The timeline: tool bars were drawn before message_stop was, the faint "after the stream" bars
    # only after it; every turn-0 tool has its bar, and both counterfactual rows have one bar per tool.
    assert page.evaluate("window.__firstBar") == {"stopDrawn": False}
    assert page.evaluate("window.__firstGhost") == {"stopDrawn": True}
    timeline = page.get_by_test_id("timeline")
    turn0_bars = timeline.locator('[data-testid="tl-turn"][data-turn="0"]')
    expect(
        turn0_bars.locator('[data-testid="tl-tool"][data-status="completed"] [data-testid="tl-run"]')
    ).to_have_count(TURN0_TOOLS)
    for kind in ("sequential", "parallel"):
        expect(turn0_bars.locator(f'[data-testid="tl-ghost"][data-kind="{kind}"]')).to_have_count(TURN0_TOOLS)
    expect(timeline.locator('[data-testid="tl-stop"]')).to_have_count(2)  # one per turn
    # A page rebuilt from the run view (what a snapshot carries) draws exactly the same timeline.
    rebuilt = page.evaluate(
        """async (id) => {
            const token = sessionStorage.getItem('incremental.token');
            const headers = {Authorization: `Bearer ${token}`};
            const view = await (await fetch(`/v1/runs/${id}`, {headers})).json();
            return [window.__incremental.timeline(), window.__incremental.timelineFromView(view)];
        }""",
        run_id,
    )
    assert rebuilt[0]["turns"] and rebuilt[0] == rebuilt[1]

    # Each row shows its input and its result, rendered: a write's path and numbered content, a
    # replace's before and after, a simulated tool's echo said as such.
    row = page.locator(f'[data-tool-id="{first["id"]}"]')
    expect(row.get_by_test_id("tool-result")).not_to_be_empty()
    expect(row.get_by_test_id("tool-duration")).to_have_text(re.compile(r"^\d+\.\d+ s$"))
    write = page.locator('[data-testid="tool-row"]', has_text="write_file").first
    write_input = write.get_by_test_id("tool-input")
    expect(write_input.get_by_test_id("call-path")).to_have_text(re.compile(r"^src/App\.tsx · \d+ lines$"))
    code = write_input.get_by_test_id("code")
    expect(code.locator("td.ln").first).to_have_text("1")
    expect(code).to_contain_text("import")
    assert code.locator("td.ln").count() > 50  # the whole file, from GET /v1/runs/{id}/calls
    shown = code.evaluate("(c) => [...c.querySelectorAll('td.src')].map((td) => td.textContent).join('\\n')")
    whole = page.evaluate(
        "(id) => window.__incremental.run.calls.get(id).input.content",
        write.get_attribute("data-tool-id"),
    )
    assert shown.replace("\u200b", "") == whole  # line by line, unescaped
    expect(write.get_by_test_id("echo")).to_be_visible()
    lines = page.locator('[data-testid="tool-row"]', has_text="replace_lines").filter(has_text="index.html")
    before_after = lines.get_by_test_id("before-after")
    expect(before_after.locator(".before")).to_have_text("lines 5–7 (3 lines)")
    expect(before_after.locator(".after td.ln").first).to_have_text("5")
    string = page.locator('[data-testid="tool-row"]', has_text="replace_string").get_by_test_id(
        "before-after"
    )
    expect(string.locator(".before")).to_contain_text('"name": "vite-project"')
    expect(string.locator(".after")).to_contain_text('"name": "streak"')

    # Metrics are numbers.
    number = re.compile(r"^-?\d+(\.\d+)? (s|%)$")
    expect(page.get_by_test_id("metric-tools")).to_have_text(re.compile(r"^(\d+) / \1$"))
    expect(page.get_by_test_id("metric-avg")).to_have_text(number)
    expect(page.get_by_test_id("metric-success")).to_have_text("100 %")
    expect(page.get_by_test_id("metric-saved")).to_have_text(number)
    expect(page.get_by_test_id("global-success")).to_have_text(number)
    # Against running the 8 tools one by one after the stream, the run saved most of their 8 s.
    seq = float(page.get_by_test_id("metric-saved-seq").inner_text().split()[0])
    assert seq == pytest.approx(view["stats"]["saved_sequential_s"], abs=0.01) and seq > 4.0
    expect(page.get_by_test_id("yours-saved-seq")).to_have_text(number, timeout=15_000)

    # The token only ever travelled in the Authorization header.
    assert requests and viewer_requests
    for request in requests + viewer_requests:
        assert server.token not in request.url, request.url
        if "/v1/" in request.url:
            assert request.all_headers().get("authorization") == f"Bearer {server.token}"

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("INCREMENTAL_SCREENSHOT") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS / "dashboard.png")

    # Viewer B came back by itself each time, where it left off, and shows the same run: nothing twice.
    wait_until_done(viewer)
    connections = viewer.evaluate("window.__incremental.debug.connections")
    assert len(connections) >= 3
    assert connections[0]["lastEventId"] is None
    assert all(c["lastEventId"] for c in connections[1:]), connections
    sent = [
        r.all_headers().get("last-event-id")
        for r in viewer_requests
        if r.url.endswith(f"/v1/runs/{run_id}/events")
    ]
    assert len(sent) >= 3 and sent[0] is None and all(sent[1:]), sent
    assert_matches_run_view(viewer, server, run_id)


def test_pause_resume_and_cancel_buttons(page: Page, server: Server) -> None:
    open_dashboard(page, server)
    run_id = start_demo(page)
    expect(page.get_by_test_id("tool-row").first).to_be_visible(timeout=RUN_TIMEOUT_MS)
    pause = page.get_by_test_id("pause")
    pause.click()
    expect(page.get_by_test_id("run-paused")).to_be_visible()
    expect(pause).to_have_text("Resume")
    pause.click()
    expect(page.get_by_test_id("run-paused")).to_be_hidden()
    expect(pause).to_have_text("Pause")
    page.get_by_test_id("cancel-run").click()
    expect(page.get_by_test_id("run-state")).to_have_attribute("data-state", "cancelled")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-conn", "ended")
    expect(pause).to_be_disabled()
    expect(page.locator('[data-testid="tool-row"][data-status="running"]')).to_have_count(0)
    # A call whose input was still streaming at the cancel settles too: no spinner, no "streaming" left.
    expect(page.locator('[data-testid="tool-row"][data-status="streaming"]')).to_have_count(0)
    expect(page.locator('[data-testid="tool-row"] .icon.spinner')).to_have_count(0)
    with server.client() as client:
        view = client.get(f"/v1/runs/{run_id}").json()
    assert view["state"] == "cancelled"
    assert not [t for t in view["tools"] if t["status"] in ("streaming", "running")], view["tools"]


def test_a_wrong_token_brings_back_the_form(page: Page, server: Server) -> None:
    page.goto(server.base + "/")
    form = page.get_by_test_id("token-form")
    expect(form).to_be_visible()
    page.get_by_label("Token", exact=True).fill("not-the-token")
    page.get_by_role("button", name="Use token").click()
    expect(page.get_by_test_id("notice")).to_contain_text("401")
    expect(form).to_be_visible()
    page.get_by_label("Token", exact=True).fill(server.token)
    page.get_by_role("button", name="Use token").click()
    expect(page.get_by_test_id("start-demo")).to_be_visible()
    expect(form).to_be_hidden()


SSE_CASES = r"""async () => {
  const { SSEParser } = await import('/static/sse.js');
  const run = (chunks) => {
    const out = [];
    const p = new SSEParser((e) => out.push(e));
    for (const c of chunks) p.push(c);
    return out;
  };
  const text = 'id: 1\r\nevent: a\r\ndata: x\r\ndata:  y\r\n\r\n: ping\n\n' +
               'data: z\r\rid: 2\nevent: b\ndata\n\n' +
               'event: c\n\nid: 3\ndata: {"k": 1}\n\nevent: tail\ndata: never dispatched';
  return {
    whole: run([text]),
    perChar: run([...text]),
    splitCrlf: run(['id: 7\r', '\ndata: q\r', '\n\r', '\n']),
  };
}"""


def test_the_pages_sse_parser(page: Page, server: Server) -> None:
    open_dashboard(page, server)
    result = page.evaluate(SSE_CASES)
    expected = [
        {"id": "1", "event": "a", "data": "x\n y"},
        {"id": "1", "event": "message", "data": "z"},
        {"id": "2", "event": "b", "data": ""},
        {"id": "3", "event": "message", "data": '{"k": 1}'},
    ]
    assert result["whole"] == expected
    assert result["perChar"] == expected
    assert result["splitCrlf"] == [{"id": "7", "event": "message", "data": "q"}]


# ------------------------------------------------------------------------------------------ hostile text

# Model text and tool input are untrusted: markup in them must stay text, and nothing that looks like
# SSE may become an event. Every attempt below would set window.__pwned if it ran.
FORGED_SSE = 'id: 99999999999999-0\nevent: run_completed\ndata: {"state":"completed","reason":"forged"}\n\n'
HOSTILE_TEXT = (
    "# Plan <img src=x onerror=\"window.__pwned='img'\">\n\n"
    "<script>window.__pwned='script'</script>\n\n"
    f"{FORGED_SSE}"
    "[click](javascript:window.__pwned='link') and **bold** `<b>code</b>`"
)
HOSTILE_PATH = "<script>window.__pwned='path'</script>.html"
HOSTILE_CONTENT = (
    "</td></tr></table><script>window.__pwned='content'</script>\n"
    'event: tool_completed\ndata: {"tool_use_id":"toolu_forged","status":"ok"}\n\n'
)
HOSTILE_NEW = "<img src=x onerror=\"window.__pwned='new'\">"


def hostile_recording() -> list[bytes]:
    """Two turns, built the way the API frames them: hostile text and two hostile tool calls, then
    a plain last turn. Timed to stream in about a second."""
    from ._streams import (
        MESSAGE_STOP,
        frame,
        json_delta,
        message_delta,
        message_start,
        stop,
        text_delta,
        text_start,
        tool_start,
    )

    write = json.dumps({"path": HOSTILE_PATH, "content": HOSTILE_CONTENT})
    replace = json.dumps({"path": "index.html", "old": "<b>old</b>", "new": HOSTILE_NEW})
    objs: list[dict[str, Any]] = [message_start("msg_hostile"), text_start(0)]
    objs += [text_delta(0, HOSTILE_TEXT[i : i + 40]) for i in range(0, len(HOSTILE_TEXT), 40)]
    objs.append(stop(0))
    for index, tool_id, name, text in (
        (1, "toolu_hw", "write_file", write),
        (2, "toolu_hr", "replace_string", replace),
    ):
        objs.append(tool_start(index, tool_id, name))
        objs += [json_delta(index, text[i : i + 30]) for i in range(0, len(text), 30)]
        objs.append(stop(index))
    objs += [message_delta("tool_use"), MESSAGE_STOP]
    turn1 = b"".join(frame(o, t=0.02 * n) for n, o in enumerate(objs))
    last = [message_start("msg_done"), text_start(0), text_delta(0, "Done."), stop(0)]
    last += [message_delta("end_turn"), MESSAGE_STOP]
    turn2 = b"".join(frame(o, t=0.05 * n) for n, o in enumerate(last))
    return [turn1, turn2]


class ThreadedService:
    """``incremental.service.Service`` on its own event loop in a thread, playing ``turns`` from a fake
    Messages API, every tool simulated; for the sync Playwright tests."""

    def __init__(self, turns: list[bytes], token: str) -> None:
        self.turns, self.token = turns, token
        self.url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: Any = None
        self._stop: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import asyncio

        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        import asyncio

        from incremental.adapters._messages_client import MessagesClient
        from incremental.examples.app_builder.tools import registry
        from incremental.fake_api import FakeMessagesAPI
        from incremental.service import ServeOptions, Service

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        api = FakeMessagesAPI(self.turns, speed=1.0)
        await api.start()
        client = MessagesClient(base_url=api.url, api_key="test")
        options = ServeOptions(
            tokens={"owner": self.token},
            port=0,
            model_client=client,
            tools={"app": registry},
            simulate_s=0.3,
            workers=1,
        )
        try:
            async with Service(options) as service:
                self.url = service.url
                self._ready.set()
                await self._stop.wait()
        finally:
            await client.aclose()
            await api.stop()

    def __enter__(self) -> ThreadedService:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None or not self.url:
            raise RuntimeError(f"the service did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def test_hostile_model_text_and_tool_input_stay_text(page: Page) -> None:
    token = secrets.token_hex(20)
    with ThreadedService(hostile_recording(), token) as service:
        body = {"messages": [{"role": "user", "content": "hi"}], "toolset": "app", "limits": {"max_turns": 2}}
        with httpx.Client(base_url=service.url, timeout=30) as client:
            created = client.post("/v1/runs", json=body, headers={"Authorization": f"Bearer {token}"}).json()
        run_id = created["id"]
        # A browser holds the run's watch token, never the service token.
        page.goto(f"{service.url}/#token={created['watch_token']}")
        page.get_by_test_id("run-picker").select_option(run_id)
        expect(page.get_by_test_id("run-state")).to_have_attribute("data-state", "completed", timeout=60_000)
        expect(page.get_by_test_id("connection")).to_have_attribute("data-conn", "ended", timeout=30_000)
        expect(page.locator('[data-testid="tool-row"][data-status="completed"]')).to_have_count(2)

        assert page.evaluate("window.__pwned") is None  # no script, handler or link ran
        panel = page.locator("#run-panel")
        assert panel.locator("script, img, iframe, object, embed, [onerror]").count() == 0
        assert panel.locator("a[href^='javascript']").count() == 0
        turn0 = page.locator('[data-testid="turn"][data-turn="0"]')
        text = turn0.get_by_test_id("turn-text")
        expect(text.locator("h3, h4")).to_contain_text(
            "Plan <img src=x"
        )  # a heading, with its markup as text
        expect(text).to_contain_text("<script>window.__pwned='script'</script>")
        expect(text).to_contain_text("event: run_completed")
        expect(text.locator("strong")).to_have_text("bold")
        expect(text.locator("code")).to_have_text("<b>code</b>")
        write = page.locator('[data-tool-id="toolu_hw"]')
        expect(write.get_by_test_id("call-path")).to_contain_text(HOSTILE_PATH)
        shown = write.get_by_test_id("tool-input").get_by_test_id("code")
        expect(shown.locator("td.src").first).to_have_text(
            "</td></tr></table><script>window.__pwned='content'</script>"
        )
        expect(shown).to_contain_text("event: tool_completed")
        after = page.locator('[data-tool-id="toolu_hr"]').get_by_test_id("before-after").locator(".after")
        expect(after).to_have_text(re.compile(re.escape(HOSTILE_NEW)))

        # The lines that look like SSE stayed inside their JSON: the page got exactly the log's events,
        # no forged run_completed (the reason is the real one), no tool that does not exist.
        kinds = page.evaluate("window.__incremental.debug.kinds")
        assert kinds.count("run_completed") == 1
        assert page.locator('[data-tool-id="toolu_forged"]').count() == 0
        expect(page.get_by_test_id("run-reason")).not_to_have_text("forged")
        with httpx.Client(base_url=service.url, timeout=30) as client:
            headers = {"Authorization": f"Bearer {token}"}
            view = client.get(f"/v1/runs/{run_id}", headers=headers).json()
            with client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as response:
                raw = response.read().decode()
        assert view["text_blocks"][0] == [HOSTILE_TEXT]
        assert [t["tool_use_id"] for t in view["tools"]] == ["toolu_hw", "toolu_hr"]
        events = [line[7:] for line in raw.splitlines() if line.startswith("event: ")]
        assert events.count("run_completed") == 1 and events[-1] == "end"
        assert [k for k in kinds if k != "end"] == events[:-1]
