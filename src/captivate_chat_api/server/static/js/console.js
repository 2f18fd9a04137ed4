// The human agents' console (`/console`): the queue of hand-offs, one conversation's transcript and
// metadata, take / answer / end. REST under /api/agent to act; the agent WebSocket to follow: it gets
// `handoff_update` for the channel and every event of the conversations this console looks at.

import { storage } from "./chat-session.js";
import { fillIcons } from "./icons.js";
import { fileList } from "./files.js";
import { contentText, el, files as fileLinks, isEmptyText, renderContent } from "./render.js";
import { messageRow, noteRow } from "./rows.js";
import { LiveSocket } from "./socket.js";

const TOKEN_SLOT = "captivate.console.token";
const NAME_SLOT = "captivate.console.name";
const $ = (id) => document.getElementById(id);

const SENDERS = {
  user: { label: "Customer" },
  bot: { label: "AI agent", icon: "bot" },
  human: { label: "Human agent", icon: "human" },
};
const FROM = { user: "user", bot: "bot", human_agent: "human" };
const EVENT_FROM = { user_message: "user", bot_message: "bot", livechat_message: "human" };
const STATE_LABEL = { ai: "AI agent", waiting_human: "Waiting", human: "Live" };

class ApiError extends Error {
  constructor(status, desc) {
    super(desc || `HTTP ${status}`);
    this.status = status;
  }
}

/** The REST side of the agent API, with the token in `x-agent-token`. */
class AgentApi {
  constructor(token) {
    this.token = token;
  }

