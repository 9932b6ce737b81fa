// The business-hours editor of the bot settings page: a time zone, and for each day closed or one or two opening
// ranges. It writes `Bot.business_hours` (docs/bot-config.md) into the form's textarea, which stays the value
// posted: {"timezone": "Europe/Paris", "days": {"mon": ["09:00", "18:00"], "sat": [["09:00", "12:00"], ...]}}.
// A day the editor is not asked to change keeps the exact JSON it had.

import { el, labelled, serialise } from "./editor_parts.js";

const DAYS = { mon: "Monday", tue: "Tuesday", wed: "Wednesday", thu: "Thursday", fri: "Friday", sat: "Saturday", sun: "Sunday" };
const MAX_RANGES = 2;

const textarea = document.querySelector("textarea[name=business_hours]");
if (textarea) mount(textarea);

function ranges(value) {
  if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === "string")) return [value];
  if (Array.isArray(value)) return value.filter((v) => Array.isArray(v) && v.length === 2);
  return [];
}

function mount(source) {
  let state;
  try {
    state = source.value.trim() ? JSON.parse(source.value) : {};
  } catch {
    return; // Invalid JSON from an earlier post: the textarea stays, with the server's message.
  }
  if (!state || typeof state !== "object" || Array.isArray(state)) return;
  const fieldBox = source.closest(".field");
  const root = el("fieldset", "builder hours-editor");
  root.id = "business-hours-editor";
  fieldBox.before(root);
  const details = el("details", "json-details");
  details.append(el("summary", "", "Edit business hours as JSON"));
  fieldBox.before(details);
  details.append(fieldBox);
  details.open = fieldBox.classList.contains("has-error");

  function changed() {
    source.value = state.days && Object.keys(state.days).length ? serialise(state) : "";
  }

  function render() {
    const always = el("input");
    always.type = "checkbox";
    always.name = "hours-always";
    always.checked = !state.days || !Object.keys(state.days).length;
    always.addEventListener("change", () => {
      state = always.checked
        ? {}
        : {
            timezone: state.timezone || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
            days: Object.fromEntries(["mon", "tue", "wed", "thu", "fri"].map((d) => [d, ["09:00", "18:00"]])),
          };
      changed();
      render();
    });
    const parts = [el("legend", "", "Business hours"), labelled(always, "Always open (staff can be asked any time)", "check")];
    if (!always.checked) parts.push(timezone(), week());
    root.replaceChildren(...parts);
  }

  function timezone() {
    const input = el("input");
    input.name = "hours-timezone";
    input.value = state.timezone || "UTC";
    input.setAttribute("list", "hours-timezones");
    const list = el("datalist");
    list.id = "hours-timezones";
    for (const zone of Intl.supportedValuesOf?.("timeZone") || []) list.append(new Option(zone));
    input.addEventListener("input", () => {
      state.timezone = input.value.trim();
      changed();
    });
    const field = labelled(input, "Time zone");
    field.append(list);
    return field;
  }

  function week() {
    const table = el("table", "hours-week");
    const body = el("tbody");
    for (const [day, name] of Object.entries(DAYS)) body.append(dayRow(day, name));
    table.append(body);
    return table;
  }

  function dayRow(day, name) {
    const row = el("tr");
    row.dataset.day = day;
    const open = el("input");
    open.type = "checkbox";
    open.name = `hours-${day}-open`;
    const current = ranges(state.days[day]);
    open.checked = current.length > 0;
    const head = el("th");
    head.append(labelled(open, name, "check"));
    const cell = el("td", "hours-ranges");
    row.append(head, cell);
    const write = (list) => {
      if (list.length === 0) delete state.days[day];
      else state.days[day] = list.length === 1 ? list[0] : list;
      changed();
    };
    open.addEventListener("change", () => {
      write(open.checked ? [["09:00", "18:00"]] : []);
      row.replaceWith(dayRow(day, name));
    });
    if (!open.checked) {
      cell.append(el("span", "muted", "Closed"));
      return row;
    }
    current.forEach((range, index) => {
      const span = el("span", "hours-range");
      const inputs = range.map((value, end) => {
        const input = el("input");
        input.type = "time";
        input.name = `hours-${day}-${index}-${end ? "end" : "start"}`;
        input.value = value;
        input.setAttribute("aria-label", `${name}, ${end ? "closes" : "opens"}${index ? " (second range)" : ""}`);
        input.addEventListener("input", () => {
          const next = ranges(state.days[day]).map((r) => [...r]);
          next[index][end] = input.value;
          write(next);
        });
        return input;
      });
      span.append(inputs[0], el("span", "", " – "), inputs[1]);
      if (index > 0) {
        const remove = el("button", "link-button", "Remove");
        remove.type = "button";
        remove.setAttribute("aria-label", `Remove ${name}'s second range`);
        remove.addEventListener("click", () => {
          write(ranges(state.days[day]).filter((_, i) => i !== index));
          row.replaceWith(dayRow(day, name));
        });
        span.append(remove);
      }
      cell.append(span);
    });
    if (current.length < MAX_RANGES) {
      const add = el("button", "link-button", "Add a second range");
      add.type = "button";
      add.setAttribute("aria-label", `Add a second range on ${name}`);
      add.addEventListener("click", () => {
        // A day split in two: the morning ends at noon unless it already ended before the afternoon.
        const [first] = ranges(state.days[day]);
        write([[first[0], first[1] > "13:00" ? "12:00" : first[1]], ["14:00", "18:00"]]);
        row.replaceWith(dayRow(day, name));
      });
      cell.append(add);
    }
    return row;
  }

  render();
}
