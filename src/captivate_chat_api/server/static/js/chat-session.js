// One visitor's conversation with the gateway, as PROTOCOL.md has it: events in over the WebSocket, client
// events out by HTTP POST with `event.socket_id` (as the npm client 7.0.0 does).
//
// Nothing is shown twice and nothing is lost: every conversation event carries `seq`; the session keeps
// the last one it showed, drops anything at or below it, and on a gap or a new socket resubscribes with
// `after_seq` so the gateway replays exactly what was missed. Messages typed while offline wait in an
// outbox (kept in localStorage with the conversation id) and are posted once, under their own
// `client_msg_id`, so a retry is never stored twice.

import { uploadFile } from "./files.js";
import { LiveSocket } from "./socket.js";

export const MESSAGE_PATH = "/api/custom-channel/sockets/message";
const MESSAGE_LINK_PATH = "/api/custom-channel/messages/";
const MAX_SEND_ATTEMPTS = 6;

export class HttpError extends Error {
  constructor(status, desc, retryAfter = null) {
    super(desc || `HTTP ${status}`);
    this.status = status;
    this.retryAfter = retryAfter;
  }

  get retryable() {
    return this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

/** A random id (crypto.randomUUID needs a secure context; a LAN address over http is not one). */
export function newId() {
  if (globalThis.crypto && crypto.randomUUID) {
    try {
      return crypto.randomUUID();
    } catch {
      // not a secure context: fall through
    }
  }
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** localStorage, or memory where the browser denies it (a third-party frame with third-party storage
 * blocked): the chat then works, but does not survive a reload. */
const memory = new Map();
export const storage = {
  get(name, fallback = null) {
    let raw = memory.has(name) ? memory.get(name) : null;
    try {
      raw = localStorage.getItem(name) ?? raw;
    } catch {
      // denied: memory only
    }
    if (raw === null) return fallback;
    try {
      return JSON.parse(raw);
    } catch {
      return fallback;
    }
  },
  set(name, value) {
    const raw = value === null ? null : JSON.stringify(value);
    if (raw === null) memory.delete(name);
    else memory.set(name, raw);
    try {
      if (raw === null) localStorage.removeItem(name);
      else localStorage.setItem(name, raw);
    } catch {
      // denied or full: memory only
    }
  },
};

const STATE_SLOT = "captivate.chat.conversation";

export class ChatSession {
  /**
   * @param {object} o
   * @param {string} o.apiKey
   * @param {string} o.userId
   * @param {"bot"|"user"} o.startMode bot-first: the agent greets; user-first: nothing until the user writes
   * @param {object} o.view callbacks: onEvent(type, payload), onConnection(state, detail), onQueued(item),
   *   onAck(item, body), onFailed(item, desc), onReset(), onNotice(text)
   */
  constructor({ apiKey, userId, startMode, view }) {
    this.apiKey = apiKey;
    this.userId = userId;
    this.startMode = startMode;
    this.view = view;
    const saved = storage.get(STATE_SLOT, {}) || {};
    this.conversationId = typeof saved.conversation_id === "string" ? saved.conversation_id : null;
    this.highWater = Number.isInteger(saved.last_seq) ? saved.last_seq : 0; // what this browser saw before
    this.lastSeq = 0; // what this page shows: a fresh page replays from the start
    this.outbox = Array.isArray(saved.outbox) ? saved.outbox : [];
    this.synced = false;
    this.generation = 0;
    this.flushing = false;
    this.resyncing = false;
    this.starting = null; // a conversation_start under way
    this.socket = new LiveSocket({
      url: () => `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/dev?apiKey=${encodeURIComponent(this.apiKey)}`,
      hello: "socket_connected",
      onReady: () => this.onReady(),
      onEvent: (type, payload) => this.onEvent(type, payload),
      onState: (state, detail) => {
        if (state !== "online") this.synced = false;
        this.view.onConnection(state === "online" ? "syncing" : state, detail);
      },
      isRefused: () => this.isKeyRefused(),
    });
  }

  start() {
    for (const item of this.outbox) this.view.onQueued(item);
    this.socket.start();
  }

  persist() {
    this.highWater = Math.max(this.highWater, this.lastSeq);
    storage.set(STATE_SLOT, { conversation_id: this.conversationId, last_seq: this.highWater, outbox: this.outbox });
  }

  async post(eventType, payload) {
    const event = { event_type: eventType, event_payload: payload };
    if (this.socket.socketId) event.socket_id = this.socket.socketId;
    const response = await fetch(MESSAGE_PATH, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json", "x-api-key": this.apiKey },
      body: JSON.stringify({ action: "sendMessage", event }),
    });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const retryAfter = Number(response.headers.get("retry-after")) || null;
      throw new HttpError(response.status, body && body.error_desc, retryAfter);
    }
    return body || {};
  }

  async isKeyRefused() {
    try {
      await this.post("get_user_conversations", { userId: this.userId });
      return false;
    } catch (err) {
      return err instanceof HttpError && (err.status === 401 || err.status === 403);
    }
  }

  /** A new socket: resume the conversation (replay what this page has not shown), or start one. */
  async onReady() {
    const generation = ++this.generation;
    this.synced = false;
    try {
      if (this.conversationId) await this.resume(this.lastSeq, generation);
      else if (this.startMode === "bot") await this.startConversation(generation);
    } catch (err) {
      if (generation !== this.generation) return;
      if (err instanceof HttpError && err.status === 404) {
        this.forget({ keepOutbox: true });
        this.view.onNotice("That conversation is no longer available; here is a new one.");
        if (this.startMode === "bot") await this.startConversation(generation).catch(() => this.socket.recycle());
      } else {
        console.warn(`could not resume the conversation: ${err.message}`);
        this.socket.recycle(); // the gateway went away mid-way: the next socket tries again
        return;
      }
    }
    if (generation !== this.generation || !this.socket.ready) return;
    this.synced = true;
    this.socket.healthy();
    this.view.onConnection("online");
    this.flush();
  }

  async resume(afterSeq, generation) {
    const payload = { conversation_id: this.conversationId, after_seq: afterSeq };
    // subscribe is safe to repeat: one retry covers a pooled HTTP connection to a gateway that restarted
    const reply = await this.post("subscribe", payload).catch(async (err) => {
      if (err instanceof HttpError) throw err;
      await sleep(250);
      return this.post("subscribe", payload);
    });
    if (generation === this.generation && Number.isInteger(reply.last_seq) && reply.last_seq < this.highWater) {
      this.view.onNotice("The gateway has fewer messages than this browser saw: some may have been lost.");
      this.highWater = reply.last_seq;
      this.persist();
    }
  }

  async startConversation(generation) {
    const reply = await this.post("conversation_start", {
      userId: this.userId,
      userBasicInfo: {},
      metadata: { source: "web-chat" },
    });
    if (generation !== this.generation) return;
    this.conversationId = reply.conversation_id;
    this.lastSeq = 0;
    this.highWater = 0;
    this.persist();
    if (this.startMode === "bot") {
      await this.post("user_message", {
        conversation_id: this.conversationId,
        type: "message_create",
        client_msg_id: newId(),
        content: { type: "text", text: "" },
      });
    }
  }

  /** Start the conversation if there is none yet; uploads and sends at the same moment start one only. */
  async ensureConversation() {
    if (this.conversationId) return;
    if (!this.starting) this.starting = this.startConversation(this.generation).finally(() => (this.starting = null));
    await this.starting;
  }

  onEvent(type, payload) {
    if (type === "conversation_start_success" || type === "subscribe_success") return;
    if (payload.conversation_id && payload.conversation_id !== this.conversationId) return;
    if (Number.isInteger(payload.seq)) {
      if (payload.seq <= this.lastSeq) return; // shown already
      if (payload.seq > this.lastSeq + 1) {
        this.resync(); // a gap: ask for everything after what is shown
        return;
      }
      this.lastSeq = payload.seq;
      this.persist();
    }
    this.view.onEvent(type, payload);
  }

  resync() {
    if (this.resyncing || !this.conversationId || !this.socket.ready) return;
    this.resyncing = true;
    this.resume(this.lastSeq, this.generation)
      .catch(() => this.socket.recycle())
      .finally(() => {
        this.resyncing = false;
      });
  }

  /** Queue a text message, with the files already uploaded for it (shown at once, posted when connected). */
  send(text, files = []) {
    const item = { client_msg_id: newId(), kind: "text", text };
    if (files.length) item.files = files;
    this.enqueue(item);
  }

  /** Upload a file into this conversation (one is started first if there is none yet); resolves to the
   * file object to send. `onProgress(sent, total)` follows the bytes. */
  async upload(file, onProgress) {
    if (!this.synced || !this.socket.ready) throw new Error("not connected: try again in a moment");
    await this.ensureConversation();
    return uploadFile({ file, apiKey: this.apiKey, conversationId: this.conversationId, onProgress });
  }

  /** A button was clicked: its text is sent as a message, or its action as an `action` event. */
  choose(option) {
    if (option.action) this.enqueue({ client_msg_id: newId(), kind: "action", id: option.action.id, data: option.action.data, label: option.label });
    else this.send(option.text);
  }

  retry(item) {
    this.enqueue(item);
  }

  enqueue(item) {
    this.outbox.push(item);
    this.persist();
    this.view.onQueued(item);
    this.flush();
  }

  async flush() {
    if (this.flushing) return;
    this.flushing = true;
    try {
      let attempts = 0;
      while (this.outbox.length && this.synced && this.socket.ready) {
        const item = this.outbox[0];
        try {
          await this.ensureConversation();
          const body = await this.deliver(item);
          attempts = 0;
          this.outbox.shift();
          this.persist();
          this.view.onAck(item, body);
        } catch (err) {
          attempts += 1;
          if ((err instanceof HttpError && !err.retryable) || attempts >= MAX_SEND_ATTEMPTS) {
            this.outbox.shift();
            this.persist();
            this.view.onFailed(item, err.message);
            attempts = 0;
            continue;
          }
          // a network error or a busy gateway: wait a little (a dropped socket ends this loop)
          await sleep(err.retryAfter ? err.retryAfter * 1000 : 500 * 2 ** attempts);
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  deliver(item) {
    if (item.kind === "action") {
      return this.post("action", { conversation_id: this.conversationId, type: "normal", id: item.id, data: item.data ?? {} });
    }
    return this.post("user_message", {
      conversation_id: this.conversationId,
      type: "message_create",
      client_msg_id: item.client_msg_id,
      content: item.files && item.files.length ? { type: "text", text: item.text, files: item.files } : { type: "text", text: item.text },
    });
  }

  forget({ keepOutbox = false } = {}) {
    this.conversationId = null;
    this.lastSeq = 0;
    this.highWater = 0;
    if (!keepOutbox) this.outbox = [];
    this.persist();
    this.view.onReset();
    for (const item of this.outbox) this.view.onQueued(item);
  }

  /** Leave this conversation and start another. */
  async restart() {
    this.forget();
    if (this.socket.ready && this.synced && this.startMode === "bot") {
      const generation = this.generation;
      await this.startConversation(generation).catch((err) => this.view.onNotice(`Could not start a conversation: ${err.message}`));
    }
  }

  /** The whole conversation as the gateway stored it (GET /api/transcript). */
  async transcript() {
    if (!this.conversationId) return [];
    const response = await fetch(`/api/transcript?conversation_id=${encodeURIComponent(this.conversationId)}`, {
      headers: { "x-api-key": this.apiKey, accept: "application/json" },
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new HttpError(response.status, body.error_desc);
    return Array.isArray(body.transcript) ? body.transcript : [];
  }

  /** The 413 fallback: fetch a message too large for a frame. Fetched from this page's own gateway. */
  async fetchMessageLink(link) {
    const url = new URL(link, location.href);
    if (!url.pathname.startsWith(MESSAGE_LINK_PATH)) throw new Error("unexpected message link");
    const response = await fetch(url.pathname, { headers: { "x-api-key": this.apiKey, accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new HttpError(response.status, body.error_desc);
    return body.botMessage || {};
  }
}
