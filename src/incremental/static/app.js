// The incremental dashboard: follows one run's event log live and shows every tool call as it moves
// from streaming input to its result. Plain ES module, no build step, no third-party code.
//
// The token never goes into a URL the page requests: it arrives in the fragment (#token=..., which
// browsers never send), moves to sessionStorage, and travels only in the Authorization header. That is
// why the event stream is read with fetch() and a small SSE parser instead of EventSource (which cannot
// send headers).

import { SSEParser } from "./sse.js";
import { renderMarkdown } from "./markdown.js";
import { parsePartial, renderInput, renderResult } from "./calls.js";
import { drawTimeline, timelineModel } from "./timeline.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "incremental.token";
const FINAL = new Set(["completed", "failed", "cancelled", "refused", "rejected", "missing"]);
// Tool statuses only move forward; events may arrive "late" (tool_enqueued is logged after the job is
// queued, so a fast worker's tool_started can come first).
const RANK = { streaming: 0, ready: 1, held: 1, waiting: 1, paused: 1, queued: 2, running: 3 };
const rank = (s) => (FINAL.has(s) ? 4 : RANK[s] ?? 0);
const TOOL_EVENTS = {
  tool_ready: "ready", tool_held: "held", tool_waiting: "waiting", tool_paused: "paused",
  tool_enqueued: "queued", tool_started: "running", tool_completed: "completed", tool_failed: "failed",
  tool_cancelled: "cancelled", tool_refused: "refused", tool_rejected: "rejected",
};

let token = null;
let run = null;        // the state of the selected run, rebuilt from its events (see newRun)
let session = null;    // the live connection for the selected run: {runId, closed, attempt: AbortController}
let clockSkew = 0;     // server clock minus browser clock, seconds (durations of running tools)
const debug = { connections: [], reconnects: 0, events: 0, kinds: [] };
const NEVER_RAN = "never ran: its input was still streaming when the model stream ended";

// ---------------------------------------------------------------- HTTP

async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method, headers, signal, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => null);
  if (res.status === 401) needToken("The token was refused (401). Paste a valid one.");
  if (!res.ok) throw Object.assign(new Error(data?.error?.message || `HTTP ${res.status}`), { status: res.status });
  return data;
}

function notify(message) {
  Object.assign($("notice"), { textContent: message || "", hidden: !message });
}

// ---------------------------------------------------------------- token

function readToken() {
  const params = new URLSearchParams(location.hash.slice(1));
  const fromHash = params.get("token");
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function needToken(message) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  closeSession();
  $("token-panel").hidden = false;
  for (const id of ["run-controls", "run-panel", "empty", "forget-token"]) $(id).hidden = true;
  notify(message);
  $("token-input").focus();
}

// ---------------------------------------------------------------- run state

function newRun(id) {
  return {
    id, state: "running", reason: "", paused: false, createdAt: null, endedAt: null,
    // turn -> {blocks: Map(content block index -> text), stream: waiting|streaming|stopped|closed|failed,
    // stopReason}. A turn's text is its text blocks joined as they are (what the run view's `text` says).
    // Each turn also has its timeline: requestAt, streamEndAt (message_stop), streamClosedAt (ended
    // without one), and spans: Map(content block index -> {type, start, end, toolId}).
    turns: new Map(),
    tools: new Map(),   // tool_use_id -> tool (the fields of the run view's tools, plus `fields`)
    saved: new Map(),   // turn -> saved_s from turn_completed (against parallel after the stream)
    savedSeq: new Map(), // turn -> the same against one by one after the stream
    calls: new Map(),   // tool_use_id -> {input, result, ...}: whole, from GET /v1/runs/{id}/calls
    streamOpen: false,  // a model request went out and its stream has not ended yet
    ended: false,       // the stream said `event: end`
  };
}

function turnOf(n) {
  const key = Number(n ?? 0);
  if (!run.turns.has(key)) {
    run.turns.set(key, {
      blocks: new Map(), stream: "waiting", stopReason: null,
      requestAt: null, streamEndAt: null, streamClosedAt: null, spans: new Map(),
    });
  }
  return run.turns.get(key);
}

