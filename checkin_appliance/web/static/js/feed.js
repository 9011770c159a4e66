// The live queue for our pages: a snapshot first, then live events; after any drop it
// reconnects with ?since=<last seq> (and backoff), so it never misses or repeats an event.
// The wire format stays in this module, as domain.py keeps it on the server. Pages get:
//   {kind: "snapshot", seq, waiting: [visit], called: [visit]}  (called: today's, newest first)
//   {kind: "added", seq, visit}     a patient checked in
//   {kind: "called", seq, visit}    a doctor called them (calledAt, room)
//   {kind: "updated", seq, visit}   staff changed a waiting patient's priority or line
//                                   (events: "all")
//   {kind: "recalled", seq, visit}  a called patient called again (callCount; events: "all")
//   {kind: "left", seq, visit}      a patient left the waiting list without a call:
//                                   cancelled, closed at the end of day (events: "all";
//                                   without it the server sends such a departure as a call)
//   {kind: "status", seq, visit}    a visit off the waiting list changed state: in service,
//                                   done, no-show, not seen (events: "all")
//   {kind: "settings", settings}    the clinic's settings changed
// visit: {entryId, patientId, name, image, checkedInAt, calledAt, room, ticket, line, priority,
// place, callCount, status, from}; image, calledAt, room, ticket (visits from before lines),
// place (known only in a snapshot: the place in its line's call order), callCount and from (the
// state before: events: "all" only) are null when there is none. status: the visit's precise
// state (waiting, called, in_service, done, no_show, cancelled, not_seen).

const BANNER_AFTER_MS = 3000;
const CHANGES = {
  PATIENT_ADDED: "added",
  PATIENT_COMPLETED: "called",
  PATIENT_UPDATED: "updated",
  PATIENT_RECALLED: "recalled",
};

// The state an event leaves its visit in, where the message does not say it (seed events).
const EVENT_STATUS = {
  PATIENT_ADDED: "waiting",
  PATIENT_COMPLETED: "called",
  PATIENT_UPDATED: "waiting",
  PATIENT_RECALLED: "called",
};

// item: a snapshot's queue item or a live event; both carry the visit's id, its patient and
// check_in_time. calledAt comes from the caller: an item's called_at, an event's own time.
// status: a transition's own, a called item's visit_status, else what the event implies.
export function visitFrom(item, calledAt, status) {
  return {
    entryId: item.id,
    patientId: item.patient.id,
    name: item.patient.fname,
    image: item.patient.image || null,
    checkedInAt: item.check_in_time,
    calledAt: calledAt || null,
    room: item.room || null,
    ticket: item.ticket || null,
    line: item.line || null,
    priority: item.priority || "normal",
    place: Number.isInteger(item.place) ? item.place : null,
    callCount: Number.isInteger(item.call_count) ? item.call_count : null,
    status,
    from: item.from || null,
  };
}

function messageFrom(msg) {
  if (msg.event === "SETTINGS_CHANGED") return { kind: "settings", settings: msg.settings };
  if (msg.event === "QUEUE_SNAPSHOT") {
    return {
      kind: "snapshot",
      seq: msg.seq,
      waiting: msg.queue.map((item) => visitFrom(item, null, "waiting")),
      called: (msg.called || []).map((item) =>
        visitFrom(item, item.called_at, item.visit_status || "called")),
    };
  }
  let kind = CHANGES[msg.event];
  // PATIENT_STATUS: any other change of a visit's state; leaving the waiting list is its own
  // kind, so pages that only show who waits need not look at the states.
  if (msg.event === "PATIENT_STATUS") kind = msg.from === "waiting" ? "left" : "status";
  if (!kind) return null; // an event this page's version does not know: nothing to show
  const calledAt = kind === "called" || kind === "recalled" ? msg.at : null;
  const status = msg.status || EVENT_STATUS[msg.event] || null;
  return { kind, seq: msg.seq, visit: visitFrom(msg, calledAt, status) };
}

export class QueueFeed {
  // handlers: onMessage(message) with a message of the shapes above, onStatus(isUp)
  // view: "display" asks for exactly what a wall display sees, even when staff open the page.
  // events: "all" also receives our event types beyond the seed's two (PATIENT_UPDATED).
  constructor(handlers, { path = "/ws/queue/", view = null, events = null } = {}) {
    this.handlers = handlers;
    this.path = path;
    this.view = view;
    this.events = events;
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
    const events = this.events ? `&events=${this.events}` : "";
    return `${scheme}//${location.host}${this.path}?${from}&settings=1${view}${events}`;
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
        // The session ended. The page is asked for again and the server decides what it
        // becomes: a kiosk or display the administrator signed out says so (never the
        // staff sign-in form in front of a patient); any other page goes to sign-in.
        location.assign(location.pathname);
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
    const message = messageFrom(msg);
    if (message?.kind === "settings") {
      this.handlers.onMessage(message);
      return;
    }
    if (message?.kind === "snapshot") {
      this.lastSeq = msg.seq;
      this.setUp(true);
      this.handlers.onMessage(message);
      return;
    }
    if (this.lastSeq !== null && msg.seq <= this.lastSeq) return;
    this.lastSeq = msg.seq;
    this.setUp(true);
    if (message) this.handlers.onMessage(message);
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
