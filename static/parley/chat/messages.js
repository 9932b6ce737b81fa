// The message list: bubbles, streamed answers, citations, feedback, inline errors and notes.
//
// The list element is an ARIA live region (role="log", polite). A streaming answer's body is
// aria-hidden while tokens arrive and is swapped for a fresh, visible node when the answer is done,
// so a screen reader announces each finished answer once instead of every token.

import { renderMarkdown, safeUrl } from "./markdown.js";
import { t } from "./i18n.js";

const STICKY_PX = 80; // follow new content only if the visitor is already near the bottom

const ICONS = {
  up: "M7 10v11H3V10h4zm2 11h8.3a2 2 0 0 0 2-1.6l1.4-7A2 2 0 0 0 18.7 10H14V5.5A2.5 2.5 0 0 0 11.5 3L9 10v11z",
  down: "M17 14V3h4v11h-4zm-2-11H6.7a2 2 0 0 0-2 1.6l-1.4 7A2 2 0 0 0 5.3 14H10v4.5a2.5 2.5 0 0 0 2.5 2.5L15 14V3z",
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
  svg.appendChild(path);
  return svg;
}

function srOnly(text) {
  return el("span", "sr-only", text);
}

// Sources without a usable address (FAQ entries have none) are kept: they are named, just not linked.
function citationMap(citations) {
  const map = new Map();
  for (const c of citations || []) {
    if (c && Number.isInteger(c.n)) map.set(c.n, { title: String(c.title || ""), url: safeUrl(c.url) || "" });
  }
  return map;
}

