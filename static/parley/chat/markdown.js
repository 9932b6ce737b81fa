// A small, safe Markdown renderer for model and staff text.
//
// Safety: the output is built only with createElement / createTextNode / setAttribute on a fixed set of
// elements and attributes; model text never reaches innerHTML. Link targets must parse as absolute
// http:, https: or mailto: URLs, anything else renders as plain text.
//
// Speed: renderMarkdown(container, src) keeps the source of each top-level block it rendered in that
// container and reuses the DOM of unchanged blocks, so re-rendering a streaming answer on every token
// batch only rebuilds its last block or two.
//
// Supported: paragraphs, line breaks (a single newline is a <br>, as in chat), **bold**/__bold__,
// *italic*/_italic_, `code`, fenced code blocks, # headings, - / * / + and 1. lists (nested by
// indentation), > quotes, --- rules, | tables | (a header row, a |---| row, body rows), [text](url), <url>,
// bare http(s) URLs, citation markers [1], [1, 2].

const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

// The second layer under the server's output guard (chatbot/answers/guard.py): the hosts links in rendered text
// may point at (each with its subdomains), from the chat page's config. null: any host (a page that gave none).
let linkHosts = null;

/** Links in text rendered from now on may only go to these hosts and their subdomains. */
export function setLinkHosts(hosts) {
  linkHosts = Array.isArray(hosts)
    ? hosts.map((host) => String(host).toLowerCase().replace(/^www\./, "")).filter(Boolean)
    : null;
}

// The host a link would take the visitor to (a mailto: link's address domain), as the browser parsed it.
function linkHostAllowed(href) {
  if (linkHosts === null) return true;
  const url = new URL(href);
  const host = (url.protocol === "mailto:" ? url.pathname.split("?")[0].split("@").pop() : url.hostname)
    .toLowerCase()
    .replace(/\.$/, "")
    .replace(/^www\./, "");
  return Boolean(host) && linkHosts.some((allowed) => host === allowed || host.endsWith(`.${allowed}`));
}

// The href for a link in rendered text: a safe URL to an allowed host (any host with ctx.anyHost), else null.
function linkHref(raw, ctx) {
  const href = safeUrl(raw);
  return href && (ctx.anyHost || linkHostAllowed(href)) ? href : null;
}

/** The normalised URL if it is an absolute http(s)/mailto URL, otherwise null. */
export function safeUrl(raw) {
  if (typeof raw !== "string") return null;
  let url;
  try {
    // The URL parser strips the tabs/newlines and resolves the escapes that "java\tscript:" tricks rely on.
    url = new URL(raw.trim());
  } catch {
    return null;
  }
  return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
}

const RE_FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)/;
const RE_HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RE_RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const RE_QUOTE = /^ {0,3}> ?/;
const RE_ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])([ \t]+|$)/;
const RE_BLANK = /^\s*$/;
const RE_TABLE_ROW = /^ {0,3}\|.*\|\s*$/;
const RE_TABLE_DELIMITER = /^ {0,3}\|(?:\s*:?-+:?\s*\|)+\s*$/;

// The cells of a "| a | b |" row (a backslash keeps a "|" in a cell).
function tableCells(line) {
  return line.trim().replace(/^\|/, "").replace(/\|$/, "").split(/(?<!\\)\|/).map((cell) => cell.trim());
}

function startsBlock(line) {
  return RE_FENCE.test(line) || RE_HEADING.test(line) || RE_RULE.test(line) || RE_QUOTE.test(line) ||
    RE_ITEM.test(line);
}

// Splits lines into top-level blocks: [{type, lines, ...}]. `raw` identifies a block for DOM reuse.
function parseBlocks(lines) {
  const blocks = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (RE_BLANK.test(line)) {
      i++;
      continue;
    }
    let m;
    if ((m = RE_FENCE.exec(line))) {
      const fence = m[1];
      const closer = new RegExp(`^ {0,3}${fence[0] === "`" ? "`" : "~"}{${fence.length},}\\s*$`);
      const body = [];
      let j = i + 1;
      while (j < lines.length && !closer.test(lines[j])) body.push(lines[j++]);
      blocks.push({ type: "code", lang: m[2], text: body.join("\n"), raw: lines.slice(i, j + 1).join("\n") });
      i = j + 1;
      continue;
    }
    if ((m = RE_HEADING.exec(line))) {
      blocks.push({ type: "heading", level: m[1].length, text: m[2] || "", raw: line });
      i++;
      continue;
    }
    if (RE_RULE.test(line)) {
      blocks.push({ type: "rule", raw: line });
      i++;
      continue;
    }
    if (RE_QUOTE.test(line)) {
      const body = [];
      let j = i;
      while (j < lines.length && RE_QUOTE.test(lines[j])) body.push(lines[j++].replace(RE_QUOTE, ""));
      blocks.push({ type: "quote", children: parseBlocks(body), raw: lines.slice(i, j).join("\n") });
      i = j;
      continue;
    }
    if (RE_TABLE_ROW.test(line) && i + 1 < lines.length && RE_TABLE_DELIMITER.test(lines[i + 1])) {
      let j = i + 2;
      while (j < lines.length && RE_TABLE_ROW.test(lines[j])) j++;
      blocks.push({
        type: "table",
        header: tableCells(line),
        rows: lines.slice(i + 2, j).map(tableCells),
        raw: lines.slice(i, j).join("\n"),
      });
      i = j;
      continue;
    }
    if ((m = RE_ITEM.exec(line))) {
      const j = parseList(lines, i, blocks);
      i = j;
      continue;
    }
    const body = [line];
    let j = i + 1;
    while (j < lines.length && !RE_BLANK.test(lines[j]) && !startsBlock(lines[j])) body.push(lines[j++]);
    blocks.push({ type: "para", text: body.map((l) => l.trim()).join("\n"), raw: body.join("\n") });
    i = j;
  }
  return blocks;
}

