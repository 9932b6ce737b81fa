// The iframe side of the postMessage bridge with widget.js on the host page.
//
// iframe -> host: parley:ready {color, name, unread}, parley:unread {unread}, parley:close
// host -> iframe: parley:open {focus}, parley:hidden
// Messages go only to the parent's origin, and only messages from the parent window with that origin
// are accepted.

/**
 * The embedding page's origin: the one the server vouched for, else what the browser reports
 * (ancestorOrigins cannot be forged; the referrer can be dropped by the host's referrer policy),
 * else the origin of the page URL the loader put in ?page=.
 */
export function resolveParentOrigin(configured) {
  const candidates = [
    configured,
    window.location.ancestorOrigins?.[0],
    document.referrer,
    new URLSearchParams(window.location.search).get("page"),
  ];
  for (const candidate of candidates) {
    if (!candidate) continue;
    try {
      const origin = new URL(candidate).origin;
      if (origin !== "null" && /^https?:/.test(origin)) return origin;
    } catch {
      // not a URL: try the next one
    }
  }
  return null;
}

export class HostBridge {
  constructor(parentOrigin, handlers) {
    this.parentOrigin = window.parent !== window ? parentOrigin : null;
    if (!this.parentOrigin) return;
    window.addEventListener("message", (event) => {
      if (event.source !== window.parent || event.origin !== this.parentOrigin) return;
      const data = event.data;
      if (!data || typeof data.type !== "string" || !data.type.startsWith("parley:")) return;
      handlers[data.type]?.(data);
    });
  }

  get active() {
    return Boolean(this.parentOrigin);
  }

  post(type, data = {}) {
    if (this.parentOrigin) window.parent.postMessage({ ...data, type }, this.parentOrigin);
  }
}