  async request(method, path, body = undefined) {
    const response = await fetch(`/api/agent${path}`, {
      method,
      headers: { "x-agent-token": this.token, accept: "application/json", ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(response.status, data.error_desc);
    return data;
  }

  list() {
    return this.request("GET", "/conversations").then((data) => data.conversations || []);
  }

  get(id, socketId) {
    const query = socketId ? `?socket_id=${encodeURIComponent(socketId)}` : "";
    return this.request("GET", `/conversations/${encodeURIComponent(id)}${query}`);
  }

  act(id, verb, body) {
    return this.request("POST", `/conversations/${encodeURIComponent(id)}/${verb}`, body);
  }
}

function displayName(c) {
  const info = c.user_basic_info || {};
  const full = [info.firstName, info.lastName].filter((x) => typeof x === "string" && x).join(" ");
  return String(info.name || full || info.email || c.user_id || "Visitor");
}

function ago(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

function valueText(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

class Console {
  constructor(token, name) {
    this.api = new AgentApi(token);
    this.name = name; // "" until the gateway tells us (the token's label) on the first take
    this.conversations = [];
    this.unread = new Set();
    this.selected = null; // the open conversation's summary
    this.files = []; // every file of the open conversation, oldest first
    this.lastSeq = 0; // the newest event shown in the open conversation
    this.early = null; // {id, events}: the events of a conversation that came on the socket while it loads
    this.listing = null;
    this.listAgain = false;
    this.socket = new LiveSocket({
      url: () => `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/agent/ws?token=${encodeURIComponent(token)}`,
      hello: "agent_connected",
      onReady: () => this.onReady(),
      onEvent: (type, payload) => this.onEvent(type, payload),
      onState: (state) => this.onState(state),
      isRefused: async () => {
        try {
          await this.api.list();
          return false;
        } catch (err) {
          return err instanceof ApiError && err.status === 401;
        }
      },
    });
  }

  showName() {
    if (this.name) $("me-line").replaceChildren("Signed in as ", el("strong", { id: "me" }, this.name));
    else $("me-line").textContent = "Signed in";
  }

  start() {
    this.showName();
    this.socket.start();
  }

  onState(state) {
    const text = { connecting: "Connecting…", online: "Live", reconnecting: "Connection lost · reconnecting…", refused: "Token refused" }[state];
    $("status-dot").dataset.state = state;
    $("status-text").textContent = text || state;
    if (state === "refused") signOut("The gateway refused this token (revoked?). Sign in again.");
  }

  /** A (new) socket: refresh everything, and follow the open conversation again. */
  onReady() {
    this.socket.healthy();
    this.refreshList();
    const id = this.selected ? this.selected.conversation_id : decodeURIComponent(location.hash.slice(1));
    if (id) this.open(id);
  }

  onEvent(type, p) {
    if (type === "handoff_update") {
      this.refreshList();
      if (this.selected && p.conversation_id === this.selected.conversation_id) this.open(p.conversation_id);
      return;
    }
    if (!p.conversation_id || !Number.isInteger(p.seq)) return;
    if (this.early && this.early.id === p.conversation_id) {
      this.early.events.push([type, p]); // shown once the transcript they may follow is drawn
      return;
    }
    if (!this.selected || p.conversation_id !== this.selected.conversation_id) {
      if (type === "user_message") {
        this.unread.add(p.conversation_id);
        this.renderList();
      }
      return;
    }
    if (p.seq <= this.lastSeq) return; // already in the transcript
    if (p.seq > this.lastSeq + 1) {
      this.open(p.conversation_id); // a gap: read it again
      return;
    }
    this.lastSeq = p.seq;
    this.showEvent(type, p);
  }

  // --- the queue --------------------------------------------------------------------------------

  async refreshList() {
    if (this.listing) {
      this.listAgain = true; // one more pass after the one under way
      return this.listing;
    }
    this.listing = (async () => {
      do {
        this.listAgain = false;
        try {
          this.conversations = await this.api.list();
        } catch (err) {
          if (err instanceof ApiError && err.status === 401) signOut("The gateway refused this token. Sign in again.");
          return;
        }
        this.renderList();
      } while (this.listAgain);
    })().finally(() => {
      this.listing = null;
    });
    return this.listing;
  }

  renderList() {
    const waiting = this.conversations
      .filter((c) => c.state === "waiting_human")
      .sort((a, b) => String(a.updated_at).localeCompare(String(b.updated_at)));
    const live = this.conversations
      .filter((c) => c.state === "human")
      .sort((a, b) => String(b.updated_at).localeCompare(String(a.updated_at)));
    for (const [id, list] of [["waiting", waiting], ["live", live]]) {
      $(id).replaceChildren(...list.map((c) => this.listItem(c)));
      $(`${id}-count`).textContent = String(list.length);
      $(`${id}-count`).toggleAttribute("data-busy", id === "waiting" && list.length > 0);
      $(`${id}-empty`).hidden = list.length > 0;
    }
    document.title = `${waiting.length ? `(${waiting.length}) ` : ""}Agent console · Captivate Chat`;
  }

  listItem(c) {
    const mine = c.state === "human" && this.isMine(c);
    const selected = this.selected && this.selected.conversation_id === c.conversation_id;
    const who = c.state === "human" ? (mine ? "with you" : `with ${c.human_agent}`) : `waiting since ${ago(c.updated_at)}`;
    const button = el(
      "button",
      { type: "button", class: "queue__item", "aria-current": selected ? "true" : null, "data-conversation": c.conversation_id },
      el("span", { class: "queue__name" }, displayName(c), this.unread.has(c.conversation_id) ? el("span", { class: "unread", "aria-label": "new messages" }) : null),
      el("span", { class: "queue__meta" }, who),
    );
    button.addEventListener("click", () => this.open(c.conversation_id));
    return el("li", {}, button);
  }

  isMine(c) {
    return Boolean(this.name) && c.human_agent === this.name;
  }

  // --- one conversation ---------------------------------------------------------------------------

  /**
   * Read a conversation and show it. The socket follows it from before the read, so an event can arrive
   * while the read is under way: it waits in `early` and is applied (by `seq`, once) after the transcript.
   */
  async open(id) {
    const token = (this.opening = Symbol(id)); // a later open wins over an earlier one still loading
    if (!this.early || this.early.id !== id) this.early = { id, events: [] };
    let c;
    try {
      c = await this.api.get(id, this.socket.socketId);
    } catch (err) {
      if (token !== this.opening) return;
      if (err instanceof ApiError && err.status === 404) {
        this.early = null; // gone: nothing of it to show
        this.close();
        return;
      }
      this.applyEarly();
      this.flash(`Could not load the conversation: ${err.message}`);
      return;
    }
    if (token !== this.opening) return;
    try {
      this.show(c);
    } finally {
      this.applyEarly();
    }
  }

  /** The events that came while a conversation loaded, through the usual checks (older ones are dropped). */
  applyEarly() {
    const early = this.early;
    this.early = null;
    for (const [type, p] of early ? early.events : []) this.onEvent(type, p);
  }

  show(c) {
    const id = c.conversation_id;
    const switched = !this.selected || this.selected.conversation_id !== id;
    this.selected = c;
    this.unread.delete(id);
    if (location.hash.slice(1) !== id) history.replaceState(null, "", `#${encodeURIComponent(id)}`);
    $("empty").hidden = true;
    $("conversation").hidden = false;
    this.renderHead();
    const transcript = $("transcript");
    const stick = switched || transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 120;
    transcript.replaceChildren();
    this.lastSeq = 0;
    this.files = [];
    for (const entry of c.transcript || []) {
      this.files.push(...fileList(entry.files));
      if (entry.from === "system") noteRow(transcript, "system", contentText(entry.content));
      else if (!(entry.from === "user" && isEmptyText(entry.content))) this.message(FROM[entry.from] || "bot", entry.content, entry.agent_name);
      this.lastSeq = Math.max(this.lastSeq, entry.seq || 0);
    }
    this.lastSeq = Math.max(this.lastSeq, c.last_seq || 0);
    this.renderInfo();
    if (stick) transcript.scrollTop = transcript.scrollHeight;
    this.renderList();
    if (switched && this.canReply()) $("reply-input").focus();
  }

  close() {
    this.selected = null;
    history.replaceState(null, "", location.pathname);
    $("conversation").hidden = true;
    $("empty").hidden = false;
    this.renderList();
  }

  message(from, content, agentName = null) {
    // a human agent's message carries the display name of the agent who sent it (from its token)
    const sender = agentName ? { ...SENDERS[from], label: agentName } : SENDERS[from];
    return messageRow($("transcript"), from, renderContent(content), sender);
  }

  showEvent(type, p) {
    const transcript = $("transcript");
    const atBottom = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 120;
    if (EVENT_FROM[type]) {
      if (!(type === "user_message" && isEmptyText(p.content))) this.message(EVENT_FROM[type], p.content, p.agent_name);
      const added = p.content && typeof p.content === "object" ? fileList(p.content.files) : [];
      if (added.length) {
        this.files.push(...added);
        this.renderInfo();
      }
    } else if (type === "system_message") {
      noteRow(transcript, "system", contentText(p.content));
    } else if (type === "user_action") {
      this.message("user", el("span", { class: "m-action" }, `Chose: ${p.id}`));
    } else if (type === "general_error") {
      noteRow(transcript, "error", p.error_code === 413 ? "A long message (see the full transcript)." : p.error_desc || `Error ${p.error_code}`);
    } else {
      return;
    }
    if (atBottom) transcript.scrollTop = transcript.scrollHeight;
  }

  canReply() {
    return Boolean(this.selected && this.selected.state === "human" && this.isMine(this.selected));
  }

  renderHead() {
    const c = this.selected;
    $("c-title").textContent = displayName(c);
    $("c-sub").textContent = `Conversation ${c.conversation_id}`;
    const badge = $("c-state");
    badge.textContent = c.state === "human" ? `Live · ${c.human_agent}` : STATE_LABEL[c.state] || c.state;
    badge.dataset.state = c.state;
    const mine = this.isMine(c);
    $("take").hidden = !(c.state === "waiting_human" || c.state === "ai");
    $("take").textContent = c.state === "ai" ? "Step in" : "Take conversation";
    $("end").hidden = !(c.state === "human" && mine) && c.state !== "waiting_human";
    $("end").textContent = c.state === "waiting_human" ? "Back to the AI" : "End live chat";
    const reply = this.canReply();
    $("reply").hidden = !reply;
    $("reply-hint").hidden = reply;
    $("reply-hint").textContent =
      c.state === "human" ? `${c.human_agent} is handling this conversation.` : c.state === "waiting_human" ? "Take the conversation to answer." : "The AI agent is answering this conversation.";
  }

  renderInfo() {
    const c = this.selected;
    const rows = [
      ["User ID", c.user_id],
      ["Conversation", c.conversation_id],
      ["State", STATE_LABEL[c.state] || c.state],
      ["Human agent", c.human_agent || "—"],
      ["Updated", c.updated_at ? `${ago(c.updated_at)}` : "—"],
    ];
    const section = (title, object) => {
      const entries = Object.entries(object || {});
      return el(
        "section",
        {},
        el("h3", {}, title),
        entries.length
          ? el("dl", {}, entries.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, valueText(v))]))
          : el("p", { class: "info__none" }, "none"),
      );
    };
    $("info").replaceChildren(
      el("section", {}, el("h3", {}, "Conversation"), el("dl", {}, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, valueText(v))]))),
      el("section", { class: "info__files" }, el("h3", {}, `Files (${this.files.length})`), this.files.length ? fileLinks(this.files) : el("p", { class: "info__none" }, "none")),
      section("User", c.user_basic_info),
      section("Metadata", c.metadata),
      section("Private metadata", c.private_metadata),
    );
  }

  async act(verb, body = {}) {
    const c = this.selected;
    if (!c) return;
    try {
      const record = await this.api.act(c.conversation_id, verb, { ...body, socket_id: this.socket.socketId });
      if (verb === "take" && record.human_agent && this.name !== record.human_agent) {
        this.name = record.human_agent; // the token's label: now we know who "me" is
        storage.set(NAME_SLOT, this.name);
        this.showName();
      }
      if (verb !== "messages") {
        await this.open(c.conversation_id); // the message itself comes back on the socket
        this.refreshList();
      }
      return record;
    } catch (err) {
      this.flash(err.status === 409 ? `Someone else got there first: ${err.message}` : `Could not ${verb}: ${err.message}`);
      this.refreshList();
      if (this.selected) this.open(this.selected.conversation_id);
      return null;
    }
  }

  async reply(text) {
    const sent = await this.act("messages", { text });
    return sent !== null;
  }

  flash(text) {
    noteRow($("transcript"), "error", text);
    $("transcript").scrollTop = $("transcript").scrollHeight;
  }
}

