// Tool inputs and results, made readable. Known fields get their own rendering (the path as a title,
// file content as a numbered code block, before/after for replace_lines and replace_string); anything
// else is pretty-printed JSON, folded when long. Every string goes in through textContent.
//
// Live, the event log carries only a preview of each input (compact JSON cut to a few hundred
// characters); `parsePartial` reads such a cut preview as far as it goes. Once the turn's message has
// ended, the page fetches the whole inputs and results (GET /v1/runs/{id}/calls) and renders them again.

const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
};

const FOLD_LINES = 14;

/**
 * A JSON text that may be cut short (a preview "…(N chars)" or a stream in progress): the value as far
 * as it goes, and whether anything was cut. Never throws; gives {value: undefined} for non-JSON.
 */
export function parsePartial(text) {
  let src = String(text ?? "");
  let cut = false;
  const tail = /…\s*\((\d[\d,]*) chars\)$/.exec(src);
  if (tail) {
    src = src.slice(0, tail.index);
    cut = true;
  }
  try {
    return { value: JSON.parse(src), cut };
  } catch {
    // fall through to the tolerant reader
  }
  let i = 0;
  const ws = () => { while (i < src.length && /\s/.test(src[i])) i += 1; };
  const string = () => {
    i += 1; // the opening quote
    let s = "";
    while (i < src.length) {
      const c = src[i];
      if (c === '"') { i += 1; return s; }
      if (c === "\\") {
        const e = src[i + 1];
        if (e === undefined) break;
        if (e === "u") {
          const hex = src.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) { i = src.length; break; }
          s += String.fromCharCode(parseInt(hex, 16));
          i += 6;
        } else {
          s += { n: "\n", t: "\t", r: "\r", b: "\b", f: "\f" }[e] ?? e;
          i += 2;
        }
        continue;
      }
      s += c;
      i += 1;
    }
    cut = true;
    return s;
  };
  const value = () => {
    ws();
    const c = src[i];
    if (c === "{") {
      i += 1;
      const obj = {};
      for (;;) {
        ws();
        if (i >= src.length) { cut = true; return obj; }
        if (src[i] === "}") { i += 1; return obj; }
        if (src[i] === ",") { i += 1; continue; }
        if (src[i] !== '"') throw new Error("key");
        const key = string();
        ws();
        if (src[i] !== ":") { cut = true; return obj; }
        i += 1;
        ws();
        if (i >= src.length) { cut = true; return obj; }
        obj[key] = value();
      }
    }
    if (c === "[") {
      i += 1;
      const arr = [];
      for (;;) {
        ws();
        if (i >= src.length) { cut = true; return arr; }
        if (src[i] === "]") { i += 1; return arr; }
        if (src[i] === ",") { i += 1; continue; }
        arr.push(value());
      }
    }
    if (c === '"') return string();
    const m = /^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null)/.exec(src.slice(i));
    if (!m) throw new Error("value");
    i += m[0].length;
    return JSON.parse(m[0]);
  };
  try {
    return { value: value(), cut: true };
  } catch {
    return { value: undefined, cut };
  }
}

/** A numbered code block: `first` is the first line's number. */
export function codeBlock(text, { first = 1, cut = false, mark = "" } = {}) {
  const lines = String(text).split("\n");
  const box = el("div", `code${mark ? ` ${mark}` : ""}`);
  box.dataset.testid = "code";
  const table = el("table");
  lines.forEach((line, n) => {
    const tr = el("tr");
    tr.append(el("td", "ln", String(first + n)), el("td", "src", line || "\u200b"));
    table.append(tr);
  });
  box.append(table);
  if (cut) box.append(el("div", "cut muted", "… (the rest arrives when the message ends)"));
  return box;
}

function jsonBlock(value) {
  const text = JSON.stringify(value, null, 2) ?? String(value);
  const pre = el("pre", "json", text);
  pre.dataset.testid = "json";
  return fold(pre, text.split("\n").length, "JSON");
}

/** Long content folds behind a <details> with its size said. */
function fold(node, lines, what) {
  if (lines <= FOLD_LINES) return node;
  const details = el("details", "fold");
  details.append(el("summary", "muted", `${what}, ${lines} lines`), node);
  return details;
}

