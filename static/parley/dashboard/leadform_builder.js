// The lead-form builder of the bot settings page: typed fields added, reordered and removed with buttons, triggers
// as checkboxes, and a preview drawn by the widget's own form code (chat/leadform.js) with the widget's styles.
// It edits the JSON of `Bot.lead_form` (docs/leads.md) in the form's textarea, which stays the value posted, so the
// stored JSON is exactly what the documentation describes; keys the builder does not know are kept as they are.

import { LeadForm } from "../chat/leadform.js";
import { setLanguage } from "../chat/i18n.js";
import { el, labelled, moveButtons, serialise } from "./editor_parts.js";

const TYPES = {
  name: "Name",
  email: "Email",
  phone: "Phone",
  company: "Company",
  text: "Message (long text)",
  select: "Choice from a list",
  consent: "Consent checkbox",
};
const TRIGGERS = {
  before_chat: "As soon as the chat opens",
  cannot_answer: "When the bot cannot answer",
  no_human: "When the visitor asks for a person and nobody is available",
  buying_intent: "When the visitor shows buying intent (pricing, quote, demo…)",
};

const textarea = document.querySelector("textarea[name=lead_form]");
const defaults = JSON.parse(document.getElementById("lead-form-texts")?.textContent || "{}");
if (textarea) mount(textarea);