function spanOf(turn, index, type) {
  if (!turn.spans.has(index)) turn.spans.set(index, { type, start: null, end: null, toolId: null });
  return turn.spans.get(index);
}

/** The turn's stream ended: a call whose input was still streaming never runs (the run view agrees). */
function settleStreaming(turnNumber) {
  for (const tool of run.tools.values()) {
    if (tool.status === "streaming" && (turnNumber == null || tool.turn === turnNumber)) {
      Object.assign(tool, {
        status: run.state === "cancelled" ? "cancelled" : "rejected", is_error: true, result: NEVER_RAN,
        settled_by_view: true,
      });
    } else if (tool.settled_by_view && run.state === "cancelled") tool.status = "cancelled";
  }
}

function toolOf(ev) {
  let tool = run.tools.get(ev.tool_use_id);
  if (!tool) {
    tool = {
      tool_use_id: ev.tool_use_id, name: ev.name || "", turn: Number(ev.turn ?? 0), index: ev.index ?? null,
      status: "streaming", fields: [], input_preview: null, progress: null, ready_at: null,
      started_at: null, finished_at: null, duration_s: null, attempts: 0, is_error: false, result: null,
    };
    run.tools.set(ev.tool_use_id, tool);
  }
  if (ev.name && !tool.name) tool.name = ev.name;
  if (ev.index != null && tool.index == null) tool.index = ev.index;
  return tool;
}