const lineCount = (s) => String(s).split("\n").length;
const plural = (n, one) => `${n} ${one}${n === 1 ? "" : "s"}`;

/**
 * The input of a call, as DOM. `input` is an object (or a partial one), `cut` says whether the text it
 * came from was cut, `name` is the tool's name.
 */
export function renderInput(name, input, cut) {
  const box = document.createDocumentFragment();
  if (input === undefined || input === null || typeof input !== "object" || Array.isArray(input)) {
    box.append(input === undefined ? el("span", "muted", "…") : jsonBlock(input));
    return box;
  }
  const rest = { ...input };
  const take = (key) => { const v = rest[key]; delete rest[key]; return v; };
  if (typeof input.path === "string") {
    const title = el("div", "call-title", take("path"));
    title.dataset.testid = "call-path";
    if (typeof input.content === "string" && name !== "replace_lines") {
      const n = lineCount(input.content);
      title.append(el("span", "muted", ` · ${cut ? "at least " : ""}${plural(n, "line")}`));
    }
    box.append(title);
  }
  const str = (v) => typeof v === "string";
  if (name === "replace_string" && (str(input.old) || str(input.new))) {
    box.append(beforeAfter(
      codeBlock(take("old") ?? "", { mark: "before", cut: cut && input.new === undefined }),
      codeBlock(take("new") ?? "", { mark: "after", cut }),
      "replaces the one match of",
    ));
  } else if (name === "replace_lines" && Number.isInteger(input.start_line) && str(input.content)) {
    const start = take("start_line");
    const end = take("end_line");
    const removed = Number.isInteger(end) ? end - start + 1 : null;
    const before = el("div", "code before range");
    before.dataset.testid = "code";
    before.textContent = removed == null ? `from line ${start}` :
      `lines ${start}–${end} (${plural(removed, "line")})`;
    const content = take("content");
    box.append(beforeAfter(before, codeBlock(content, { first: start, mark: "after", cut }), "replaces"));
  } else if (str(input.content)) {
    box.append(codeBlock(take("content"), { cut })); // scrolls in its box rather than folding
  } else if (str(input.name) && Object.keys(input).length === 1) {
    box.append(el("div", "call-title", take("name")));
  }
  if (Object.keys(rest).length) box.append(jsonBlock(rest));
  else if (cut && !box.childNodes.length) box.append(el("span", "muted", "…"));
  return box;
}

function beforeAfter(before, after, verb) {
  const grid = el("div", "before-after");
  grid.dataset.testid = "before-after";
  const left = el("div");
  left.append(el("span", "io-label", `before · ${verb}`), before);
  const right = el("div");
  right.append(el("span", "io-label", "after"), after);
  grid.append(left, right);
  return grid;
}

/** Whether `value` (a result, maybe cut short) is `input` again, as far as both go. */
function echoes(value, input, cut) {
  if (!cut) return sameJSON(value, input);
  if (!value || typeof value !== "object" || Array.isArray(value)) return false;
  return Object.entries(value).every(([k, v]) => {
    const w = input[k];
    if (typeof v === "string" && typeof w === "string") return w.startsWith(v) || v.startsWith(w);
    return w === undefined || sameJSON(v, w);
  });
}

const sameJSON = (a, b) => JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}

/** The result of a call, as DOM: JSON pretty-printed (or "echoes its input"), text as it is. */
export function renderResult(text, input, { error = false } = {}) {
  const box = document.createDocumentFragment();
  const s = String(text ?? "");
  const trimmed = s.trim();
  if ((trimmed.startsWith("{") || trimmed.startsWith("[")) && trimmed.length > 1) {
    const { value, cut } = parsePartial(trimmed);
    if (value !== undefined && input && typeof input === "object" && echoes(value, input, cut)) {
      const note = el("span", "muted echo", "returned its input unchanged (a simulated tool)");
      note.dataset.testid = "echo";
      box.append(note);
      return box;
    }
    if (value !== undefined) {
      box.append(jsonBlock(value));
      if (cut) box.append(el("div", "cut muted", "… (cut; the whole result arrives when the turn ends)"));
      return box;
    }
  }
  const pre = el("pre", error ? "text error" : "text", s);
  box.append(fold(pre, lineCount(s), "result"));
  return box;
}