function mount(source) {
  let state;
  try {
    state = source.value.trim() ? JSON.parse(source.value) : {};
  } catch {
    return; // Invalid JSON (from an earlier post): the textarea stays as it is, with the server's message.
  }
  if (!state || typeof state !== "object" || Array.isArray(state)) return;
  const fieldBox = source.closest(".field");
  const root = el("div", "builder lead-builder");
  root.id = "lead-form-builder";
  const editor = el("div", "builder-editor");
  const preview = el("div", "builder-preview");
  root.append(editor, preview);
  fieldBox.before(root);
  // The JSON stays reachable for people who prefer it; what they type there is read back on "Apply".
  const details = el("details", "json-details");
  details.append(el("summary", "", "Edit as JSON"));
  fieldBox.before(details);
  details.append(fieldBox);
  details.open = fieldBox.classList.contains("has-error");
  const apply = el("button", "button button-secondary", "Apply JSON");
  apply.type = "button";
  apply.addEventListener("click", () => {
    try {
      state = JSON.parse(source.value.trim() || "{}");
      render();
    } catch (error) {
      window.alert(`Not valid JSON: ${error.message}`);
    }
  });
  fieldBox.append(apply);

  const languageSelect = document.querySelector("[name=language]");
  languageSelect?.addEventListener("change", drawPreview);

  function changed({ redraw = false } = {}) {
    // No field means no form: an empty setting, never a form the server would refuse for having no field.
    source.value = state.fields?.length ? serialise(state) : "";
    if (redraw) render();
    else drawPreview();
  }

  function texts() {
    const code = String(languageSelect?.value || "en").slice(0, 2).toLowerCase();
    return defaults[code] || defaults.en || {};
  }

  function render() {
    editor.replaceChildren(formSettings(), fieldsEditor(), triggersEditor());
    drawPreview();
  }

  function formSettings() {
    const box = el("fieldset", "builder-group");
    box.append(el("legend", "", "Lead form"));
    const enabled = el("input");
    enabled.type = "checkbox";
    enabled.name = "lead-enabled";
    enabled.checked = Boolean(state.fields?.length) && state.enabled !== false;
    enabled.addEventListener("change", () => {
      if (enabled.checked && !state.fields?.length) {
        state.fields = [{ name: "email", type: "email", required: true }];
        state.triggers ??= { cannot_answer: true, no_human: true };
      }
      if (enabled.checked) delete state.enabled;
      else if (state.fields?.length) state.enabled = false;
      changed({ redraw: true });
    });
    box.append(labelled(enabled, "Ask visitors for their contact details", "check"));
    for (const [key, label, fallback] of [
      ["title", "Title", "title"],
      ["submit_label", "Button", "submit"],
      ["saved_message", "Thank-you message", "saved"],
    ]) {
      const input = el("input");
      input.name = `lead-${key}`;
      input.value = state[key] || "";
      input.placeholder = texts()[fallback] || "";
      input.addEventListener("input", () => {
        if (input.value.trim()) state[key] = input.value;
        else delete state[key];
        changed();
      });
      box.append(labelled(input, label));
    }
    return box;
  }

  function fieldsEditor() {
    const box = el("fieldset", "builder-group");
    box.append(el("legend", "", "Fields"));
    const list = el("ol", "builder-fields");
    const fields = state.fields || [];
    fields.forEach((field, index) => list.append(fieldRow(field, index, fields)));
    box.append(list);
    const adder = el("div", "builder-add");
    const type = el("select");
    type.name = "lead-new-type";
    type.setAttribute("aria-label", "Type of the new field");
    for (const [value, label] of Object.entries(TYPES)) type.append(new Option(label, value));
    const add = el("button", "button button-secondary", "Add field");
    add.type = "button";
    add.id = "lead-add-field";
    add.addEventListener("click", () => {
      state.fields ??= [];
      const field = { name: uniqueName(type.value), type: type.value };
      if (type.value === "select") field.options = ["Option 1", "Option 2"];
      if (type.value === "consent") field.required = true;
      state.fields.push(field);
      delete state.enabled;
      changed({ redraw: true });
      list.lastElementChild?.querySelector("input[name=label]")?.focus();
    });
    adder.append(type, add);
    box.append(adder);
    return box;
  }

  function uniqueName(type) {
    const taken = new Set((state.fields || []).map((f) => f.name || f.type));
    if (!taken.has(type)) return type;
    let n = 2;
    while (taken.has(`${type}_${n}`)) n += 1;
    return `${type}_${n}`;
  }

  function fieldRow(field, index, fields) {
    const row = el("li", "builder-field");
    row.dataset.type = field.type;
    const head = el("div", "builder-field-head");
    head.append(el("strong", "", TYPES[field.type] || field.type));
    const controls = moveButtons(index, fields.length, {
      move: (to) => {
        fields.splice(to, 0, fields.splice(index, 1)[0]);
        changed({ redraw: true });
      },
      remove: () => {
        fields.splice(index, 1);
        changed({ redraw: true });
      },
    });
    const describe = () => controls.name(field.label || TYPES[field.type] || field.type);
    describe();
    head.append(...controls.buttons);
    row.append(head);
    const label = field.type === "consent" ? el("textarea") : el("input");
    label.name = "label";
    if (field.type === "consent") label.rows = 2;
    label.value = field.label || "";
    label.placeholder = texts()[`label.${field.type}`] || "";
    label.addEventListener("input", () => {
      if (label.value.trim()) field.label = label.value;
      else delete field.label;
      describe();
      changed();
    });
    row.append(labelled(label, field.type === "consent" ? "Consent text (stored with the lead)" : "Label"));
    const required = el("input");
    required.type = "checkbox";
    required.name = "required";
    required.checked = Boolean(field.required);
    required.addEventListener("change", () => {
      if (required.checked) field.required = true;
      else delete field.required;
      changed();
    });
    row.append(labelled(required, "Required", "check"));
    if (field.type === "select") {
      const options = el("textarea");
      options.name = "options";
      options.rows = 3;
      options.value = (field.options || []).join("\n");
      options.addEventListener("input", () => {
        field.options = options.value.split("\n").map((o) => o.trim()).filter(Boolean);
        changed();
      });
      row.append(labelled(options, "Options, one per line"));
    }
    const key = el("input");
    key.name = "key";
    key.value = field.name || field.type;
    key.pattern = "[a-z][a-z0-9_]{0,39}";
    key.addEventListener("input", () => {
      field.name = key.value.trim();
      changed();
    });
    const keyField = labelled(key, "Key (a column of the leads export)");
    keyField.classList.add("builder-key");
    row.append(keyField);
    return row;
  }

  function triggersEditor() {
    const box = el("fieldset", "builder-group");
    box.append(el("legend", "", "When to show it"));
    const triggers = state.triggers || {};
    const setTrigger = (key, value) => {
      state.triggers = { ...(state.triggers || {}), [key]: value };
      if (value === undefined) delete state.triggers[key];
      changed();
    };
    for (const [key, label] of Object.entries(TRIGGERS)) {
      const box1 = el("input");
      box1.type = "checkbox";
      box1.name = `trigger-${key}`;
      box1.checked = Boolean(triggers[key]);
      box1.addEventListener("change", () => setTrigger(key, box1.checked));
      box.append(labelled(box1, label, "check"));
    }
    const after = el("input");
    after.type = "number";
    after.min = "0";
    after.name = "trigger-after_messages";
    after.value = String(Number(triggers.after_messages) || 0);
    after.addEventListener("input", () => {
      const value = Math.max(0, Number.parseInt(after.value, 10) || 0);
      setTrigger("after_messages", value || undefined);
    });
    const afterField = labelled(after, "After the visitor's Nth message (0: never)");
    afterField.classList.add("builder-narrow");
    box.append(afterField);
    const keywords = el("input");
    keywords.name = "intent-keywords";
    keywords.value = (state.intent_keywords || []).join(", ");
    keywords.addEventListener("input", () => {
      const list = keywords.value.split(",").map((k) => k.trim()).filter(Boolean);
      if (list.length) state.intent_keywords = list;
      else delete state.intent_keywords;
      changed();
    });
    box.append(labelled(keywords, "More buying-intent words, separated by commas"));
    return box;
  }

  function drawPreview() {
    const t = texts();
    setLanguage(languageSelect?.value || "en");
    const enabled = Boolean(state.fields?.length) && state.enabled !== false;
    const frame = {
      reason: "preview",
      form: {
        title: state.title || t.title,
        submit_label: state.submit_label || t.submit,
        fields: (state.fields || []).map((f) => ({
          name: f.name || f.type,
          type: f.type,
          label: f.label || t[`label.${f.type}`] || f.type,
          required: Boolean(f.required),
          options: f.options || [],
        })),
      },
    };
    const host = el("div", "lead-preview");
    const accent = document.querySelector("[name=color]")?.value;
    if (accent) host.style.setProperty("--bot", accent);
    const shadow = host.attachShadow({ mode: "open" });
    const styles = el("link");
    styles.rel = "stylesheet";
    styles.href = new URL("../chat/chat.css", import.meta.url).href;
    shadow.append(styles);
    if (enabled) {
      const form = new LeadForm(frame, { onSubmit: () => true, onDismiss: () => drawPreview() });
      form.submitButton.disabled = true; // a preview: nothing to send
      shadow.append(form.node);
    } else {
      shadow.append(el("p", "lead-title", "No lead form: visitors are never asked for their details."));
    }
    preview.replaceChildren(el("p", "builder-preview-title", "As the visitor will see it"), host);
  }

  render();
  changed();
}
