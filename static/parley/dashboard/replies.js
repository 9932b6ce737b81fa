// Saved replies in the takeover box: typing "/" and a shortcut lists the team's matching replies; Enter, Tab or a
// click puts the reply's text in place of the "/shortcut" (to edit before sending). Replies: #saved-replies (JSON).
const input = document.getElementById("staff-text");
const data = document.getElementById("saved-replies");
const replies = data ? JSON.parse(data.textContent) : [];

const MAX_SHOWN = 8;
// A "/word" that ends at the caret, at the start of the text or after a space.
const COMMAND = /(^|\s)\/([\w-]*)$/;

if (input && replies.length) {
  const form = input.form;
  const list = document.createElement("ul");
  list.className = "reply-suggestions";
  list.id = "reply-suggestions";
  list.setAttribute("role", "listbox");
  list.setAttribute("aria-label", "Saved replies");
  list.hidden = true;
  form.append(list);
  input.setAttribute("aria-controls", list.id);
  input.setAttribute("aria-autocomplete", "list");

  let shown = [];
  let selected = 0;
  let command = null; // {start, end} of the "/word" being typed

  function matching(query) {
    const q = query.toLowerCase();
    const byShortcut = replies.filter((r) => r.shortcut.startsWith(q));
    const byText = replies.filter((r) => !r.shortcut.startsWith(q) && q && r.text.toLowerCase().includes(q));
    return [...byShortcut, ...byText].slice(0, MAX_SHOWN);
  }

  function close() {
    list.hidden = true;
    shown = [];
    command = null;
    input.removeAttribute("aria-activedescendant");
  }

  function render() {
    list.replaceChildren(
      ...shown.map((reply, index) => {
        const item = document.createElement("li");
        item.id = `saved-reply-${index}`;
        item.setAttribute("role", "option");
        item.setAttribute("aria-selected", String(index === selected));
        item.dataset.shortcut = reply.shortcut;
        const code = document.createElement("code");
        code.textContent = `/${reply.shortcut}`;
        const text = document.createElement("span");
        text.className = "reply-text";
        text.textContent = reply.text.length > 90 ? `${reply.text.slice(0, 89)}…` : reply.text;
        item.append(code, text);
        item.addEventListener("mousedown", (event) => {
          event.preventDefault(); // keep the focus in the box
          insert(reply);
        });
        return item;
      }),
    );
    list.hidden = shown.length === 0;
    if (shown.length) input.setAttribute("aria-activedescendant", `saved-reply-${selected}`);
  }

  function update() {
    const before = input.value.slice(0, input.selectionStart);
    const match = input.selectionStart === input.selectionEnd ? COMMAND.exec(before) : null;
    if (!match) {
      close();
      return;
    }
    const start = match.index + match[1].length;
    command = { start, end: input.selectionStart };
    shown = matching(match[2]);
    selected = 0;
    render();
  }

  function insert(reply) {
    const { start, end } = command;
    input.value = input.value.slice(0, start) + reply.text + input.value.slice(end);
    const caret = start + reply.text.length;
    input.setSelectionRange(caret, caret);
    close();
    input.focus();
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }

  input.addEventListener("input", update);
  input.addEventListener("click", update);
  update(); // what was typed before this module ran
  input.addEventListener("blur", close);
  // Capture, on the form: this runs before the box's own Enter-to-send handler (transcript.js) and keeps Enter
  // from sending while a reply is being chosen.
  form.addEventListener(
    "keydown",
    (event) => {
      if (event.target !== input || list.hidden || !shown.length) return;
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        selected = (selected + (event.key === "ArrowDown" ? 1 : shown.length - 1)) % shown.length;
        render();
      } else if (event.key === "Enter" || event.key === "Tab") {
        insert(shown[selected]);
      } else if (event.key === "Escape") {
        close();
      } else {
        return;
      }
      event.preventDefault();
      event.stopPropagation();
    },
    true,
  );
}
