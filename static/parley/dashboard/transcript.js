// A transcript: new messages and streaming answers appear live; staff messages are sent without a reload. Bot and
// staff messages are Markdown, rendered as the widget renders them (the same module); times as on every page.
import { renderMarkdown } from "../chat/markdown.js";
import { localiseTimes, timeElement } from "./dates.js";
import { onFrame, watch } from "./live.js";

const root = document.getElementById("transcript");
const conversationId = root.dataset.conversationId;
const list = document.getElementById("messages");
const labels = { visitor: "Visitor", bot: "Bot" };

const MARKDOWN_ROLES = new Set(["bot", "staff"]);
const texts = new Map(); // message id -> its text so far (a streaming answer grows)

function setText(item, text) {
  const node = item.querySelector(".msg-text");
  texts.set(item.dataset.messageId, text);
  if (MARKDOWN_ROLES.has(item.dataset.role)) {
    node.classList.add("is-markdown");
    renderMarkdown(node, text);
  } else {
    node.textContent = text;
  }
}

function messageItem(id, role, author, createdAt) {
  let item = list.querySelector(`li[data-message-id="${id}"]`);
  if (item) return item;
  item = document.createElement("li");
  item.className = `msg msg-${role}`;
  item.dataset.messageId = id;
  item.dataset.role = role;
  const meta = document.createElement("p");
  meta.className = "msg-meta";
  const who = document.createElement("strong");
  who.textContent = author || labels[role] || "Staff";
  meta.append(who, " ", timeElement(createdAt || new Date().toISOString(), "time"));
  const text = document.createElement("div");
  text.className = "msg-text";
  item.append(meta, text);
  list.append(item);
  return item;
}

onFrame((frame) => {
  if (frame.conversation_id !== conversationId) return;
  if (frame.type === "message") {
    const m = frame.message;
    setText(messageItem(m.id, m.role, m.author, m.created_at), m.text);
  } else if (frame.type === "answer_token") {
    const item = messageItem(frame.message_id, "bot");
    item.classList.add("is-streaming");
    setText(item, (texts.get(String(frame.message_id)) || "") + frame.text);
  } else if (frame.type === "answer_done") {
    const item = messageItem(frame.message_id, "bot");
    item.classList.remove("is-streaming");
    setText(item, frame.text);
  } else if (frame.type === "visitor_left") {
    // The visitor pressed "New conversation": staff should follow them there.
    const notice = document.getElementById("visitor-left");
    notice.querySelector("a").href = frame.new_url;
    notice.hidden = false;
  }
});

// The messages the server rendered: their raw text becomes Markdown like the live ones.
for (const item of list.querySelectorAll("li[data-message-id]")) {
  item.dataset.role = [...item.classList].find((c) => c.startsWith("msg-"))?.slice(4) || "";
  setText(item, item.querySelector(".msg-text").textContent);
}
localiseTimes(list);

function lastMessageId() {
  const ids = [...list.querySelectorAll("li[data-message-id]")].map((item) => Number(item.dataset.messageId));
  return ids.length ? Math.max(...ids) : 0;
}

watch(conversationId, lastMessageId);

const form = document.getElementById("staff-form");
if (form) {
  const input = form.querySelector("textarea");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        headers: { Accept: "application/json" },
        body: new FormData(form),
        credentials: "same-origin",
      });
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || "Could not send");
      setText(messageItem(data.message.id, "staff", data.message.author, data.message.created_at), data.message.text);
      input.value = "";
    } catch (error) {
      window.alert(error.message);
    } finally {
      button.disabled = false;
      input.focus();
    }
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
}
