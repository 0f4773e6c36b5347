"""The app-builder tool set: file tools that work inside one app's directory (``ctx.workspace``).

``write_file``, ``replace_lines``, ``replace_string``, ``read_file``, ``list_files``, ``rename_app``;
all eager, ordered by the file they touch: the concurrency key is the file's real path in the workspace
(symbolic links inside it resolved, so two names of one file run in order); ``rename_app`` uses
``app.json``. Paths are relative to the workspace; absolute paths, ``..`` and symbolic links that
lead outside are refused, and so is ``.incremental/``, where this module keeps its journal.

Every write is atomic (a temporary file, then ``os.replace``). ``write_file`` and ``rename_app`` are
idempotent by nature. The two edits are made idempotent by a write-ahead journal,
``<workspace>/.incremental/journal/<tool_use_id>.json``: before the file is touched, the new full
content and the result text are written there. A second run of the same tool_use_id (a worker died, the
job was delivered twice) does not recompute the edit: it finishes the journaled one, writing the new
content only if the file still holds the content the edit was computed from (so an edit never lands
twice, and a later change to the file is never undone), and returns the recorded result.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from incremental.tools import ToolContext, ToolError, ToolRegistry

__all__ = [
    "JOURNAL_DIR",
    "MAX_LIST_ENTRIES",
    "MAX_READ_BYTES",
    "VITE_STARTER",
    "ListFilesInput",
    "ReadFileInput",
    "RenameAppInput",
    "ReplaceLinesInput",
    "ReplaceStringInput",
    "WriteFileInput",
    "path_key",
    "registry",
    "seed_vite_starter",
    "splice_lines",
    "split_lines",
]

RESERVED_DIR = ".incremental"
JOURNAL_DIR = f"{RESERVED_DIR}/journal"
MANIFEST = "app.json"
MAX_READ_BYTES = 1024 * 1024
MAX_LIST_ENTRIES = 1000
CONTENT_INPUT_BYTES = 2 * 1024 * 1024  # tools that carry file content
SMALL_INPUT_BYTES = 64 * 1024  # tools that carry a path or a name
NEW_FILE_MODE = 0o644
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

registry = ToolRegistry()

_PATH_DOC = "Path of the file, relative to the app's root directory, e.g. src/App.tsx."


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WriteFileInput(_Input):
    path: str = Field(description=_PATH_DOC)
    content: str = Field(description="The whole new content of the file.")


class ReplaceLinesInput(_Input):
    path: str = Field(description=_PATH_DOC)
    start_line: int = Field(ge=1, description="First line to replace (1-based).")
    end_line: int = Field(ge=1, description="Last line to replace (1-based, inclusive).")
    content: str = Field(description="The text that replaces those lines; empty deletes them.")


class ReplaceStringInput(_Input):
    path: str = Field(description=_PATH_DOC)
    old: str = Field(min_length=1, description="The exact text to replace; it must occur exactly once.")
    new: str = Field(description="The text to put in its place.")


class ReadFileInput(_Input):
    path: str = Field(description=_PATH_DOC)


class ListFilesInput(_Input):
    path: str = Field(default=".", description="Directory to list, relative to the app's root.")


class RenameAppInput(_Input):
    name: str = Field(min_length=1, max_length=200, description="The app's new display name.")


def path_key(args: Any, workspace: Path | None = None) -> str | None:
    """The concurrency key of a path tool: the real file it names, relative to the workspace (links
    inside it resolved: ``innerlink/App.tsx`` is ``src/App.tsx`` when ``innerlink`` links to ``src``);
    without a workspace, or for a path that leads outside it (the tool refuses those), the normalized
    path (``./src//a.ts`` is ``src/a.ts``)."""
    rel = posixpath.normpath(str(args.path))
    if workspace is None or "\x00" in rel:
        return rel
    try:
        root = Path(workspace).resolve()
        real = (root / rel).resolve()
    except (OSError, RuntimeError, ValueError):
        return rel
    return real.relative_to(root).as_posix() if real.is_relative_to(root) else rel


# --- the tools ---------------------------------------------------------------------------------------


@registry.tool(concurrency_key=path_key, max_input_bytes=CONTENT_INPUT_BYTES)
async def write_file(args: WriteFileInput, ctx: ToolContext) -> str:
    """Create a file or replace its whole content. Parent directories are created as needed."""
    target, rel = _resolve(ctx, args.path)
    await ctx.progress("writing", 0.0, rel)
    data = args.content.encode("utf-8")
    with _fs_errors("write", rel):
        if target.is_dir():
            raise ToolError(f"{rel} is a directory, so write_file cannot write it; nothing was changed.")
        _atomic_write(target, data)
    await ctx.progress("writing", 1.0, rel)
    return f"wrote {rel} ({len(data):,} bytes, {_lines(len(split_lines(args.content)))})."


async def _journaled_edit(ctx: ToolContext, path: str, edit: Callable[[str, str], tuple[str, str]]) -> str:
    """An edit of an existing file through the write-ahead journal; ``edit(text, rel)`` -> (new text, result).

    A redelivered call (same tool_use id) re-applies or returns its journaled result instead of editing twice.
    """
    root = _workspace(ctx)
    await ctx.progress("editing", 0.0, path)
    result = _replay_journal(ctx, root)
    if result is None:
        target, rel = _resolve(ctx, path)
        text = _read_text(target, rel, verb="edit")
        new_text, result = edit(text, rel)
        _apply_journaled(ctx, root, target, text, new_text, result)
    await ctx.progress("editing", 1.0, path)
    return result


@registry.tool(concurrency_key=path_key, max_input_bytes=CONTENT_INPUT_BYTES)
async def replace_lines(args: ReplaceLinesInput, ctx: ToolContext) -> str:
    """Replace lines start_line to end_line (1-based, inclusive) of an existing file with new content."""

    def edit(text: str, rel: str) -> tuple[str, str]:
        lines = split_lines(text)
        start, end = args.start_line, args.end_line
        if start > end:
            raise ToolError(
                f"start_line ({start}) is after end_line ({end}); give start_line <= end_line. "
                f"{rel} was not changed."
            )
        if end > len(lines):
            raise ToolError(
                f"{rel} has {len(lines)} lines, so lines {start}-{end} do not all exist; read the file for "
                "its current line numbers. It was not changed."
            )
        new_text = splice_lines(text, start, end, args.content)
        new_count = len(split_lines(new_text))
        put = new_count - (len(lines) - (end - start + 1))
        done = (
            f"deleted lines {start}-{end} of {rel}" if put == 0 else f"replaced lines {start}-{end} of {rel}"
        )
        return (
            new_text,
            f"{done}{'' if put == 0 else ' with ' + _lines(put)}; the file now has {_lines(new_count)}.",
        )

    return await _journaled_edit(ctx, args.path, edit)


@registry.tool(concurrency_key=path_key, max_input_bytes=CONTENT_INPUT_BYTES)
async def replace_string(args: ReplaceStringInput, ctx: ToolContext) -> str:
    """Replace one exact piece of text in a file. The old text must occur exactly once in the file."""

    def edit(text: str, rel: str) -> tuple[str, str]:
        count = text.count(args.old)
        if count == 0:
            raise ToolError(
                f"the text to replace was not found in {rel}; nothing was changed. Read the file and copy "
                "the exact text, including whitespace and line breaks."
            )
        if count > 1:
            raise ToolError(
                f"the text to replace occurs {count} times in {rel}, but it must occur exactly once; nothing "
                "was changed. Include more of the surrounding text to make it unique."
            )
        at = text.index(args.old)
        new_text = text[:at] + args.new + text[at + len(args.old) :]
        return new_text, f"replaced 1 occurrence in {rel} at line {text.count(chr(10), 0, at) + 1}."

    return await _journaled_edit(ctx, args.path, edit)


@registry.tool(concurrency_key=path_key, max_input_bytes=SMALL_INPUT_BYTES)
async def read_file(args: ReadFileInput, ctx: ToolContext) -> str:
    """Read a text file of the app (up to 1 MB) and return its content."""
    target, rel = _resolve(ctx, args.path)
    await ctx.progress("reading", 0.0, rel)
    text = _read_text(target, rel, verb="read", limit=MAX_READ_BYTES)
    await ctx.progress("reading", 1.0, rel)
    return text


@registry.tool(concurrency_key=path_key, max_input_bytes=SMALL_INPUT_BYTES)
async def list_files(args: ListFilesInput, ctx: ToolContext) -> str:
    """List the files under a directory of the app, recursively, sorted (at most 1000)."""
    target, rel = _resolve(ctx, args.path or ".", allow_root=True)
    await ctx.progress("listing", 0.0, rel)
    with _fs_errors("list", rel):
        if not target.exists():
            raise ToolError(f"there is no directory at {rel}.")
        if not target.is_dir():
            raise ToolError(f"{rel} is a file, not a directory; use read_file to read it.")
        files, complete = _list(target, _workspace(ctx), MAX_LIST_ENTRIES)
    await ctx.progress("listing", 1.0, rel)
    where = "the app" if rel == "." else rel
    if not files:
        return f"there are no files under {where}."
    head = f"{len(files)} file{'s' if len(files) != 1 else ''} under {where}:"
    if not complete:
        head = f"the first {len(files)} files under {where} (the listing stops there; list a subdirectory):"
    return "\n".join([head, *files])


@registry.tool(concurrency_key=lambda args: MANIFEST, max_input_bytes=SMALL_INPUT_BYTES)
async def rename_app(args: RenameAppInput, ctx: ToolContext) -> str:
    """Set the app's display name in its manifest, app.json (other manifest keys are kept)."""
    target, rel = _resolve(ctx, MANIFEST)
    await ctx.progress("renaming", 0.0, args.name)
    manifest: dict[str, Any] = {}
    if target.exists():
        text = _read_text(target, rel, verb="update")
        try:
            loaded = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise ToolError(f"{rel} is not valid JSON ({exc}); fix it with write_file first.") from None
        if not isinstance(loaded, dict):
            raise ToolError(f"{rel} does not hold a JSON object; fix it with write_file first.")
        manifest = loaded
    manifest["name"] = args.name
    with _fs_errors("write", rel):
        _atomic_write(target, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    await ctx.progress("renaming", 1.0, args.name)
    return f"renamed the app to {json.dumps(args.name, ensure_ascii=False)} ({rel})."


# --- a starting point ---------------------------------------------------------------------------------

# The files of Vite's react-ts starter that the app-builder recordings read and edit (lines 1-10 of
# src/main.tsx, 5-7 of index.html, the "name" line of package.json, vite.config.ts).
VITE_STARTER: dict[str, str] = {
    "index.html": """<!doctype html>
<html lang="en">
  <head>
    <meta charset="UTF-8" />
    <link rel="icon" type="image/svg+xml" href="/vite.svg" />
    <meta name="viewport" content="width=device-width, initial-scale=1.0" />
    <title>Vite + React + TS</title>
  </head>
  <body>
    <div id="root"></div>
    <script type="module" src="/src/main.tsx"></script>
  </body>
</html>
""",
    "package.json": """{
  "name": "vite-project",
  "private": true,
  "version": "0.0.0",
  "type": "module",
  "scripts": {
    "dev": "vite",
    "build": "tsc -b && vite build",
    "preview": "vite preview"
  },
  "dependencies": {
    "react": "^18.3.1",
    "react-dom": "^18.3.1"
  },
  "devDependencies": {
    "@types/react": "^18.3.12",
    "@types/react-dom": "^18.3.1",
    "@vitejs/plugin-react": "^4.3.4",
    "typescript": "~5.6.2",
    "vite": "^6.0.5"
  }
}
""",
    "src/main.tsx": """import { StrictMode } from 'react'
import { createRoot } from 'react-dom/client'
import './index.css'
import App from './App.tsx'

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
)
""",
    "src/App.tsx": """function App() {
  return <h1>Vite + React</h1>
}

export default App
""",
    "src/index.css": """:root {
  font-family: system-ui, sans-serif;
}
""",
    "vite.config.ts": """import { defineConfig } from 'vite'
import react from '@vitejs/plugin-react'

// https://vite.dev/config/
export default defineConfig({
  plugins: [react()],
})
""",
}


def seed_vite_starter(workspace: Path) -> list[str]:
    """Write Vite's react-ts starter files into ``workspace`` where they are missing; returns those written.

    The app-builder recordings edit an app made from this starter: seed a workspace with it before
    replaying them with real tools.
    """
    written = []
    for rel, text in VITE_STARTER.items():
        target = Path(workspace) / rel
        if not target.exists():
            _atomic_write(target, text.encode("utf-8"))
            written.append(rel)
    return written


# --- lines --------------------------------------------------------------------------------------------


def _lines(n: int) -> str:
    return f"{n:,} line" if n == 1 else f"{n:,} lines"


def split_lines(text: str) -> list[str]:
    """Lines split at ``\\n`` only, each keeping its line break; a final line without one is kept."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def splice_lines(text: str, start: int, end: int, content: str) -> str:
    """``text`` with lines start..end (1-based, inclusive, within the text) replaced by ``content``.

    When the replaced lines ended with a line break and ``content`` does not, one is added (the same
    kind, ``\\r\\n`` or ``\\n``), so the next line stays a line of its own.
    """
    lines = split_lines(text)
    if not 1 <= start <= end <= len(lines):
        raise ValueError(f"lines {start}-{end} are not within 1-{len(lines)}")
    last = lines[end - 1]
    if content and not content.endswith("\n") and last.endswith("\n"):
        content += "\r\n" if last.endswith("\r\n") else "\n"
    return "".join(lines[: start - 1]) + content + "".join(lines[end:])


# --- the workspace ------------------------------------------------------------------------------------


def _workspace(ctx: ToolContext) -> Path:
    if ctx.workspace is None:
        raise ToolError(f"tool {ctx.name} needs the app's directory, and none is configured for this run.")
    root = Path(ctx.workspace).resolve()
    if not root.is_dir():
        raise ToolError(f"the app's directory for tool {ctx.name} does not exist.")
    return root


def _resolve(ctx: ToolContext, path: str, *, allow_root: bool = False) -> tuple[Path, str]:
    """The real path of ``path`` inside the workspace, and its normalized relative form.

    Refuses (ToolError) absolute paths, ``..``, the reserved ``.incremental/`` and anything a symbolic
    link takes outside the workspace.
    """
    root = _workspace(ctx)
    if "\x00" in path:
        raise ToolError(f"path {path!r} contains a NUL character; refused.")
    if PurePosixPath(path).is_absolute() or PureWindowsPath(path).drive or path.startswith("\\"):
        raise ToolError(
            f"path {path!r} is absolute; give a path relative to the app's root directory, like src/App.tsx."
        )
    if ".." in PurePosixPath(path).parts:
        raise ToolError(f"path {path!r} contains '..'; paths must stay inside the app's directory.")
    rel = posixpath.normpath(path) if path else "."
    if rel == "." and not allow_root:
        raise ToolError(f"path {path!r} names the app's root directory, not a file.")
    try:
        target = (root / rel).resolve()
    except (OSError, RuntimeError) as exc:
        raise ToolError(f"path {path!r} cannot be resolved ({exc}).") from None
    if not target.is_relative_to(root):
        raise ToolError(f"path {path!r} leads outside the app's directory through a symbolic link; refused.")
    inside = target.relative_to(root).parts
    if inside and inside[0] == RESERVED_DIR:
        raise ToolError(f"path {path!r} is inside {RESERVED_DIR}/, which is reserved; refused.")
    return target, rel


@contextmanager
def _fs_errors(verb: str, rel: str) -> Iterator[None]:
    """OSError → ToolError that says what could not be done."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ToolError(f"could not {verb} {rel}: {reason}.") from None


def _read_text(target: Path, rel: str, *, verb: str, limit: int | None = None) -> str:
    with _fs_errors(verb, rel):
        if not target.exists():
            hint = " Use write_file to create it." if verb == "edit" else ""
            raise ToolError(f"there is no file at {rel}.{hint}")
        if target.is_dir():
            raise ToolError(f"{rel} is a directory, not a file; use list_files to see what it holds.")
        if limit is not None:
            size = target.stat().st_size
            if size > limit:
                raise ToolError(f"{rel} is {size:,} bytes, over the {limit:,}-byte limit for reading a file.")
        data = target.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{rel} is not a UTF-8 text file; this tool works on text files only.") from None


def _atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` all at once: a temporary file beside it, then ``os.replace``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _list(directory: Path, root: Path, limit: int) -> tuple[list[str], bool]:
    """Files under ``directory`` as paths relative to ``root``, depth first in name order (sorted by
    path components), at most ``limit``; and whether that is all of them. Directory links are not
    followed; ``.incremental/`` at the root is skipped."""
    reserved = root / RESERVED_DIR
    files: list[str] = []
    stack = [iter(_entries(directory))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        path = Path(entry.path)
        if path == reserved:
            continue
        if entry.is_dir(follow_symlinks=False):
            stack.append(iter(_entries(path)))
            continue
        if len(files) == limit:
            return files, False
        files.append(path.relative_to(root).as_posix())
    return files, True


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError:
        return []  # unreadable: listed as empty


# --- the journal --------------------------------------------------------------------------------------


def _journal_file(root: Path, tool_use_id: str) -> Path:
    safe = tool_use_id if _SAFE_ID.match(tool_use_id) else hashlib.sha256(tool_use_id.encode()).hexdigest()
    return root / JOURNAL_DIR / f"{safe}.json"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _apply_journaled(
    ctx: ToolContext, root: Path, target: Path, old_text: str, new_text: str, result: str
) -> None:
    """Record the edit, then make it: after a crash between the two, a rerun finishes it. The entry
    names the real file (links resolved), so a rerun edits that file whatever its other names."""
    rel = target.relative_to(root).as_posix()
    entry = {
        "tool": ctx.name,
        "path": rel,
        "old_sha256": _sha256(old_text),
        "new_content": new_text,
        "result": result,
    }
    with _fs_errors("journal the edit of", rel):
        _atomic_write(_journal_file(root, ctx.tool_use_id), json.dumps(entry, ensure_ascii=False).encode())
    with _fs_errors("write", rel):
        _atomic_write(target, new_text.encode("utf-8"))


def _replay_journal(ctx: ToolContext, root: Path) -> str | None:
    """The recorded result of this tool_use id after finishing its edit, or None if it has no entry."""
    journal = _journal_file(root, ctx.tool_use_id)
    try:
        entry = json.loads(journal.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable entry: it was never completed (entries are written atomically)
    if not isinstance(entry, dict) or not {"path", "new_content", "result", "old_sha256"} <= entry.keys():
        return None
    target, rel = _resolve(ctx, str(entry["path"]))
    new_text = str(entry["new_content"])
    try:
        current: str | None = target.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        current = None
    if current is not None and current != new_text and _sha256(current) == entry["old_sha256"]:
        with _fs_errors("write", rel):
            _atomic_write(target, new_text.encode("utf-8"))
    # Otherwise the edit is in place already, or the file changed since: never undo a later change.
    return str(entry["result"])
