// Boots the chat page: reads the config the template embedded (#parley-config), wires the
// connection to the message list and composer, and, when embedded, talks to widget.js.

import { Connection, PROTOCOL, tokenStore } from "./connection.js";
import { setLanguage, t } from "./i18n.js";
import { MessageList } from "./messages.js";
import { Composer, MAX_CHARS, charCount } from "./composer.js";
import { HostBridge, resolveParentOrigin } from "./embed.js";
import { LeadForm } from "./leadform.js";
import { setLinkHosts } from "./markdown.js";

const config = JSON.parse(document.getElementById("parley-config").textContent);
const bot = { ...config.bot };
const params = new URLSearchParams(window.location.search);
const lang = setLanguage(config.lang);
setLinkHosts(config.linkHosts); // links in answers only to the bot's sites, whatever reached the page

const HEX = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i;

// WCAG relative luminance of a #rgb / #rrggbb colour.
function luminance(hex) {
  const h = hex.length === 4 ? [...hex.slice(1)].map((c) => c + c).join("") : hex.slice(1);
  const [r, g, b] = [0, 2, 4].map((i) => {
    const c = parseInt(h.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

function applyColor(color) {
  if (!HEX.test(color || "")) return;
  const root = document.documentElement.style;
  const lum = luminance(color);
  root.setProperty("--bot", color);
  root.setProperty("--on-bot", lum > 0.179 ? "#111827" : "#ffffff");
  // As text, links and focus rings on white the colour needs 4.5:1; a pale brand colour falls back to ink.
  root.setProperty("--bot-ink", 1.05 / (lum + 0.05) >= 4.5 ? color : "#1f2937");
}

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// --- header ---------------------------------------------------------------------------------
applyColor(bot.color);
const avatarImg = document.querySelector("#bot-avatar img");
avatarImg?.addEventListener("error", () => avatarImg.remove()); // the initial letter behind shows
const closeButton = document.getElementById("close-button");
closeButton.setAttribute("aria-label", t("close"));
closeButton.title = t("close");
const newConversationButton = document.getElementById("new-conversation-button");
newConversationButton.setAttribute("aria-label", t("newConversation"));
newConversationButton.title = t("newConversation");
document.getElementById("messages").setAttribute("aria-label", t("messages"));

// --- a verified visitor (docs/widget.md): the host page's logged-in user ------------------------
// From the loader: in this page's #fragment (never sent to a server in a URL), or later by parley:identify.
function identityFrom(value) {
  if (!value || typeof value !== "object" || typeof value.user_id !== "string" || !value.user_id) return null;
  const text = (v) => (typeof v === "string" ? v : "");
  return { user_id: value.user_id, user_hash: text(value.user_hash), email: text(value.email), name: text(value.name) };
}

let identity = null;
try {
  const fragment = new URLSearchParams(window.location.hash.slice(1)).get("identity");
  identity = fragment ? identityFrom(JSON.parse(fragment)) : null;
} catch {
  identity = null; // a mangled fragment: anonymous
}
let verifiedVisitor = null; // {name, email} from `ready`, for the lead form

function identify(value) {
  const next = identityFrom(value);
  if (JSON.stringify(next) === JSON.stringify(identity)) return;
  identity = next;
  // Say hello again on the open socket: the server switches to that user's conversation (or an anonymous one).
  connection.sendRaw({ type: "hello", protocol: PROTOCOL, visitor_token: connection.tokens.get(), ...helloFields() });
}

// --- embedding --------------------------------------------------------------------------------
let visible = !config.embed;
let unread = 0;

const bridge = new HostBridge(config.embed ? resolveParentOrigin(config.parentOrigin) : null, {
  "parley:open": (data) => {
    visible = true;
    setUnread(0);
    connection.connect(); // no-op when already connected
    if (data.focus !== false) composer.focus();
  },
  "parley:hidden": () => {
    visible = false;
  },
  "parley:identify": (data) => identify(data.identity),
});
document.body.classList.toggle("is-embed", bridge.active);
closeButton.hidden = !bridge.active;
closeButton.addEventListener("click", () => bridge.post("parley:close"));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && bridge.active) bridge.post("parley:close");
});

function setUnread(n) {
  if (n === unread) return;
  unread = n;
  bridge.post("parley:unread", { unread });
}

function countUnread() {
  if (!visible) setUnread(unread + 1);
}

// --- conversation -----------------------------------------------------------------------------
let lastVisitorText = null;

const list = new MessageList(document.getElementById("messages"), {
  botName: () => bot.name,
  onFeedback: (id, value) => connection.send({ type: "feedback", message_id: id, value }),
  onRetry: (text = lastVisitorText) => {
    if (text) sendMessage(text);
  },
});

const composer = new Composer(document.getElementById("composer"), {
  onSend: sendMessage,
  onStop: () => connection.send({ type: "stop" }),
  onHandoff: () => {
    if (connection.send({ type: "handoff_request" })) composer.setHandoffPending(true);
  },
});

// --- a new conversation: the transcript is cleared when the server's `ready` for it arrives -----------------------
// The server stops an answer still streaming; the conversation left stays, for staff, and is not shown again.
let startingOver = false;

newConversationButton.addEventListener("click", () => {
  if (startingOver || !connection.send({ type: "new_conversation" })) return;
  startingOver = true;
  refreshNewConversationButton();
});

function refreshNewConversationButton() {
  newConversationButton.disabled = startingOver || !connection.ready;
}

function sendMessage(text) {
  if (startingOver || !text || charCount(text) > MAX_CHARS) return false;
  const clientId = randomId();
  if (!connection.send({ type: "message", text, client_id: clientId })) return false;
  lastVisitorText = text;
  list.clearRetry();
  list.addVisitor(text, { clientId });
  list.showTyping();
  composer.setStreaming(true);
  return true;
}

// --- lead form (inline, one at a time) ------------------------------------------------------------
let leadForm = null;

function showLeadForm(frame) {
  // One the visitor is filling in stays as it is; a new offer only brings it back into view.
  if (leadForm?.open) return keepLeadFormLast();
  leadForm = new LeadForm(frame, {
    prefill: verifiedVisitor,
    onSubmit: (fields) => connection.send({ type: "lead_submit", fields }),
    onDismiss: () => {
      connection.send({ type: "lead_dismiss" });
      leadForm = null;
    },
  });
  list.update(() => list.append(leadForm.node));
  countUnread();
}

// An answer that finishes below an open form pushes it up: move the form back to the end, unless the visitor
// is typing in it (moving it would take their focus away).
function keepLeadFormLast() {
  if (!leadForm?.open || leadForm.node.contains(document.activeElement)) return;
  list.update(() => list.append(leadForm.node));
}

function syncStreaming() {
  composer.setStreaming(list.isStreaming() || Boolean(list.typingNode));
}

const statusLine = document.getElementById("connection-status");
let statusTimer = null;

function showStatus(status) {
  clearTimeout(statusTimer);
  composer.setConnected(status === "open");
  if (status !== "open") startingOver = false; // a reconnect's `hello` says which conversation goes on
  refreshNewConversationButton();
  if (status === "open") {
    statusLine.hidden = true;
    return;
  }
  const text = { connecting: t("connecting"), reconnecting: t("reconnecting"), closed: t("unavailable") }[status];
  // A first connection that succeeds quickly should not flash "Connecting…".
  statusTimer = setTimeout(
    () => {
      statusLine.textContent = text;
      statusLine.hidden = false;
    },
    status === "connecting" ? 800 : 0,
  );
}

const handlers = {
  ready(frame) {
    verifiedVisitor = frame.identity === "verified" ? frame.visitor || null : null;
    if (frame.identity === "rejected") {
      console.warn(
        "Parley: the visitor's identity was not verified (data-user-hash must be the hex HMAC-SHA256 of " +
          "data-user-id, keyed with the bot's identity secret); chatting as an anonymous visitor.",
      );
    }
    if (frame.bot?.name) bot.name = frame.bot.name;
    if (typeof frame.bot?.greeting === "string") bot.greeting = frame.bot.greeting;
    const unsent = list.takePending(); // sent before the connection dropped, never acknowledged
    list.reset(bot.greeting, frame.messages);
    if (startingOver) {
      // Nothing of the conversation left comes along: no unsent message, no form, no pending request for a person.
      startingOver = false;
      lastVisitorText = null;
      leadForm = null;
      composer.setHandoffPending(false);
      composer.focus();
    } else {
      for (const text of unsent) list.addUnsent(text);
    }
    refreshNewConversationButton();
    syncStreaming();
  },
  ack(frame) {
    list.markAcked(frame.client_id, frame.message_id);
    // No bot answer follows while staff have taken over, or when the visitor asked for a person.
    if (frame.answer === false) {
      list.hideTyping();
      syncStreaming();
    }
  },
  typing() {
    list.showTyping();
    syncStreaming();
  },
  token(frame) {
    list.appendToken(frame.message_id, String(frame.text ?? ""));
    syncStreaming();
  },
  done(frame) {
    list.finishBot(frame.message_id, frame);
    syncStreaming();
    countUnread();
    keepLeadFormLast();
  },
  error(frame) {
    if (startingOver) {
      // The server did not start a new conversation (too many in a row): the current one goes on.
      startingOver = false;
      refreshNewConversationButton();
      list.addError(frame.message, false);
      return;
    }
    // Errors don't name the message they answer: one sent but not acknowledged was not saved.
    if (["bad_frame", "too_long", "busy", "rate_limited"].includes(frame.code)) list.failPending();
    list.addError(frame.message, frame.retryable === true && lastVisitorText !== null);
    syncStreaming();
    leadForm?.unlock();
  },
  staff_joined(frame) {
    list.addNote(t("staffJoined", { name: frame.name || t("staffDefault") }));
  },
  staff_left() {
    list.addNote(t("staffLeft"));
  },
  staff_message(frame) {
    list.hideTyping();
    list.addStaff(frame.name, frame.text);
    syncStreaming();
    countUnread();
  },
  lead_form: showLeadForm,
  lead_errors(frame) {
    leadForm?.showErrors(frame.errors || {});
  },
  lead_saved(frame) {
    leadForm?.saved(frame.message);
    leadForm = null;
  },
  handoff(frame) {
    list.hideTyping();
    syncStreaming();
    if (frame.message) list.addNote(frame.message);
    composer.setHandoffPending(frame.status === "requested");
  },
};

function helloFields() {
  return {
    page_url: params.get("page") || (bridge.active ? "" : window.location.href),
    referrer: params.get("ref") ?? document.referrer,
    lang,
    ...(identity ? { identity } : {}),
  };
}

const connection = new Connection({
  url: new URL(config.wsPath, window.location.href.replace(/^http/, "ws")).href,
  tokens: tokenStore(bot.publicId),
  hello: () => helloFields(),
  onFrame: (frame) => handlers[frame.type]?.(frame),
  onStatus: showStatus,
});

list.reset(bot.greeting, []);
bridge.post("parley:ready", { color: bot.color, name: bot.name, unread });

// Embedded on every page of a site, the iframe only opens a socket once the visitor opens the chat,
// or at once for a returning visitor, whose conversation may have news (staff replies).
if (!bridge.active || connection.tokens.get()) connection.connect();
if (!bridge.active) composer.focus();
