// Bot settings: copy the embed snippet; reload the preview.
const copy = document.getElementById("copy-snippet");
copy?.addEventListener("click", async () => {
  const text = document.getElementById(copy.dataset.copyTarget).textContent;
  try {
    await navigator.clipboard.writeText(text);
    copy.textContent = "Copied";
  } catch {
    window.getSelection().selectAllChildren(document.getElementById(copy.dataset.copyTarget));
    copy.textContent = "Press Ctrl+C to copy";
  }
  setTimeout(() => (copy.textContent = "Copy snippet"), 2000);
});

document.getElementById("reload-preview")?.addEventListener("click", () => {
  const frame = document.getElementById("preview");
  frame.src = frame.src;
});
