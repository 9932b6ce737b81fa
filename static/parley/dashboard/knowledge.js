// Knowledge sources: the add form shows the fields of the chosen kind; ingestion progress arrives live over the
// dashboard socket ("source" frames, docs/protocol.md), with one read of the progress URL on load and on every
// (re)connection for what happened before the socket was listening.
import { localiseTimes, timeElement } from "./dates.js";
import { onFrame, onOpen } from "./live.js";

const form = document.getElementById("source-form");
const table = document.getElementById("sources");

function showKind() {
  const kind = form.querySelector("input[name=kind]:checked")?.value;
  for (const group of form.querySelectorAll("[data-kind]")) {
    group.hidden = !group.dataset.kind.split(" ").includes(kind);
  }
}
form.addEventListener("change", showKind);
showKind();

for (const confirmed of document.querySelectorAll("form.confirm")) {
  confirmed.addEventListener("submit", (event) => {
    if (!window.confirm(confirmed.dataset.confirm)) event.preventDefault();
  });
}

function show(source) {
  const row = table.querySelector(`tr[data-source-id="${source.id}"]`);
  if (!row) return;
  const status = row.querySelector(".status");
  status.dataset.status = source.status;
  status.querySelector(".status-label").textContent = source.status_label;
  const error = status.querySelector(".source-error");
  error.textContent = source.error || "";
  error.hidden = !source.error;
  status.querySelector(".allow-private").hidden = !source.private_address_refused;
  const bar = row.querySelector("progress");
  bar.max = source.total || 1;
  bar.value = source.done;
  row.querySelector(".progress-text").textContent = `${source.done}/${source.total}`;
  if (source.last_synced_at) row.querySelector(".synced").replaceChildren(timeElement(source.last_synced_at));
}

async function refresh() {
  try {
    const response = await fetch(table.dataset.progressUrl, { credentials: "same-origin" });
    const { sources } = await response.json();
    sources.forEach(show);
  } catch {
    // The socket's frames keep the page current; the next connection reads again.
  }
}

onFrame((frame) => {
  if (frame.type === "source") show(frame.source);
});
onOpen(refresh);
localiseTimes(table);
