// The run's timeline, as SVG: each turn's model stream as a bar with the span of each content block,
// each tool as a bar from ready to started to finished under the block that produced it, the
// message_stop line, and, once the stream has ended, faint bars where the same tools would have run
// "one by one after the stream" and "in parallel after the stream". Drawn from the page's run state
// only (`timelineModel`), so a page rebuilt from a snapshot draws the same picture as one that saw
// every event.

const NS = "http://www.w3.org/2000/svg";
const LABEL_W = 210;
const PAD_R = 110; // room for the notes at the bars' ends
const AXIS_H = 22;
const STREAM_H = 20;
const TOOL_H = 14;
const GHOST_H = 12;
const GAP = 6;
const TURN_GAP = 14;

const r3 = (x) => (x == null ? null : Math.round(x * 1000) / 1000);

/**
 * What the timeline shows, in seconds from the run's start: pure data, so two pages can be compared.
 * `now` (server clock) bounds what is still going on.
 */
export function timelineModel(run, now) {
  const turns = [...run.turns.entries()].filter(([, t]) => t.requestAt != null).sort((a, b) => a[0] - b[0]);
  const t0 = run.createdAt ?? (turns.length ? turns[0][1].requestAt : null);
  if (t0 == null) return { turns: [], end: 0 };
  const rel = (t) => (t == null ? null : r3(t - t0));
  let end = 0;
  const seen = (t) => { if (t != null && t > end) end = t; return t; };
  const live = run.state === "running" ? now - t0 : rel(run.endedAt) ?? now - t0;
  const out = [];
  for (const [n, turn] of turns) {
    const streamEnd = rel(turn.streamEndAt ?? turn.streamClosedAt);
    const stopped = turn.streamEndAt != null;
    const blocks = [...turn.spans.entries()].sort((a, b) => a[0] - b[0]).map(([index, s]) => ({
      index, type: s.type, start: rel(s.start), end: rel(s.end) ?? streamEnd, toolId: s.toolId ?? null,
    }));
    const tools = [...run.tools.values()].filter((t) => t.turn === n)
      .sort((a, b) => (a.index ?? 0) - (b.index ?? 0)).map((t) => {
        const ran = t.started_at != null;
        const finished = rel(t.finished_at);
        return {
          id: t.tool_use_id, name: t.name, index: t.index, status: t.status,
          inputStart: rel(t.input_started_at), ready: rel(t.ready_at), started: rel(t.started_at),
          finished: ran ? finished ?? (t.status === "running" ? r3(live) : null) : null,
        };
      });
    for (const t of tools) seen(t.finished ?? t.started ?? t.ready);
    seen(streamEnd ?? r3(live));
    // The counterfactuals: the same tools (their measured durations, the live one for a running tool)
    // started at message_stop, one after another or all at once.
    const ghosts = { sequential: [], parallel: [] };
    if (stopped && tools.length) {
      let at = streamEnd;
      for (const t of tools) {
        if (t.started == null || t.finished == null) continue;
        const d = Math.max(0, t.finished - t.started);
        ghosts.sequential.push({ id: t.id, start: r3(at), end: r3(at + d) });
        ghosts.parallel.push({ id: t.id, start: streamEnd, end: r3(streamEnd + d) });
        at += d;
      }
      seen(at);
    }
    const done = tools.length && tools.every((t) => t.finished != null || !["running", "queued"].includes(t.status))
      ? Math.max(streamEnd ?? 0, ...tools.map((t) => t.finished ?? 0)) : null;
    out.push({
      turn: n, start: rel(turn.requestAt), end: streamEnd, stopped, streaming: !stopped && streamEnd == null,
      stopReason: turn.stopReason ?? null, blocks, tools, ghosts, done: r3(done),
    });
  }
  return { turns: out, end: r3(Math.max(end, run.state === "running" ? live : 0)) };
}

function niceStep(span, px) {
  const target = span / Math.max(1, px / 90);
  for (const step of [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600]) if (step >= target) return step;
  return 1200;
}

function node(tag, attrs = {}, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) n.setAttribute(k, String(v));
  if (text != null) n.textContent = text;
  return n;
}

const fmt = (s) => (s < 10 ? s.toFixed(2) : s.toFixed(1));

