"""The app-builder tool set (``incremental.examples.app_builder.tools``) on a temporary workspace."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import incremental.examples.app_builder.tools as app_tools
from incremental import StreamParser, ToolCall, ToolReady
from incremental.examples.app_builder.tools import (
    MAX_LIST_ENTRIES,
    VITE_STARTER,
    path_key,
    registry,
    seed_vite_starter,
    splice_lines,
    split_lines,
)
from incremental.tools import Planned, ToolContext, ToolResult, execute, plan_call
from tests._support import APP_BUILDER

TOOLS = ["write_file", "replace_lines", "replace_string", "read_file", "list_files", "rename_app"]


class Run:
    """Runs app tools on one workspace and keeps the progress they report."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.progress: list[tuple[str, str, float | None]] = []
        self.count = 0

    async def __call__(self, name: str, tool_use_id: str | None = None, /, **args: Any) -> ToolResult:
        spec = registry.get(name)
        assert spec is not None
        self.count += 1
        tool_id = tool_use_id or f"toolu_{self.count:03d}"

        async def sink(item: dict[str, Any]) -> None:
            self.progress.append((tool_id, item["stage"], item["fraction"]))

        ctx = ToolContext(tool_use_id=tool_id, name=name, workspace=self.workspace, progress_sink=sink)
        return await execute(spec, args, ctx)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    root.mkdir()
    return root


@pytest.fixture
def run(ws: Path) -> Run:
    return Run(ws)


def ok(result: ToolResult) -> str:
    assert (result.status, result.is_error) == ("ok", False), result.content
    return result.content


def failed(result: ToolResult) -> str:
    assert (result.status, result.is_error) == ("error", True), result.content
    return result.content


def visible_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# --- the registry -------------------------------------------------------------------------------------


def test_the_six_tools_are_eager_idempotent_and_keyed() -> None:
    assert registry.names() == TOOLS
    for spec in registry:
        assert spec.policy == "eager" and spec.idempotent, spec.name
        assert spec.concurrency_key is not None, spec.name
        assert spec.description, spec.name
    required = {t["name"]: t["input_schema"]["required"] for t in registry.api_tools()}
    assert required == {
        "write_file": ["path", "content"],
        "replace_lines": ["path", "start_line", "end_line", "content"],
        "replace_string": ["path", "old", "new"],
        "read_file": ["path"],
        "list_files": [],
        "rename_app": ["name"],
    }


def test_concurrency_keys_are_normalized_paths() -> None:
    def key(tool: str, /, **args: Any) -> str | None:
        planned = plan_call(ToolCall(id="t", name=tool, input=args, index=0), registry)
        assert not isinstance(planned, ToolResult), planned.content
        return planned.concurrency_key

    assert key("write_file", path="./src//App.tsx", content="") == "src/App.tsx"
    assert key("read_file", path="src/App.tsx/") == "src/App.tsx"
    assert key("list_files") == "."
    assert key("rename_app", name="x") == "app.json"
    assert path_key(type("A", (), {"path": "a/./b"})()) == "a/b"


def test_content_over_two_megabytes_is_refused_before_running() -> None:
    call = ToolCall(
        id="t", name="write_file", input={"path": "a", "content": "x" * (2 * 1024 * 1024)}, index=0
    )
    result = plan_call(call, registry)
    assert isinstance(result, ToolResult) and result.status == "refused"
    assert "over the tool's limit of 2,097,152 bytes" in result.content


def test_extra_fields_are_refused() -> None:
    call = ToolCall(id="t", name="read_file", input={"path": "a", "offset": 3}, index=0)
    result = plan_call(call, registry)
    assert isinstance(result, ToolResult) and "- offset: Extra inputs are not permitted" in result.content


# --- the recorded turn -------------------------------------------------------------------------------