/** Apply one event of the run's log to `run`. */
function apply(ev) {
  const kind = ev.kind;
  if (typeof ev.ts === "number") clockSkew = ev.ts - Date.now() / 1000;
  if (kind === "run_started") run.createdAt = ev.ts;
  else if (kind === "request_sent") {
    const turn = turnOf(ev.turn);
    if ((ev.attempt ?? 1) > 1) { turn.blocks.clear(); turn.spans.clear(); } // a retried stream starts over
    turn.stream = "streaming";
    turn.requestAt ??= ev.ts;
    run.streamOpen = true;
  } else if (kind === "text_delta") {
    const turn = turnOf(ev.turn);
    const index = Number(ev.index ?? 0);
    turn.blocks.set(index, (turn.blocks.get(index) ?? "") + (ev.text ?? ""));
    const span = spanOf(turn, index, "text");
    span.start ??= ev.ts;
    span.end = ev.ts;
  } else if (kind === "message_stopped") {
    Object.assign(turnOf(ev.turn), { stream: "stopped", stopReason: ev.stop_reason, streamEndAt: ev.ts });
    run.streamOpen = false;
    settleStreaming(Number(ev.turn ?? 0));
    scheduleCalls();
  } else if (kind === "stream_closed" || kind === "stream_failed") {
    const turn = turnOf(ev.turn);
    turn.stream = kind === "stream_closed" ? "closed" : "failed";
    if (turn.streamEndAt == null) turn.streamClosedAt ??= ev.ts;
    run.streamOpen = false;
    settleStreaming(Number(ev.turn ?? 0));
  }
  else if (kind === "continued") turnOf(ev.turn);
  else if (kind === "turn_deadline") {
    for (const id of ev.missing ?? []) {
      const tool = toolOf({ tool_use_id: id, turn: ev.turn });
      if (FINAL.has(tool.status)) continue;
      Object.assign(tool, { status: "missing", is_error: true, result: "no result within the turn's deadline" });
    }
  } else if (kind === "tool_duplicate_result") {
    const tool = toolOf(ev); // its one result is recorded already; a late report changes nothing
    if (!FINAL.has(tool.status)) tool.status = "missing";
  }
  else if (kind === "turn_completed") {
    const n = Number(ev.turn ?? 0);
    run.saved.set(n, Number(ev.saved_s) || 0);
    if (typeof ev.sealed_at === "number" && typeof ev.last_result_at === "number") {
      run.savedSeq.set(n, ev.sealed_at + (Number(ev.tool_time_s) || 0) - ev.last_result_at);
    }
    scheduleCalls();
  }
  else if (kind === "run_paused") run.paused = true;
  else if (kind === "run_resumed") run.paused = false;
  else if (kind === "run_completed" || kind === "run_failed" || kind === "run_ended") {
    Object.assign(run, { state: ev.state || kind.slice(4), reason: ev.reason || "", endedAt: ev.ts, paused: false });
    if (kind === "run_failed") run.streamOpen = false;
    if (!run.streamOpen) settleStreaming(null);
    scheduleCalls();
  } else if (kind === "tool_input_started") {
    if (!ev.server_side) { // Anthropic runs server-side tools: nothing for us to show
      const tool = toolOf(ev);
      tool.input_started_at = ev.ts;
      const span = spanOf(turnOf(ev.turn), Number(ev.index ?? 0), "tool_use");
      Object.assign(span, { start: ev.ts, toolId: ev.tool_use_id });
    }
  } else if (kind === "cancel_requested") {
    if (ev.target === "run") run.cancelling = true;
  } else if (kind === "tool_field_completed") toolOf(ev).fields.push([ev.field, ev.value]);
  else if (kind === "tool_progress") {
    const tool = toolOf(ev);
    if (!FINAL.has(tool.status)) tool.progress = { stage: ev.stage, fraction: ev.fraction, message: ev.message };
  } else if (kind in TOOL_EVENTS && ev.tool_use_id) {
    const tool = toolOf(ev);
    const status = TOOL_EVENTS[kind];
    if (tool.settled_by_view && (FINAL.has(status) || kind === "tool_rejected")) {
      tool.settled_by_view = false; // the pipeline's own word on the call replaces the page's guess
      tool.status = "running";
    }
    if (kind === "tool_ready" || kind === "tool_rejected") {
      const index = Number(ev.index ?? tool.index ?? 0);
      const span = spanOf(turnOf(tool.turn), index, "tool_use");
      span.toolId = tool.tool_use_id;
      span.end ??= ev.ts;
    }
    if (FINAL.has(tool.status) || rank(status) < rank(tool.status)) return;
    tool.status = status;
    if (FINAL.has(status) && run.turns.get(tool.turn)?.streamEndAt != null) scheduleCalls();
    if (kind === "tool_ready") {
      tool.ready_at = ev.ts;
      if (ev.input_preview != null) tool.input_preview = ev.input_preview;
    } else if (kind === "tool_started") {
      tool.started_at = ev.ts;
      tool.attempts = ev.attempt ?? tool.attempts + 1;
    } else if (FINAL.has(status)) {
      tool.result = ev.content ?? ev.reason ?? "";
      tool.is_error = Boolean(ev.is_error ?? status !== "completed");
      tool.finished_at = ev.finished_at ?? ev.ts;
      tool.started_at ??= ev.started_at; // the first tool_started's time, as the run view keeps it
      if (ev.attempts) tool.attempts = ev.attempts;
      tool.after_cancel = Boolean(ev.after_cancel);
      if (tool.started_at != null) tool.duration_s = Math.max(0, tool.finished_at - tool.started_at);
    }
  }
}

/** `event: snapshot`: the log was trimmed past our offset; the run view replaces what we had. */
function applySnapshot(view) {
  const calls = run.calls;
  run = runFromView(view, run.id);
  run.calls = calls;
  toolRows.clear();
  $("tools").replaceChildren();
  $("turns").replaceChildren();
}

