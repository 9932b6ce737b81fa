// The conversation list: new conversations and messages move to the top without a reload.
import { localiseTimes, timeElement } from "./dates.js";
import { onFrame } from "./live.js";

const table = document.getElementById("conversation-list");
const body = table.querySelector("tbody");
localiseTimes(body); // the rows the server rendered, formatted as the live ones

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function badge(text, kind) {
  const span = document.createElement("span");
  span.className = `badge badge-${kind}`;
  span.textContent = text;
  return span;
}

function row(c) {
  const tr = document.createElement("tr");
  tr.dataset.conversationId = c.id;
  const when = cell("");
  when.append(timeElement(c.last_message_at));
  const preview = cell("");
  const link = document.createElement("a");
  link.href = c.url;
  link.textContent = c.preview || "(no message)";
  preview.append(link);
  const badges = cell("", "badges");
  if (c.taken_over_by) badges.append(badge(c.taken_over_by, "staff"));
  else if (c.handoff_requested) badges.append(badge("Asked for a person", "handoff"));
  tr.append(when, cell(c.bot), preview, cell(c.page_url.slice(0, 40), "url"), badges);
  return tr;
}

onFrame((frame) => {
  if (frame.type !== "conversation" || table.dataset.live === "off") return;
  const c = frame.conversation;
  if (table.dataset.bot && table.dataset.bot !== c.bot_slug) return;
  const existing = body.querySelector(`tr[data-conversation-id="${CSS.escape(c.id)}"]`);
  const fresh = row(c);
  if (existing) {
    // Keep the lead badge rendered by the server.
    const lead = existing.querySelector(".badge-lead");
    if (lead) fresh.querySelector(".badges").append(lead);
    existing.remove();
  }
  body.querySelector("tr.empty")?.remove();
  fresh.classList.add("is-new");
  body.prepend(fresh);
});