async def test_the_recorded_app_builder_turn_runs_on_the_vite_starter(ws: Path) -> None:
    assert seed_vite_starter(ws) == list(VITE_STARTER)
    assert seed_vite_starter(ws) == []  # only missing files are written
    parser = StreamParser()
    events = [*parser.feed(APP_BUILDER[0].read_bytes()), *parser.end()]
    results = []
    for call in (e.call for e in events if isinstance(e, ToolReady)):
        planned = plan_call(call, registry)
        assert isinstance(planned, Planned), planned
        ctx = ToolContext(tool_use_id=call.id, name=call.name, workspace=ws)
        results.append(await execute(planned.spec, planned.args, ctx))
    assert [r.status for r in results] == ["ok"] * 8, [r.content for r in results]
    assert results[3].content == "replaced lines 1-10 of src/main.tsx with 9 lines; the file now has 9 lines."
    assert results[5].content == "replaced 1 occurrence in package.json at line 2."
    assert results[7].content == VITE_STARTER["vite.config.ts"]
    assert json.loads((ws / "package.json").read_text())["name"] == "streak"
    assert json.loads((ws / "app.json").read_text()) == {"name": "Streak — Habit Tracker"}
    assert "🔥" in (ws / "index.html").read_text() and "<title>" in (ws / "index.html").read_text()
    assert (ws / "src/components/HabitList.tsx").read_text().startswith("import type { KeyboardEvent }")


# --- write_file ---------------------------------------------------------------------------------------


async def test_write_file_creates_parents_and_reports_progress(run: Run, ws: Path) -> None:
    content = "export const a = 1;\nexport const é = 2;\n"
    result = await run("write_file", "toolu_w", path="src/lib/a.ts", content=content)
    assert ok(result) == f"wrote src/lib/a.ts ({len(content.encode()):,} bytes, 2 lines)."
    assert (ws / "src/lib/a.ts").read_bytes() == content.encode()
    assert run.progress == [("toolu_w", "writing", 0.0), ("toolu_w", "writing", 1.0)]
    assert visible_files(ws) == ["src/lib/a.ts"]  # no temporary file left behind


async def test_write_file_overwrites_keeps_the_mode_and_is_idempotent(run: Run, ws: Path) -> None:
    (ws / "run.sh").write_text("old")
    os.chmod(ws / "run.sh", 0o755)
    first = await run("write_file", "toolu_w", path="run.sh", content="#!/bin/sh\n")
    second = await run("write_file", "toolu_w", path="run.sh", content="#!/bin/sh\n")
    assert ok(first) == ok(second)
    assert (ws / "run.sh").read_text() == "#!/bin/sh\n"
    assert (ws / "run.sh").stat().st_mode & 0o777 == 0o755


async def test_write_file_on_a_directory_fails(run: Run, ws: Path) -> None:
    (ws / "src").mkdir()
    assert "src is a directory" in failed(await run("write_file", path="src", content="x"))


async def test_write_file_under_a_file_fails(run: Run, ws: Path) -> None:
    (ws / "a").write_text("x")
    assert failed(await run("write_file", path="a/b.txt", content="x")).startswith("could not write a/b.txt:")


# --- replace_lines ------------------------------------------------------------------------------------


async def test_replace_lines_replaces_an_inclusive_range(run: Run, ws: Path) -> None:
    (ws / "f.txt").write_text("1\n2\n3\n4\n5\n")
    result = await run("replace_lines", path="f.txt", start_line=2, end_line=4, content="two\nthree")
    assert ok(result) == "replaced lines 2-4 of f.txt with 2 lines; the file now has 4 lines."
    assert (ws / "f.txt").read_text() == "1\ntwo\nthree\n5\n"
    assert [stage for _, stage, _ in run.progress] == ["editing", "editing"]


async def test_replace_lines_deletes_and_keeps_crlf(run: Run, ws: Path) -> None:
    (ws / "f.txt").write_bytes(b"a\r\nb\r\nc\r\n")
    assert ok(await run("replace_lines", path="f.txt", start_line=2, end_line=2, content="B")) == (
        "replaced lines 2-2 of f.txt with 1 line; the file now has 3 lines."
    )
    assert (ws / "f.txt").read_bytes() == b"a\r\nB\r\nc\r\n"
    assert ok(await run("replace_lines", path="f.txt", start_line=1, end_line=2, content="")) == (
        "deleted lines 1-2 of f.txt; the file now has 1 line."
    )
    assert (ws / "f.txt").read_bytes() == b"c\r\n"


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (3, 2, "start_line (3) is after end_line (2); give start_line <= end_line. f.txt was not changed."),
        (2, 4, "f.txt has 3 lines, so lines 2-4 do not all exist;"),
        (4, 4, "f.txt has 3 lines, so lines 4-4 do not all exist;"),
    ],
)
async def test_replace_lines_bad_range(run: Run, ws: Path, start: int, end: int, message: str) -> None:
    (ws / "f.txt").write_text("1\n2\n3")
    assert message in failed(
        await run("replace_lines", path="f.txt", start_line=start, end_line=end, content="x")
    )
    assert (ws / "f.txt").read_text() == "1\n2\n3"
    assert not (ws / ".incremental").exists()  # nothing was journaled


