// The web chat page (`/`, and the widget's frame with `?embed=1`): what the visitor sees of a ChatSession.
//
// Page parameters: `key` (query or #fragment: the API key, kept in localStorage and removed from the
// address bar), `start=user|bot` (default bot: the agent greets first), `user` (the userId; default a
// random id kept in this browser), `title`, `embed=1` (inside the widget's frame).

import { ChatSession, newId, storage } from "./chat-session.js";
import { formatSize } from "./files.js";
import { fillIcons, icon } from "./icons.js";
import { contentText, el, isEmptyText, renderContent } from "./render.js";
import { messageRow, noteRow } from "./rows.js";

const KEY_SLOT = "captivate.chat.apiKey";
const USER_SLOT = "captivate.chat.userId";
const TYPING_TIMEOUT_MS = 35000;
const DEFAULT_TITLE = "Captivate Chat";

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
const embedded = query.get("embed") === "1";

const SENDERS = {
  user: {},
  bot: { label: "Assistant", icon: "bot" },
  human: { label: "Human agent", icon: "human" },
};

/** Take `key` out of the address (it must not stay in history or be bookmarked), keeping the rest. */
function takeKeyFromUrl() {
  const key = query.get("key") || fragment.get("key");
  if (!key) return null;
  query.delete("key");
  fragment.delete("key");
  const search = query.toString();
  const hash = fragment.toString();
  history.replaceState(null, "", location.pathname + (search ? `?${search}` : "") + (hash ? `#${hash}` : ""));
  return key.trim();
}

class ChatView {
  constructor() {
    this.history = $("history");
    this.pending = $("pending");
    this.log = $("log");
    this.rows = new Map(); // client_msg_id -> the visitor's own message row
    this.streams = new Map(); // message_id -> a streaming reply's row
    this.mode = "ai";
    this.typing = null;
    this.typingTimer = null;
    this.lastReplySeq = 0; // the newest answer shown: an acknowledgement older than it needs no "typing…"
    this.stick = true;
    this.log.addEventListener("scroll", () => (this.stick = this.nearBottom()), { passive: true });
  }

  // --- rows -------------------------------------------------------------------------------------

  nearBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 120;
  }

  /** Follow new messages, unless the visitor scrolled up to read (then only their own message moves). */
  scroll(force = false) {
    if (force || this.stick) requestAnimationFrame(() => (this.log.scrollTop = this.log.scrollHeight));
  }

  messageRow(from, body, where = this.history) {
    return messageRow(where, from, body, SENDERS[from] || SENDERS.bot);
  }

  note(kind, text, details = null) {
    const row = noteRow(this.history, kind, text, details);
    this.scroll();
    return row;
  }

  content(content) {
    return renderContent(content, { onChoose: (option) => session.choose(option) });
  }

  // --- what the session reports -------------------------------------------------------------------

  onEvent(type, p) {
    if (["bot_message", "livechat_message", "general_error", "system_message"].includes(type) && Number.isInteger(p.seq)) {
      this.lastReplySeq = p.seq;
    }
    switch (type) {
      case "user_message":
        return this.userMessage(p);
      case "bot_message":
        this.stopTyping();
        this.finishStream(p.message_id);
        this.messageRow("bot", this.content(p.content));
        return this.scroll();
      case "bot_message_delta":
        return this.delta(p);
      case "livechat_message":
        this.messageRow("human", this.content(p.content));
        return this.scroll();
      case "system_message":
        if (p.handoff) this.setMode(p.handoff);
        this.note("system", contentText(p.content));
        return;
      case "conversation_update":
        return this.update(p);
      case "action":
        for (const action of Array.isArray(p.actions) ? p.actions : []) {
          this.note("event", `The agent sent an action: ${action.id}`, JSON.stringify(action.data ?? {}, null, 2));
        }
        return;
      case "user_action":
        this.messageRow("user", el("span", { class: "m-action" }, `Chose: ${p.id}`));
        return this.scroll();
      case "general_error":
        this.stopTyping();
        if (p.error_code === 413 && p.message_link) return this.longMessage(p);
        this.note("error", p.error_desc || `Error ${p.error_code}`);
        return;
      default:
        return; // an event this page does not show (metadata changes and the like)
    }
  }

  userMessage(p) {
    if (isEmptyText(p.content)) return; // the bot-first start, not something the visitor said
    const own = p.client_msg_id && this.rows.get(p.client_msg_id);
    if (own) own.remove(); // it moves from the pending area into its place in the conversation
    const row = this.messageRow("user", this.content(p.content));
    row.dataset.clientMsgId = p.client_msg_id || "";
    this.rows.delete(p.client_msg_id);
    this.scroll(true);
  }

  delta(p) {
    this.stopTyping();
    let row = this.streams.get(p.message_id);
    if (!row) {
      row = this.messageRow("bot", el("p", { class: "m-text" }), this.pending);
      row.classList.add("row--streaming");
      this.streams.set(p.message_id, row);
    }
    row.querySelector(".m-text").append(String(p.delta ?? ""));
    this.scroll();
  }

  finishStream(messageId) {
    const row = this.streams.get(messageId);
    if (row) row.remove();
    this.streams.delete(messageId);
  }

  update(p) {
    const data = p.data || {};
    if (p.type === "livechat_started") this.setMode(data.state || "waiting_human");
    else if (p.type === "livechat_ended") this.setMode("ai");
    else if (p.type === "title_changed" && data.title) setTitle(String(data.title));
    else if (p.type === "agent_changed") this.note("system", `Another agent (${data.agent_id}) is taking over.`);
    else if (p.type === "deleted") this.note("error", "This conversation was deleted. Start a new one with the + button.");
  }

  async longMessage(p) {
    const row = this.messageRow("bot", el("p", { class: "m-text m-loading" }, "Loading a long message…"));
    try {
      const entry = await session.fetchMessageLink(p.message_link);
      const from = entry.from === "human_agent" ? "human" : entry.from === "user" ? "user" : "bot";
      row.className = `row row--${from}`;
      row.querySelector(".bubble").replaceChildren(this.content(entry.content));
    } catch (err) {
      row.querySelector(".bubble").replaceChildren(el("p", { class: "m-text" }, `This message could not be loaded (${err.message}).`));
    }
    this.scroll();
  }

  setMode(mode) {
    this.mode = mode;
    const avatar = $("header-avatar");
    avatar.className = `avatar avatar--lg avatar--${mode === "human" ? "human" : "bot"}`;
    avatar.replaceChildren(icon(mode === "human" ? "human" : "bot"));
    const banner = $("banner");
    banner.hidden = mode === "ai";
    banner.dataset.mode = mode;
    banner.textContent = mode === "human" ? "You are chatting with a human agent." : "Waiting for a human agent to join…";
    if (mode !== "ai") this.stopTyping();
  }

  onQueued(item) {
    const text = item.kind === "action" ? `Chose: ${item.label || item.id}` : item.text;
    let row = this.rows.get(item.client_msg_id);
    if (!row) {
      const body = item.files && item.files.length ? this.content({ type: "text", text, files: item.files }) : el("p", { class: "m-text" }, text);
      row = this.messageRow("user", body, this.pending);
      row.dataset.clientMsgId = item.client_msg_id;
      this.rows.set(item.client_msg_id, row);
    }
    row.classList.remove("row--failed");
    row.classList.add("row--sending");
    this.receipt(row, session.synced ? "Sending…" : "Waiting for the connection…");
    this.scroll(true);
  }

  onAck(item, body) {
    const row = this.rows.get(item.client_msg_id);
    if (row && item.kind === "action") {
      row.remove(); // the stored `user_action` takes its place
      this.rows.delete(item.client_msg_id);
    } else if (row) {
      row.classList.remove("row--sending");
      this.receipt(row, null);
    }
    if (this.mode === "ai" && Number.isInteger(body.seq) && body.seq > this.lastReplySeq) this.startTyping();
  }

  onFailed(item, desc) {
    const row = this.rows.get(item.client_msg_id);
    if (!row) return;
    row.classList.remove("row--sending");
    row.classList.add("row--failed");
    const retry = el("button", { type: "button", class: "link" }, "Retry");
    retry.addEventListener("click", () => session.retry(item));
    this.receipt(row, el("span", {}, `Not sent: ${desc}. `, retry));
  }

  receipt(row, content) {
    row.querySelector(".row__receipt")?.remove();
    if (content) row.querySelector(".row__col").append(el("div", { class: "row__receipt" }, content));
  }

  startTyping() {
    if (this.typing || Array.from(this.streams.values()).length) return;
    this.typing = this.messageRow("bot", el("span", { class: "typing", "aria-label": "The assistant is typing" }, el("i"), el("i"), el("i")), this.pending);
    this.typingTimer = setTimeout(() => this.stopTyping(), TYPING_TIMEOUT_MS);
    this.scroll();
  }

  stopTyping() {
    clearTimeout(this.typingTimer);
    if (this.typing) this.typing.remove();
    this.typing = null;
  }

  onReset() {
    this.history.replaceChildren();
    this.pending.replaceChildren();
    this.rows.clear();
    this.streams.clear();
    this.stopTyping();
    this.lastReplySeq = 0;
    this.stick = true;
    this.setMode("ai");
    setTitle(query.get("title") || DEFAULT_TITLE);
  }

  onNotice(text) {
    this.note("system", text);
  }

  onConnection(state, detail = {}) {
    const text = {
      connecting: "Connecting…",
      syncing: "Connecting…",
      online: "Online",
      reconnecting: "Connection lost · reconnecting…",
      refused: "API key refused",
    }[state];
    $("status-dot").dataset.state = state;
    $("status-text").textContent = text || state;
    $("chat").dataset.connection = state;
    if (state === "refused") askForKey("The gateway refused this API key. Check it, or make a new one with captivate-chat keys create.");
    if (state === "online") {
      for (const row of this.rows.values()) {
        if (row.classList.contains("row--sending")) this.receipt(row, "Sending…");
      }
    }
    void detail;
  }
}

