// The doctor's console: the live waiting list, "Call next" (button, Space or Enter), a
// per-patient Call, the last call's confirmation, recent calls and today's figures.
// A patient's name (waiting or recently called) opens their details and intake answers;
// sensitive answers stay hidden until "Show" is pressed.
// The live feed drives the list, so two doctors calling at once always agree.
// Lines (issue 15): each patient's ticket, line and priority; the list in the real call
// order (each patient's place in their line, GET /api/queue/ after every change); a
// priority select per patient; "Only my lines" when this credential serves some lines.
// The call cycle (issue 16): the current call (this console's own, found again after a
// reload with GET /api/doctors/current/) with Recall, Start, Done, No-show, Back to queue
// and Transfer; per-row Cancel and Transfer; an Undo bar for a few seconds after each action.
// Offline honesty: while the box cannot be reached the actions are paused and say so; an
// action whose request got no answer is sent again by itself with the same Idempotency-Key
// until the box answers (it never acts twice), and the console says when it landed.

import { ApiError, api } from "./api.js";
import { NAME_SLOT, byId, decorative, el, photo, withIsolatedName } from "./dom.js";
import { QueueFeed, visitFrom } from "./feed.js";
import { fetchLines, lineChip as chipOf, lineName } from "./lines.js";
import { applyTexts, clockText, pageData, renderStaffHeader, translator } from "./page.js";
import { TodayFigures, minutesSince, waitedText } from "./stats.js";
import { labelIn } from "./intake.js";

const RECENT_LIMIT = 6;
const TICK_MS = 30_000; // waiting times move on without a reload
const LONG_WAIT_MINUTES = 30;
// Where Space and Enter already mean something: never "call next" from there.
const INTERACTIVE = "a, button, input, select, textarea, summary, label, [contenteditable], " +
  "[role=button], [role=link], [role=checkbox], [role=radio], [role=menuitem]";

const PRIORITIES = ["normal", "priority", "urgent"];
const PLACES_DELAY_MS = 100; // several events at once: one read of the places

// Undo is offered here this long after an action; the box itself allows it for the
// undo_seconds setting (120 s by default), so the button never outlives the box's window.
const UNDO_BAR_MS = 8000;
// An action the box did not answer is sent again after these waits (then every 5 s), and at
// once when the live feed is back; a box that took the request but never answers counts as
// unreachable after REQUEST_TIMEOUT_MS.
const RETRY_MS = [1000, 2000, 4000, 5000];
const REQUEST_TIMEOUT_MS = 20_000;
// A call still this console's to finish (GET /api/doctors/current/ lists the same states).
const OPEN_CALL = ["called", "in_service", "no_show"];
// The no-show this console closed ("<entry>@<called at>"): a reload does not show it again.
const CLOSED_KEY = "checkin.doctor.closed";

// The server's error codes (errors.py) an action can meet, as this page's texts.
const ERROR_TEXTS = {
  priority_invalid: "doctor.error.priority_invalid",
  no_such_patient: "doctor.already_called",
  transition_not_allowed: "doctor.error.transition_not_allowed",
  visit_not_found: "doctor.error.visit_not_found",
  line_not_found: "doctor.error.line_not_found",
  nothing_to_undo: "doctor.error.nothing_to_undo",
  undo_expired: "doctor.error.undo_expired",
  undo_superseded: "doctor.error.undo_superseded",
};
// News rather than faults: someone else (or time) got there first.
const INFO_CODES = new Set([
  "no_such_patient", "transition_not_allowed", "visit_not_found", "nothing_to_undo",
  "undo_expired", "undo_superseded",
]);

const data = pageData();
const room = data.credential.room || null;
// The prefixes of the lines this credential serves; none: every line.
const myLines = new Set(data.credential.lines || []);
let lang = data.lang;
let t = translator(data, lang);
let clinicName = data.settings.clinic_name;

const state = {
  loaded: false,
  waiting: [], // visits (feed.js), oldest first
  recent: [], // visits with calledAt, newest first
  busy: null, // the action on its way ("call_next", "recall", …): one at a time
  pending: null, // that action, once its request got no answer: {title} while it is retried
  feedUp: true, // false once the live feed has been down a few seconds (QueueFeed.onStatus)
  current: null, // this console's open call: a visit (feed.js) with status and callCount
  undo: null, // what the Undo bar offers: {words: [key, values], patientId}
  // What the last action said: {kind: "called"|"did"|"pending"|"info"|"error", key?, words?,
  // name?, ticket?, room?, at?, late?, title?}
  result: null,
  lines: [], // GET /api/lines/, in the admin's order
  mineOnly: myLines.size > 0, // "Only my lines"
  pendingPriority: new Set(), // patient ids whose priority change is on its way
};

const els = {
  offline: byId("offline-line"),
  roomLine: byId("room-line"),
  count: byId("waiting-count"),
  loading: byId("queue-loading"),
  list: byId("queue-list"),
  empty: byId("queue-empty"),
  callNext: byId("call-next"),
  callNextText: byId("call-next-text"),
  nextUp: byId("next-up"),
  result: byId("call-result"),
  current: byId("current-call"),
  currentBody: byId("current-call-body"),
  undoBar: byId("undo-bar"),
  undoText: byId("undo-text"),
  undoButton: byId("undo-button"),
  cancelDialog: byId("cancel-dialog"),
  cancelTitle: byId("cancel-title"),
  cancelText: byId("cancel-text"),
  today: byId("today"),
  recent: byId("recent-list"),
  recentEmpty: byId("recent-empty"),
  announcer: byId("announcer"),
  linesLine: byId("lines-line"),
  myLinesField: byId("my-lines-field"),
  myLines: byId("my-lines"),
  emptyTitle: byId("queue-empty-title"),
  emptyHint: byId("queue-empty-hint"),
  others: byId("queue-others"),
  detail: byId("detail"),
  detailPhoto: byId("detail-photo"),
  detailName: byId("detail-name"),
  detailClose: byId("detail-close"),
  detailMessage: byId("detail-message"),
  detailFacts: byId("detail-facts"),
  detailAnswers: byId("detail-answers"),
};

// Buttons that act on the box work only with the box in reach and nothing else on its way.
function canAct() {
  return state.busy === null && state.feedUp;
}

// --- state changes ------------------------------------------------------------------------