async def test_replace_lines_zero_is_a_schema_failure(run: Run) -> None:
    result = await run("replace_lines", path="f.txt", start_line=0, end_line=1, content="x")
    assert (
        result.status == "refused"
        and "- start_line: Input should be greater than or equal to 1" in result.content
    )


async def test_replace_lines_on_a_missing_file(run: Run) -> None:
    result = await run("replace_lines", path="nope.txt", start_line=1, end_line=1, content="x")
    assert failed(result) == "there is no file at nope.txt. Use write_file to create it."


# --- replace_string -----------------------------------------------------------------------------------


async def test_replace_string_replaces_the_one_occurrence(run: Run, ws: Path) -> None:
    (ws / "package.json").write_text('{\n  "name": "vite-project",\n  "private": true\n}\n')
    result = await run(
        "replace_string", path="package.json", old='"name": "vite-project",', new='"name": "x",'
    )
    assert ok(result) == "replaced 1 occurrence in package.json at line 2."
    assert (ws / "package.json").read_text() == '{\n  "name": "x",\n  "private": true\n}\n'


async def test_replace_string_not_found(run: Run, ws: Path) -> None:
    (ws / "a.txt").write_text("hello")
    content = failed(await run("replace_string", path="a.txt", old="bye", new="x"))
    assert content.startswith("the text to replace was not found in a.txt; nothing was changed.")
    assert (ws / "a.txt").read_text() == "hello"


async def test_replace_string_not_unique_says_how_many(run: Run, ws: Path) -> None:
    (ws / "a.txt").write_text("ab ab ab")
    content = failed(await run("replace_string", path="a.txt", old="ab", new="x"))
    assert content.startswith("the text to replace occurs 3 times in a.txt, but it must occur exactly once;")
    assert (ws / "a.txt").read_text() == "ab ab ab"


async def test_replace_string_needs_some_old_text(run: Run, ws: Path) -> None:
    (ws / "a.txt").write_text("ab")
    result = await run("replace_string", path="a.txt", old="", new="x")
    assert result.status == "refused" and "- old: String should have at least 1 character" in result.content


# --- read_file ----------------------------------------------------------------------------------------


async def test_read_file_returns_the_content(run: Run, ws: Path) -> None:
    (ws / "src").mkdir()
    (ws / "src/a.ts").write_text("line 1\nline é\n")
    assert ok(await run("read_file", "toolu_r", path="src/a.ts")) == "line 1\nline é\n"
    assert run.progress == [("toolu_r", "reading", 0.0), ("toolu_r", "reading", 1.0)]


async def test_read_file_refuses_files_over_one_megabyte(run: Run, ws: Path) -> None:
    (ws / "big.txt").write_bytes(b"x" * (1024 * 1024 + 1))
    (ws / "limit.txt").write_bytes(b"x" * (1024 * 1024))
    assert failed(await run("read_file", path="big.txt")) == (
        "big.txt is 1,048,577 bytes, over the 1,048,576-byte limit for reading a file."
    )
    assert len(ok(await run("read_file", path="limit.txt"))) == 1024 * 1024


async def test_read_file_missing_directory_and_binary(run: Run, ws: Path) -> None:
    (ws / "d").mkdir()
    (ws / "b.bin").write_bytes(b"\xff\xfe\x00")
    assert failed(await run("read_file", path="nope.txt")) == "there is no file at nope.txt."
    assert "d is a directory, not a file" in failed(await run("read_file", path="d"))
    assert "b.bin is not a UTF-8 text file" in failed(await run("read_file", path="b.bin"))


