// The websocket to Parley (protocol version 1, see docs/protocol.md): sends "hello" after every
// (re)connect with the stored visitor token, reconnects with exponential backoff and jitter, and
// detects dead connections with pings.

export const PROTOCOL = 1;

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const PING_EVERY_MS = 25_000;
const SILENCE_LIMIT_MS = 60_000; // no frame at all for this long: the socket is dead, reconnect
// Closed after the handshake with these (unknown bot, origin not allowed): retrying cannot help.
// A refusal during the handshake reaches the browser as a plain 1006 and is retried with backoff.
const FATAL_CLOSE_CODES = new Set([4403, 4404]);

/**
 * Where the visitor token lives. A third-party iframe may have localStorage partitioned or blocked
 * (it throws), so fall back to sessionStorage, then to memory.
 */
export function tokenStore(botId) {
  const key = `parley:visitor:${botId}`;
  let memory = null;
  const stores = [];
  for (const name of ["localStorage", "sessionStorage"]) {
    try {
      const store = window[name];
      store.setItem("parley:probe", "1");
      store.removeItem("parley:probe");
      stores.push(store);
    } catch {
      // blocked: try the next one
    }
  }
  return {
    get() {
      for (const store of stores) {
        try {
          const value = store.getItem(key);
          if (value) return value;
        } catch {
          // ignore
        }
      }
      return memory;
    },
    set(value) {
      memory = value;
      for (const store of stores) {
        try {
          store.setItem(key, value);
          return;
        } catch {
          // full or blocked: try the next one
        }
      }
    },
  };
}

/** Delay before reconnect attempt `attempt` (0-based): exponential, capped, with full jitter above half. */
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export class Connection {
  /**
   * url: the ws(s) URL. hello(): the hello frame's fields besides type/protocol/visitor_token.
   * onFrame(frame): every server frame. onStatus(status): "connecting" | "open" | "reconnecting" | "closed".
   */
  constructor({ url, tokens, hello, onFrame, onStatus }) {
    Object.assign(this, { url, tokens, hello, onFrame, onStatus });
    this.ws = null;
    this.attempt = 0;
    this.ready = false; // "ready" received on the current socket
    this.everReady = false;
    this.stopped = false;
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastFrameAt = 0;
    window.addEventListener("online", () => this.reconnectNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.reconnectNow();
    });
  }

  connect() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.onStatus(this.everReady ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.lastFrameAt = Date.now();
      this.sendRaw({ type: "hello", protocol: PROTOCOL, visitor_token: this.tokens.get(), ...this.hello() });
      this.pingTimer = setInterval(() => this.keepAlive(), PING_EVERY_MS);
    });
    ws.addEventListener("message", (event) => {
      if (ws !== this.ws) return;
      this.lastFrameAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!frame || typeof frame.type !== "string") return;
      if (frame.type === "ready") {
        this.ready = true;
        this.everReady = true;
        this.attempt = 0; // reset only once the server really accepted us, not on TCP open
        if (typeof frame.visitor_token === "string" && frame.visitor_token) this.tokens.set(frame.visitor_token);
        this.onStatus("open");
      }
      if (frame.type !== "pong") this.onFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (ws !== this.ws) return;
      this.dropSocket();
      if (FATAL_CLOSE_CODES.has(event.code)) this.stop();
      if (!this.stopped) this.scheduleReconnect();
    });
  }

  keepAlive() {
    if (Date.now() - this.lastFrameAt > SILENCE_LIMIT_MS) {
      const ws = this.ws;
      this.dropSocket();
      ws?.close();
      this.scheduleReconnect();
    } else {
      this.sendRaw({ type: "ping" });
    }
  }

  dropSocket() {
    clearInterval(this.pingTimer);
    this.ws = null;
    this.ready = false;
  }

  scheduleReconnect() {
    if (this.stopped || this.retryTimer) return;
    this.onStatus(this.everReady ? "reconnecting" : "connecting");
    const delay = backoffDelay(this.attempt++);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  // The network came back or the tab became visible: don't wait out a long backoff.
  reconnectNow() {
    if (!this.ws && this.retryTimer && !this.stopped) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.connect();
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const ws = this.ws;
    this.dropSocket();
    ws?.close();
    this.onStatus("closed");
  }

  sendRaw(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Sends an application frame; false if the socket is not ready (the caller keeps the UI state). */
  send(frame) {
    return this.ready && this.sendRaw(frame);
  }
}