// The call order as the server predicts it: each line's place, then across lines urgent
// first, then the longest waiting (how Call next picks among the lines' next patients).
// A patient whose place is not known yet (just checked in) goes last until it is.
function callOrder(a, b) {
  const place = (a.place ?? Infinity) - (b.place ?? Infinity);
  if (place) return place;
  const urgent = Number(b.priority === "urgent") - Number(a.priority === "urgent");
  return urgent || a.entryId - b.entryId;
}

function sortWaiting() {
  state.waiting.sort(callOrder);
}

function addWaiting(entry) {
  if (state.waiting.some((w) => w.patientId === entry.patientId)) return false;
  state.waiting.push(entry);
  sortWaiting();
  return true;
}

// A waiting patient's new priority or line (their place comes with the next read).
function updateWaiting(visit) {
  const entry = state.waiting.find((w) => w.patientId === visit.patientId);
  if (!entry) return null;
  entry.priority = visit.priority;
  if (visit.line && visit.line !== entry.line) {
    entry.line = visit.line;
    entry.place = null;
  }
  return entry;
}

// Places move with every check-in, call and priority change: read them again (the last
// read asked wins, so a slow answer never overwrites a newer one).
let placesTimer = null;
let placesAsked = 0;

function refreshPlaces() {
  clearTimeout(placesTimer);
  placesTimer = setTimeout(readPlaces, PLACES_DELAY_MS);
}

async function readPlaces() {
  const asked = ++placesAsked;
  let items;
  try {
    items = await api("GET", "/api/queue/?estimates=1");
  } catch {
    return; // the offline line says when the box is unreachable; the next event retries
  }
  if (asked !== placesAsked) return;
  const byEntry = new Map(items.map((item) => [item.id, item]));
  for (const entry of state.waiting) {
    const item = byEntry.get(entry.entryId);
    if (!item) continue;
    entry.place = Number.isInteger(item.place) ? item.place : null;
    entry.estimate = item.estimate || null; // as the patient's phone shows it
    if (!state.pendingPriority.has(entry.patientId)) entry.priority = item.priority || "normal";
  }
  sortWaiting();
  renderQueue();
}

// --- lines ----------------------------------------------------------------------------------

function lineOf(prefix) {
  return state.lines.find((line) => line.prefix === prefix) || null;
}

function activeLines() {
  return state.lines.filter((line) => line.active);
}

// More than one line in use: only then do lines show (one line looks as it always did).
function severalLines() {
  return activeLines().length > 1 || new Set(state.waiting.map((w) => w.line)).size > 1;
}

// Where a visit may be transferred: every other active line (none with a single line).
function transferTargets(visit) {
  const active = activeLines();
  return active.length > 1 ? active.filter((line) => line.prefix !== visit.line) : [];
}

function lineLabel(line) {
  return `${line.prefix} · ${lineName(line, lang)}`;
}

function serves(entry) {
  return myLines.size === 0 || myLines.has(entry.line);
}

function shown() {
  return state.mineOnly && myLines.size > 0 ? state.waiting.filter(serves) : state.waiting;
}

function lineChip(prefix) {
  return chipOf(lineOf(prefix), prefix, lang);
}

async function loadLines() {
  const lines = await fetchLines();
  if (lines === null) return; // tickets still show; the chips come with the next load
  state.lines = lines;
  renderChrome();
  renderQueue();
  renderCurrent();
}

function removeWaiting(patientId) {
  state.waiting = state.waiting.filter((w) => w.patientId !== patientId);
}

function addRecent(call) {
  state.recent = [call, ...state.recent.filter((r) => r.patientId !== call.patientId)]
    .sort((a, b) => Date.parse(b.calledAt) - Date.parse(a.calledAt))
    .slice(0, RECENT_LIMIT);
}

// --- the current call -----------------------------------------------------------------------

function closedMark(visit) {
  return `${visit.entryId}@${visit.calledAt}`;
}

function wasClosed(visit) {
  try {
    return visit.status === "no_show" && localStorage.getItem(CLOSED_KEY) === closedMark(visit);
  } catch {
    return false; // storage off: a reload shows the no-show again, which is only honest
  }
}

function rememberClosed(visit) {
  try {
    localStorage.setItem(CLOSED_KEY, closedMark(visit));
  } catch {
    // see wasClosed
  }
}

// An action's answer (POST /api/doctors/) as a visit of feed.js's shape; `known`: what the
// page knew of it, for what the answer does not carry.
function visitFromAnswer(answer, known) {
  const same = known && known.entryId === answer.id;
  return {
    ...visitFrom(answer, same ? known.calledAt : null, answer.status),
    checkedInAt: same ? known.checkedInAt : null,
  };
}

// Read this console's open call from the box: at load, and when an answer leaves it unclear.
// An action sent meanwhile makes the read stale: its own answer decides.
let currentAsked = 0;

async function loadCurrent() {
  const asked = ++currentAsked;
  let answer;
  try {
    answer = await api("GET", "/api/doctors/current/");
  } catch {
    return; // the panel keeps what it shows; the next action's answer settles it
  }
  if (asked !== currentAsked || state.busy !== null) return;
  const current = answer?.current;
  const visit = current ? visitFrom(current, current.called_at, current.status) : null;
  state.current = visit && !wasClosed(visit) ? visit : null;
  renderCurrent();
}

// What an action's answer (or the feed) says of a visit, for the panel and the list.
function settle(visit) {
  const mine = state.current !== null && state.current.entryId === visit.entryId;
  if (OPEN_CALL.includes(visit.status)) {
    const calledAt = visit.calledAt ?? (mine ? state.current.calledAt : null);
    state.current = { ...(mine ? state.current : {}), ...visit, calledAt };
    if (!calledAt) loadCurrent(); // an undo brought a call back: its time is the box's
  } else if (mine) {
    state.current = null;
  }
  if (visit.status === "waiting") updateWaiting(visit); // back on the list: the feed adds it
  else removeWaiting(visit.patientId);
}

// A feed message about this console's open call: someone else (or the box's own no-show
// timer) moved it, or it is the echo of our own action.
function followCurrent(message) {
  const current = state.current;
  const visit = message.visit;
  if (!current || current.entryId !== visit.entryId) return;
  if (message.kind === "added") {
    state.current = null; // back in a queue
  } else if (message.kind === "recalled") {
    current.callCount = visit.callCount ?? current.callCount;
    current.room = visit.room ?? current.room;
  } else if (message.kind === "status" || message.kind === "left") {
    if (OPEN_CALL.includes(visit.status)) current.status = visit.status;
    else state.current = null; // done, or closed at the end of the day
  }
}