# --- list_files ---------------------------------------------------------------------------------------


async def test_list_files_is_recursive_sorted_and_skips_the_journal(run: Run, ws: Path) -> None:
    for rel in ["b.txt", "a/z.txt", "a/b/c.txt", "index.html", ".incremental/journal/x.json", "c/.keep"]:
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text("x")
    (ws / "empty").mkdir()
    assert ok(await run("list_files")).splitlines() == [
        "5 files under the app:",
        "a/b/c.txt",
        "a/z.txt",
        "b.txt",
        "c/.keep",
        "index.html",
    ]
    assert ok(await run("list_files", path="a/")).splitlines() == ["2 files under a:", "a/b/c.txt", "a/z.txt"]
    assert ok(await run("list_files", path="empty")) == "there are no files under empty."


async def test_list_files_stops_at_a_thousand(run: Run, ws: Path) -> None:
    for n in range(MAX_LIST_ENTRIES + 5):
        (ws / f"f{n:04d}.txt").write_text("")
    lines = ok(await run("list_files")).splitlines()
    assert lines[0].startswith(f"the first {MAX_LIST_ENTRIES} files under the app (the listing stops there;")
    assert lines[1:] == [f"f{n:04d}.txt" for n in range(MAX_LIST_ENTRIES)]


async def test_list_files_exactly_a_thousand_is_complete(run: Run, ws: Path) -> None:
    for n in range(MAX_LIST_ENTRIES):
        (ws / f"f{n:04d}.txt").write_text("")
    lines = ok(await run("list_files")).splitlines()
    assert lines[0] == f"{MAX_LIST_ENTRIES} files under the app:" and len(lines) == MAX_LIST_ENTRIES + 1


async def test_list_files_on_a_file_or_nothing(run: Run, ws: Path) -> None:
    (ws / "a.txt").write_text("x")
    assert "a.txt is a file, not a directory" in failed(await run("list_files", path="a.txt"))
    assert failed(await run("list_files", path="nope")) == "there is no directory at nope."


