// A transcript: new messages and streaming answers appear live; staff messages are sent without a reload.
import { onFrame, watch } from "./live.js";

const root = document.getElementById("transcript");
const conversationId = root.dataset.conversationId;
const list = document.getElementById("messages");
const labels = { visitor: "Visitor", bot: "Bot" };

function messageItem(id, role, author) {
  let item = list.querySelector(`li[data-message-id="${id}"]`);
  if (item) return item;
  item = document.createElement("li");
  item.className = `msg msg-${role}`;
  item.dataset.messageId = id;
  const meta = document.createElement("p");
  meta.className = "msg-meta";
  const who = document.createElement("strong");
  who.textContent = author || labels[role] || "Staff";
  meta.append(who);
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
    const item = messageItem(m.id, m.role, m.author);
    item.querySelector(".msg-text").textContent = m.text;
  } else if (frame.type === "answer_token") {
    const item = messageItem(frame.message_id, "bot");
    item.classList.add("is-streaming");
    item.querySelector(".msg-text").textContent += frame.text;
  } else if (frame.type === "answer_done") {
    const item = messageItem(frame.message_id, "bot");
    item.classList.remove("is-streaming");
    item.querySelector(".msg-text").textContent = frame.text;
  }
});

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
      const item = messageItem(data.message.id, "staff", data.message.author);
      item.querySelector(".msg-text").textContent = data.message.text;
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