// --- a small disclosure menu (Back to queue, Transfer, a row's More) ------------------------

let menuCount = 0;
let openMenu = null; // {wrap, button, list}

// items(): [{text, label, action, run}], built when the menu opens (lines may change).
// text null: the button shows "⋯" only (a row's More), its name in label and title.
function menu(className, text, label, items) {
  const wrap = el("div", `menu ${className}`);
  const button = el("button", "button button--quiet menu__button");
  button.type = "button";
  if (text === null) button.append(decorative(el("span", "menu__dots", "⋯")));
  else button.append(el("span", null, text), decorative(el("span", "menu__caret", "▾")));
  button.setAttribute("aria-label", label);
  button.setAttribute("aria-expanded", "false");
  const list = el("div", "menu__list");
  list.id = `menu-${++menuCount}`;
  list.hidden = true;
  button.setAttribute("aria-controls", list.id);
  const entry = { wrap, button, list };
  button.addEventListener("click", () => {
    if (openMenu === entry) {
      closeMenu();
      return;
    }
    closeMenu();
    list.replaceChildren(...items().map((item) => {
      const option = el("button", "button button--quiet menu__item", item.text);
      option.type = "button";
      option.dataset.action = item.action;
      if (item.label) option.setAttribute("aria-label", item.label);
      option.disabled = !canAct();
      option.addEventListener("click", () => {
        closeMenu(true); // the keyboard goes back to the menu's button, then the action runs
        item.run();
      });
      return option;
    }));
    list.hidden = false;
    wrap.dataset.open = "";
    button.setAttribute("aria-expanded", "true");
    openMenu = entry;
  });
  wrap.addEventListener("focusout", (event) => {
    if (openMenu === entry && event.relatedTarget && !wrap.contains(event.relatedTarget)) {
      closeMenu();
    }
  });
  wrap.append(button, list);
  return wrap;
}

function closeMenu(focusButton = false) {
  const entry = openMenu;
  if (!entry) return;
  openMenu = null;
  entry.list.hidden = true;
  entry.list.replaceChildren();
  delete entry.wrap.dataset.open;
  entry.button.setAttribute("aria-expanded", "false");
  if (focusButton) entry.button.focus({ preventScroll: true });
}

document.addEventListener("pointerdown", (event) => {
  if (openMenu && !openMenu.wrap.contains(event.target)) closeMenu();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && openMenu) {
    event.preventDefault();
    closeMenu(true);
  }
});

// --- rendering ----------------------------------------------------------------------------

function initials(name) {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : words;
  return letters.map((w) => w[0]).join("").toUpperCase();
}

// The patient's photo, or their initials where there is none.
function avatar(entry, className) {
  if (entry.image && entry.image.startsWith("/media/")) return photo(entry.image, className);
  return decorative(el("span", `${className} ${className}--none`, initials(entry.name)));
}

// The patient's name, as the button that opens their details; `title` shows it in full
// where the row cuts it short.
function nameButton(entry, className) {
  const button = el("button", `${className} name-button`, entry.name);
  button.type = "button";
  button.title = entry.name;
  button.dataset.patientId = String(entry.patientId);
  button.setAttribute("aria-haspopup", "dialog");
  button.addEventListener("click", () => openDetail(entry.patientId, entry.name, button));
  return button;
}

// A visit as the accessible names of its buttons say it: ticket and name.
function who(visit) {
  return visit.ticket ? `${visit.ticket} ${visit.name}` : visit.name;
}

function updateWait(node, iso) {
  node.textContent = waitedText(t, iso);
  node.classList.toggle("patient__wait--long", minutesSince(iso) >= LONG_WAIT_MINUTES);
}

function patientRow(entry) {
  const li = el("li", "patient");
  li.dataset.patientId = String(entry.patientId);
  const position = el("span", "patient__pos");
  position.append(el("span", "visually-hidden"), el("span", "patient__place"));
  li.append(position);
  li.append(avatar(entry, "patient__photo"));
  const main = el("div", "patient__main");
  const title = el("span", "patient__title");
  title.append(el("span", "patient__ticket"), nameButton(entry, "patient__name"));
  main.append(title);
  main.append(el("span", "patient__meta"));
  li.append(main);
  const wait = el("span", "patient__wait");
  wait.dataset.since = entry.checkedInAt;
  li.append(wait);
  const select = el("select", "input patient__priority");
  for (const priority of PRIORITIES) {
    const option = el("option");
    option.value = priority;
    select.append(option);
  }
  select.addEventListener("change", () => setPriority(entry.patientId, select));
  li.append(select);
  const button = el("button", "button patient__call", t("doctor.call"));
  button.type = "button";
  button.addEventListener("click", () => call(entry.patientId));
  li.append(button);
  li.append(rowMenu(entry.patientId));
  return li;
}

// A row's other actions: Cancel (asks why first) and Transfer to each other line.
function rowMenu(patientId) {
  const items = () => {
    const entry = state.waiting.find((w) => w.patientId === patientId);
    if (!entry) return [];
    const cancel = {
      text: t("doctor.cancel"),
      label: t("doctor.cancel_name", { name: who(entry) }),
      action: "cancel",
      run: () => askCancel(entry),
    };
    return [cancel, ...transferTargets(entry).map((line) => transferItem(entry, line))];
  };
  return menu("patient__more", null, "", items);
}

function transferItem(visit, line) {
  return {
    text: t("doctor.transfer_to", { line: lineLabel(line) }),
    label: t("doctor.transfer_name", { name: who(visit), line: lineLabel(line) }),
    action: `transfer-${line.prefix}`,
    run: () => transfer(visit, line),
  };
}