function setTitle(text) {
  $("title").textContent = text;
  document.title = `${text} · Captivate Chat`;
}

function askForKey(error = null) {
  document.body.classList.add("asking-key");
  $("key-form").hidden = false;
  $("composer").hidden = true;
  $("log").hidden = true;
  $("key-error").hidden = !error;
  $("key-error").textContent = error || "";
  $("key-input").focus();
}

async function downloadTranscript() {
  if (!session.conversationId) {
    view.onNotice("There is nothing to download yet.");
    return;
  }
  try {
    const entries = await session.transcript();
    const lines = entries
      .filter((e) => !(e.from === "user" && isEmptyText(e.content)))
      .map((e) => `[${e.created_at}] ${e.from}: ${contentText(e.content)}`);
    const blob = new Blob([lines.join("\n") + "\n"], { type: "text/plain" });
    const link = el("a", { href: URL.createObjectURL(blob), download: `transcript-${session.conversationId}.txt` });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (err) {
    view.onNotice(`Could not download the transcript: ${err.message}`);
  }
}

/** Files picked or dropped for the next message: each uploads at once (with a progress bar), then waits
 * in the tray until the message is sent. */
class Attachments {
  constructor() {
    this.items = [];
    this.tray = $("tray");
  }

  get busy() {
    return this.items.some((item) => item.state === "uploading");
  }

  get ready() {
    return this.items.filter((item) => item.state === "ready").map((item) => item.fileObject);
  }

  add(fileList) {
    for (const file of Array.from(fileList || [])) this.start(file);
  }

  start(file) {
    const bar = el("progress", { max: "100", value: "0", "aria-label": `Uploading ${file.name}` });
    const state = el("span", { class: "chip-file__state" }, "0%");
    const remove = el("button", { type: "button", "aria-label": `Remove ${file.name}`, title: "Remove" }, "×");
    const chip = el("span", { class: "chip-file", "data-state": "uploading" }, icon("file"), el("span", { class: "chip-file__name" }, file.name), bar, state, remove);
    const item = { file, state: "uploading", fileObject: null, chip };
    remove.addEventListener("click", () => this.drop(item));
    this.items.push(item);
    this.tray.append(chip);
    this.render();
    session
      .upload(file, (sent, total) => {
        const percent = total ? Math.min(100, Math.round((sent / total) * 100)) : 0;
        bar.value = percent;
        state.textContent = `${percent}%`;
      })
      .then((fileObject) => {
        item.state = "ready";
        item.fileObject = fileObject;
        bar.remove();
        state.textContent = formatSize(file.size);
      })
      .catch((err) => {
        item.state = "failed";
        bar.remove();
        state.textContent = `Not uploaded: ${err.message}`;
        chip.setAttribute("role", "alert");
      })
      .finally(() => {
        chip.dataset.state = item.state;
        if (this.items.includes(item)) this.render();
      });
  }

  drop(item) {
    this.items = this.items.filter((other) => other !== item);
    item.chip.remove();
    this.render();
  }

  clear() {
    this.items = [];
    this.tray.replaceChildren();
    this.render();
  }

  render() {
    this.tray.hidden = this.items.length === 0;
    $("send").disabled = this.busy;
    $("send").title = this.busy ? "Wait for the uploads to finish" : "Send (Enter)";
  }
}

function wireFiles() {
  const picker = $("file-input");
  $("attach").addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    attachments.add(picker.files);
    picker.value = "";
  });
  const chat = $("chat");
  const drop = $("drop");
  let depth = 0;
  const carriesFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
  chat.addEventListener("dragenter", (event) => {
    if (!carriesFiles(event) || $("composer").hidden) return;
    event.preventDefault();
    depth += 1;
    drop.hidden = false;
  });
  chat.addEventListener("dragover", (event) => {
    if (carriesFiles(event) && !$("composer").hidden) event.preventDefault();
  });
  chat.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) drop.hidden = true;
  });
  chat.addEventListener("drop", (event) => {
    depth = 0;
    drop.hidden = true;
    if (!carriesFiles(event) || $("composer").hidden) return;
    event.preventDefault();
    attachments.add(event.dataTransfer.files);
  });
}