/** The page's run state from a run view (GET /v1/runs/{id}, or an SSE snapshot): what the events build. */
function runFromView(view, id) {
  const r = newRun(view.id ?? id);
  Object.assign(r, {
    state: view.state, reason: view.reason || "", paused: Boolean(view.paused),
    createdAt: view.created_at, endedAt: view.ended_at,
  });
  const last = (view.turns || []).at(-1);
  r.streamOpen = Boolean(last && last.request_at != null && last.stream_end_at == null && last.stream_closed_at == null
    && view.state === "running");
  const turns = new Map((view.turns || []).map((t) => [t.turn, t]));
  (view.text_blocks || (view.text || []).map((t) => [t])).forEach((texts, n) => {
    const t = turns.get(n) ?? {};
    const stopReason = view.stop_reasons?.[n] ?? t.stop_reason ?? null;
    const closed = t.stream_closed_at != null;
    const done = stopReason != null || closed || n < view.turn || view.state !== "running";
    const textIndexes = (t.blocks || []).filter((b) => b.type === "text").map((b) => b.index);
    const blocks = new Map(texts.map((text, i) => [textIndexes[i] ?? i, text]));
    const spans = new Map((t.blocks || []).map((b) => [b.index, {
      type: b.type, start: b.started_at, end: b.ended_at, toolId: b.tool_use_id,
    }]));
    r.turns.set(n, {
      blocks, stream: stopReason != null || !done ? (done ? "stopped" : "streaming") : closed ? "closed" : "stopped",
      stopReason, requestAt: t.request_at ?? null, streamEndAt: t.stream_end_at ?? null,
      streamClosedAt: t.stream_closed_at ?? null, spans,
    });
    if (t.saved_s != null) r.saved.set(n, t.saved_s);
    if (t.saved_sequential_s != null) r.savedSeq.set(n, t.saved_sequential_s);
  });
  for (const t of view.tools || []) r.tools.set(t.tool_use_id, { ...t, fields: Object.entries(t.fields || {}) });
  return r;
}

// ---------------------------------------------------------------- the live connection

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function closeSession() {
  if (session) {
    session.closed = true;
    session.attempt?.abort();
  }
  session = null;
}

function setConn(state, text) {
  $("conn").dataset.conn = state;
  $("conn").textContent = text;
}

/** Follow one run's events until `event: end`; reconnect with Last-Event-ID after any drop. */
async function follow(runId) {
  closeSession();
  const me = { runId, closed: false, attempt: null };
  session = me;
  let lastId = null;
  let backoff = 300;
  while (!me.closed) {
    me.attempt = new AbortController();
    const headers = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
    if (lastId) headers["Last-Event-ID"] = lastId;
    debug.connections.push({ runId, lastEventId: lastId, at: Date.now() });
    let progressed = false;
    try {
      const res = await fetch(`/v1/runs/${encodeURIComponent(runId)}/events`, {
        headers, signal: me.attempt.signal, cache: "no-store",
      });
      if (res.status === 401) return needToken("The token was refused (401). Paste a valid one.");
      if (res.status === 400 && lastId) {
        lastId = null; // an offset the server cannot read: start over from the beginning of the log
        run = newRun(runId);
        continue;
      }
      if (res.status === 403 || res.status === 404) {
        notify(`Cannot follow ${runId}: HTTP ${res.status}`);
        return setConn("error", "not available");
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setConn("live", "live");
      const parser = new SSEParser((msg) => {
        if (me.closed) return;
        let data = {};
        try {
          data = JSON.parse(msg.data || "{}");
        } catch {
          console.warn("unreadable event skipped:", msg); // and not asked for again: lastId moves on
        }
        debug.kinds.push(msg.event);
        if (msg.event === "end") {
          run.ended = true;
          if (data.state && run.state === "running") run.state = data.state;
          return;
        }
        if (msg.event === "snapshot") applySnapshot(data);
        else apply({ kind: msg.event, ...data });
        lastId = msg.id ?? (msg.event === "snapshot" ? data.offset : null) ?? lastId;
        progressed = true;
        debug.events += 1;
      });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      while (!me.closed) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(value);
        render();
        if (run.ended) break;
      }
      reader.cancel().catch(() => {});
    } catch (err) {
      if (me.closed) return;
      console.warn("event stream dropped:", err);
    }
    if (me.closed) return;
    if (run.ended) {
      setConn("ended", "run ended");
      render();
      refreshRuns();
      refreshStats();
      return;
    }
    // Dropped, or closed without `event: end`: come back after a short backoff, where we left off.
    debug.reconnects += 1;
    setConn("reconnecting", "reconnecting…");
    if (progressed) backoff = 300;
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 5000);
  }
}