function fillRow(li, entry) {
  li.dataset.line = entry.line || "";
  li.dataset.priority = entry.priority;
  li.querySelector(".patient__pos .visually-hidden").textContent = `${t("doctor.place")} `;
  li.querySelector(".patient__place").textContent = entry.place === null ? "" : String(entry.place);
  li.querySelector(".patient__pos").title =
    entry.place === null ? "" : t("doctor.place_in_line", { place: entry.place });
  const ticket = li.querySelector(".patient__ticket");
  ticket.textContent = entry.ticket || "";
  ticket.hidden = !entry.ticket;
  const meta = li.querySelector(".patient__meta");
  meta.replaceChildren();
  if (severalLines() && entry.line) meta.append(lineChip(entry.line));
  if (entry.priority !== "normal") {
    meta.append(el("span", `priority-badge priority-badge--${entry.priority}`,
      t(`doctor.priority.${entry.priority}`)));
  }
  meta.append(el("span", "patient__arrived",
    t("doctor.arrived", { time: clockText(lang, new Date(entry.checkedInAt)) })));
  if (entry.estimate) {
    meta.append(el("span", "patient__estimate", t("doctor.estimate", {
      low: entry.estimate.low_minutes, high: entry.estimate.high_minutes })));
  }
  updateWait(li.querySelector(".patient__wait"), entry.checkedInAt);
  const select = li.querySelector(".patient__priority");
  for (const option of select.options) option.textContent = t(`doctor.priority.${option.value}`);
  select.setAttribute("aria-label", t("doctor.priority_for", { name: entry.ticket || entry.name }));
  if (!state.pendingPriority.has(entry.patientId)) select.value = entry.priority;
  select.disabled = state.pendingPriority.has(entry.patientId) || !state.feedUp;
  const button = li.querySelector(".patient__call");
  button.textContent = t("doctor.call");
  button.setAttribute("aria-label", t("doctor.call_name", { name: entry.name }));
  button.disabled = !canAct();
  const more = li.querySelector(".patient__more > .menu__button");
  more.title = t("doctor.more");
  more.setAttribute("aria-label", t("doctor.more_name", { name: who(entry) }));
  more.disabled = !canAct();
}

function renderQueue() {
  // Rows are kept by patient, so a focused Call button survives other rows changing.
  const rows = new Map([...els.list.children].map((li) => [Number(li.dataset.patientId), li]));
  const focusedRow = document.activeElement?.closest?.(".patient");
  const focusedIndex = focusedRow ? [...els.list.children].indexOf(focusedRow) : -1;
  const visible = shown();
  const keep = new Set(visible.map((w) => w.patientId));
  let lostFocus = false;
  for (const [id, li] of rows) {
    if (!keep.has(id)) {
      if (li === focusedRow) lostFocus = true;
      if (openMenu && li.contains(openMenu.wrap)) closeMenu();
      li.remove();
      rows.delete(id);
    }
  }
  visible.forEach((entry, index) => {
    const li = rows.get(entry.patientId) || patientRow(entry);
    fillRow(li, entry);
    if (els.list.children[index] !== li) els.list.insertBefore(li, els.list.children[index] || null);
  });
  if (lostFocus) {
    // Keyboard users keep their place: the row that moved up, or the big button.
    const next = els.list.children[Math.min(focusedIndex, els.list.children.length - 1)];
    (next?.querySelector(".patient__call") || els.callNext).focus({ preventScroll: true });
  }

  const n = visible.length;
  const filtered = visible !== state.waiting;
  els.loading.hidden = state.loaded;
  els.empty.hidden = !state.loaded || n > 0;
  els.emptyTitle.textContent = t(filtered ? "doctor.empty_mine" : "doctor.empty");
  els.emptyHint.textContent = t(filtered ? "doctor.empty_mine_hint" : "doctor.empty_hint");
  els.list.hidden = n === 0;
  els.count.hidden = !state.loaded;
  els.count.textContent = String(n);
  const others = state.waiting.length - n;
  els.others.hidden = !state.loaded || others === 0;
  els.others.textContent = others ? t("doctor.other_lines", { count: others }) : "";
  renderCallPanel();
}

function renderCallPanel() {
  const first = state.waiting.find(serves); // Call next takes from my lines only
  const calling = state.busy === "call";
  els.callNext.disabled = !canAct() || !first;
  els.callNext.setAttribute("aria-busy", String(calling));
  els.callNextText.textContent = t(calling ? "doctor.calling" : "doctor.call_next");
  els.nextUp.replaceChildren(
    ...(first ? withIsolatedName(t("doctor.next_up", { name: NAME_SLOT }), first.name) : [t("doctor.nobody_next")]),
  );
  els.offline.hidden = state.feedUp && !state.pending;
}

// The panel's buttons for each state of the call (README "States and transitions").
function currentActions(visit) {
  const button = (action, text, label, run) => {
    const node = el("button", "button current-call__action", text);
    node.type = "button";
    node.dataset.action = action;
    node.setAttribute("aria-label", label);
    node.addEventListener("click", run);
    return node;
  };
  const name = who(visit);
  const requeue = menu("current-call__requeue", t("doctor.requeue"),
    t("doctor.requeue_name", { name }), () => ["front", "back"].map((position) => ({
      text: t(`doctor.requeue_${position}`),
      label: t(`doctor.requeue_${position}_name`, { name }),
      action: `requeue-${position}`,
      run: () => cycle(visit, "requeue", { position }, [`doctor.did.requeue_${position}`]),
    })));
  const targets = transferTargets(visit);
  const transferMenu = targets.length === 0 ? null : menu("current-call__transfer",
    t("doctor.transfer"), t("doctor.transfer_menu_name", { name }),
    () => transferTargets(visit).map((line) => transferItem(visit, line)));
  const actions = [];
  if (visit.status === "called") {
    actions.push(
      button("recall", t("doctor.recall"), t("doctor.recall_name", { name }),
        () => cycle(visit, "recall", {}, ["doctor.did.recall"])),
      button("start", t("doctor.start"), t("doctor.start_name", { name }),
        () => cycle(visit, "start", {}, ["doctor.did.start"])),
      button("done", t("doctor.done"), t("doctor.done_name", { name }),
        () => cycle(visit, "done", {}, ["doctor.did.done"])),
      button("no_show", t("doctor.no_show"), t("doctor.no_show_name", { name }),
        () => cycle(visit, "no_show", {}, ["doctor.did.no_show"])),
      requeue,
    );
  } else if (visit.status === "in_service") {
    actions.push(button("done", t("doctor.done"), t("doctor.done_name", { name }),
      () => cycle(visit, "done", {}, ["doctor.did.done"])));
  } else {
    actions.push(requeue);
  }
  if (transferMenu) actions.push(transferMenu);
  if (visit.status === "no_show") {
    actions.push(button("close", t("doctor.close"), t("doctor.close_name", { name }),
      () => closeNoShow(visit)));
  }
  return actions;
}

