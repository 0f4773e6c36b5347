"""Generate the recorded-stream fixtures: ``fixtures/``, and the app-builder demo's two turns.

Every fixture is synthetic: it is produced here, deterministically (one fixed seed per fixture, no
network), in the shape of the documented Messages API streaming format (server-sent events).
Nothing in ``fixtures/`` was captured from the live API. The demo's turns ship in the package, so they
are written to ``src/incremental/examples/app_builder/`` (``APP_BUILDER_DIR``), the only copy.

File format (see ``fixtures/README.md``): raw SSE as ``curl -N`` prints it, one event as
``event: <type>`` + ``data: <compact JSON>`` + a blank line, each event preceded by an SSE comment
``: t=<seconds since the request was sent>`` that records when it arrived.

Usage::

    .venv/bin/python scripts/make_fixtures.py
"""

from __future__ import annotations

import base64
import json
import random
import string
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES_DIR = ROOT / "fixtures"
APP_BUILDER_DIR = ROOT / "src" / "incremental" / "examples" / "app_builder"
MODEL = "claude-sonnet-4-5-20250929"
BASE62 = string.digits + string.ascii_letters

Json = dict[str, Any]

# Rough tokenizer ratios, used for usage counts and timing.
PROSE_CHARS_PER_TOKEN = 3.8
CODE_CHARS_PER_TOKEN = 3.0