function parseList(lines, start, blocks) {
  const first = RE_ITEM.exec(lines[start]);
  const ordered = /\d/.test(first[2]);
  const baseIndent = first[1].length;
  const items = [];
  let i = start;
  while (i < lines.length) {
    const m = RE_ITEM.exec(lines[i]);
    if (!m || /\d/.test(m[2]) !== ordered || m[1].length > baseIndent + 1) break;
    const contentIndent = m[1].length + m[2].length + Math.max(1, Math.min(m[3].length, 4));
    const body = [lines[i].slice(m[0].length)];
    let j = i + 1;
    while (j < lines.length) {
      const l = lines[j];
      if (RE_BLANK.test(l)) {
        // A blank line continues the item only if indented content follows.
        let k = j + 1;
        while (k < lines.length && RE_BLANK.test(lines[k])) k++;
        if (k < lines.length && indentOf(lines[k]) >= Math.min(contentIndent, baseIndent + 2)) {
          for (; j < k; j++) body.push("");
          continue;
        }
        break;
      }
      const indent = indentOf(l);
      if (indent >= Math.min(contentIndent, baseIndent + 2)) {
        body.push(l.slice(Math.min(indent, contentIndent)));
      } else if (!startsBlock(l) && !RE_BLANK.test(body[body.length - 1])) {
        body.push(l.trim()); // lazy paragraph continuation
      } else {
        break;
      }
      j++;
    }
    items.push(parseBlocks(body));
    i = j;
    // Blank lines between items keep the list going.
    let k = i;
    while (k < lines.length && RE_BLANK.test(lines[k])) k++;
    if (k < lines.length && k > i) {
      const next = RE_ITEM.exec(lines[k]);
      if (next && /\d/.test(next[2]) === ordered && next[1].length <= baseIndent + 1) i = k;
    }
  }
  blocks.push({
    type: "list",
    ordered,
    start: ordered ? parseInt(first[2], 10) : 1,
    items,
    tight: !lines.slice(start, i).some((l) => RE_BLANK.test(l)),
    raw: lines.slice(start, i).join("\n"),
  });
  return i;
}

function indentOf(line) {
  let n = 0;
  for (const ch of line) {
    if (ch === " ") n++;
    else if (ch === "\t") n += 4;
    else break;
  }
  return n;
}

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