// Rebuilt only when what it offers changes (another visit, state, lines or language), so a
// menu left open or a focused button survives the feed's other news.
let currentShape = "";

function renderCurrent() {
  const visit = state.current;
  els.current.hidden = !visit;
  if (!visit) {
    if (openMenu && els.current.contains(openMenu.wrap)) closeMenu();
    els.currentBody.replaceChildren();
    currentShape = "";
    return;
  }
  const targets = transferTargets(visit).map((line) => line.prefix).join();
  const shape = [visit.entryId, visit.patientId, visit.status, lang, targets].join("|");
  if (shape !== currentShape) {
    const focused = els.current.contains(document.activeElement)
      ? document.activeElement.dataset.action : null;
    if (openMenu && els.current.contains(openMenu.wrap)) closeMenu();
    const head = el("div", "current-call__head");
    head.append(el("p", "current-call__ticket"), el("p", "current-call__state"));
    const name = el("p", "current-call__name");
    name.append(nameButton(visit, "current-call__name-button"));
    const actions = el("div", "current-call__actions");
    actions.append(...currentActions(visit));
    els.currentBody.replaceChildren(head, name, el("p", "current-call__meta"),
      el("p", "current-call__hint muted small"), actions);
    currentShape = shape;
    if (focused) focusInPanel(focused);
  }
  els.current.dataset.status = visit.status;
  const ticket = els.currentBody.querySelector(".current-call__ticket");
  ticket.textContent = visit.ticket || "";
  ticket.hidden = !visit.ticket;
  els.currentBody.querySelector(".current-call__state").textContent =
    t(`doctor.state.${visit.status}`);
  const meta = [];
  if (visit.room) meta.push(visit.room);
  if (visit.calledAt) meta.push(t("doctor.called_at", { time: clockText(lang, new Date(visit.calledAt)) }));
  if (visit.callCount) meta.push(t("doctor.call_count", { count: visit.callCount }));
  els.currentBody.querySelector(".current-call__meta").textContent = meta.join(" · ");
  const hint = els.currentBody.querySelector(".current-call__hint");
  hint.textContent = visit.status === "no_show" ? t("doctor.no_show_hint") : "";
  hint.hidden = visit.status !== "no_show";
  for (const node of els.currentBody.querySelectorAll(".current-call__action, .menu__button, .menu__item")) {
    node.disabled = !canAct();
  }
}

// The panel's button for `action` (else its first one, else Call next) takes the focus.
function focusInPanel(action) {
  const buttons = [...els.currentBody.querySelectorAll("button[data-action], .menu__button")]
    .filter((button) => !button.disabled && button.offsetParent !== null);
  const target = buttons.find((button) => button.dataset.action === action) || buttons[0];
  (target || els.callNext).focus({ preventScroll: true });
}

function renderLines() {
  const several = severalLines();
  const mine = state.lines.filter((line) => myLines.has(line.prefix));
  els.linesLine.hidden = !several;
  els.linesLine.replaceChildren();
  if (several && myLines.size > 0) {
    els.linesLine.append(el("span", "staff-intro__lines-label", t("doctor.lines_served")));
    const prefixes = mine.length ? mine.map((line) => line.prefix) : [...myLines];
    for (const prefix of prefixes) els.linesLine.append(" ", lineChip(prefix));
  } else if (several) {
    els.linesLine.textContent = t("doctor.lines_all");
  }
  els.myLinesField.hidden = !(several && myLines.size > 0);
  els.myLines.checked = state.mineOnly;
}

function words(pair) {
  const [key, values = {}] = pair;
  return t(key, values);
}

function renderResult() {
  const box = els.result;
  box.replaceChildren();
  box.className = "call-result";
  const r = state.result;
  if (!r) return;
  const time = (at) => el("p", "call-result__time", t("doctor.called_at", { time: clockText(lang, new Date(at)) }));
  if (r.kind === "called") {
    box.classList.add("call-result--called");
    if (r.ticket) box.append(el("p", "call-result__ticket", r.ticket));
    const text = r.room ? t("doctor.called_room", { name: NAME_SLOT, room: r.room })
      : t("doctor.called", { name: NAME_SLOT });
    const line = el("p", "call-result__text");
    line.append(...withIsolatedName(text, r.name));
    box.append(line, time(r.at));
  } else if (r.kind === "did") {
    box.classList.add("call-result--called");
    box.append(el("p", "call-result__text", words(r.words)), time(r.at));
  } else if (r.kind === "pending") {
    box.classList.add("call-result--pending");
    box.append(el("p", "call-result__text", r.title), el("p", "call-result__note", t("doctor.pending")));
  } else {
    box.classList.add(r.kind === "info" ? "call-result--info" : "call-result--error");
    box.append(el("p", "call-result__text", t(r.key)));
  }
  if (r.late) {
    box.append(el("p", "call-result__note",
      t("doctor.landed", { time: clockText(lang, new Date(r.at)) })));
  }
}

function renderUndo() {
  const offer = state.undo;
  els.undoBar.hidden = !offer;
  if (!offer) return;
  const text = words(offer.words);
  els.undoText.textContent = text;
  els.undoButton.textContent = t("doctor.undo");
  els.undoButton.setAttribute("aria-label", t("doctor.undo_name", { action: text }));
  els.undoButton.disabled = !canAct();
}

function renderRecent() {
  const items = state.recent.map((call) => {
    const li = el("li", "recent");
    li.append(avatar(call, "recent__photo"));
    const whoNode = el("span", "recent__who");
    if (call.ticket) whoNode.append(el("span", "recent__ticket", call.ticket), " ");
    whoNode.append(nameButton(call, "recent__name"));
    li.append(whoNode);
    if (call.room) li.append(el("span", "recent__room", call.room));
    const time = el("time", "recent__time", clockText(lang, new Date(call.calledAt)));
    time.dateTime = call.calledAt;
    li.append(time);
    return li;
  });
  els.recent.replaceChildren(...items);
  els.recent.hidden = items.length === 0;
  els.recentEmpty.hidden = items.length > 0;
}

function renderChrome() {
  renderStaffHeader(t, { lang, title: "doctor.title", clinicName, label: data.credential.label });
  els.roomLine.textContent = room ? t("doctor.room", { room }) : t("doctor.no_room");
  applyTexts(t);
  renderLines();
}