def compact(obj: Any) -> str:
    """JSON as the API writes it on a ``data:`` line: compact, raw UTF-8, one line."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def model_json(obj: Any) -> str:
    """Tool input JSON as the model writes it, with ``", "`` and ``": "`` separators."""
    return json.dumps(obj, ensure_ascii=False)


def tokens_in(text: str, chars_per_token: float) -> int:
    return max(1, round(len(text) / chars_per_token))


@dataclass
class Event:
    t: float
    type: str
    data: Json


@dataclass
class Block:
    """One content block of a stream, as a test would describe it."""

    index: int
    type: str
    name: str = ""
    id: str = ""
    status: str = ""  # tools: ready / invalid / truncated / server; other blocks: ""
    intended: Any = None  # the tool input the deltas encode (None when they don't encode one)
    partial_json: str = ""  # every partial_json of the block, concatenated


@dataclass
class Stream:
    """One recorded response: a clock, a seeded RNG and the events produced so far."""

    name: str
    tokens_per_s: float = 0.0  # 0 = pick a realistic rate (58-72 tokens/s) from the seed
    rng: random.Random = field(init=False)
    t: float = 0.0
    events: list[Event] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    output_tokens: int = 0
    usage: Json = field(default_factory=dict)
    pinged: bool = False
    next_ping: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(zlib.crc32(self.name.encode()))
        if not self.tokens_per_s:
            self.tokens_per_s = self.rng.uniform(58.0, 72.0)

    # -- ids and random payloads --------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return prefix + "".join(self.rng.choice(BASE62) for _ in range(22))

    def opaque(self, n_bytes: int) -> str:
        """A base64 blob like the API's signatures and encrypted_content fields."""
        return base64.b64encode(self.rng.randbytes(n_bytes)).decode()

    # -- the clock ----------------------------------------------------------------------------------

    def wait(self, lo: float, hi: float) -> None:
        self.t += self.rng.uniform(lo, hi)

    def generate(self, tokens: int) -> None:
        """Advance the clock by the time the model needs to sample ``tokens`` tokens."""
        self.output_tokens += tokens
        self.t += tokens / self.tokens_per_s * self.rng.lognormvariate(0.0, 0.3)
        if self.rng.random() < 0.01:  # an occasional hiccup on the wire
            self.wait(0.15, 0.6)

    # -- raw events ---------------------------------------------------------------------------------

    def emit(self, type_: str, data: Json) -> None:
        if self.pinged and self.t >= self.next_ping:
            self.ping()
        self.events.append(Event(self.t, type_, data))

    def ping(self) -> None:
        self.events.append(Event(self.t, "ping", {"type": "ping"}))
        self.pinged = True
        self.next_ping = self.t + self.rng.uniform(4.0, 12.0)

    def message_start(
        self, *, input_tokens: int, cache_creation: int = 0, cache_read: int = 0, ttft: float = 0.6
    ) -> None:
        self.t = ttft - self.rng.uniform(0.02, 0.05)  # the first text delta lands at about `ttft`
        self.output_tokens = self.rng.randint(1, 4)
        self.usage = {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": cache_creation,
            "cache_read_input_tokens": cache_read,
        }
        message = {
            "model": MODEL,
            "id": self.new_id("msg_01"),
            "type": "message",
            "role": "assistant",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                **self.usage,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": cache_creation,
                    "ephemeral_1h_input_tokens": 0,
                },
                "output_tokens": self.output_tokens,
                "service_tier": "standard",
            },
        }
        self.emit("message_start", {"type": "message_start", "message": message})

    def start_block(self, content_block: Json, **describe: Any) -> Block:
        block = Block(index=len(self.blocks), type=content_block["type"], **describe)
        self.blocks.append(block)
        event = {"type": "content_block_start", "index": block.index, "content_block": content_block}
        self.emit("content_block_start", event)
        if not self.pinged:  # the API pings once right after the first content_block_start
            self.ping()
        return block

    def delta(self, block: Block, delta: Json) -> None:
        self.emit(
            "content_block_delta", {"type": "content_block_delta", "index": block.index, "delta": delta}
        )

    def stop_block(self, block: Block) -> None:
        self.wait(0.0003, 0.004)
        self.emit("content_block_stop", {"type": "content_block_stop", "index": block.index})

    def finish(
        self, stop_reason: str, *, output_tokens: int = 0, extra_input_tokens: int = 0, web_searches: int = 0
    ) -> None:
        """``message_delta`` (cumulative usage) then ``message_stop``."""
        self.wait(0.008, 0.05)
        usage = {**self.usage, "output_tokens": output_tokens or self.output_tokens}
        usage["input_tokens"] += extra_input_tokens
        if web_searches:
            usage["server_tool_use"] = {"web_search_requests": web_searches}
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        self.emit("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        self.wait(0.0002, 0.002)
        self.emit("message_stop", {"type": "message_stop"})

    def error(self, error_type: str, message: str) -> None:
        self.emit("error", {"type": "error", "error": {"type": error_type, "message": message}})

    # -- chunking -----------------------------------------------------------------------------------

    def split(
        self, text: str, *, lo: int = 1, hi: int = 40, mode: int = 14, words: bool = False
    ) -> list[str]:
        """Cut ``text`` into delta-sized fragments (``words``: prefer cutting before a space)."""
        pieces: list[str] = []
        i = 0
        while i < len(text):
            j = min(len(text), i + max(1, round(self.rng.triangular(lo, hi, mode))))
            if words:
                space = text.find(" ", j, j + 8)
                j = space if space != -1 else j
            pieces.append(text[i:j])
            i = j
        return pieces

    def stream_pieces(
        self,
        block: Block,
        pieces: list[str],
        make: Callable[[str], Json],
        chars_per_token: float,
        burst: int = 1,
    ) -> None:
        """Emit one delta per piece. Time flows per delta; ``burst`` > 1 lets the server hold a few
        deltas back and flush them together (as it does for tool input JSON)."""
        i = 0
        while i < len(pieces):
            group = pieces[i : i + self.rng.randint(1, burst)]
            for piece in group:
                self.generate(tokens_in(piece, chars_per_token))
            for piece in group:
                self.delta(block, make(piece))
                self.t += self.rng.uniform(0.0001, 0.0006)
            i += len(group)

    # -- whole blocks -------------------------------------------------------------------------------

    def text(self, text: str, *, citation: Json | None = None) -> Block:
        self.generate(1)
        content_block: Json = {"type": "text", "text": ""}
        if citation is not None:
            content_block = {"citations": [], "type": "text", "text": ""}
        block = self.start_block(content_block)
        if citation is not None:
            self.delta(block, {"type": "citations_delta", "citation": citation})
        first = len(text.split(" ", 1)[0])  # the first text delta is usually one short word
        pieces = [text[:first], *self.split(text[first:], words=True)]
        self.stream_pieces(block, pieces, lambda p: {"type": "text_delta", "text": p}, PROSE_CHARS_PER_TOKEN)
        self.stop_block(block)
        return block

    def thinking(self, thinking: str, *, signature_bytes: int = 420) -> Block:
        block = self.start_block({"type": "thinking", "thinking": "", "signature": ""})
        pieces = self.split(thinking, lo=4, hi=90, mode=40, words=True)
        make = lambda p: {"type": "thinking_delta", "thinking": p}  # noqa: E731
        self.stream_pieces(block, pieces, make, PROSE_CHARS_PER_TOKEN, burst=2)
        self.wait(0.02, 0.08)
        self.delta(block, {"type": "signature_delta", "signature": self.opaque(signature_bytes)})
        self.stop_block(block)
        return block

    def tool(
        self,
        name: str,
        tool_input: Json | None = None,
        *,
        raw_json: str | None = None,
        empty_first: bool | None = None,
        server: bool = False,
        fine_grained: bool = False,
        stop: bool = True,
        status: str = "ready",
    ) -> Block:
        """A ``tool_use`` (or ``server_tool_use``) block whose input streams as ``input_json_delta``s.

        ``raw_json`` replaces the serialised ``tool_input`` (invalid or truncated JSON);
        ``empty_first`` sends the ``""`` delta the API often opens with (None: decided by the seed);
        ``stop=False`` leaves the block open (no ``content_block_stop``)."""
        json_text = model_json(tool_input) if raw_json is None else raw_json
        if empty_first is None:
            empty_first = self.rng.random() < 0.8
        self.generate(self.rng.randint(3, 8))  # the block header: tool name and id
        content_block: Json = {
            "type": "server_tool_use" if server else "tool_use",
            "id": self.new_id("srvtoolu_01" if server else "toolu_01"),
            "name": name,
            "input": {},
        }
        block = self.start_block(
            content_block, name=name, id=content_block["id"], status=status, intended=tool_input
        )
        make = lambda p: {"type": "input_json_delta", "partial_json": p}  # noqa: E731
        if empty_first:
            self.t += self.rng.uniform(0.0001, 0.0008)
            self.delta(block, make(""))
        lo, hi, mode = (1, 40, 18) if len(json_text) < 100_000 else (12, 40, 36)
        pieces = self.split(json_text, lo=lo, hi=hi, mode=mode)
        self.stream_pieces(block, pieces, make, CODE_CHARS_PER_TOKEN, burst=1 if fine_grained else 5)
        block.partial_json = json_text
        if stop:
            self.stop_block(block)
        return block

    def web_search_result(self, server_block: Block, results: list[Json]) -> Block:
        """A ``web_search_tool_result``: everything arrives in ``content_block_start``, no deltas."""
        self.wait(1.1, 2.6)  # the search runs server-side
        content_block = {"type": "web_search_tool_result", "tool_use_id": server_block.id, "content": results}
        block = self.start_block(content_block, status="server")
        self.stop_block(block)
        return block

    # -- rendering ----------------------------------------------------------------------------------

    def sse(self, newline: str = "\n") -> str:
        out = []
        for event in self.events:
            data = compact(event.data)
            assert len(data.splitlines()) == 1, "a data line must stay one line for any reader"
            out.append(
                f": t={event.t:.3f}{newline}event: {event.type}{newline}data: {data}{newline}{newline}"
            )
        return "".join(out)

    def jsonl(self) -> str:
        return "".join(compact(event.data) + "\n" for event in self.events)


# =================================================================================================
# File contents written by the tools
# =================================================================================================

APP_TSX = r"""import { useEffect, useMemo, useState } from "react";
import { HabitList, type Habit } from "./components/HabitList";
import "./styles.css";

const STORAGE_KEY = "streak:habits:v1";

const DEFAULT_HABITS: Habit[] = [
  { id: "water", name: "Drink water 💧", done: [] },
  { id: "read", name: "Read 20 pages", done: [] },
  { id: "walk", name: "Walk — 30 min", done: [] },
];

/** Local date as YYYY-MM-DD (toISOString() would shift it to UTC). */
export function dayKey(date = new Date()): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function loadHabits(): Habit[] {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    return raw ? (JSON.parse(raw) as Habit[]) : DEFAULT_HABITS;
  } catch (err) {
    console.warn("Couldn't parse saved habits:\n", err);
    return DEFAULT_HABITS;
  }
}

export default function App() {
  const [habits, setHabits] = useState<Habit[]>(loadHabits);
  const [draft, setDraft] = useState("");
  const today = dayKey();

  useEffect(() => {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(habits));
  }, [habits]);

  const completed = useMemo(
    () => habits.filter((h) => h.done.includes(today)).length,
    [habits, today],
  );

  function addHabit() {
    const name = draft.trim().replace(/\s+/g, " ");
    if (!name) return;
    const id = name.toLowerCase().replace(/[^a-z0-9]+/g, "-");
    setHabits((prev) => [...prev, { id, name, done: [] }]);
    setDraft("");
  }

  function toggle(id: string) {
    setHabits((prev) =>
      prev.map((h) =>
        h.id !== id
          ? h
          : {
              ...h,
              done: h.done.includes(today) ? h.done.filter((d) => d !== today) : [...h.done, today],
            },
      ),
    );
  }

  return (
    <main className="app">
      <header className="app__header">
        <h1>Streak</h1>
        <p className="app__summary">
          {completed} / {habits.length} done today{completed === habits.length ? " ✓" : "…"}
        </p>
      </header>
      <form
        className="app__form"
        onSubmit={(e) => {
          e.preventDefault();
          addHabit();
        }}
      >
        <input
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
          placeholder='e.g. "Stretch for 5 minutes"'
          aria-label="New habit"
        />
        <button type="submit">Add</button>
      </form>
      <HabitList habits={habits} today={today} onToggle={toggle} />
    </main>
  );
}
"""

HABIT_LIST_TSX = r"""import type { KeyboardEvent } from "react";
import { dayKey } from "../App";

export interface Habit {
  id: string;
  name: string;
  /** Local dates (YYYY-MM-DD) on which the habit was done. */
  done: string[];
}

interface Props {
  habits: Habit[];
  today: string;
  onToggle: (id: string) => void;
}

/** Consecutive days, ending today (or yesterday, if today isn't ticked yet), the habit was done. */
export function streakOf(habit: Habit, today: string): number {
  const days = new Set(habit.done);
  const cursor = new Date(`${today}T00:00:00`);
  if (!days.has(today)) cursor.setDate(cursor.getDate() - 1);
  let streak = 0;
  while (days.has(dayKey(cursor))) {
    streak += 1;
    cursor.setDate(cursor.getDate() - 1);
  }
  return streak;
}

export function HabitList({ habits, today, onToggle }: Props) {
  if (habits.length === 0) {
    return <p className="empty">No habits yet — add one above.</p>;
  }

  const onKey = (id: string) => (e: KeyboardEvent<HTMLLIElement>) => {
    if (e.key === " " || e.key === "Enter") {
      e.preventDefault();
      onToggle(id);
    }
  };

  return (
    <ul className="habits">
      {habits.map((habit) => {
        const done = habit.done.includes(today);
        const streak = streakOf(habit, today);
        return (
          <li
            key={habit.id}
            className={done ? "habit habit--done" : "habit"}
            role="checkbox"
            aria-checked={done}
            tabIndex={0}
            onClick={() => onToggle(habit.id)}
            onKeyDown={onKey(habit.id)}
          >
            <span className="habit__check" aria-hidden="true" />
            <span className="habit__name">{habit.name}</span>
            <span className="habit__streak" title={`${streak}-day streak`}>
              {streak > 0 ? `🔥 ${streak}` : "\u00a0"}
            </span>
          </li>
        );
      })}
    </ul>
  );
}
"""

STYLES_CSS = r""":root {
  --bg: #0f1115;
  --card: #181b22;
  --text: #e8eaf0;
  --muted: #8b93a7;
  --accent: #ff7a45;
  font-family: "Inter", system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--text);
  background: var(--bg);
}

* {
  box-sizing: border-box;
}

body {
  margin: 0;
  min-height: 100vh;
}

.app {
  max-width: 32rem;
  margin: 0 auto;
  padding: 3rem 1.25rem;
}

.app__header h1 {
  margin: 0;
  font-size: 2.25rem;
  letter-spacing: -0.02em;
}

.app__summary {
  color: var(--muted);
  margin: 0.25rem 0 1.5rem;
}

.app__form {
  display: flex;
  gap: 0.5rem;
  margin-bottom: 1.5rem;
}

.app__form input {
  flex: 1;
  padding: 0.6rem 0.8rem;
  border: 1px solid #2a2f3a;
  border-radius: 0.5rem;
  background: var(--card);
  color: inherit;
}

.app__form button {
  padding: 0 1rem;
  border: 0;
  border-radius: 0.5rem;
  background: var(--accent);
  color: #1a0d06;
  font-weight: 600;
  cursor: pointer;
}

.habits {
  list-style: none;
  margin: 0;
  padding: 0;
  display: grid;
  gap: 0.5rem;
}

.habit {
  display: grid;
  grid-template-columns: 1.5rem 1fr auto;
  align-items: center;
  gap: 0.75rem;
  padding: 0.75rem 1rem;
  border-radius: 0.75rem;
  background: var(--card);
  cursor: pointer;
  user-select: none;
}

.habit:focus-visible {
  outline: 2px solid var(--accent);
  outline-offset: 2px;
}

.habit__check {
  width: 1.25rem;
  height: 1.25rem;
  border: 2px solid var(--muted);
  border-radius: 50%;
  display: grid;
  place-items: center;
}

.habit--done .habit__check {
  border-color: var(--accent);
  background: var(--accent);
}

.habit--done .habit__check::after {
  content: "\2713"; /* ✓ */
  font-size: 0.8rem;
  color: #1a0d06;
}

.habit--done .habit__name {
  color: var(--muted);
  text-decoration: line-through;
}

.habit__streak {
  font-variant-numeric: tabular-nums;
  color: var(--accent);
}
"""

MAIN_TSX = """import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import App from "./App";

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
"""

INDEX_HTML_HEAD = (
    '    <link rel="icon" href="data:image/svg+xml,<svg xmlns=%22http://www.w3.org/2000/svg%22 '
    'viewBox=%220 0 100 100%22><text y=%22.9em%22 font-size=%2290%22>🔥</text></svg>" />\n'
    '    <meta name="viewport" content="width=device-width, initial-scale=1.0" />\n'
    "    <title>Streak — Habit Tracker</title>\n"
)

VITE_CONFIG_TAILWIND = """import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";
import tailwindcss from "@tailwindcss/vite";

// https://vite.dev/config/
export default defineConfig({
  plugins: [react(), tailwindcss()],
});
"""

THEME_TS = """export const theme = {
  accent: "#ff7a45",
  radius: "0.75rem",
  font: '"Inter", system-ui, sans-serif',
} as const;

export type Theme = typeof theme;
"""

# -- generated code for the large fixtures ----------------------------------------------------------

WORDS = [
    "Crème", "Brûlée", "Smørrebrød", "Jalapeño", "Café", "Über", "Ñandú", "Pâtisserie", "Zürich",
    "Łódź", "Αθήνα", "Москва", "東京", "서울", "Kraków", "São Paulo", "naïve", "façade", "Señor",
    "Classic", "Deluxe", "Mini", "Family", "Vegan", "Spicy", "Smoked", "Roasted", "Golden", "Wild",
    "Espresso", "Matcha", "Chai", "Lemon", "Basil", "Honey", "Oat", "Almond", "Berry", "Cocoa",
]  # fmt: skip
EMOJI = ["☕", "🍰", "🌶️", "🍋", "🥐", "✨", "🔥", "🍫"]
CATEGORIES = ["bakery", "drinks", "snacks", "seasonal", "frozen", "pantry"]
CURRENCIES = ["EUR", "USD", "GBP", "CHF", "JPY"]

CATALOG_HEADER = """// AUTO-GENERATED by tools/gen-catalog.ts — do not edit by hand.
// Columns:\tsku\ttitle\tprice\tcategory   (tab-separated source: data/catalog.tsv)
/* eslint-disable */
import type { CatalogEntry } from "./types";

const esc = (s: string): string => s.replace(/[\\\\"]/g, (c) => "\\\\" + c);

"""


def catalog_entry(rng: random.Random, i: int) -> str:
    """One entry of a generated TypeScript catalog: quotes, backslashes, regexes, non-ASCII."""
    title = " ".join(rng.sample(WORDS, rng.randint(2, 3)))
    if rng.random() < 0.15:
        title += " " + rng.choice(EMOJI)
    prefix = "".join(rng.choice(string.ascii_uppercase) for _ in range(3))
    sku = f"{prefix}-{rng.randint(100, 99999)}"
    cents = rng.randint(99, 4999)
    category = rng.choice(CATEGORIES)
    currency = rng.choice(CURRENCIES)
    tags = ", ".join(f'"{t}"' for t in rng.sample(["new", "gf", "vegan", "bestseller", "limited"], 2))
    quoted = rng.choice(["classic", "house", "signature", "grandma's"])
    entry = (
        f"export const item_{i:05d}: CatalogEntry = {{\n"
        f'  id: "{sku}",\n'
        f'  title: "{title}",\n'
        f'  description: "Our \\"{quoted}\\" recipe — now {rng.randint(5, 40)}% less sugar.",\n'
        f"  tags: [{tags}],\n"
        f'  price: {{ amount: {cents}, currency: "{currency}" }},\n'
        f"  pattern: /^{prefix}-\\d{{3,5}}(?:\\.[a-z]{{2}})?$/i,\n"
        f'  image: "assets\\\\{category}\\\\{sku}.webp",\n'
        f"  label: (qty: number) =>\n"
        f"    `${{qty}} × ${{esc({title!r})}} = ${{((qty * {cents}) / 100).toFixed(2)}}`,\n"
        f"}};\n\n"
    )
    if i % 9 == 0:
        entry += (
            f"export function row_{i:05d}(cells: string[]): string {{\n"
            f"  // CSV-escape: double every quote, then join with tabs\n"
            f'  return cells.map((c) => \'"\' + c.replace(/"/g, \'""\') + \'"\').join("\\t") + "\\n";\n'
            f"}}\n\n"
        )
    return entry


def catalog_source(rng: random.Random, min_chars: int) -> str:
    parts = [CATALOG_HEADER]
    size, i = len(CATALOG_HEADER), 0
    while size < min_chars:
        entry = catalog_entry(rng, i)
        parts.append(entry)
        size += len(entry)
        i += 1
    parts.append(f"export const CATALOG_SIZE = {i};\n")
    return "".join(parts)


# =================================================================================================
# Fixtures
# =================================================================================================


def text_only() -> Stream:
    s = Stream("text_only")
    s.message_start(input_tokens=38, ttft=0.7)
    s.text(
        "Both run after React renders, but at different moments:\n\n"
        "- **`useEffect`** runs *after* the browser has painted. It doesn't block the screen update, "
        "so it's the right default for data fetching, subscriptions and logging.\n"
        "- **`useLayoutEffect`** runs synchronously *after* React has updated the DOM but *before* the "
        "browser paints. Use it when you need to measure layout (e.g. `getBoundingClientRect()`) and "
        "adjust something before the user sees a flicker.\n\n"
        "Because `useLayoutEffect` blocks painting, prefer `useEffect` unless you actually see a "
        "visual glitch — and note that it does nothing during server rendering."
    )
    s.finish("end_turn")
    return s


def single_tool() -> Stream:
    s = Stream("single_tool")
    s.message_start(input_tokens=1342, cache_read=2870, ttft=0.65)
    s.text("I'll start by reading the main app component to see how it's structured.")
    s.tool("read_file", {"path": "src/App.tsx"}, empty_first=True)
    s.finish("tool_use")
    return s


def app_builder_8_tools() -> Stream:
    s = Stream("app_builder_8_tools", tokens_per_s=66.0)
    s.message_start(input_tokens=412, cache_creation=5318, ttft=0.6)
    s.text(
        "I'll set up a small habit tracker called **Streak**: a React + TypeScript app where you add "
        "daily habits, tick them off, and see the current streak for each one. Everything is kept in "
        "`localStorage`, so no backend is needed.\n\nFirst, the main app component:"
    )
    s.tool("write_file", {"path": "src/App.tsx", "content": APP_TSX})
    s.text("Next, the habit list with the streak calculation, and the styles:")
    s.tool("write_file", {"path": "src/components/HabitList.tsx", "content": HABIT_LIST_TSX})
    s.tool("write_file", {"path": "src/styles.css", "content": STYLES_CSS})
    s.text("Now I'll point the entry file at the new app, update the page head, and rename the project:")
    s.tool("replace_lines", {"path": "src/main.tsx", "start_line": 1, "end_line": 10, "content": MAIN_TSX})
    s.tool(
        "replace_lines", {"path": "index.html", "start_line": 5, "end_line": 7, "content": INDEX_HTML_HEAD}
    )
    s.tool(
        "replace_string",
        {"path": "package.json", "old": '"name": "vite-project",', "new": '"name": "streak",'},
    )
    s.tool("rename_app", {"name": "Streak — Habit Tracker"})
    s.text("Finally, let me check the Vite config to make sure the React plugin is enabled:")
    s.tool("read_file", {"path": "vite.config.ts"})
    s.finish("tool_use")
    return s


def app_builder_turn2() -> Stream:
    s = Stream("app_builder_turn2", tokens_per_s=68.0)
    s.message_start(input_tokens=1186, cache_creation=3904, cache_read=5318, ttft=0.85)
    s.text(
        "Done! Here's what I set up:\n\n"
        "- **`src/App.tsx`**: add a habit, tick it off for today, and see how many are done. "
        "Habits persist in `localStorage`.\n"
        "- **`src/components/HabitList.tsx`**: the list, with keyboard support and a 🔥 streak counter.\n"
        "- **`src/styles.css`**: a dark theme with an orange accent.\n"
        "- Updated `src/main.tsx` and the `index.html` head, and renamed the project to `streak`.\n\n"
        "The Vite config already uses `@vitejs/plugin-react`, so it needs no changes. "
        "Run `npm run dev` to try it."
    )
    s.finish("end_turn")
    return s


def thinking_parallel_tools() -> Stream:
    s = Stream("thinking_parallel_tools")
    s.message_start(input_tokens=96, cache_read=5318, ttft=1.1)
    s.thinking(
        "The user wants the header to show the app's name and version from package.json instead of the "
        'hard-coded "Streak". Before changing anything I need to know three things: how App.tsx renders '
        "the header today, what package.json actually contains (name, version, whether it's ESM), and "
        "which components exist under src/components, in case there's already a Header component I "
        "should edit instead.\n\nThese reads don't depend on each other, so I can request all three at "
        "once rather than one per turn. Vite can import JSON directly, so `import pkg from "
        '"../package.json"` should work once I confirm resolveJsonModule is on; I\'ll check tsconfig '
        "after seeing these."
    )
    s.text("Let me look at the current header, the package metadata and the components folder.")
    s.tool("read_file", {"path": "src/App.tsx"})
    s.tool("read_file", {"path": "package.json"})
    s.tool("list_files", {"path": "src/components"})
    s.finish("tool_use")
    return s


def server_tool_web_search() -> Stream:
    s = Stream("server_tool_web_search")
    s.message_start(input_tokens=2231, cache_read=5318, ttft=0.75)
    s.text("I'll check the current recommended way to add Tailwind CSS to a Vite project first.")
    search = s.tool(
        "web_search", {"query": "tailwind css v4 vite plugin setup"}, server=True, status="server"
    )
    results = [
        {
            "type": "web_search_result",
            "title": "Installing Tailwind CSS with Vite - Tailwind CSS",
            "url": "https://tailwindcss.com/docs/installation/using-vite",
            "encrypted_content": s.opaque(690),
            "page_age": None,
        },
        {
            "type": "web_search_result",
            "title": "Tailwind CSS v4.0 - Tailwind CSS",
            "url": "https://tailwindcss.com/blog/tailwindcss-v4",
            "encrypted_content": s.opaque(1020),
            "page_age": "January 22, 2025",
        },
        {
            "type": "web_search_result",
            "title": "Releases · tailwindlabs/tailwindcss · GitHub",
            "url": "https://github.com/tailwindlabs/tailwindcss/releases",
            "encrypted_content": s.opaque(540),
            "page_age": "2 weeks ago",
        },
        {
            "type": "web_search_result",
            "title": "How to set up Tailwind v4 with Vite and React (no PostCSS) – Dev Notes",
            "url": "https://devnotes.example.com/tailwind-v4-vite-react",
            "encrypted_content": s.opaque(810),
            "page_age": "March 3, 2025",
        },
    ]
    s.web_search_result(search, results)
    s.text("Tailwind v4 ships its own Vite plugin, so no PostCSS config is needed: ")
    cited = (
        "Installing Tailwind CSS as a Vite plugin is the most seamless way to integrate it with "
        "frameworks like Laravel, SvelteKit, React Router, Nuxt, and SolidJS."
    )
    citation = {
        "type": "web_search_result_location",
        "cited_text": cited,
        "url": results[0]["url"],
        "title": results[0]["title"],
        "encrypted_index": s.opaque(96),
    }
    s.text(
        "the Tailwind docs describe the Vite plugin as the most seamless way to integrate it",
        citation=citation,
    )
    s.text(". I'll add `@tailwindcss/vite` to the Vite config:")
    s.tool("write_file", {"path": "vite.config.ts", "content": VITE_CONFIG_TAILWIND})
    s.finish("tool_use", extra_input_tokens=7412, web_searches=1)
    return s


def empty_input_tool() -> Stream:
    s = Stream("empty_input_tool")
    s.message_start(input_tokens=214, cache_read=2870, ttft=0.6)
    s.text("Let me see which files the project has so far.")
    s.tool("list_files", {}, raw_json="", empty_first=True)  # a single delta, partial_json ""
    s.tool("list_files", {}, raw_json="", empty_first=False)  # no delta at all
    s.finish("tool_use")
    return s


def invalid_tool_json() -> Stream:
    # With fine-grained tool streaming the API forwards the model's JSON without validating it.
    s = Stream("invalid_tool_json")
    s.message_start(input_tokens=640, cache_read=2870, ttft=0.6)
    s.text("I'll add a notes file and then read the package manifest.")
    # An unescaped newline inside the string, and the string is never closed.
    broken = (
        '{"path": "NOTES.md", "content": "# Notes\\n\\nUse the \\"Streak\\" name everywhere.\nKeep it short.}'
    )
    s.tool("write_file", raw_json=broken, fine_grained=True, status="invalid")
    s.tool("read_file", {"path": "package.json"}, fine_grained=True)
    s.finish("tool_use")
    return s


def max_tokens_in_tool() -> Stream:
    max_tokens = 2048
    s = Stream("max_tokens_in_tool")
    s.message_start(input_tokens=508, cache_read=5318, ttft=0.65)
    s.text("I'll add the theme constants, then the icon catalogue.")
    s.tool("write_file", {"path": "src/theme.ts", "content": THEME_TS})
    content = catalog_source(s.rng, 12_000)
    full = model_json({"path": "src/data/catalog.ts", "content": content})
    budget_chars = round((max_tokens - s.output_tokens - 6) * CODE_CHARS_PER_TOKEN)
    cut = full[:budget_chars]
    assert len('{"path": "src/data/catalog.ts", "content": "') < budget_chars < len(full) - 2, (
        "cut mid-string"
    )
    s.tool("write_file", raw_json=cut, stop=False, status="truncated")
    s.finish("max_tokens", output_tokens=max_tokens)
    return s


def overloaded_midstream() -> Stream:
    s = Stream("overloaded_midstream")
    s.message_start(input_tokens=377, cache_read=5318, ttft=0.7)
    s.text("I'll add the theme file and then update the accent colour in the styles.")
    s.tool("write_file", {"path": "src/theme.ts", "content": THEME_TS})
    full = model_json({"path": "src/styles.css", "old": "--accent: #ff7a45;", "new": "--accent: #7c5cff;"})
    s.tool("replace_string", raw_json=full[: len(full) // 2], stop=False, status="truncated")
    s.wait(0.4, 1.2)
    s.error("overloaded_error", "Overloaded")
    return s


def unknown_types() -> Stream:
    s = Stream("unknown_types")
    s.message_start(input_tokens=190, cache_read=2870, ttft=0.6)
    first = s.text("I'll add a dark-mode toggle to the header.")
    s.wait(0.001, 0.01)
    s.emit(  # an event type this library has never heard of
        "content_block_annotation",
        {
            "type": "content_block_annotation",
            "index": first.index,
            "annotation": {"kind": "confidence", "value": 0.93},
        },
    )
    s.generate(2)
    hologram = s.start_block({"type": "hologram", "id": s.new_id("holo_01"), "frames": []}, status="unknown")
    for _ in range(3):
        s.generate(4)
        s.delta(hologram, {"type": "hologram_delta", "frame": s.opaque(24)})
    s.stop_block(hologram)
    s.tool(
        "replace_string",
        {"path": "src/App.tsx", "old": "<h1>Streak</h1>", "new": "<h1>Streak</h1>\n        <ThemeToggle />"},
    )
    s.finish("tool_use")
    return s


def crlf_framing() -> Stream:
    s = Stream("crlf_framing")
    s.message_start(input_tokens=102, cache_read=2870, ttft=0.55)
    s.text("Reading the Vite config.")
    s.tool("read_file", {"path": "vite.config.ts"})
    s.finish("tool_use")
    return s


def large_file_1mb() -> Stream:
    s = Stream("large_file_1mb")
    s.message_start(input_tokens=266, cache_read=5318, ttft=0.7)
    s.text("I'll write the whole generated catalog module in one go.")
    s.tokens_per_s = 1040.0  # time compressed to ~2,000 characters/s for the big tool input
    content = catalog_source(s.rng, 1_060_000)
    s.tool("write_file", {"path": "src/data/catalog.ts", "content": content})
    s.finish("tool_use")
    return s


FIXTURES: dict[str, Callable[[], Stream]] = {
    "text_only.sse": text_only,
    "single_tool.sse": single_tool,
    "app_builder_8_tools.sse": app_builder_8_tools,
    "app_builder_turn2.sse": app_builder_turn2,
    "thinking_parallel_tools.sse": thinking_parallel_tools,
    "server_tool_web_search.sse": server_tool_web_search,
    "empty_input_tool.sse": empty_input_tool,
    "invalid_tool_json.sse": invalid_tool_json,
    "max_tokens_in_tool.sse": max_tokens_in_tool,
    "overloaded_midstream.sse": overloaded_midstream,
    "unknown_types.sse": unknown_types,
    "crlf_framing.sse": crlf_framing,
    "large_file_1mb.sse": large_file_1mb,
}
CRLF = {"crlf_framing.sse"}
PACKAGED = {"app_builder_8_tools.sse", "app_builder_turn2.sse"}  # package data: the demo's recordings


def output_path(name: str) -> Path:
    """Where the fixture ``name`` is kept."""
    return (APP_BUILDER_DIR if name in PACKAGED else FIXTURES_DIR) / name


def render_all() -> dict[str, tuple[Stream, bytes]]:
    """Every fixture file name -> (the stream, the file's bytes)."""
    out: dict[str, tuple[Stream, bytes]] = {}
    for name, build in FIXTURES.items():
        stream = build()
        out[name] = (stream, stream.sse("\r\n" if name in CRLF else "\n").encode())
    single = out["single_tool.sse"][0]
    out["capture.jsonl"] = (single, single.jsonl().encode())
    return out


def main() -> None:
    FIXTURES_DIR.mkdir(exist_ok=True)
    for name, (stream, data) in render_all().items():
        output_path(name).write_bytes(data)
        blocks = ", ".join(
            f"{b.index}:{b.name or b.type}" + (f"[{b.status}]" if b.status else "") for b in stream.blocks
        )
        print(f"{name:30} {len(data):>9,} B {stream.events[-1].t:8.3f} s  {blocks}")


if __name__ == "__main__":
    main()