// ---------------------------------------------------------------- whole inputs and results

// The log carries previews; once a turn's message has ended, its calls' whole inputs (and the results
// recorded so far) are in the run's store. Fetched after message_stop, after results and at the end.
let callsTimer = null;
let callsBusy = false;

function scheduleCalls() {
  if (!run || callsTimer) return;
  const id = run.id;
  callsTimer = setTimeout(async () => {
    callsTimer = null;
    if (callsBusy || !run || run.id !== id) return;
    callsBusy = true;
    try {
      const { calls } = await api(`/v1/runs/${encodeURIComponent(id)}/calls`);
      if (run?.id !== id) return;
      for (const [toolId, call] of Object.entries(calls || {})) run.calls.set(toolId, call);
      render();
    } catch {
      // optional: the previews stay
    } finally {
      callsBusy = false;
    }
  }, 250);
}

// ---------------------------------------------------------------- rendering

const fmtS = (s) => (s == null || !Number.isFinite(s) ? "–" : Math.abs(s) < 10 ? `${s.toFixed(2)} s` : `${s.toFixed(1)} s`);
const fmtPct = (r) => (r == null || !Number.isFinite(r) ? "–" : `${Math.round(r * 100)} %`);
const toolRows = new Map(); // tool_use_id -> <li>
const now = () => Date.now() / 1000 + clockSkew; // the server's clock

function liveDuration(tool) {
  if (tool.duration_s != null) return tool.duration_s;
  if (tool.status === "running" && tool.started_at != null) return Math.max(0, now() - tool.started_at);
  return null;
}

/** A call's status, said plainly. */
function statusText(tool) {
  const s = tool.status;
  let text = {
    streaming: "model writing its input", ready: "ready", held: "held until the message ends",
    waiting: "waiting for the same file", paused: "paused", queued: "queued", running: "running",
    completed: "done", failed: "failed", refused: "refused", rejected: "input rejected",
    missing: "no result by the deadline", cancelled: "cancelled",
  }[s] ?? s;
  if (tool.settled_by_view) text = s === "cancelled" ? "cancelled before its input was complete" : "never ran: input cut off";
  else if (tool.after_cancel) text = s === "completed" ? "done (finished before the cancel reached it)" : "cancelled while running";
  if (tool.attempts > 1) text += ` (attempt ${tool.attempts})`;
  return text;
}

/** The call's input as far as the page knows it: whole (after message_stop), else its preview or fields. */
function inputOf(tool) {
  const call = run.calls.get(tool.tool_use_id);
  if (call && call.input != null) return { input: call.input, cut: false, key: "whole" };
  if (tool.input_preview != null) {
    const { value, cut } = parsePartial(tool.input_preview);
    if (value !== undefined) return { input: value, cut, key: `preview:${tool.input_preview.length}` };
  }
  if (tool.fields.length) {
    return { input: Object.fromEntries(tool.fields), cut: true, key: `fields:${tool.fields.length}` };
  }
  return { input: undefined, cut: true, key: "none" };
}

