// The conversation list: new conversations and messages move to the top without a reload; in a tab of the inbox
// ("mine", "unassigned", "waiting for a human") or a status, a row that no longer belongs leaves the list.
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
  const assignee = cell(c.assigned_to || "", "assignee");
  if (!c.assigned_to) {
    const none = document.createElement("span");
    none.className = "muted";
    none.textContent = "—";
    assignee.append(none);
  }
  const badges = cell("", "badges");
  if (c.resolved) badges.append(badge("Resolved", "resolved"));
  if (c.taken_over_by) badges.append(badge(c.taken_over_by, "staff"));
  else if (c.waiting) badges.append(badge("Waiting for a human", "handoff"));
  else if (c.handoff_requested) badges.append(badge("Asked for a person", "handoff"));
  tr.append(when, cell(c.bot), preview, cell(c.page_url.slice(0, 40), "url"), assignee, badges);
  return tr;
}

// Whether a conversation belongs in this list's tab and status (the server's rules: chatbot/dashboard/selectors.py).
function belongs(c) {
  const { view, status, me } = table.dataset;
  if (view === "mine" && String(c.assigned_to_id) !== me) return false;
  if (view === "unassigned" && c.assigned_to_id != null) return false;
  if (view === "waiting" && !c.waiting) return false;
  if (status === "open" && c.resolved) return false;
  if (status === "resolved" && !c.resolved) return false;
  return true;
}

onFrame((frame) => {
  if (frame.type !== "conversation" || table.dataset.live === "off") return;
  const c = frame.conversation;
  if (table.dataset.bot && table.dataset.bot !== c.bot_slug) return;
  const existing = body.querySelector(`tr[data-conversation-id="${CSS.escape(c.id)}"]`);
  if (!belongs(c)) {
    existing?.remove();
    return;
  }
  const fresh = row(c);
  if (existing) {
    // Keep the lead badge rendered by the server.
    const lead = existing.querySelector(".badge-lead");
    if (lead) fresh.querySelector(".badges").append(lead);
    // Assigned or resolved, nothing new written: it keeps its place.
    if (existing.querySelector("time")?.dateTime === c.last_message_at) {
      existing.replaceWith(fresh);
      return;
    }
    existing.remove();
  }
  body.querySelector("tr.empty")?.remove();
  fresh.classList.add("is-new");
  body.prepend(fresh);
});
