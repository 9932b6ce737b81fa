// Knowledge sources: the add form shows the fields of the chosen kind; ingestion progress updates live.
const form = document.getElementById("source-form");
const table = document.getElementById("sources");
const POLL_MS = 1500;

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

function busy() {
  return [...table.querySelectorAll(".status")].some((s) => ["pending", "running"].includes(s.dataset.status));
}

async function poll() {
  try {
    const response = await fetch(table.dataset.progressUrl, { credentials: "same-origin" });
    const { sources } = await response.json();
    for (const source of sources) {
      const row = table.querySelector(`tr[data-source-id="${source.id}"]`);
      if (!row) continue;
      const status = row.querySelector(".status");
      status.dataset.status = source.status;
      status.textContent = source.status_label + (source.error ? ` — ${source.error.slice(0, 80)}` : "");
      const bar = row.querySelector("progress");
      bar.max = source.total || 1;
      bar.value = source.done;
      row.querySelector(".progress-text").textContent = `${source.done}/${source.total}`;
    }
  } catch {
    // The next poll tries again.
  }
  if (busy()) setTimeout(poll, POLL_MS);
}

if (busy()) setTimeout(poll, POLL_MS);
