// The lead form, inline in the conversation (docs/protocol.md, "Lead form"). The server sends the fields
// (`lead_form`) and checks what is submitted: its messages (`lead_errors`) appear under each field, tied to it
// with aria-describedby and aria-invalid, and focus moves to the first field to fix.

import { t } from "./i18n.js";

let formCount = 0;

const INPUTS = {
  name: { type: "text", autocomplete: "name" },
  email: { type: "email", autocomplete: "email", inputmode: "email" },
  phone: { type: "tel", autocomplete: "tel", inputmode: "tel" },
  company: { type: "text", autocomplete: "organization" },
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class LeadForm {
  /** frame: a `lead_form` frame. hooks: {onSubmit(fields) -> bool (sent), onDismiss(), prefill: {name, email}} */
  constructor(frame, hooks) {
    this.hooks = hooks;
    this.id = `lead-${++formCount}`;
    this.controls = new Map(); // field name -> {field, control, error}
    this.node = el("div", "msg msg-bot msg-lead");
    this.node.dataset.reason = String(frame.reason || "");
    this.form = el("form", "lead-form");
    this.form.noValidate = true; // the server validates, with messages in the visitor's language
    const title = el("p", "lead-title", String(frame.form?.title || t("leadTitle")));
    title.id = `${this.id}-title`;
    this.form.setAttribute("aria-labelledby", title.id);
    this.summary = el("p", "lead-summary");
    this.summary.setAttribute("role", "alert");
    this.summary.hidden = true;
    this.form.append(title, this.summary);
    for (const field of frame.form?.fields || []) {
      if (field && typeof field.name === "string") this.form.append(this.renderField(field));
    }
    const actions = el("div", "lead-actions");
    this.submitButton = el("button", "lead-submit", String(frame.form?.submit_label || t("leadSubmit")));
    this.submitButton.type = "submit";
    this.submitLabel = this.submitButton.textContent;
    const dismiss = el("button", "lead-dismiss", t("leadDismiss"));
    dismiss.type = "button";
    dismiss.addEventListener("click", () => {
      this.node.remove();
      this.hooks.onDismiss();
    });
    actions.append(this.submitButton, dismiss);
    this.form.append(actions);
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.node.append(this.form);
  }

  renderField(field) {
    const wrap = el("div", `lead-field lead-field-${field.type}`);
    const controlId = `${this.id}-${field.name}`;
    const error = el("p", "lead-error");
    error.id = `${controlId}-error`;
    error.hidden = true;
    const label = el("label", "lead-label", String(field.label || field.name));
    label.htmlFor = controlId;
    if (field.required) {
      const mark = el("span", "lead-required", " *");
      mark.setAttribute("aria-hidden", "true");
      label.append(mark);
    }
    let control;
    if (field.type === "text") {
      control = el("textarea");
      control.rows = 3;
    } else if (field.type === "select") {
      control = el("select");
      control.append(new Option(t("leadChoose"), ""));
      for (const option of field.options || []) control.append(new Option(String(option), String(option)));
    } else if (field.type === "consent") {
      control = el("input");
      control.type = "checkbox";
    } else {
      control = el("input");
      const spec = INPUTS[field.type] || INPUTS.name;
      control.type = spec.type;
      control.autocomplete = spec.autocomplete;
      if (spec.inputmode) control.inputMode = spec.inputmode;
    }
    control.id = controlId;
    control.name = field.name;
    // A verified visitor's name and email (docs/widget.md) fill the form; the visitor can still change them.
    const known = this.hooks.prefill?.[field.type];
    if ((field.type === "name" || field.type === "email") && typeof known === "string") control.value = known;
    if (field.required) control.setAttribute("aria-required", "true");
    // A checkbox goes before its label; the error follows both.
    if (field.type === "consent") wrap.append(control, label, error);
    else wrap.append(label, control, error);
    this.controls.set(field.name, { field, control, error });
    return wrap;
  }

  values() {
    const fields = {};
    for (const [name, { field, control }] of this.controls) {
      fields[name] = field.type === "consent" ? control.checked : control.value;
    }
    return fields;
  }

  submit() {
    if (this.submitButton.disabled) return;
    this.setBusy(true);
    if (!this.hooks.onSubmit(this.values())) {
      this.setBusy(false);
      this.showSummary(t("leadNotSent"));
    }
  }

  setBusy(busy) {
    this.submitButton.disabled = busy;
    this.submitButton.textContent = busy ? t("leadSending") : this.submitLabel;
    this.form.setAttribute("aria-busy", String(busy));
  }

  showSummary(text) {
    this.summary.textContent = text || "";
    this.summary.hidden = !text;
  }

  /** The server's messages, by field name ("__all__" for the form as a whole). */
  showErrors(errors) {
    this.setBusy(false);
    let first = null;
    const general = [];
    for (const [name, { control, error }] of this.controls) {
      const message = errors[name];
      error.textContent = message || "";
      error.hidden = !message;
      if (message) {
        control.setAttribute("aria-invalid", "true");
        control.setAttribute("aria-describedby", error.id);
        first ??= control;
      } else {
        control.removeAttribute("aria-invalid");
        control.removeAttribute("aria-describedby");
      }
    }
    for (const [name, message] of Object.entries(errors)) {
      if (!this.controls.has(name)) general.push(String(message));
    }
    this.showSummary(general.length ? general.join(" ") : first ? t("leadFixErrors") : "");
    first?.focus();
  }

  /** The server kept the lead: the form gives way to its thank-you message. */
  saved(message) {
    const note = el("p", "lead-saved", message || t("leadSaved"));
    note.setAttribute("role", "status");
    this.node.replaceChildren(note);
  }

  /** Sending failed before the server answered (the connection dropped, a rate limit). */
  unlock() {
    if (this.submitButton.disabled) this.setBusy(false);
  }

  get open() {
    return this.node.isConnected && this.node.contains(this.form);
  }
}