// --- sign in and wiring ---------------------------------------------------------------------------

let app = null;

function signOut(error = null) {
  if (app) app.socket.stop();
  app = null;
  storage.set(TOKEN_SLOT, null);
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").hidden = !error;
  $("login-error").textContent = error || "";
  $("token").focus();
}

function begin(token, name) {
  $("login").hidden = true;
  $("app").hidden = false;
  app = new Console(token, name);
  app.start();
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  const name = $("agent-name").value.trim();
  try {
    await new AgentApi(token).list();
  } catch (err) {
    $("login-error").hidden = false;
    $("login-error").textContent = err.status === 401 ? "This token is not a valid human agent token." : `Could not reach the gateway: ${err.message}`;
    return;
  }
  storage.set(TOKEN_SLOT, token);
  storage.set(NAME_SLOT, name);
  $("token").value = "";
  begin(token, name);
});
$("sign-out").addEventListener("click", () => signOut());
$("take").addEventListener("click", () => app && app.act("take"));
$("end").addEventListener("click", () => app && app.act("end"));
$("reply-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("reply").requestSubmit();
  }
});
$("reply").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("reply-input");
  const text = input.value.trim();
  if (!text || !app) return;
  $("reply-send").disabled = true;
  try {
    if (await app.reply(text)) input.value = "";
  } finally {
    $("reply-send").disabled = false;
    input.focus();
  }
});

fillIcons();
const savedToken = storage.get(TOKEN_SLOT);
if (savedToken) begin(savedToken, storage.get(NAME_SLOT) || "");
else {
  $("login").hidden = false;
  $("agent-name").value = storage.get(NAME_SLOT) || "";
}