function renderBlock(block, ctx) {
  switch (block.type) {
    case "para": {
      const p = el("p");
      renderInline(block.text, p, ctx);
      return p;
    }
    case "heading": {
      // Inside a chat bubble, Markdown "#" is a section title, not the page title.
      const h = el(`h${Math.min(6, block.level + 2)}`);
      renderInline(block.text, h, ctx);
      return h;
    }
    case "code": {
      const pre = el("pre");
      const code = el("code");
      const lang = /^[\w+#.-]{1,20}$/.test(block.lang) ? block.lang : "";
      if (lang) code.dataset.lang = lang;
      code.textContent = block.text;
      pre.appendChild(code);
      return pre;
    }
    case "rule":
      return el("hr");
    case "table": {
      const wrap = el("div", "table-wrap");
      const table = el("table");
      const head = el("thead");
      const headRow = el("tr");
      for (const cell of block.header) {
        const th = el("th");
        renderInline(cell, th, ctx);
        headRow.appendChild(th);
      }
      head.appendChild(headRow);
      const body = el("tbody");
      for (const row of block.rows) {
        const tr = el("tr");
        block.header.forEach((_, index) => {
          const td = el("td");
          renderInline(row[index] ?? "", td, ctx);
          tr.appendChild(td);
        });
        body.appendChild(tr);
      }
      table.append(head, body);
      wrap.appendChild(table);
      return wrap;
    }
    case "quote": {
      const q = el("blockquote");
      for (const child of block.children) q.appendChild(renderBlock(child, ctx));
      return q;
    }
    case "list": {
      const list = el(block.ordered ? "ol" : "ul");
      if (block.ordered && block.start !== 1) list.setAttribute("start", String(block.start));
      for (const item of block.items) {
        const li = el("li");
        for (const child of item) {
          // A tight list (no blank lines) keeps its text out of <p> wrappers.
          if (child.type === "para" && block.tight) renderInline(child.text, li, ctx);
          else li.appendChild(renderBlock(child, ctx));
        }
        list.appendChild(li);
      }
      return list;
    }
    default:
      return document.createTextNode("");
  }
}

const PUNCT = /[!-/:-@[-`{-~]/;
const RE_CITE = /^\[(\d{1,3}(?:[ \t]*,[ \t]*\d{1,3})*)\](?!\()/;
const RE_AUTOLINK = /^<((?:https?|mailto):[^\s<>]+)>/i;
const RE_AUTOMAIL = /^<([\w.+-]+@[\w-]+(?:\.[\w-]+)+)>/;
const RE_BARE_URL = /^https?:\/\/[^\s<>"]+/i;
const WORD = /[\p{L}\p{N}]/u;

function link(href, parent, label) {
  const a = el("a");
  a.setAttribute("href", href);
  a.setAttribute("target", "_blank");
  a.setAttribute("rel", "noopener noreferrer nofollow");
  if (label !== undefined) a.textContent = label;
  parent.appendChild(a);
  return a;
}

// Index of the ")" closing the "(" at `open`, honouring nesting; -1 if none.
function matchParen(text, open, openCh = "(", closeCh = ")") {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const ch = text[i];
    if (ch === "\\") i++;
    else if (ch === openCh) depth++;
    else if (ch === closeCh && --depth === 0) return i;
    else if (ch === "\n" && openCh === "(") return -1;
  }
  return -1;
}

// Strips trailing punctuation a sentence put after a bare URL (keeping balanced parentheses).
function trimUrl(url) {
  for (;;) {
    const last = url[url.length - 1];
    if (/[.,;:!?'"*_]/.test(last)) url = url.slice(0, -1);
    else if (last === ")" && (url.match(/\(/g) || []).length < (url.match(/\)/g) || []).length) {
      url = url.slice(0, -1);
    } else return url;
  }
}

// Position of the delimiter closing an emphasis whose content starts at `from`, or -1.
// A run of the delimiter character closes on its last one or two characters ("***" ends both an
// em and a strong); a "**" run never closes a single "*" (it belongs to a nested strong).
function findCloser(text, delim, from) {
  const ch = delim[0];
  let j = from;
  while ((j = text.indexOf(ch, j)) >= 0) {
    let run = 1;
    while (text[j + run] === ch) run++;
    let at = -1;
    if (run === delim.length) at = j;
    else if (run >= 3) at = j + run - delim.length;
    if (at > from && !/\s/.test(text[at - 1]) && !(ch === "_" && WORD.test(text[at + delim.length] || ""))) {
      return at;
    }
    j += run;
  }
  return -1;
}

/** Renders inline Markdown `text` into `parent`. ctx.noLinks stops links nesting inside links. */
export function renderInline(text, parent, ctx = {}) {
  let buf = "";
  const flush = () => {
    if (buf) parent.appendChild(document.createTextNode(buf));
    buf = "";
  };
  let i = 0;
  const n = text.length;
  while (i < n) {
    const ch = text[i];
    const rest = () => text.slice(i, i + 2048);
    if (ch === "\\" && i + 1 < n && PUNCT.test(text[i + 1])) {
      buf += text[i + 1];
      i += 2;
      continue;
    }
    if (ch === "\n") {
      flush();
      parent.appendChild(el("br"));
      i++;
      continue;
    }
    if (ch === "`") {
      let run = 1;
      while (text[i + run] === "`") run++;
      const ticks = "`".repeat(run);
      let close = text.indexOf(ticks, i + run);
      while (close >= 0 && text[close + run] === "`") close = text.indexOf(ticks, close + run + 1);
      if (close >= 0) {
        flush();
        const code = el("code");
        let body = text.slice(i + run, close).replace(/\n/g, " ");
        if (/^ .*[^ ].* $/.test(body)) body = body.slice(1, -1);
        code.textContent = body;
        parent.appendChild(code);
        i = close + run;
        continue;
      }
      buf += ticks;
      i += run;
      continue;
    }
    if (ch === "*" || ch === "_") {
      const double = text[i + 1] === ch;
      const delim = double ? ch + ch : ch;
      const after = text[i + delim.length];
      const before = i > 0 ? text[i - 1] : "";
      const canOpen = after && !/\s/.test(after) && !(ch === "_" && before && WORD.test(before));
      if (canOpen) {
        const close = findCloser(text, delim, i + delim.length);
        if (close > i + delim.length) {
          flush();
          const node = el(double ? "strong" : "em");
          renderInline(text.slice(i + delim.length, close), node, ctx);
          parent.appendChild(node);
          i = close + delim.length;
          continue;
        }
      }
      buf += delim;
      i += delim.length;
      continue;
    }
    if (ch === "[") {
      const cite = RE_CITE.exec(rest());
      if (cite) {
        flush();
        renderCitations(cite[1], parent, ctx);
        i += cite[0].length;
        continue;
      }
      const closeBracket = matchParen(text, i, "[", "]");
      if (closeBracket > i && text[closeBracket + 1] === "(") {
        const closeParen = matchParen(text, closeBracket + 1);
        if (closeParen > 0) {
          const label = text.slice(i + 1, closeBracket);
          // [text](url "title"): the title is dropped.
          const target = text.slice(closeBracket + 2, closeParen).trim().replace(/\s+(["']).*\1$/, "");
          const href = ctx.noLinks ? null : linkHref(target.replace(/^<(.*)>$/, "$1"), ctx);
          flush();
          const host = href ? link(href, parent) : parent;
          renderInline(label, host, { ...ctx, noLinks: true });
          i = closeParen + 1;
          continue;
        }
      }
    }
    if (ch === "<" && !ctx.noLinks) {
      const m = RE_AUTOLINK.exec(rest()) || RE_AUTOMAIL.exec(rest());
      if (m) {
        const href = linkHref(m[1].includes(":") ? m[1] : `mailto:${m[1]}`, ctx);
        if (href) {
          flush();
          link(href, parent, m[1]);
          i += m[0].length;
          continue;
        }
      }
    }
    if ((ch === "h" || ch === "H") && !ctx.noLinks && !(i > 0 && WORD.test(text[i - 1]))) {
      const m = RE_BARE_URL.exec(rest());
      if (m) {
        const url = trimUrl(m[0]);
        const href = linkHref(url, ctx);
        if (href) {
          flush();
          link(href, parent, url);
          i += url.length;
          continue;
        }
      }
    }
    buf += ch;
    i++;
  }
  flush();
}

function renderCitations(list, parent, ctx) {
  const numbers = list.split(",").map((s) => parseInt(s.trim(), 10));
  for (const num of numbers) {
    const source = ctx.citations && ctx.citations.get(num);
    const href = source && safeUrl(source.url);
    if (href) {
      const a = link(href, parent, String(num));
      a.className = "cite";
      const label = ctx.citeLabel ? ctx.citeLabel(num, source.title || href) : `[${num}] ${source.title || href}`;
      a.setAttribute("aria-label", label);
      a.setAttribute("title", source.title || href);
    } else if (source) {
      // A source without a web address (an FAQ entry): numbered like the others, named under the answer.
      const span = el("span", "cite cite-text");
      span.textContent = String(num);
      if (source.title) span.setAttribute("title", source.title);
      parent.appendChild(span);
    } else {
      // Citations arrive with the final frame; until then (or if unknown) show the marker as text.
      const span = el("span", "cite cite-pending");
      span.textContent = `[${num}]`;
      parent.appendChild(span);
    }
  }
}

const rendered = new WeakMap(); // container -> {key, blocks: [{raw, node}]}

/**
 * Renders Markdown `src` into `container`, reusing the DOM of blocks that did not change since the last
 * call on the same container. ctx: {citations: Map<number, {title, url}>, citeLabel(n, title), anyHost: links
 * to any host (text staff wrote), else only to the hosts given to setLinkHosts}.
 */
export function renderMarkdown(container, src, ctx = {}) {
  const key = ctx.citations ? [...ctx.citations].map(([k, v]) => `${k}|${v.url}|${v.title}`).join("\n") : "";
  let state = rendered.get(container);
  if (!state || state.key !== key || state.blocks.some((b) => b.node.parentNode !== container)) {
    container.replaceChildren();
    state = { key, blocks: [] };
    rendered.set(container, state);
  }
  const blocks = parseBlocks(String(src).replace(/\r\n?/g, "\n").split("\n"));
  let same = 0;
  while (same < blocks.length && same < state.blocks.length && state.blocks[same].raw === blocks[same].raw) {
    same++;
  }
  for (const old of state.blocks.slice(same)) old.node.remove();
  const next = state.blocks.slice(0, same);
  for (const block of blocks.slice(same)) {
    const node = renderBlock(block, ctx);
    container.appendChild(node);
    next.push({ raw: block.raw, node });
  }
  state.blocks = next;
}