/** Draw `model` into the <svg> `svg`, `width` pixels wide; `titles` maps tool ids to a short label. */
export function drawTimeline(svg, model, width, titles = new Map()) {
  const W = Math.max(560, width);
  const plotW = W - LABEL_W - PAD_R;
  const span = Math.max(1, model.end * 1.03);
  const x = (t) => LABEL_W + (Math.max(0, t) / span) * plotW;
  const w = (a, b) => Math.max(1.5, x(b) - x(a));
  const kids = [];
  let y = AXIS_H;
  const rows = []; // [label, y, height, extra attrs]

  for (const turn of model.turns) {
    const g = node("g", { "data-testid": "tl-turn", "data-turn": turn.turn });
    const top = y;
    // The model stream and its blocks.
    g.append(node("text", { x: 8, y: y + 14, class: "tl-label strong" }, `turn ${turn.turn} · model stream`));
    const streamEnd = turn.end ?? model.end;
    g.append(node("rect", {
      x: x(turn.start), y, width: w(turn.start, streamEnd), height: STREAM_H, rx: 3,
      class: `tl-stream${turn.streaming ? " live" : ""}`, "data-testid": "tl-stream", "data-turn": turn.turn,
    }));
    const blockX = new Map();
    for (const b of turn.blocks) {
      if (b.start == null) continue;
      const end = b.end ?? streamEnd;
      blockX.set(b.index, b);
      const rect = node("rect", {
        x: x(b.start), y: y + 3, width: w(b.start, end), height: STREAM_H - 6, rx: 2,
        class: `tl-block ${b.type === "text" ? "text" : "tool"}`, "data-testid": "tl-block", "data-type": b.type,
        "data-index": b.index,
      });
      rect.append(node("title", {}, `block ${b.index} · ${b.type === "text" ? "text" : "tool_use input"} ` +
        `${fmt(b.start)}–${fmt(end)} s`));
      g.append(rect);
    }
    y += STREAM_H + GAP;
    // One row per tool: its input streaming (under its block), waiting, running.
    for (const t of turn.tools) {
      const row = node("g", { "data-testid": "tl-tool", "data-tool-id": t.id, "data-status": t.status });
      const label = titles.get(t.id);
      row.append(node("text", { x: 16, y: y + 11, class: "tl-label" }, `${t.name}${label ? ` ${label}` : ""}`.slice(0, 34)));
      const inputStart = t.inputStart ?? blockX.get(t.index)?.start;
      const ready = t.ready ?? (t.status === "streaming" ? streamEnd : null);
      if (inputStart != null && (ready ?? streamEnd) != null) {
        row.append(node("rect", {
          x: x(inputStart), y: y + 4, width: w(inputStart, ready ?? streamEnd), height: TOOL_H - 8,
          class: "tl-input", "data-testid": "tl-input",
        }));
      }
      if (t.ready != null) {
        const started = t.started ?? (t.finished == null && !isFinal(t.status) ? model.end : t.ready);
        row.append(node("rect", {
          x: x(t.ready), y: y + 2, width: w(t.ready, started), height: TOOL_H - 4, class: "tl-wait",
          "data-testid": "tl-wait",
        }));
        row.append(node("line", { x1: x(t.ready), x2: x(t.ready), y1: y, y2: y + TOOL_H, class: "tl-ready" }));
      }
      if (t.started != null) {
        const end = t.finished ?? model.end;
        const rect = node("rect", {
          x: x(t.started), y, width: w(t.started, end), height: TOOL_H, rx: 2,
          class: `tl-run ${t.status}`, "data-testid": "tl-run",
        });
        rect.append(node("title", {}, `${t.name}: ready ${fmt(t.ready ?? t.started)} s, started ` +
          `${fmt(t.started)} s${t.finished != null ? `, finished ${fmt(t.finished)} s` : ""}`));
        row.append(rect);
      }
      g.append(row);
      y += TOOL_H + GAP;
    }
    // What the same tools would have cost after the stream.
    const ghostRows = [
      ["sequential", "if one by one after the stream"],
      ["parallel", "if in parallel after the stream"],
    ];
    if (turn.ghosts.sequential.length) {
      for (const [kind, text] of ghostRows) {
        const bars = turn.ghosts[kind];
        const last = Math.max(...bars.map((b) => b.end));
        g.append(node("text", { x: 16, y: y + 10, class: "tl-label ghost-label" }, text));
        for (const b of bars) {
          g.append(node("rect", {
            x: x(b.start), y, width: w(b.start, b.end), height: GHOST_H, rx: 2,
            class: `tl-ghost ${kind}`, "data-testid": "tl-ghost", "data-kind": kind, "data-tool-id": b.id,
          }));
        }
        if (turn.done != null) {
          const later = last - turn.done;
          g.append(node("text", { x: x(last) + 6, y: y + 10, class: "tl-note", "data-testid": "tl-ghost-note" },
            later >= 0 ? `done ${fmt(later)} s later` : `done ${fmt(-later)} s sooner`));
        }
        y += GHOST_H + GAP;
      }
    }
    // message_stop, across the turn's rows; and where its last result landed.
    if (turn.stopped) {
      g.append(node("line", {
        x1: x(turn.end), x2: x(turn.end), y1: top - 4, y2: y - GAP + 2, class: "tl-stop", "data-testid": "tl-stop",
      }));
      g.append(node("text", { x: x(turn.end) + 4, y: top - 5, class: "tl-note stop" },
        `message_stop ${fmt(turn.end)} s${turn.stopReason ? ` (${turn.stopReason})` : ""}`));
    }
    if (turn.done != null && turn.tools.length) {
      g.append(node("line", { x1: x(turn.done), x2: x(turn.done), y1: top + STREAM_H, y2: y - GAP + 2, class: "tl-done" }));
    }
    rows.push([turn.turn, top, y]);
    kids.push(g);
    y += TURN_GAP;
  }

  // The axis, last drawn first.
  const axis = node("g", { class: "tl-axis" });
  const step = niceStep(span, plotW);
  for (let t = 0; t <= span + 1e-9; t += step) {
    axis.append(node("line", { x1: x(t), x2: x(t), y1: AXIS_H - 6, y2: Math.max(y - TURN_GAP, AXIS_H), class: "tl-grid" }));
    axis.append(node("text", { x: x(t), y: 12, class: "tl-tick" }, `${Number(t.toFixed(1))} s`));
  }
  const height = Math.max(y, AXIS_H + 30);
  svg.setAttribute("viewBox", `0 0 ${W} ${height}`);
  svg.setAttribute("width", W);
  svg.setAttribute("height", height);
  svg.replaceChildren(axis, ...kids);
  if (!model.turns.length) {
    svg.append(node("text", { x: LABEL_W, y: AXIS_H + 18, class: "tl-label" }, "waiting for the first model request…"));
  }
}

const FINAL = new Set(["completed", "failed", "cancelled", "refused", "rejected", "missing"]);
const isFinal = (s) => FINAL.has(s);
