// The composer: a textarea (Enter sends, Shift+Enter is a newline), Send / Stop, the character
// counter near the limit and the "Talk to a person" button.

import { t, formatNumber } from "./i18n.js";

export const MAX_CHARS = 4000;
const COUNTER_FROM = 3500;
const MAX_HEIGHT_PX = 140;

/** Length as the server counts it (Unicode code points, like Python's len), not UTF-16 units. */
export function charCount(text) {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

export class Composer {
  /** form: the composer <form>. hooks: {onSend(text) -> bool, onStop(), onHandoff()} */
  constructor(form, hooks) {
    this.hooks = hooks;
    this.form = form;
    this.input = form.querySelector("#composer-input");
    this.sendButton = form.querySelector("#send-button");
    this.stopButton = form.querySelector("#stop-button");
    this.counter = form.querySelector("#char-counter");
    this.handoffButton = form.querySelector("#handoff-button");
    this.connected = false;
    this.streaming = false;
    this.handoffPending = false;

    this.input.placeholder = t("placeholder");
    this.input.setAttribute("aria-label", t("composerLabel"));
    this.sendButton.setAttribute("aria-label", t("send"));
    this.sendButton.title = t("send");
    this.stopButton.querySelector(".label").textContent = t("stop");
    this.handoffButton.textContent = t("handoff");

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener("input", () => this.refresh());
    this.stopButton.addEventListener("click", () => {
      this.stopButton.disabled = true;
      this.stopButton.querySelector(".label").textContent = t("stopping");
      hooks.onStop();
    });
    this.handoffButton.addEventListener("click", () => hooks.onHandoff());
    this.refresh();
  }

  submit() {
    const text = this.input.value.trim();
    if (!this.canSend(text)) return;
    if (this.hooks.onSend(text)) {
      this.input.value = "";
      this.refresh();
    }
  }

  canSend(text) {
    return this.connected && !this.streaming && text.length > 0 && charCount(text) <= MAX_CHARS;
  }

  setConnected(connected) {
    this.connected = connected;
    this.refresh();
  }

  /** While an answer streams the Send button becomes Stop and sending is locked (typing ahead is allowed). */
  setStreaming(streaming) {
    if (this.streaming === streaming) return;
    const hadFocus = document.activeElement === (streaming ? this.sendButton : this.stopButton);
    this.streaming = streaming;
    this.stopButton.hidden = !streaming;
    this.stopButton.disabled = false;
    this.stopButton.querySelector(".label").textContent = t("stop");
    this.sendButton.hidden = streaming;
    this.refresh();
    if (hadFocus) (streaming ? this.stopButton : this.input).focus();
  }

  /** Disables "Talk to a person" while a request is pending. */
  setHandoffPending(pending) {
    this.handoffPending = pending;
    this.refresh();
  }

  refresh() {
    const count = charCount(this.input.value.trim());
    const over = count > MAX_CHARS;
    this.sendButton.disabled = !this.canSend(this.input.value.trim());
    this.handoffButton.disabled = this.handoffPending || !this.connected;
    this.counter.hidden = count < COUNTER_FROM;
    this.counter.textContent = over
      ? t("tooLong", { count: formatNumber(count), max: formatNumber(MAX_CHARS) })
      : t("counter", { count: formatNumber(count), max: formatNumber(MAX_CHARS) });
    this.counter.classList.toggle("is-over", over);
    this.input.setAttribute("aria-invalid", String(over));
    // Grow with the text up to a few lines.
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, MAX_HEIGHT_PX)}px`;
  }

  focus() {
    this.input.focus({ preventScroll: true });
  }
}
