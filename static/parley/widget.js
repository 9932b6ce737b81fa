/*
 * Parley chat widget loader. Customers paste:
 *   <script src="https://HOST/widget.js" data-bot="PUBLIC_ID" async></script>
 * Optional: data-lang="en|fr|de", data-position="right|left", data-open (open on load), and a
 * verified user: data-user-id, data-user-hash, data-email, data-name or Parley.identify() (docs/widget.md).
 *
 * Classic script, no dependencies; the only global it defines is window.Parley.
 * Everything it draws lives in a shadow root under an element whose inline
 * `all: initial !important` the host page's CSS cannot override.
 * It talks to the chat iframe only by postMessage (types prefixed "parley:"):
 *   iframe -> host: parley:ready {color, name, unread}, parley:unread {unread}, parley:close
 *   host -> iframe: parley:open {focus}, parley:hidden
 * Both sides check the sender's origin (and here, that the sender is our iframe).
 */
(function () {
  "use strict";
  if (window.Parley && window.Parley.loaded) return; // pasted twice

  var script = document.currentScript || document.querySelector("script[data-bot][src*='widget.js']");
  var bot = script && script.getAttribute("data-bot");
  if (!bot || !/^[\w-]{1,64}$/.test(bot)) {
    if (window.console) console.warn("Parley: missing or invalid data-bot attribute");
    return;
  }
  var ORIGIN = new URL(script.src, location.href).origin;
  var lang = (script.getAttribute("data-lang") || document.documentElement.lang || "en").slice(0, 2).toLowerCase();
  var left = script.getAttribute("data-position") === "left";
  var openAttr = script.getAttribute("data-open");
  var startOpen = openAttr !== null && openAttr !== "false";
  // Sent only in the iframe's #fragment and by postMessage: never in a URL to a server.
  function identityOf(o) {
    return o && o.id ? { user_id: "" + o.id, user_hash: "" + (o.hash || ""), email: o.email || "", name: o.name || "" } : null;
  }
  var identity = identityOf({ id: script.getAttribute("data-user-id"), hash: script.getAttribute("data-user-hash"),
    email: script.getAttribute("data-email"), name: script.getAttribute("data-name") });

  var TEXT = {
    en: ["Open chat", "Close chat", "Chat"],
    fr: ["Ouvrir la discussion", "Fermer la discussion", "Discussion"],
    de: ["Chat öffnen", "Chat schließen", "Chat"],
  }[lang] || ["Open chat", "Close chat", "Chat"];

  var CSS =
    ":host{all:initial}" +
    ".l{position:fixed;bottom:20px;" + (left ? "left" : "right") + ":20px;width:56px;height:56px;margin:0;padding:0;" +
    "border:0;border-radius:50%;background:var(--c,#1f2937);color:var(--t,#fff);cursor:pointer;display:flex;" +
    "align-items:center;justify-content:center;box-shadow:0 4px 14px rgba(0,0,0,.25);transition:transform .15s}" +
    ".l:hover{transform:scale(1.06)}" +
    ".l:focus-visible{outline:3px solid #111827;outline-offset:3px;box-shadow:0 0 0 3px #fff}" +
    ".l svg{width:26px;height:26px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round}" +
    ".l .x,.o .l .i{display:none}.o .l .x{display:block}" +
    ".b{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 5px;box-sizing:border-box;" +
    "border-radius:10px;background:#dc2626;color:#fff;font:700 12px/20px system-ui,sans-serif;text-align:center}" +
    ".b[hidden]{display:none}" +
    ".p{position:fixed;bottom:88px;" + (left ? "left" : "right") + ":20px;width:380px;height:600px;" +
    "max-width:calc(100vw - 40px);max-height:calc(100% - 108px);border-radius:16px;overflow:hidden;background:#fff;" +
    "box-shadow:0 12px 40px rgba(0,0,0,.22);visibility:hidden;opacity:0;transform:translateY(12px);" +
    "transition:opacity .18s,transform .18s,visibility 0s .18s}" +
    ".o .p{visibility:visible;opacity:1;transform:none;transition:opacity .18s,transform .18s}" +
    ".n .p{inset:0;width:100%;height:100%;max-width:none;max-height:none;border-radius:0}" +
    ".n.o .l{display:none}" +
    "iframe{display:block;width:100%;height:100%;border:0}" +
    // Nothing shows until the chat page says it is ready: a site the bot does not allow (or a Parley that is
    // down) gets no button that opens onto an error page.
    "div:not(.r)>.l,div:not(.r)>.p{display:none}" +
    "@media (prefers-reduced-motion:reduce){.l,.p,.o .p{transition:none}.l:hover{transform:none}}";

  var ICON =
    '<svg class="i" viewBox="0 0 24 24" aria-hidden="true"><path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z"/></svg>' +
    '<svg class="x" viewBox="0 0 24 24" aria-hidden="true"><path d="M6 6l12 12M18 6L6 18"/></svg>' +
    '<span class="b" hidden aria-hidden="true"></span>';

  var host, root, launcher, badge, frame, isOpen = false, frameReady = false, wantFocus = false;

  function important(el, styles) {
    // CSSOM rather than a style attribute: allowed under a strict host CSP.
    for (var k in styles) el.style.setProperty(k, styles[k], "important");
  }

  // Readable text colour (#fff or near-black) for a given background.
  function contrastText(hex) {
    var h = hex.length === 4 ? hex.replace(/\w/g, "$&$&").slice(1) : hex.slice(1);
    var lum = [0, 2, 4].map(function (i) {
      var c = parseInt(h.substr(i, 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    var L = 0.2126 * lum[0] + 0.7152 * lum[1] + 0.0722 * lum[2];
    return L > 0.179 ? "#111827" : "#fff";
  }

  function frameSrc() {
    var q = "embed=1&lang=" + encodeURIComponent(lang) + "&page=" + encodeURIComponent(location.href) +
      "&ref=" + encodeURIComponent(document.referrer);
    return ORIGIN + "/chat/" + encodeURIComponent(bot) + "/?" + q +
      (identity ? "#identity=" + encodeURIComponent(JSON.stringify(identity)) : "");
  }

  function post(type, data) {
    if (frame && frame.contentWindow && frameReady) {
      frame.contentWindow.postMessage(data || { type: type, focus: wantFocus }, ORIGIN);
    }
  }

  function layout() {
    // The viewport's own width too: a host page wider than the screen makes innerWidth the page's.
    var viewport = document.documentElement.clientWidth || Infinity;
    var narrow = Math.min(window.innerWidth, viewport, screen.width || Infinity) < 640;
    root.firstChild.className = (isOpen ? "o" : "") + (narrow ? " n" : "") + (frameReady ? " r" : "");
  }

  // quiet: don't move focus (opening on page load must not steal it).
  function setOpen(open, quiet) {
    if (!root) { startOpen = open; return; }
    if (open === isOpen) return;
    isOpen = open;
    layout();
    launcher.setAttribute("aria-expanded", String(open));
    launcher.setAttribute("aria-label", open ? TEXT[1] : TEXT[0]);
    if (open) setUnread(0);
    wantFocus = open && !quiet;
    post(open ? "parley:open" : "parley:hidden");
    if (!quiet) (open ? frame : launcher).focus();
  }

  function onMessage(e) {
    if (e.origin !== ORIGIN || !frame || e.source !== frame.contentWindow) return;
    var d = e.data;
    if (!d || typeof d.type !== "string") return;
    if (d.type === "parley:ready") {
      frameReady = true;
      layout();
      if (typeof d.color === "string" && /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(d.color)) {
        important(host, { "--c": d.color, "--t": contrastText(d.color) });
      }
      if (typeof d.name === "string") frame.title = d.name.slice(0, 80) + " – " + TEXT[2];
      setUnread(d.unread);
      post(isOpen ? "parley:open" : "parley:hidden");
      post(0, { type: "parley:identify", identity: identity });
    } else if (d.type === "parley:unread") {
      setUnread(d.unread);
    } else if (d.type === "parley:close") {
      setOpen(false);
    }
  }

  function setUnread(n) {
    n = Math.max(0, Math.min(99, Number(n) || 0));
    badge.textContent = String(n);
    badge.hidden = n === 0 || isOpen;
  }

  function init() {
    host = document.createElement("parley-widget");
    important(host, {
      all: "initial", display: "block", position: "fixed", bottom: "0", right: "0",
      width: "0", height: "0", "z-index": "2147483000",
    });
    root = host.attachShadow({ mode: "open" });
    var css = CSS;
    try {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(css);
      root.adoptedStyleSheets = [sheet];
    } catch (err) {
      var style = document.createElement("style");
      style.textContent = css;
      root.appendChild(style);
    }
    var wrap = document.createElement("div");
    root.insertBefore(wrap, root.firstChild);

    launcher = document.createElement("button");
    launcher.type = "button";
    launcher.className = "l";
    launcher.innerHTML = ICON; // constant markup, no external data
    launcher.setAttribute("aria-label", TEXT[0]);
    launcher.setAttribute("aria-expanded", "false");
    badge = launcher.querySelector(".b");
    launcher.addEventListener("click", function () { setOpen(!isOpen); });

    var panel = document.createElement("div");
    panel.className = "p";
    frame = document.createElement("iframe");
    frame.title = TEXT[2];
    frame.setAttribute("sandbox", "allow-scripts allow-same-origin allow-popups allow-popups-to-escape-sandbox allow-forms");
    frame.setAttribute("allow", "clipboard-write");
    frame.src = frameSrc();
    panel.appendChild(frame);

    wrap.appendChild(panel);
    wrap.appendChild(launcher);
    document.body.appendChild(host);
    layout();

    window.addEventListener("message", onMessage);
    window.addEventListener("resize", layout);
    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && isOpen) setOpen(false);
    });
    if (startOpen) setOpen(true, true);
  }

  window.Parley = {
    loaded: true,
    open: function () { setOpen(true); },
    close: function () { setOpen(false); },
    toggle: function () { setOpen(!isOpen); },
    identify: function (user) { // null: logged out
      identity = identityOf(user);
      post(0, { type: "parley:identify", identity: identity });
    },
  };

  if (document.body) init();
  else document.addEventListener("DOMContentLoaded", init);
})();
