// The live queue for our pages: a snapshot first, then live events; after any drop it
// reconnects with ?since=<last seq> (and backoff), so it never misses or repeats an event.

const BANNER_AFTER_MS = 3000;

export class QueueFeed {
  // handlers: onSnapshot(msg), onEvent(msg), onSettings(settings), onStatus(isUp)
  // view: "display" asks for exactly what a wall display sees, even when staff open the page.
  constructor(handlers, { path = "/ws/queue/", view = null } = {}) {
    this.handlers = handlers;
    this.path = path;
    this.view = view;
    this.lastSeq = null;
    this.attempt = 0;
    this.socket = null;
    this.stopped = false;
    this.downTimer = null;
    this.up = false;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const from = this.lastSeq === null ? "snapshot=1" : `since=${this.lastSeq}`;
    const view = this.view ? `&view=${this.view}` : "";
    return `${scheme}//${location.host}${this.path}?${from}&settings=1${view}`;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  // After a settings change the names and photos a display may show can differ: start over.
  resync() {
    this.lastSeq = null;
    if (this.socket) this.socket.close(4000, "resync");
  }

  connect() {
    const socket = new WebSocket(this.url());
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      if (this.lastSeq !== null) this.setUp(true); // replay, if any, follows at once
    };
    socket.onmessage = (event) => this.receive(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.setUp(false);
      if (event.code === 4403) {
        location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
        return;
      }
      if (this.stopped) return;
      const delay = event.code === 4000 ? 0 : this.backoff();
      setTimeout(() => this.connect(), delay);
    };
  }

  backoff() {
    this.attempt += 1;
    const base = Math.min(5000, 500 * 2 ** Math.min(this.attempt - 1, 4));
    return base / 2 + Math.random() * base / 2;
  }

  receive(msg) {
    if (msg.event === "SETTINGS_CHANGED") {
      this.handlers.onSettings?.(msg.settings);
      return;
    }
    if (msg.event === "QUEUE_SNAPSHOT") {
      this.lastSeq = msg.seq;
      this.setUp(true);
      this.handlers.onSnapshot?.(msg);
      return;
    }
    if (this.lastSeq !== null && msg.seq <= this.lastSeq) return;
    this.lastSeq = msg.seq;
    this.setUp(true);
    this.handlers.onEvent?.(msg);
  }

  setUp(isUp) {
    if (isUp === this.up) return;
    this.up = isUp;
    clearTimeout(this.downTimer);
    if (isUp) {
      this.handlers.onStatus?.(true);
    } else {
      // A blip is not worth a banner; a real outage is.
      this.downTimer = setTimeout(() => this.handlers.onStatus?.(false), BANNER_AFTER_MS);
    }
  }
}