// Everything whose buttons follow canAct(): after an action, and when the feed goes or comes.
function renderControls() {
  renderQueue();
  renderCurrent();
  renderUndo();
}

function renderAll() {
  renderChrome();
  renderDetail();
  renderControls();
  renderResult();
  renderRecent();
  figures.render();
}

function tick() {
  for (const node of els.list.querySelectorAll(".patient__wait")) updateWait(node, node.dataset.since);
}

function announce(text) {
  els.announcer.textContent = text;
}

// --- today's figures ------------------------------------------------------------------------

const figures = new TodayFigures(els.today, (key, values) => t(key, values), {
  none: "doctor.no_value",
  underAMinute: "doctor.under_a_minute",
});

// --- sending actions ------------------------------------------------------------------------

// A fresh Idempotency-Key; randomUUID exists only in secure contexts (not plain http).
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// No answer from the box (no connection, a timeout, a gateway's 502-504): worth sending again.
function unanswered(error) {
  return !(error instanceof ApiError) || [502, 503, 504].includes(error.status);
}

let wakeRetry = null; // resolves the wait before the next attempt (the feed is back)

function retryWait(attempt) {
  const delay = RETRY_MS[Math.min(attempt - 1, RETRY_MS.length - 1)];
  return new Promise((resolve) => {
    const timer = setTimeout(done, delay);
    function done() {
      clearTimeout(timer);
      wakeRetry = null;
      resolve();
    }
    wakeRetry = done;
  });
}

// POST /api/doctors/ with one Idempotency-Key for every attempt: sent again until the box
// answers, so a request that did land is answered with its first answer, never made twice.
// onUnanswered() is told when the first attempt failed. → {answer, late}; ApiError otherwise.
async function deliver(body, onUnanswered) {
  const headers = { "Idempotency-Key": newKey() };
  for (let attempt = 0; ; attempt += 1) {
    try {
      const signal = AbortSignal.timeout?.(REQUEST_TIMEOUT_MS); // older browsers: no limit
      const answer = await api("POST", "/api/doctors/", { json: body, headers, signal });
      return { answer, late: attempt > 0 };
    } catch (error) {
      if (!unanswered(error)) throw error;
      if (attempt === 0) onUnanswered();
      await retryWait(attempt + 1);
    }
  }
}

// Where the keyboard was, to put it back sensibly once the buttons are enabled again.
function focusPlace() {
  const focused = document.activeElement;
  const row = focused?.closest?.(".patient");
  return {
    callNext: focused === els.callNext,
    row: row ? [...els.list.children].indexOf(row) : -1,
    // The same control in the row that takes the place (More stays on More).
    control: focused?.closest?.(".patient__more") ? ".patient__more .menu__button" : ".patient__call",
    panel: Boolean(focused && (els.current.contains(focused) || els.undoBar.contains(focused))),
    action: focused?.dataset?.action || null,
  };
}

function focusLost() {
  const focused = document.activeElement;
  return !focused || focused === document.body || !focused.isConnected || focused.disabled;
}

function restoreFocus(place) {
  if (!focusLost()) return; // the focus is somewhere useful: leave it be
  if (place.panel && state.current) {
    focusInPanel(place.action);
    return;
  }
  const rows = els.list.children;
  const row = place.row >= 0 && rows.length ? rows[Math.min(place.row, rows.length - 1)] : null;
  if (!place.callNext && !place.panel && !row) return; // the focus was elsewhere
  const target = row ? row.querySelector(place.control) : els.callNext;
  if (!target.disabled) target.focus({ preventScroll: true });
}

// One action of this console (POST /api/doctors/); the buttons wait while it is on its way.
// spec: {body, title (what was pressed, for the pending line), after(answer, late),
// failed(error) (optional: else the code's own text)}.
async function act(spec) {
  if (!canAct()) return;
  const place = focusPlace();
  state.busy = spec.body.action === "call_next" || spec.body.action === "complete"
    ? "call" : spec.body.action;
  currentAsked += 1; // a read of the current call sent before now is stale
  closeMenu();
  hideUndo();
  renderControls();
  try {
    const { answer, late } = await deliver(spec.body, () => {
      state.pending = { title: spec.title };
      state.result = { kind: "pending", title: spec.title };
      renderResult();
      renderCallPanel();
    });
    spec.after(answer, late);
  } catch (error) {
    if (!spec.failed?.(error)) showRefusal(error);
  } finally {
    state.busy = null;
    state.pending = null;
    renderControls();
    renderResult();
    renderRecent();
    figures.refresh();
    refreshPlaces();
    restoreFocus(place);
  }
}

function showRefusal(error) {
  const code = error instanceof ApiError ? error.code : null;
  const key = code ? ERROR_TEXTS[code] || "common.error.generic" : "common.error.network";
  state.result = { kind: INFO_CODES.has(code) ? "info" : "error", key };
  // The visit is not where this console thought: show where it is now.
  if (code === "transition_not_allowed" || code === "visit_not_found") loadCurrent();
}

// The words of an action, for the Undo bar and the result ("Recalled A-012").
function didWords(key, visit, values = {}) {
  return [key, { ticket: visit.ticket || visit.name, ...values }];
}

let undoTimer = null;

function offerUndo(pair, patientId) {
  clearTimeout(undoTimer);
  state.undo = { words: pair, patientId };
  undoTimer = setTimeout(() => {
    const hadFocus = els.undoBar.contains(document.activeElement);
    hideUndo();
    if (hadFocus) els.callNext.focus({ preventScroll: true });
  }, UNDO_BAR_MS);
  renderUndo();
}

function hideUndo() {
  clearTimeout(undoTimer);
  state.undo = null;
  renderUndo();
}

// --- calling --------------------------------------------------------------------------------