function wireComposer() {
  const input = $("input");
  const grow = () => {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 140)}px`;
  };
  input.addEventListener("input", grow);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (attachments.busy) return; // the send button says why
    const files = attachments.ready;
    if (!text && !files.length) return;
    input.value = "";
    grow();
    attachments.clear();
    session.send(text, files);
  });
}

function closeEmbed() {
  window.parent.postMessage({ type: "captivate-chat:close" }, "*");
}

// --- start ---------------------------------------------------------------------------------------

fillIcons();
setTitle(query.get("title") || DEFAULT_TITLE);
const fromUrl = takeKeyFromUrl();
if (fromUrl && fromUrl !== storage.get(KEY_SLOT)) {
  storage.set("captivate.chat.conversation", null); // another key: another tenant, another conversation
  storage.set(KEY_SLOT, fromUrl);
}
let userId = query.get("user") || storage.get(USER_SLOT);
if (!userId) {
  userId = `web-${newId().slice(0, 12)}`;
  storage.set(USER_SLOT, userId);
}

const view = new ChatView();
const attachments = new Attachments();
let session = null;

function begin(apiKey) {
  if (session) session.socket.stop();
  view.onReset();
  attachments.clear();
  document.body.classList.remove("asking-key");
  $("key-form").hidden = true;
  $("log").hidden = false;
  $("composer").hidden = false;
  session = new ChatSession({ apiKey, userId, startMode: query.get("start") === "user" ? "user" : "bot", view });
  session.start();
  if (!embedded) $("input").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) return;
  if (key !== storage.get(KEY_SLOT)) storage.set("captivate.chat.conversation", null);
  storage.set(KEY_SLOT, key);
  $("key-input").value = "";
  begin(key);
});
$("change-key").addEventListener("click", () => {
  if (session) session.socket.stop();
  $("status-dot").dataset.state = "refused";
  $("status-text").textContent = "Not connected";
  askForKey();
});
$("restart").addEventListener("click", () => {
  attachments.clear(); // uploaded into the conversation being left
  if (session) session.restart();
});
$("download").addEventListener("click", () => session && downloadTranscript());
wireComposer();
wireFiles();

if (embedded) {
  document.body.classList.add("embedded");
  $("close").hidden = false;
  $("close").addEventListener("click", closeEmbed);
  $("change-key").hidden = true;
  document.addEventListener("keydown", (event) => event.key === "Escape" && closeEmbed());
  window.addEventListener("message", (event) => {
    if (event.source === window.parent && event.data && event.data.type === "captivate-chat:focus") $("input").focus();
  });
}

const apiKey = storage.get(KEY_SLOT);
if (apiKey) begin(apiKey);
else askForKey();