function renderTool(tool) {
  let li = toolRows.get(tool.tool_use_id);
  if (!li) {
    li = $("tool-template").content.firstElementChild.cloneNode(true);
    li.dataset.toolId = tool.tool_use_id;
    const cancel = () => control("cancel", { tool_use_id: tool.tool_use_id });
    li.querySelector(".cancel-tool").addEventListener("click", cancel);
    toolRows.set(tool.tool_use_id, li);
  }
  li.dataset.status = tool.status;
  li.dataset.turn = tool.turn;
  li.querySelector(".name").textContent = tool.name || "(unnamed)";
  li.querySelector(".where").textContent = `turn ${tool.turn} · block ${tool.index ?? "?"}`;
  li.querySelector(".status").textContent = statusText(tool);
  li.querySelector(".icon").className = `icon ${tool.status === "running" ? "spinner" : tool.status}`;
  li.querySelector(".duration").textContent = fmtS(liveDuration(tool));
  const progress = li.querySelector(".progress");
  const p = tool.progress;
  progress.hidden = !p || FINAL.has(tool.status);
  if (p) {
    const fraction = typeof p.fraction === "number" ? p.fraction : null;
    progress.querySelector(".fill").style.width = fraction == null ? "100%" : `${fraction * 100}%`;
    progress.querySelector(".fill").classList.toggle("indeterminate", fraction == null);
    progress.querySelector(".stage").textContent =
      [p.stage, fraction == null ? null : `${Math.round(fraction * 100)}%`, p.message].filter(Boolean).join(" · ");
  }
  // Input and result re-render only when what they show changed (an open fold stays open).
  const { input, cut, key } = inputOf(tool);
  const box = li.querySelector(".input");
  if (box.dataset.key !== key) {
    box.dataset.key = key;
    box.replaceChildren(renderInput(tool.name, input, cut));
  }
  const call = run.calls.get(tool.tool_use_id);
  const result = call?.result ?? tool.result;
  li.querySelector(".result-box").hidden = result == null;
  const out = li.querySelector(".result");
  const resultKey = result == null ? "" : `${call?.result != null ? "whole" : "event"}:${result.length}:${key}`;
  if (out.dataset.key !== resultKey) {
    out.dataset.key = resultKey;
    out.replaceChildren(result == null ? "" : renderResult(result, input, { error: Boolean(tool.is_error) }));
  }
  out.classList.toggle("error", Boolean(tool.is_error));
  // Only a dispatched call can be cancelled (one whose input is still streaming has no job yet).
  const cancellable = !FINAL.has(tool.status) && tool.status !== "streaming" && run.state === "running";
  li.querySelector(".cancel-tool").hidden = !cancellable;
  return li;
}

function renderTurns() {
  const box = $("turns");
  const numbers = [...run.turns.keys()].sort((a, b) => a - b);
  for (const n of numbers) {
    const turn = run.turns.get(n);
    let section = box.querySelector(`[data-turn="${n}"]`);
    if (!section) {
      section = document.createElement("section");
      section.className = "turn";
      section.dataset.testid = "turn";
      section.dataset.turn = n;
      const h = document.createElement("h3");
      h.append(`Turn ${n} `, Object.assign(document.createElement("span"), { className: "badge stream" }));
      const text = Object.assign(document.createElement("div"), { className: "text" });
      text.dataset.testid = "turn-text";
      section.append(h, text);
      box.append(section);
    }
    section.dataset.streamState = turn.stream;
    const label = turn.stream === "stopped" && turn.stopReason ? `stopped: ${turn.stopReason}` : turn.stream;
    section.querySelector(".stream").textContent = label;
    // One element per text block, rendered as markdown; its source stays on the element.
    const textBox = section.querySelector(".text");
    for (const el of [...textBox.children]) if (!turn.blocks.has(Number(el.dataset.block))) el.remove();
    for (const index of [...turn.blocks.keys()].sort((a, b) => a - b)) {
      let block = textBox.querySelector(`[data-block="${index}"]`);
      if (!block) {
        block = Object.assign(document.createElement("div"), { className: "block md" });
        block.dataset.block = index;
        block.dataset.testid = "text-block";
        const next = [...textBox.children].find((el) => Number(el.dataset.block) > index);
        textBox.insertBefore(block, next ?? null);
      }
      const text = turn.blocks.get(index);
      if (block.source !== text) {
        block.source = text;
        block.replaceChildren(renderMarkdown(text));
      }
    }
  }
}

const sum = (values) => [...values].reduce((a, b) => a + b, 0);