async def test_list_files_does_not_follow_directory_links(run: Run, ws: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    (ws / "link").symlink_to(outside, target_is_directory=True)
    assert ok(await run("list_files")).splitlines() == ["1 file under the app:", "link"]


# --- rename_app ---------------------------------------------------------------------------------------


async def test_rename_app_creates_the_manifest(run: Run, ws: Path) -> None:
    result = await run("rename_app", name="Streak — Habit Tracker")
    assert ok(result) == 'renamed the app to "Streak — Habit Tracker" (app.json).'
    assert json.loads((ws / "app.json").read_text()) == {"name": "Streak — Habit Tracker"}


async def test_rename_app_keeps_other_keys(run: Run, ws: Path) -> None:
    (ws / "app.json").write_text(json.dumps({"name": "old", "version": 3, "icons": ["a"]}))
    ok(await run("rename_app", name="new"))
    assert json.loads((ws / "app.json").read_text()) == {"name": "new", "version": 3, "icons": ["a"]}


async def test_rename_app_with_a_broken_manifest(run: Run, ws: Path) -> None:
    (ws / "app.json").write_text("[1, 2]")
    assert "app.json does not hold a JSON object" in failed(await run("rename_app", name="x"))
    (ws / "app.json").write_text("{oops")
    assert failed(await run("rename_app", name="x")).startswith("app.json is not valid JSON")


# --- paths --------------------------------------------------------------------------------------------


def _inputs(path: str) -> dict[str, dict[str, Any]]:
    return {
        "write_file": {"path": path, "content": "x"},
        "replace_lines": {"path": path, "start_line": 1, "end_line": 1, "content": "x"},
        "replace_string": {"path": path, "old": "x", "new": "y"},
        "read_file": {"path": path},
        "list_files": {"path": path},
    }


@pytest.mark.parametrize("tool", TOOLS[:5])
@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside.txt", "contains '..'"),
        ("src/../../outside.txt", "contains '..'"),
        ("..", "contains '..'"),
        ("/etc/passwd", "is absolute"),
        ("C:\\Windows\\win.ini", "is absolute"),
        ("out/secret.txt", "leads outside the app's directory through a symbolic link"),
        ("out", "leads outside the app's directory through a symbolic link"),
        ("out_file", "leads outside the app's directory through a symbolic link"),
        ("dangling", "leads outside the app's directory through a symbolic link"),
        (".incremental/journal/x.json", "is inside .incremental/, which is reserved"),
        ("inner/../.incremental", "contains '..'"),
    ],
)
async def test_paths_that_escape_are_refused(
    run: Run, ws: Path, tmp_path: Path, tool: str, path: str, message: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    (ws / "out").symlink_to(outside, target_is_directory=True)
    (ws / "out_file").symlink_to(outside / "secret.txt")
    (ws / "dangling").symlink_to(tmp_path / "nothing_here")
    (tmp_path / "outside.txt").write_text("x")
    content = failed(await run(tool, **_inputs(path)[tool]))
    assert message in content
    assert (outside / "secret.txt").read_text() == "x" and not (tmp_path / "nothing_here").exists()
    assert (tmp_path / "outside.txt").read_text() == "x"


async def test_a_link_to_the_journal_is_refused(run: Run, ws: Path) -> None:
    (ws / ".incremental").mkdir()
    (ws / "j").symlink_to(ws / ".incremental", target_is_directory=True)
    assert "is inside .incremental/" in failed(await run("write_file", path="j/x", content="x"))


async def test_links_that_stay_inside_are_followed(run: Run, ws: Path) -> None:
    (ws / "real").mkdir()
    (ws / "alias").symlink_to(ws / "real", target_is_directory=True)
    ok(await run("write_file", path="alias/a.txt", content="x"))
    assert (ws / "real/a.txt").read_text() == "x"


async def test_the_root_is_not_a_file(run: Run) -> None:
    assert "names the app's root directory" in failed(await run("read_file", path="."))


@pytest.mark.parametrize("tool", TOOLS)
async def test_every_tool_needs_a_workspace(tool: str) -> None:
    spec = registry.get(tool)
    assert spec is not None
    args = {**_inputs("a.txt"), "rename_app": {"name": "x"}}[tool]
    result = await execute(spec, args, ToolContext(tool_use_id="t", name=tool))
    assert failed(result) == f"tool {tool} needs the app's directory, and none is configured for this run."


# --- the journal --------------------------------------------------------------------------------------


EDITS: list[tuple[str, dict[str, Any], str]] = [
    ("replace_lines", {"path": "f.txt", "start_line": 2, "end_line": 2, "content": "two\n"}, "1\ntwo\n3\n"),
    ("replace_string", {"path": "f.txt", "old": "2\n", "new": "2\n2\n"}, "1\n2\n2\n3\n"),
]


@pytest.mark.parametrize(("tool", "args", "after"), EDITS, ids=[e[0] for e in EDITS])
async def test_an_edit_run_twice_applies_once(
    run: Run, ws: Path, tool: str, args: dict[str, Any], after: str
) -> None:
    (ws / "f.txt").write_text("1\n2\n3\n")
    first = await run(tool, "toolu_same", **args)
    assert (ws / "f.txt").read_text() == after
    second = await run(tool, "toolu_same", **args)
    assert (ws / "f.txt").read_text() == after
    assert ok(first) == ok(second)
    entry = json.loads((ws / ".incremental/journal/toolu_same.json").read_text())
    assert (entry["path"], entry["new_content"], entry["result"]) == ("f.txt", after, first.content)
    # Another id is another edit.
    third = await run(tool, "toolu_other", **args)
    if tool == "replace_lines":
        assert ok(third) == first.content and (ws / "f.txt").read_text() == after
    else:
        assert "occurs 2 times" in failed(third)


class Crash(BaseException):
    """The worker died."""


@pytest.mark.parametrize(("tool", "args", "after"), EDITS, ids=[e[0] for e in EDITS])
async def test_a_crash_between_journal_and_file_is_finished_by_the_rerun(
    run: Run, ws: Path, monkeypatch: pytest.MonkeyPatch, tool: str, args: dict[str, Any], after: str
) -> None:
    (ws / "f.txt").write_text("1\n2\n3\n")
    real_write = app_tools._atomic_write

    def dies_before_the_file(target: Path, data: bytes) -> None:
        if ".incremental" not in target.parts:
            raise Crash
        real_write(target, data)

    monkeypatch.setattr(app_tools, "_atomic_write", dies_before_the_file)
    with pytest.raises(Crash):
        await run(tool, "toolu_crash", **args)
    assert (ws / "f.txt").read_text() == "1\n2\n3\n"  # journaled, not applied
    assert (ws / ".incremental/journal/toolu_crash.json").is_file()
    monkeypatch.setattr(app_tools, "_atomic_write", real_write)

    result = await run(tool, "toolu_crash", **args)
    assert (ws / "f.txt").read_text() == after
    entry = json.loads((ws / ".incremental/journal/toolu_crash.json").read_text())
    assert ok(result) == entry["result"]


async def test_a_rerun_never_undoes_a_later_change(run: Run, ws: Path) -> None:
    (ws / "f.txt").write_text("1\n2\n3\n")
    edit = {"path": "f.txt", "start_line": 1, "end_line": 1, "content": "one"}
    first = await run("replace_lines", "toolu_edit", **edit)
    ok(await run("write_file", path="f.txt", content="rewritten\n"))
    again = await run("replace_lines", "toolu_edit", **edit)
    assert ok(again) == ok(first)
    assert (ws / "f.txt").read_text() == "rewritten\n"


async def test_a_failed_edit_is_not_journaled(run: Run, ws: Path) -> None:
    (ws / "f.txt").write_text("a")
    failed(await run("replace_string", "toolu_x", path="f.txt", old="b", new="c"))
    (ws / "f.txt").write_text("b")
    ok(await run("replace_string", "toolu_x", path="f.txt", old="b", new="c"))
    assert (ws / "f.txt").read_text() == "c"


async def test_unusual_tool_use_ids_get_safe_journal_names(run: Run, ws: Path) -> None:
    (ws / "f.txt").write_text("a")
    ok(await run("replace_string", "../../evil id", path="f.txt", old="a", new="b"))
    names = [p.name for p in (ws / ".incremental/journal").iterdir()]
    assert len(names) == 1 and names[0].endswith(".json") and "/" not in names[0] and ".." not in names[0]
    assert visible_files(ws.parent) == ["app/.incremental/journal/" + names[0], "app/f.txt"]


# --- lines --------------------------------------------------------------------------------------------


def test_split_lines_keeps_line_breaks() -> None:
    assert split_lines("") == []
    assert split_lines("a") == ["a"]
    assert split_lines("a\n") == ["a\n"]
    assert split_lines("a\r\nb\n\nc") == ["a\r\n", "b\n", "\n", "c"]
    assert split_lines("a\x0bb\u2028c") == ["a\x0bb\u2028c"]  # only \n ends a line


texts = st.text(alphabet=st.sampled_from("ab\r\n é"), max_size=40)


@given(text=texts, content=st.text(alphabet=st.sampled_from("xy\r\n"), max_size=8), data=st.data())
def test_splice_lines_changes_only_the_range(text: str, content: str, data: st.DataObject) -> None:
    lines = split_lines(text)
    assert "".join(lines) == text
    if not lines:
        with pytest.raises(ValueError):
            splice_lines(text, 1, 1, content)
        return
    start = data.draw(st.integers(1, len(lines)))
    end = data.draw(st.integers(start, len(lines)))
    result = splice_lines(text, start, end, content)
    before, after = "".join(lines[: start - 1]), "".join(lines[end:])
    assert result.startswith(before) and result.endswith(after)
    middle = result[len(before) : len(result) - len(after)]
    last = lines[end - 1]
    if content and not content.endswith("\n") and last.endswith("\n"):
        assert middle == content + ("\r\n" if last.endswith("\r\n") else "\n")  # the next line stays its own
    else:
        assert middle == content
    if not content or content.endswith("\n"):
        assert len(split_lines(result)) == len(lines) - (end - start + 1) + len(split_lines(content))
    with pytest.raises(ValueError):
        splice_lines(text, start, len(lines) + 1, content)
