// A small markdown renderer for the model's text, which is untrusted: it builds DOM nodes and sets only
// textContent and a few fixed attributes, never innerHTML, so no text can become markup. Links keep
// their text and get an href only for http(s) URLs. Made for text that is still streaming: an
// unterminated code fence runs to the end, a half-written emphasis stays plain.
//
// Blocks: ATX headings, fenced code (``` or ~~~), block quotes, flat bulleted and numbered lists,
// thematic breaks, paragraphs. Inline: `code`, **strong**, __strong__, *em*, _em_, [text](url).

const el = (tag, className) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
};

const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
const BULLET = /^(\s*)[-*+]\s+(.*)$/;
const NUMBERED = /^(\s*)(\d{1,9})[.)]\s+(.*)$/;

/** The markdown `text` as a DocumentFragment. */
export function renderMarkdown(text) {
  const out = document.createDocumentFragment();
  const lines = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i += 1; continue; }
    let m;
    if ((m = FENCE.exec(line))) {
      const close = new RegExp(`^\\s{0,3}${m[1][0] === "`" ? "`" : "~"}{${m[1].length},}\\s*$`);
      const body = [];
      for (i += 1; i < lines.length && !close.test(lines[i]); i += 1) body.push(lines[i]);
      i += 1; // the closing fence (or the end)
      const pre = el("pre", "md-code");
      const code = el("code");
      if (m[2]) pre.dataset.lang = m[2];
      code.textContent = body.join("\n");
      pre.append(code);
      out.append(pre);
    } else if ((m = HEADING.exec(line))) {
      const h = el(`h${Math.min(6, m[1].length + 2)}`, "md-h");
      inline(h, m[2]);
      out.append(h);
      i += 1;
    } else if (RULE.test(line)) {
      out.append(el("hr"));
      i += 1;
    } else if (QUOTE.test(line)) {
      const body = [];
      for (; i < lines.length && (m = QUOTE.exec(lines[i])); i += 1) body.push(m[1]);
      const quote = el("blockquote");
      quote.append(renderMarkdown(body.join("\n")));
      out.append(quote);
    } else if (BULLET.test(line) || NUMBERED.test(line)) {
      const numbered = !BULLET.test(line);
      const list = el(numbered ? "ol" : "ul");
      if (numbered) list.start = Number(NUMBERED.exec(line)[2]);
      let item = null;
      for (; i < lines.length; i += 1) {
        const cur = lines[i];
        const mm = numbered ? NUMBERED.exec(cur) : BULLET.exec(cur);
        if (mm) {
          item = el("li");
          if (mm[1].length >= 2) item.className = "md-nested";
          inline(item, numbered ? mm[3] : mm[2]);
          list.append(item);
        } else if (cur.trim() && /^\s+/.test(cur) && item) {
          item.append(" ");
          inline(item, cur.trim()); // a continuation line of the item
        } else break;
      }
      out.append(list);
    } else {
      const body = [];
      for (; i < lines.length; i += 1) {
        const cur = lines[i];
        if (!cur.trim() || FENCE.test(cur) || HEADING.test(cur) || RULE.test(cur) || QUOTE.test(cur)) break;
        if (body.length && (BULLET.test(cur) || NUMBERED.test(cur))) break;
        body.push(cur.trim());
      }
      const p = el("p");
      inline(p, body.join(" "));
      out.append(p);
    }
  }
  return out;
}

const SAFE_URL = /^https?:\/\/[^\s]+$/i;

/** Inline markup of `text`, appended to `parent`. */
function inline(parent, text) {
  let rest = text;
  let plain = "";
  const flush = () => {
    if (plain) parent.append(document.createTextNode(plain));
    plain = "";
  };
  while (rest) {
    let m;
    if ((m = /^(`+)([\s\S]*?[^`])\1(?!`)/.exec(rest))) {
      flush();
      const code = el("code");
      code.textContent = m[2].trim() || m[2];
      parent.append(code);
    } else if ((m = /^(\*\*|__)(?=\S)([\s\S]*?\S)\1/.exec(rest))) {
      flush();
      const strong = el("strong");
      inline(strong, m[2]);
      parent.append(strong);
    } else if ((m = /^(\*|_)(?=\S)([\s\S]*?\S)\1(?![\w*])/.exec(rest)) && (m[1] === "*" || !/\w$/.test(plain))) {
      flush();
      const em = el("em");
      inline(em, m[2]);
      parent.append(em);
    } else if ((m = /^\[([^\]\n]+)\]\(([^()\s]*)\)/.exec(rest))) {
      flush();
      if (SAFE_URL.test(m[2])) {
        const a = el("a");
        a.href = m[2];
        a.rel = "noopener noreferrer nofollow";
        a.target = "_blank";
        a.title = m[2];
        inline(a, m[1]);
        parent.append(a);
      } else {
        plain += m[0]; // not a web URL (javascript:, data:, relative...): shown as written
        rest = rest.slice(m[0].length);
        continue;
      }
    } else {
      // Plain text up to the next character that may start markup (at least one character).
      m = /^[\s\S][^`*_[]*/.exec(rest);
      plain += m[0];
      rest = rest.slice(m[0].length);
      continue;
    }
    rest = rest.slice(m[0].length);
  }
  flush();
}