function renderMetrics() {
  const tools = [...run.tools.values()];
  const done = tools.filter((t) => FINAL.has(t.status));
  const timed = done.filter((t) => t.duration_s != null);
  const ok = done.filter((t) => t.status === "completed").length;
  const streaming = [...run.turns.values()].some((t) => t.stream === "streaming");
  const soFar = streaming ? " so far" : "";
  $("m-tools").textContent = `${done.length} / ${tools.length}${soFar}`;
  $("m-tools").title = "finished calls out of the tool_use blocks the model has written" +
    (streaming ? " (it is still writing)" : "");
  $("m-avg").textContent = timed.length ? fmtS(timed.reduce((a, t) => a + t.duration_s, 0) / timed.length) : "–";
  $("m-success").textContent = done.length ? fmtPct(ok / done.length) : "–";
  $("m-saved-seq").textContent = run.savedSeq.size ? fmtS(sum(run.savedSeq.values())) : "–";
  $("m-saved").textContent = run.saved.size ? fmtS(sum(run.saved.values())) : "–";
  const took = run.createdAt == null ? null : (run.endedAt ?? (run.state === "running" ? now() : null)) - run.createdAt;
  $("m-took").textContent = fmtS(took);
  $("tools-count").textContent = tools.length
    ? `${done.length} of ${tools.length} done${streaming ? " · the model is still writing" : ""}` : "";
}

// The timeline redraws from the run state; while anything is live it also ticks on its own.
function titleOf(tool) {
  const { input } = inputOf(tool);
  const path = input && typeof input === "object" ? input.path ?? input.name : null;
  return typeof path === "string" ? path.split("/").pop() : "";
}

function renderTimeline() {
  const svg = $("timeline");
  const width = svg.parentElement.clientWidth - 2;
  const titles = new Map([...run.tools.values()].map((t) => [t.tool_use_id, titleOf(t)]));
  drawTimeline(svg, timelineModel(run, now()), width, titles);
}

function render() {
  if (!run) return;
  $("run-id").textContent = run.id;
  Object.assign($("run-state"), { textContent: run.state }).dataset.state = run.state;
  $("run-paused").hidden = !run.paused;
  const running = run.state === "running";
  $("run-reason").textContent = running && run.cancelling ? "cancelling…" : run.reason;
  $("pause").disabled = !running;
  $("pause").textContent = run.paused ? "Resume" : "Pause";
  $("cancel-run").disabled = !running;
  const list = $("tools");
  const sorted = [...run.tools.values()].sort((a, b) => a.turn - b.turn || (a.index ?? 0) - (b.index ?? 0));
  sorted.forEach((tool, i) => {
    const li = renderTool(tool);
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] ?? null);
  });
  $("no-tools").hidden = sorted.length > 0;
  renderTurns();
  renderMetrics();
  renderTimeline();
}

// Durations of running tools count up between events, and the timeline grows.
setInterval(() => {
  if (!run) return;
  for (const tool of run.tools.values()) {
    const cell = toolRows.get(tool.tool_use_id)?.querySelector(".duration");
    if (tool.status === "running" && cell) cell.textContent = fmtS(liveDuration(tool));
  }
  if (run.state === "running" || [...run.tools.values()].some((t) => t.status === "running")) {
    renderTimeline();
    renderMetrics();
  }
}, 250);
window.addEventListener("resize", () => run && renderTimeline());

// ---------------------------------------------------------------- runs, demo, controls, stats

function selectRun(id) {
  closeSession();
  toolRows.clear();
  $("tools").replaceChildren();
  $("turns").replaceChildren();
  run = null;
  $("run-panel").hidden = !id;
  $("empty").hidden = Boolean(id);
  if (!id) return;
  run = newRun(id);
  render();
  follow(id);
}

async function refreshRuns() {
  if (!token) return;
  try {
    const { runs } = await api("/v1/runs");
    const picker = $("run-picker");
    const current = run?.id ?? "";
    // Rebuild only when something changed: rebuilding closes the list under the user's pointer.
    const signature = JSON.stringify([current, runs.map((r) => [r.id, r.state, r.paused])]);
    if (signature === picker.dataset.signature) return;
    picker.dataset.signature = signature;
    picker.replaceChildren(new Option(runs.length ? "— pick a run —" : "no runs yet", ""));
    for (const r of runs) {
      const when = r.created_at ? new Date(r.created_at * 1000).toLocaleTimeString() : "";
      const label = `${when}  ${r.id}  ${r.paused ? "paused" : r.state}`;
      picker.append(new Option(label, r.id, false, r.id === current));
    }
    if (current && !runs.some((r) => r.id === current)) picker.append(new Option(current, current, false, true));
  } catch (err) {
    if (err.status !== 401) notify(`Could not list runs: ${err.message}`);
  }
}

