// A WebSocket that comes back: reconnects with capped, jittered backoff until stopped, and tells the page
// its state. The first frame of each connection is the hello (`socket_connected` / `agent_connected`).

const MAX_DELAY_MS = 5000;

export class LiveSocket {
  /**
   * @param {object} o
   * @param {() => string} o.url the WebSocket URL (called for each attempt)
   * @param {string} o.hello the event that carries `socket_id`
   * @param {(socketId: string) => void} o.onReady
   * @param {(type: string, payload: object) => void} o.onEvent
   * @param {(state: string, detail?: object) => void} o.onState connecting | online | reconnecting | refused
   * @param {() => Promise<boolean>} o.isRefused asked when a socket failed to open: is the credential bad?
   */
  constructor(o) {
    Object.assign(this, o);
    this.ws = null;
    this.socketId = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
    const wake = () => this.retryNow();
    window.addEventListener("online", wake);
    document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && wake());
  }

  start() {
    this.stopped = false;
    this.attempt = 0;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
    this.socketId = null;
  }

  get ready() {
    return this.socketId !== null;
  }

  connect() {
    clearTimeout(this.timer);
    this.onState(this.attempt ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url());
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      const event = frame && frame.event;
      if (!event || typeof event.event_type !== "string") return;
      const payload = event.event_payload && typeof event.event_payload === "object" ? event.event_payload : {};
      if (event.event_type === this.hello) {
        this.socketId = String(payload.socket_id);
        this.onState("online");
        this.onReady(this.socketId);
      } else {
        this.onEvent(event.event_type, payload);
      }
    };
    ws.onclose = async (close) => {
      if (this.ws !== ws) return;
      this.socketId = null;
      if (this.stopped) return;
      // 1008: the key or token was revoked; a socket that never opened may have been refused (401)
      const refused = close.code === 1008 || (!opened && (await this.isRefused()));
      if (this.ws !== ws || this.stopped) return; // another attempt started meanwhile
      if (refused) {
        this.stopped = true;
        this.onState("refused");
        return;
      }
      this.schedule();
    };
  }

  schedule() {
    const delay = Math.round(Math.min(MAX_DELAY_MS, 400 * 2 ** this.attempt) * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    this.onState("reconnecting", { delay });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** The page is back in step with the gateway: the next failure starts the backoff from the start. */
  healthy() {
    this.attempt = 0;
  }

  /** Try at once (the network came back, the tab became visible, the user asked). */
  retryNow() {
    if (this.stopped || this.ready) return;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return; // an attempt is under way
    this.connect();
  }

  /** Drop this connection and make a new one (e.g. the page lost track of the stream). */
  recycle() {
    if (this.ws) this.ws.close(4000, "resync");
  }
}
