/*
 * Captivate Chat widget: one tag puts a chat launcher on any page.
 *
 *   <script src="http://HOST:PORT/widget.js" data-api-key="YOUR_API_KEY" async></script>
 *
 * Optional attributes: data-start="user" (the visitor writes first; default: the agent greets),
 * data-user-id="…" (default: a random id kept in the browser), data-title="…", data-open="true",
 * data-position="left". The chat runs in a frame served by the gateway itself, so the host page's styles
 * and scripts cannot touch it and no CORS set-up is needed. The page can call window.CaptivateChat.open(),
 * .close() and .toggle().
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.CaptivateChat) return;

  var gateway = new URL(script.src, location.href).origin;
  var data = script.dataset;
  var left = data.position === "left";
  var params = new URLSearchParams({ embed: "1" });
  if (data.start) params.set("start", data.start);
  if (data.userId) params.set("user", data.userId);
  if (data.title) params.set("title", data.title);
  // the key goes in the fragment: it never reaches a server log or a Referer header
  var src = gateway + "/?" + params.toString() + (data.apiKey ? "#key=" + encodeURIComponent(data.apiKey) : "");

  var css = [
    ":host { all: initial; }",
    ".launcher { position: fixed; bottom: 20px; " + (left ? "left" : "right") + ": 20px; z-index: 2147483646;",
    "  width: 56px; height: 56px; border-radius: 50%; border: 0; cursor: pointer; background: #4f46e5; color: #fff;",
    "  box-shadow: 0 6px 20px rgba(16, 24, 40, .25); display: grid; place-items: center; transition: transform .15s; }",
    ".launcher:hover { transform: scale(1.06); }",
    ".launcher:focus-visible { outline: 3px solid #a5b4fc; outline-offset: 3px; }",
    ".launcher svg { width: 26px; height: 26px; fill: none; stroke: currentColor; stroke-width: 1.8;",
    "  stroke-linecap: round; stroke-linejoin: round; }",
    ".panel { position: fixed; bottom: 88px; " + (left ? "left" : "right") + ": 20px; z-index: 2147483647;",
    "  width: 380px; height: min(620px, calc(100vh - 110px)); border-radius: 16px; overflow: hidden; background: #fff;",
    "  box-shadow: 0 12px 40px rgba(16, 24, 40, .28); border: 1px solid rgba(16, 24, 40, .08); }",
    ".panel[hidden] { display: none; }",
    ".panel iframe { width: 100%; height: 100%; border: 0; display: block; }",
    "@media (max-width: 480px) { .panel { inset: 0; width: 100%; height: 100%; border-radius: 0; } }",
  ].join("\n");

  var ICON_CHAT = "M5 5h14a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2h-7l-4.5 3.5V17H5a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2z";
  var ICON_CLOSE = "M6 6l12 12M18 6L6 18";

  var host = document.createElement("div");
  host.setAttribute("data-captivate-chat", "");
  var root = host.attachShadow({ mode: "open" });
  var style = document.createElement("style");
  style.textContent = css;
  var launcher = document.createElement("button");
  launcher.type = "button";
  launcher.className = "launcher";
  var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  var path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  svg.appendChild(path);
  launcher.appendChild(svg);
  var panel = document.createElement("div");
  panel.className = "panel";
  panel.hidden = true;
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", data.title || "Chat");
  root.append(style, panel, launcher);

  var frame = null;
  function render(open) {
    path.setAttribute("d", open ? ICON_CLOSE : ICON_CHAT);
    launcher.setAttribute("aria-label", open ? "Close the chat" : "Open the chat");
    launcher.setAttribute("aria-expanded", String(open));
  }
  function open() {
    if (!frame) { // the chat loads on first open: a visit that never opens it starts no conversation
      frame = document.createElement("iframe");
      frame.src = src;
      frame.title = data.title || "Chat";
      frame.allow = "clipboard-write";
      frame.addEventListener("load", function () { frame.contentWindow.postMessage({ type: "captivate-chat:focus" }, gateway); });
      panel.appendChild(frame);
    } else {
      frame.contentWindow.postMessage({ type: "captivate-chat:focus" }, gateway);
    }
    panel.hidden = false;
    render(true);
  }
  function close() {
    panel.hidden = true;
    render(false);
    launcher.focus();
  }
  function toggle() { if (panel.hidden) open(); else close(); }

  launcher.addEventListener("click", toggle);
  window.addEventListener("message", function (event) {
    if (event.origin === gateway && frame && event.source === frame.contentWindow && event.data && event.data.type === "captivate-chat:close") close();
  });
  render(false);
  window.CaptivateChat = { open: open, close: close, toggle: toggle };

  function mount() {
    document.body.appendChild(host);
    if (data.open === "true") open();
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