async function refreshStats() {
  if (!token) return;
  try {
    const s = await api("/v1/stats");
    $("g-success").textContent = fmtPct(s.success_rate);
    $("g-saved").textContent = fmtS(s.saved_s);
    const yours = s.yours;
    $("y-box").hidden = !yours;
    if (yours) {
      $("y-runs").textContent = String(yours.runs);
      $("y-saved-seq").textContent = fmtS(yours.saved_sequential_s);
      $("y-saved").textContent = fmtS(yours.saved_s);
    }
    $("g-inflight").textContent = String(s.runs_in_flight ?? "–");
    const rows = Object.entries(s.tools || {}).sort(([a], [b]) => a.localeCompare(b)).map(([name, t]) => {
      const tr = document.createElement("tr");
      for (const cell of [name, String(t.count), fmtS(t.mean_s), fmtPct(t.success_rate)]) {
        tr.append(Object.assign(document.createElement("td"), { textContent: cell }));
      }
      return tr;
    });
    $("g-tools").replaceChildren(...rows);
    $("g-tools").closest("table").hidden = !rows.length;
    $("global").hidden = false;
  } catch {
    $("global").hidden = true; // stats are optional
  }
}

let demoBody = null;

async function checkDemo() {
  try {
    demoBody = await api("/v1/demo");
  } catch {
    demoBody = null; // 404: this server was not started with --demo
  }
  $("start-demo").hidden = !demoBody;
}

async function startDemo() {
  const button = $("start-demo");
  button.disabled = true;
  try {
    const body = demoBody ?? (await api("/v1/demo"));
    const created = await api("/v1/runs", { method: "POST", body });
    notify("");
    selectRun(created.id);
    await refreshRuns();
  } catch (err) {
    notify(`Could not start the demo run: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

/** POST a control route of the selected run: cancel (the run, or one tool), pause, resume. */
async function control(action, body = {}) {
  if (!run) return;
  try {
    await api(`/v1/runs/${encodeURIComponent(run.id)}/${action}`, { method: "POST", body });
    notify("");
  } catch (err) {
    notify(`${action} failed: ${err.message}`);
  }
}

async function start() {
  $("run-controls").hidden = false;
  $("forget-token").hidden = false;
  $("token-panel").hidden = true;
  $("empty").hidden = Boolean(run);
  await Promise.all([refreshRuns(), checkDemo(), refreshStats()]);
}

// ---------------------------------------------------------------- wiring

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const value = $("token-input").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  token = value;
  $("token-input").value = "";
  notify("");
  start();
});
$("forget-token").addEventListener("click", () => needToken(""));
$("run-picker").addEventListener("change", (e) => selectRun(e.target.value || null));
$("start-demo").addEventListener("click", startDemo);
$("pause").addEventListener("click", () => control(run?.paused ? "resume" : "pause"));
$("cancel-run").addEventListener("click", () => control("cancel"));
setInterval(refreshRuns, 5000);
setInterval(refreshStats, 10000);

// For tests and the curious: window.__incremental.dropConnection() cuts the event stream the way a
// network failure would; the page must come back by itself with Last-Event-ID.
window.__incremental = {
  debug,
  get run() { return run; },
  // The timeline's data as this page drew it, and as a page rebuilt from `view` (a run view) would.
  timeline: () => timelineModel(run, run.endedAt ?? now()),
  timelineFromView: (view) => { const r = runFromView(view, view.id); return timelineModel(r, r.endedAt ?? now()); },
  dropConnection() { session?.attempt?.abort(); },
};

token = readToken();
if (token) start();
else needToken("");
