// Browser notifications (the Notifications API) for what needs a person: a visitor asking for one, and a visitor
// writing in a conversation this staff member has taken over. Off until the staff member allows them in the
// browser; an optional sound (a short tone made with Web Audio: nothing to download).
import { onFrame } from "./live.js";

const SOUND_KEY = "parley:notify-sound";
const controls = document.getElementById("notify-controls");
const enable = document.getElementById("notify-enable");
const state = document.getElementById("notify-state");
const sound = document.getElementById("notify-sound");
const myId = Number(document.getElementById("dash")?.dataset.userId) || null;
// A visitor's message, until the conversation's row (sent right after it) says who has the conversation.
const pending = new Map();
let audio = null;

function supported() {
  return "Notification" in window;
}

function soundOn() {
  try {
    return window.localStorage.getItem(SOUND_KEY) === "1";
  } catch {
    return false;
  }
}

function showState() {
  if (!controls) return;
  controls.hidden = false;
  sound.checked = soundOn();
  if (!supported()) {
    enable.hidden = true;
    state.textContent = "This browser cannot show notifications.";
    return;
  }
  const permission = Notification.permission;
  enable.hidden = permission !== "default";
  state.textContent =
    permission === "granted" ? "Notifications on" : permission === "denied" ? "Notifications blocked in this browser" : "";
}

function beep() {
  try {
    audio ??= new AudioContext();
    const tone = audio.createOscillator();
    const gain = audio.createGain();
    tone.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.4);
    tone.connect(gain).connect(audio.destination);
    tone.start();
    tone.stop(audio.currentTime + 0.4);
  } catch {
    // no audio here: the notification alone will do
  }
}

function notify({ title, body, url, tag }) {
  if (!supported() || Notification.permission !== "granted") return;
  const notification = new Notification(title, { body: String(body || "").slice(0, 200), tag });
  notification.addEventListener("click", () => {
    window.focus();
    if (url) window.location.href = url;
    notification.close();
  });
  if (soundOn()) beep();
}

enable?.addEventListener("click", async () => {
  // Asked only on a click: browsers refuse (or remember a refusal of) a request the page makes by itself.
  await Notification.requestPermission();
  showState();
});

sound?.addEventListener("change", () => {
  try {
    window.localStorage.setItem(SOUND_KEY, sound.checked ? "1" : "0");
  } catch {
    // storage blocked: the choice lasts for this page only
  }
  if (sound.checked) beep(); // what it will sound like (and Web Audio needs a gesture to start)
});

onFrame((frame) => {
  if (frame.type === "handoff") {
    notify({
      title:
        frame.status === "requested"
          ? `${frame.bot}: a visitor asks for a person`
          : `${frame.bot}: a visitor asked for a person (nobody available)`,
      body: frame.summary,
      url: frame.url,
      tag: `handoff-${frame.conversation_id}`,
    });
  } else if (frame.type === "message" && frame.message?.role === "visitor") {
    pending.set(frame.conversation_id, frame.message.text);
  } else if (frame.type === "conversation") {
    const row = frame.conversation;
    const text = pending.get(row.id);
    pending.delete(row.id);
    if (text !== undefined && myId !== null && row.taken_over_by_id === myId) {
      notify({ title: `${row.bot}: the visitor wrote`, body: text, url: row.url, tag: `message-${row.id}` });
    }
  }
});

showState();