export class MessageList {
  /** root: the role="log" element. hooks: {botName, onFeedback(id, value) -> bool, onRetry()} */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    this.bots = new Map(); // String(message id) -> bot message state
    this.pending = new Map(); // client_id -> {text, node}
    this.typingNode = null;
    this.retryNode = null;
    this.renderQueued = new Set();
    // When the list shrinks (the composer grows, a phone keyboard opens), stay at the bottom if we were.
    this.pinned = true;
    root.addEventListener("scroll", () => (this.pinned = this.nearBottom()), { passive: true });
    new ResizeObserver(() => {
      if (this.pinned) root.scrollTop = root.scrollHeight;
    }).observe(root);
  }

  nearBottom() {
    const r = this.root;
    return r.scrollHeight - r.scrollTop - r.clientHeight < STICKY_PX;
  }

  // Runs a DOM change and keeps the list pinned to the bottom if it was.
  update(change) {
    const stick = this.nearBottom();
    const result = change();
    if (stick) this.root.scrollTop = this.root.scrollHeight;
    return result;
  }

  append(node) {
    // The typing indicator always stays last.
    this.root.insertBefore(node, this.typingNode && this.typingNode.parentNode ? this.typingNode : null);
    return node;
  }

  /** Replaces the whole list (the greeting, then the server's messages) without announcing history. */
  reset(greeting, messages) {
    this.root.setAttribute("aria-live", "off");
    this.root.replaceChildren();
    this.bots.clear();
    this.typingNode = null;
    this.retryNode = null;
    if (greeting) this.addBot(null, greeting, { status: "complete", greeting: true });
    for (const m of messages || []) {
      if (m.role === "visitor") this.addVisitor(m.text, {});
      else if (m.role === "staff") this.addStaff(m.staff_name, m.text);
      else this.addBot(m.id, m.text, m);
    }
    this.root.scrollTop = this.root.scrollHeight;
    setTimeout(() => this.root.setAttribute("aria-live", "polite"), 300);
  }

  addVisitor(text, { clientId }) {
    const sent = this.update(() => {
      const node = el("div", "msg msg-visitor");
      const body = el("div", "msg-body");
      body.append(srOnly(`${t("you")}: `));
      body.append(el("div", "bubble bubble-plain", text));
      node.append(body);
      if (clientId) {
        node.classList.add("is-pending");
        this.pending.set(clientId, { text, node });
      }
      return this.append(node);
    });
    if (clientId) this.root.scrollTop = this.root.scrollHeight; // one's own message is always brought into view
    return sent;
  }

  markAcked(clientId) {
    const entry = this.pending.get(clientId);
    if (!entry) return;
    entry.node.classList.remove("is-pending");
    this.pending.delete(clientId);
  }

  /** Marks every message still waiting for its ack as not sent, with a Retry. */
  failPending() {
    for (const [clientId, { node }] of this.pending) {
      node.classList.remove("is-pending");
      node.classList.add("is-failed");
      node.append(el("p", "msg-note msg-note-error", t("notSent")));
      this.pending.delete(clientId);
    }
  }

  /** Texts of the messages still waiting for their ack (forgotten here). */
  takePending() {
    const texts = [...this.pending.values()].map((p) => p.text);
    this.pending.clear();
    return texts;
  }

  /** A visitor message the server never saved, with a Retry that sends it again. */
  addUnsent(text) {
    const node = this.addVisitor(text, {});
    node.classList.add("is-failed");
    node.append(el("p", "msg-note msg-note-error", t("notSent")), this.retryButton(text));
  }

  showTyping() {
    if (this.typingNode) return;
    this.update(() => {
      const node = el("div", "msg msg-bot msg-typing");
      const bubble = el("div", "bubble");
      const dots = el("span", "dots");
      dots.setAttribute("aria-hidden", "true");
      dots.append(el("i"), el("i"), el("i"));
      bubble.append(dots, srOnly(t("typing", { name: this.hooks.botName() })));
      node.append(bubble);
      this.root.append(node);
      this.typingNode = node;
    });
  }

  hideTyping() {
    this.typingNode?.remove();
    this.typingNode = null;
  }

  /** A bot message, streaming (tokens follow) or finished. */
  addBot(id, text, { status = "complete", citations = [], feedback = null, greeting = false } = {}) {
    const node = el("div", "msg msg-bot");
    const state = { id, node, text: text || "", status, feedback, citations: citationMap(citations), greeting };
    if (id !== null && id !== undefined) {
      node.dataset.id = String(id);
      this.bots.set(String(id), state);
    }
    this.update(() => {
      this.append(node);
      if (status === "streaming") this.renderStreaming(state);
      else this.renderFinal(state);
    });
    return state;
  }

  appendToken(id, text) {
    let state = this.bots.get(String(id));
    if (!state) {
      this.hideTyping();
      state = this.addBot(id, "", { status: "streaming" });
    } else if (state.status !== "streaming") {
      return;
    }
    state.text += text;
    this.scheduleRender(state);
  }

  // Coalesce token frames to one render per animation frame.
  scheduleRender(state) {
    if (this.renderQueued.has(state)) return;
    this.renderQueued.add(state);
    requestAnimationFrame(() => {
      this.renderQueued.delete(state);
      if (state.status === "streaming") this.update(() => this.renderStreaming(state));
    });
  }

  renderStreaming(state) {
    let body = state.node.querySelector(".msg-body");
    if (!body) {
      body = el("div", "msg-body");
      body.setAttribute("aria-hidden", "true");
      body.append(el("div", "bubble is-streaming"));
      state.node.replaceChildren(body);
    }
    renderMarkdown(body.firstChild, state.text, { citations: state.citations, citeLabel: citeLabel });
  }

  finishBot(id, { status, text, citations }) {
    let state = this.bots.get(String(id));
    if (!state) state = this.addBot(id, "", { status: "streaming" });
    this.hideTyping();
    state.status = status || "complete";
    if (typeof text === "string") state.text = text;
    state.citations = citationMap(citations);
    this.update(() => this.renderFinal(state));
  }

  renderFinal(state) {
    const body = el("div", "msg-body");
    if (!state.greeting) body.append(srOnly(`${this.hooks.botName()}: `));
    if (state.text || state.status === "complete") {
      const bubble = el("div", "bubble");
      renderMarkdown(bubble, state.text, { citations: state.citations, citeLabel: citeLabel });
      body.append(bubble);
    }
    // An answer from the documentation (retrieval_only) says what it is in its own text.
    const note = { stopped: "stopped", error: "answerFailed" }[state.status];
    if (note) body.append(el("p", `msg-note${state.status === "error" ? " msg-note-error" : ""}`, t(note)));
    if (state.status === "error") body.append(this.retryButton());
    if (state.citations.size) body.append(this.renderCitations(state.citations));
    if (!state.greeting && state.id != null && state.status !== "error") body.append(this.renderFeedback(state));
    state.node.replaceChildren(body);
  }

  renderCitations(citations) {
    const wrap = el("div", "citations");
    const heading = el("p", "citations-title", t("sources"));
    heading.id = `sources-${Math.random().toString(36).slice(2)}`;
    const list = el("ol");
    list.setAttribute("aria-labelledby", heading.id);
    for (const [n, source] of [...citations].sort((a, b) => a[0] - b[0])) {
      const li = el("li");
      li.value = n;
      if (source.url) {
        const a = el("a", "", source.title || new URL(source.url).hostname);
        a.href = source.url;
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        li.append(a);
      } else {
        li.append(el("span", "", source.title || `[${n}]`));
      }
      list.append(li);
    }
    wrap.append(heading, list);
    return wrap;
  }

  renderFeedback(state) {
    const group = el("div", "feedback");
    group.setAttribute("role", "group");
    const thanks = el("span", "feedback-thanks");
    const buttons = {};
    for (const [value, label] of [["up", t("helpful")], ["down", t("notHelpful")]]) {
      const button = el("button", `icon-button feedback-${value}`);
      button.type = "button";
      button.setAttribute("aria-label", label);
      button.title = label;
      button.setAttribute("aria-pressed", String(state.feedback === value));
      button.append(icon(value));
      button.addEventListener("click", () => {
        if (state.feedback === value || !this.hooks.onFeedback(state.id, value)) return;
        state.feedback = value;
        for (const [v, b] of Object.entries(buttons)) b.setAttribute("aria-pressed", String(v === value));
        thanks.textContent = t("feedbackThanks");
      });
      buttons[value] = button;
      group.append(button);
    }
    group.append(thanks);
    return group;
  }

  /** Removes the Retry button: once the visitor asks something new, the old question is stale. */
  clearRetry() {
    this.retryNode?.remove();
    this.retryNode = null;
  }

  // Only the most recent Retry stays; an older one would resend a stale question.
  retryButton(text) {
    this.clearRetry();
    const button = el("button", "retry-button", t("retry"));
    button.type = "button";
    button.addEventListener("click", () => {
      button.remove();
      this.retryNode = null;
      this.hooks.onRetry(text);
    });
    this.retryNode = button;
    return button;
  }

  addStaff(name, text) {
    this.update(() => {
      const node = el("div", "msg msg-staff");
      const body = el("div", "msg-body");
      const author = el("p", "msg-author", name || t("staffDefault"));
      const bubble = el("div", "bubble");
      renderMarkdown(bubble, text || "", { anyHost: true }); // a person wrote it, not the model
      body.append(author, bubble);
      node.append(body);
      this.append(node);
    });
  }

  addNote(text) {
    this.update(() => this.append(el("p", "msg-system", text)));
  }

  addError(message, retryable) {
    this.hideTyping();
    this.update(() => {
      const node = el("div", "msg msg-error");
      node.append(el("p", "msg-error-text", message || t("genericError")));
      if (retryable) node.append(this.retryButton());
      this.append(node);
    });
  }

  /** Whether some bot answer is still streaming. */
  isStreaming() {
    for (const state of this.bots.values()) if (state.status === "streaming") return true;
    return false;
  }
}

function citeLabel(n, title) {
  return t("source", { n, title });
}