function call(patientId) {
  if (patientId === null && state.waiting.length === 0) return;
  const body = patientId === null
    ? { action: "call_next" }
    : { action: "complete", patient_id: patientId };
  const before = new Map(state.waiting.map((w) => [w.patientId, w]));
  const chosen = patientId === null ? null : before.get(patientId);
  return act({
    body,
    title: chosen ? t("doctor.call_name", { name: who(chosen) }) : t("doctor.call_next"),
    after(answer, late) {
      const patient = answer.patient;
      const at = new Date().toISOString();
      // The feed may have taken them off the list already: the list as it was before the call.
      const known = before.get(patient.id);
      const visit = {
        entryId: known?.entryId ?? null,
        checkedInAt: known?.checkedInAt ?? null,
        line: known?.line ?? null,
        priority: known?.priority ?? "normal",
        place: null,
        ticket: known?.ticket ?? null,
        patientId: patient.id,
        name: patient.fname,
        image: patient.image || null,
        room,
        calledAt: at,
        callCount: 1,
        status: "called",
        from: "waiting",
      };
      state.result = { kind: "called", name: patient.fname, ticket: visit.ticket, room, at, late };
      addRecent(visit);
      removeWaiting(patient.id);
      state.current = visit;
      if (!known) loadCurrent(); // called while this page did not know them yet: ask the box
      offerUndo(didWords("doctor.did.call", visit), patient.id);
    },
    failed(error) {
      if (!(error instanceof ApiError && ["nobody_waiting", "no_such_patient"].includes(error.code))) {
        return false;
      }
      // Another doctor was quicker: not an error, just news. The feed updates the list.
      const key = patientId === null ? "doctor.already_empty" : "doctor.already_called";
      state.result = { kind: "info", key };
      if (patientId !== null) removeWaiting(patientId);
      return true;
    },
  });
}

els.callNext.addEventListener("click", () => call(null));

// --- the call cycle -------------------------------------------------------------------------

// A transition of a visit (recall, start, done, no_show, requeue, cancel, transfer).
function cycle(visit, action, fields, [key, values = {}]) {
  const pair = didWords(key, visit, values);
  return act({
    body: { action, patient_id: visit.patientId, ...fields },
    title: words(pair),
    after(answer, late) {
      settle(visitFromAnswer(answer, visit));
      state.result = { kind: "did", words: pair, at: new Date().toISOString(), late };
      offerUndo(pair, visit.patientId);
    },
  });
}

function transfer(visit, line) {
  return cycle(visit, "transfer", { line: line.prefix },
    ["doctor.did.transfer", { line: lineLabel(line) }]);
}

// Closing a no-show leaves it a no-show: the panel lets go of it, on this device for good.
function closeNoShow(visit) {
  rememberClosed(visit);
  state.current = null;
  renderCurrent();
  els.callNext.focus({ preventScroll: true });
}

function undo() {
  const offer = state.undo;
  if (!offer) return;
  const undone = words(offer.words);
  const pair = ["doctor.undone", { action: undone }];
  return act({
    body: { action: "undo", patient_id: offer.patientId },
    title: words(pair),
    after(answer, late) {
      settle(visitFromAnswer(answer, state.current));
      state.result = { kind: "did", words: pair, at: new Date().toISOString(), late };
    },
  });
}

els.undoButton.addEventListener("click", undo);

// Cancel asks why first: the patient left, or asked to be taken off the list. Closing the
// dialog gives the focus back to the row's More, where the cancel's own focus rule starts.
let cancelling = null; // the visit asked about

function askCancel(visit) {
  cancelling = visit;
  els.cancelTitle.textContent = t("doctor.cancel_title", { ticket: visit.ticket || "" }).trim();
  els.cancelText.replaceChildren(...withIsolatedName(t("doctor.cancel_text", { name: NAME_SLOT }), visit.name));
  els.cancelDialog.showModal();
}

for (const button of els.cancelDialog.querySelectorAll("button[data-reason]")) {
  button.addEventListener("click", () => {
    const asked = cancelling;
    els.cancelDialog.close();
    if (!asked) return;
    const reason = button.dataset.reason;
    cycle(asked, "cancel", { reason }, [`doctor.did.cancel_${reason}`]);
  });
}
byId("cancel-keep").addEventListener("click", () => els.cancelDialog.close());
els.cancelDialog.addEventListener("close", () => {
  cancelling = null;
  // The row went meanwhile (someone else called them): the big button, not nowhere.
  if (state.busy === null && focusLost()) els.callNext.focus({ preventScroll: true });
});

// --- priorities -----------------------------------------------------------------------------

async function setPriority(patientId, select) {
  const entry = state.waiting.find((w) => w.patientId === patientId);
  if (!entry || select.value === entry.priority) return;
  const priority = select.value;
  state.pendingPriority.add(patientId);
  select.disabled = true;
  try {
    const answer = await api("POST", "/api/doctors/", {
      json: { action: "set_priority", patient_id: patientId, priority },
    });
    entry.priority = answer.priority || priority;
    announce(t("doctor.priority_changed", {
      ticket: entry.ticket || entry.name, priority: t(`doctor.priority.${entry.priority}`),
    }));
  } catch (error) {
    const key = error instanceof ApiError
      ? ERROR_TEXTS[error.code] || "common.error.generic" : "common.error.network";
    state.result = { kind: error?.code === "no_such_patient" ? "info" : "error", key };
    if (error?.code === "no_such_patient") removeWaiting(patientId);
    renderResult();
  } finally {
    state.pendingPriority.delete(patientId);
    const focused = document.activeElement === select;
    renderQueue();
    if (focused && select.isConnected) select.focus({ preventScroll: true });
    refreshPlaces();
  }
}

els.myLines.addEventListener("change", () => {
  state.mineOnly = els.myLines.checked;
  renderQueue();
});

