// Small DOM pieces shared by the settings page's editors (lead form, business hours).

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

let labelCount = 0;

/** `control` with its label, in a `.field` block like the server-rendered ones ("check": the box before it). */
export function labelled(control, text, kind = "") {
  const wrap = el("div", kind === "check" ? "field check builder-check" : "field");
  control.id ||= `builder-${++labelCount}`;
  const label = el("label", "", text);
  label.htmlFor = control.id;
  wrap.append(label, control);
  return wrap;
}

/** Up, down and remove buttons for item `index` of `count`; `name(what)` names the item in their accessible
 * labels ("Move Your name up"), again whenever the item is renamed. */
export function moveButtons(index, count, { move, remove }) {
  const up = el("button", "link-button builder-move", "↑");
  const down = el("button", "link-button builder-move", "↓");
  const removal = el("button", "link-button danger", "Remove");
  up.disabled = index === 0;
  down.disabled = index === count - 1;
  up.addEventListener("click", () => move(index - 1));
  down.addEventListener("click", () => move(index + 1));
  removal.addEventListener("click", remove);
  const buttons = [up, down, removal];
  for (const button of buttons) button.type = "button";
  const name = (what) => {
    up.setAttribute("aria-label", `Move ${what} up`);
    down.setAttribute("aria-label", `Move ${what} down`);
    removal.setAttribute("aria-label", `Remove ${what}`);
  };
  return { buttons, name };
}

export function serialise(value) {
  return JSON.stringify(value, null, 2);
}
