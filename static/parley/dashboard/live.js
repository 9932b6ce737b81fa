// The staff websocket, shared by every dashboard page: live events, presence pings (a staff member with a
// dashboard open counts as online for handoffs) and handoff alerts. Protocol: docs/dashboard.md.
const PING_MS = 20000;
const listeners = new Set();
let socket = null;
let watched = null;
let lastShown = () => null;
let attempts = 0;
let pingTimer = null;

export function onFrame(listener) {
  listeners.add(listener);
}

// Called each time the socket (re)connects: a page reads then what it may have missed while it was not listening.
const openListeners = new Set();
export function onOpen(listener) {
  openListeners.add(listener);
}

// `lastMessageId` gives the id of the newest message the page shows: the server sends what came after it, so a
// message saved while the page reloaded or the socket reconnected is not missed.
export function watch(conversationId, lastMessageId = () => null) {
  watched = conversationId;
  lastShown = lastMessageId;
  sendWatch();
}

function sendWatch() {
  const after = lastShown();
  send({ type: "watch", conversation_id: watched, ...(after == null ? {} : { after_message_id: after }) });
}

function send(frame) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
}

function setStatus(state, text) {
  const status = document.getElementById("live-status");
  if (!status) return;
  status.dataset.state = state;
  status.textContent = text;
}

function connect() {
  const url = new URL("/ws/dashboard/", window.location.href.replace(/^http/, "ws"));
  socket = new WebSocket(url);
  socket.addEventListener("open", () => {
    attempts = 0;
    setStatus("live", "Live");
    if (watched) sendWatch();
    clearInterval(pingTimer);
    pingTimer = setInterval(() => send({ type: "ping" }), PING_MS);
    for (const listener of openListeners) listener();
  });
  socket.addEventListener("message", (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    for (const listener of listeners) listener(frame);
  });
  socket.addEventListener("close", (event) => {
    clearInterval(pingTimer);
    if (event.code === 4403) {
      setStatus("off", "Not signed in: reload the page.");
      return;
    }
    attempts += 1;
    const delay = Math.min(30000, 500 * 2 ** Math.min(attempts, 6)) * (0.75 + Math.random() / 2);
    setStatus("reconnecting", "Reconnecting…");
    setTimeout(connect, delay);
  });
}

function showHandoff(frame) {
  const alerts = document.getElementById("dash-alerts");
  if (!alerts || frame.type !== "handoff") return;
  const alert = document.createElement("div");
  alert.className = `alert alert-${frame.status}`;
  alert.setAttribute("role", "alert");
  alert.dataset.conversationId = frame.conversation_id;
  const title = document.createElement("strong");
  title.textContent =
    frame.status === "requested"
      ? `A visitor of ${frame.bot} asks for a person`
      : `A visitor of ${frame.bot} asked for a person (offered the lead form)`;
  const summary = document.createElement("p");
  summary.textContent = frame.summary;
  const open = document.createElement("a");
  open.href = frame.url;
  open.className = "button";
  open.textContent = "Open conversation";
  const dismiss = document.createElement("button");
  dismiss.type = "button";
  dismiss.className = "link-button";
  dismiss.textContent = "Dismiss";
  dismiss.addEventListener("click", () => alert.remove());
  alert.append(title, summary, open, dismiss);
  alerts.prepend(alert);
}

onFrame(showHandoff);
connect();