document.addEventListener("keydown", (event) => {
  if (event.key !== " " && event.key !== "Enter") return;
  if (event.repeat || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
  if (event.defaultPrevented || event.isComposing) return;
  // A dialog is in front: keys belong to it.
  if (els.detail.open || els.cancelDialog.open) return;
  if (event.target instanceof Element && event.target.closest(INTERACTIVE)) return;
  event.preventDefault(); // Space would scroll the page
  call(null);
});

// --- a patient's details -------------------------------------------------------------------

const MASK = "••••••";
// {id, name, status: "loading"|"ready"|"failed"|"gone", patient, shown: Set of fields, opener}
let detail = null;

async function openDetail(patientId, name, opener) {
  detail = { id: patientId, name, status: "loading", patient: null, shown: new Set(), opener };
  renderDetail();
  if (!els.detail.open) els.detail.showModal();
  els.detailClose.focus();
  const asked = detail;
  try {
    asked.patient = await api("GET", `/api/patients/${encodeURIComponent(patientId)}/`);
    asked.status = "ready";
  } catch (error) {
    const gone = error instanceof ApiError && ["patient_not_found", "not_found"].includes(error.code);
    asked.status = gone ? "gone" : "failed";
  }
  if (detail === asked) renderDetail();
}

function closeDetail() {
  if (els.detail.open) els.detail.close();
}

els.detailClose.addEventListener("click", closeDetail);
els.detail.addEventListener("close", () => {
  const opener = detail?.opener;
  detail = null;
  renderDetail(); // nothing of the patient stays in the page once closed
  if (opener?.isConnected) opener.focus({ preventScroll: true });
  else els.callNext.focus({ preventScroll: true });
});
// A click on the backdrop (outside the box) closes it too.
els.detail.addEventListener("click", (event) => {
  if (event.target === els.detail) closeDetail();
});

function fact(labelKey, value) {
  const wrap = el("div", "detail__fact");
  wrap.append(el("dt", null, t(labelKey)), el("dd", null, value));
  return wrap;
}

// What an answer shows: a choice's label rather than its stored value.
function answerText(field, value) {
  if (value === null || value === undefined || value === "") return null;
  if (field.kind === "choice") {
    const choice = (field.choices || []).find((c) => c.value === value);
    if (choice) return labelIn(choice.label, lang);
  }
  return String(value);
}

function answerRow(field, value) {
  const wrap = el("div", "detail__answer");
  wrap.dataset.key = field.key;
  const label = labelIn(field.label, lang);
  wrap.append(el("dt", null, label));
  const dd = el("dd");
  const shown = answerText(field, value);
  if (shown === null) {
    dd.append(el("span", "muted", t("intake.detail_empty")));
  } else if (field.sensitive && !detail.shown.has(field.key)) {
    const masked = el("span", "detail__masked", MASK);
    masked.setAttribute("aria-label", t("intake.detail_hidden"));
    dd.append(masked, " ", revealButton(field, label, false));
  } else {
    dd.append(el("span", "detail__value", shown));
    if (field.sensitive) dd.append(" ", revealButton(field, label, true));
  }
  wrap.append(dd);
  return wrap;
}

function revealButton(field, label, shown) {
  const button = el("button", "button button--quiet detail__reveal",
    t(shown ? "intake.hide" : "intake.show"));
  button.type = "button";
  button.setAttribute("aria-pressed", String(shown));
  button.setAttribute("aria-label", t(shown ? "intake.hide_field" : "intake.show_field", { label }));
  button.addEventListener("click", () => {
    if (shown) detail.shown.delete(field.key);
    else detail.shown.add(field.key);
    renderDetail();
    els.detailAnswers.querySelector(`[data-key="${CSS.escape(field.key)}"] .detail__reveal`)
      ?.focus();
  });
  return button;
}

function renderDetail() {
  if (!detail) {
    els.detailPhoto.replaceChildren();
    els.detailName.textContent = "";
    els.detailMessage.textContent = "";
    els.detailFacts.replaceChildren();
    els.detailAnswers.replaceChildren();
    return;
  }
  const p = detail.patient;
  const name = p?.fname ?? detail.name;
  els.detailName.textContent = name;
  els.detailPhoto.replaceChildren(avatar({ image: p?.image ?? null, name }, "detail__avatar"));
  const message = { loading: "intake.detail_loading", failed: "intake.detail_failed",
    gone: "intake.detail_not_found" }[detail.status];
  els.detailMessage.textContent = message ? t(message) : "";
  els.detailMessage.hidden = !message;
  if (!p) {
    els.detailFacts.replaceChildren();
    els.detailAnswers.replaceChildren();
    return;
  }
  const facts = [];
  const checkedIn = p.check_in_time || p.created_at;
  if (checkedIn) facts.push(fact("intake.detail_checked_in", clockText(lang, new Date(checkedIn))));
  if (p.status) {
    const known = ["waiting", "called"].includes(p.status);
    facts.push(fact("intake.detail_status", known ? t(`intake.detail_status.${p.status}`) : p.status));
  }
  if (p.called_at) facts.push(fact("intake.detail_called", clockText(lang, new Date(p.called_at))));
  if (p.room) facts.push(fact("intake.detail_room", p.room));
  els.detailFacts.replaceChildren(...facts);
  const intake = p.intake || {};
  const fields = (p.form || []).filter((f) => f.key !== "fname" && f.key !== "image");
  const rows = fields.map((field) => answerRow(field, intake[field.key]));
  if (rows.length === 0) rows.push(el("p", "muted", t("intake.detail_no_answers")));
  els.detailAnswers.replaceChildren(...rows);
}

// --- the live feed --------------------------------------------------------------------------

function onMessage(message) {
  if (message.kind === "settings") {
    useSettings(message.settings);
    return;
  }
  if (message.kind === "snapshot") {
    state.loaded = true;
    state.waiting = [...message.waiting];
    sortWaiting();
    state.recent = message.called.slice(0, RECENT_LIMIT);
    renderQueue();
    renderRecent();
    figures.refresh(true);
    refreshPlaces(); // the estimated waits: the snapshot has places only
    return;
  }
  const visit = message.visit;
  followCurrent(message);
  if (message.kind === "updated") {
    updateWaiting(visit);
    sortWaiting();
  } else if (message.kind === "added") {
    if (addWaiting(visit)) announce(t("doctor.new_patient", { name: visit.name }));
    if (visit.line && !lineOf(visit.line)) loadLines(); // a line added since the page loaded
  } else if (message.kind === "called" || message.kind === "recalled") {
    removeWaiting(visit.patientId);
    addRecent(visit);
  } else if (message.kind === "left") {
    removeWaiting(visit.patientId); // cancelled or closed: not a call
  }
  // "status": a called visit moved on (in service, done, no-show); only the panel shows it.
  renderQueue();
  renderCurrent();
  renderRecent();
  if (message.kind !== "updated" && message.kind !== "status") figures.refresh();
  refreshPlaces();
}

function useSettings(settings) {
  clinicName = settings.clinic_name;
  if (settings.language !== lang) {
    lang = settings.language;
    t = translator(data, lang);
  }
  renderAll();
}

const feed = new QueueFeed({
  onMessage,
  onStatus(up) {
    state.feedUp = up;
    if (up) wakeRetry?.(); // an action waiting for the box goes now
    renderControls();
  },
}, { events: "all" }); // PATIENT_UPDATED keeps the priority badges live, PATIENT_STATUS the call

renderAll();
loadLines();
loadCurrent();
feed.start();
setInterval(tick, TICK_MS);
figures.keepFresh();
