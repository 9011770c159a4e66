// The doctor's console: the live waiting list, "Call next" (button, Space or Enter), a
// per-patient Call, the last call's confirmation, recent calls and today's figures.
// A patient's name (waiting or recently called) opens their details and intake answers;
// sensitive answers stay hidden until "Show" is pressed.
// The live feed drives the list, so two doctors calling at once always agree.
// Lines (issue 15): each patient's ticket, line and priority; the list in the real call
// order (each patient's place in their line, GET /api/queue/ after every change); a
// priority select per patient; "Only my lines" when this credential serves some lines.

import { ApiError, api } from "./api.js";
import { NAME_SLOT, byId, decorative, el, photo, withIsolatedName } from "./dom.js";
import { QueueFeed } from "./feed.js";
import { fetchLines, lineChip as chipOf } from "./lines.js";
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

// The server's error codes (errors.py) a priority change can meet, as this page's texts.
const ERROR_TEXTS = {
  priority_invalid: "doctor.error.priority_invalid",
  no_such_patient: "doctor.already_called",
};

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
  busy: false,
  result: null, // what the last call said: {kind, key?, name?, room?, at?}
  lines: [], // GET /api/lines/, in the admin's order
  mineOnly: myLines.size > 0, // "Only my lines"
  pendingPriority: new Set(), // patient ids whose priority change is on its way
};

const els = {
  banner: byId("feed-banner"),
  roomLine: byId("room-line"),
  count: byId("waiting-count"),
  loading: byId("queue-loading"),
  list: byId("queue-list"),
  empty: byId("queue-empty"),
  callNext: byId("call-next"),
  callNextText: byId("call-next-text"),
  nextUp: byId("next-up"),
  result: byId("call-result"),
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

function updateWaiting(visit) {
  const entry = state.waiting.find((w) => w.patientId === visit.patientId);
  if (!entry) return null;
  entry.priority = visit.priority;
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
    items = await api("GET", "/api/queue/");
  } catch {
    return; // the feed's banner says when the box is unreachable; the next event retries
  }
  if (asked !== placesAsked) return;
  const byEntry = new Map(items.map((item) => [item.id, item]));
  for (const entry of state.waiting) {
    const item = byEntry.get(entry.entryId);
    if (!item) continue;
    entry.place = Number.isInteger(item.place) ? item.place : null;
    if (!state.pendingPriority.has(entry.patientId)) entry.priority = item.priority || "normal";
  }
  sortWaiting();
  renderQueue();
}

// --- lines ----------------------------------------------------------------------------------

function lineOf(prefix) {
  return state.lines.find((line) => line.prefix === prefix) || null;
}

// More than one line in use: only then do lines show (one line looks as it always did).
function severalLines() {
  return state.lines.filter((line) => line.active).length > 1
    || new Set(state.waiting.map((w) => w.line)).size > 1;
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
}

function removeWaiting(patientId) {
  state.waiting = state.waiting.filter((w) => w.patientId !== patientId);
}

function addRecent(call) {
  state.recent = [call, ...state.recent.filter((r) => r.patientId !== call.patientId)]
    .sort((a, b) => Date.parse(b.calledAt) - Date.parse(a.calledAt))
    .slice(0, RECENT_LIMIT);
}

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

// The patient's name, as the button that opens their details.
function nameButton(entry, className) {
  const button = el("button", `${className} name-button`, entry.name);
  button.type = "button";
  button.dataset.patientId = String(entry.patientId);
  button.setAttribute("aria-haspopup", "dialog");
  button.addEventListener("click", () => openDetail(entry.patientId, entry.name, button));
  return button;
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
  return li;
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
  updateWait(li.querySelector(".patient__wait"), entry.checkedInAt);
  const select = li.querySelector(".patient__priority");
  for (const option of select.options) option.textContent = t(`doctor.priority.${option.value}`);
  select.setAttribute("aria-label", t("doctor.priority_for", { name: entry.ticket || entry.name }));
  if (!state.pendingPriority.has(entry.patientId)) select.value = entry.priority;
  select.disabled = state.pendingPriority.has(entry.patientId);
  const button = li.querySelector(".patient__call");
  button.textContent = t("doctor.call");
  button.setAttribute("aria-label", t("doctor.call_name", { name: entry.name }));
  button.disabled = state.busy;
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
  els.callNext.disabled = state.busy || !first;
  els.callNext.setAttribute("aria-busy", String(state.busy));
  els.callNextText.textContent = t(state.busy ? "doctor.calling" : "doctor.call_next");
  els.nextUp.replaceChildren(
    ...(first ? withIsolatedName(t("doctor.next_up", { name: NAME_SLOT }), first.name) : [t("doctor.nobody_next")]),
  );
  for (const button of els.list.querySelectorAll(".patient__call")) button.disabled = state.busy;
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

function renderResult() {
  const box = els.result;
  box.replaceChildren();
  box.className = "call-result";
  const r = state.result;
  if (!r) return;
  if (r.kind === "called") {
    box.classList.add("call-result--called");
    if (r.ticket) box.append(el("p", "call-result__ticket", r.ticket));
    const text = r.room ? t("doctor.called_room", { name: NAME_SLOT, room: r.room })
      : t("doctor.called", { name: NAME_SLOT });
    const line = el("p", "call-result__text");
    line.append(...withIsolatedName(text, r.name));
    box.append(line);
    box.append(el("p", "call-result__time", t("doctor.called_at", { time: clockText(lang, new Date(r.at)) })));
  } else {
    box.classList.add(r.kind === "info" ? "call-result--info" : "call-result--error");
    box.append(el("p", "call-result__text", t(r.key)));
  }
}

function renderRecent() {
  const items = state.recent.map((call) => {
    const li = el("li", "recent");
    li.append(avatar(call, "recent__photo"));
    const who = el("span", "recent__who");
    if (call.ticket) who.append(el("span", "recent__ticket", call.ticket), " ");
    who.append(nameButton(call, "recent__name"));
    li.append(who);
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

function renderAll() {
  renderChrome();
  renderDetail();
  renderQueue();
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

// --- calling --------------------------------------------------------------------------------

async function call(patientId) {
  if (state.busy) return; // one call at a time: never two patients for one press
  if (patientId === null && state.waiting.length === 0) return;
  // Disabled buttons drop the focus; a keyboard user gets it back where they were.
  const focused = document.activeElement;
  const hadFocus = focused === els.callNext;
  const focusedRow = focused?.classList?.contains("patient__call")
    ? [...els.list.children].indexOf(focused.closest(".patient")) : -1;
  state.busy = true;
  renderCallPanel();
  const body = patientId === null
    ? { action: "call_next" }
    : { action: "complete", patient_id: patientId };
  const before = new Map(state.waiting.map((w) => [w.patientId, w]));
  try {
    const answer = await api("POST", "/api/doctors/", { json: body });
    const patient = answer.patient;
    const at = new Date().toISOString();
    // The feed may have taken them off the list already: the list as it was before the call.
    const called = before.get(patient.id);
    const ticket = answer.ticket || called?.ticket;
    state.result = { kind: "called", name: patient.fname, ticket: ticket || null, room, at };
    const image = patient.image || null;
    addRecent({ patientId: patient.id, name: patient.fname, image, room, calledAt: at,
      ticket: called?.ticket || null, line: called?.line || null });
    removeWaiting(patient.id);
  } catch (error) {
    if (error instanceof ApiError && ["nobody_waiting", "no_such_patient"].includes(error.code)) {
      // Another doctor was quicker: not an error, just news. The feed updates the list.
      const key = patientId === null ? "doctor.already_empty" : "doctor.already_called";
      state.result = { kind: "info", key };
      if (patientId !== null) removeWaiting(patientId);
    } else if (error instanceof ApiError) {
      state.result = { kind: "error", key: "common.error.generic" };
    } else {
      state.result = { kind: "error", key: "common.error.network" };
    }
  } finally {
    state.busy = false;
    renderQueue();
    renderResult();
    renderRecent();
    figures.refresh();
    refreshPlaces();
    const focusLost = !document.activeElement || document.activeElement === document.body;
    if (focusLost) restoreFocus(hadFocus, focusedRow);
  }
}

function restoreFocus(onCallNext, rowIndex) {
  if (!onCallNext && rowIndex < 0) return; // the focus was elsewhere: leave it be
  const rows = els.list.children;
  const row = !onCallNext && rows.length ? rows[Math.min(rowIndex, rows.length - 1)] : null;
  const target = row ? row.querySelector(".patient__call") : els.callNext;
  if (!target.disabled) target.focus({ preventScroll: true });
}

els.callNext.addEventListener("click", () => call(null));

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
  if (els.detail.open) return; // the details are in front: keys belong to them
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
    return;
  }
  const visit = message.visit;
  if (message.kind === "updated") {
    updateWaiting(visit);
    sortWaiting();
  } else if (message.kind === "added") {
    if (addWaiting(visit)) announce(t("doctor.new_patient", { name: visit.name }));
    if (visit.line && !lineOf(visit.line)) loadLines(); // a line added since the page loaded
  } else {
    removeWaiting(visit.patientId);
    if (message.kind !== "left") addRecent(visit); // called or recalled, not cancelled
  }
  renderQueue();
  renderRecent();
  if (message.kind !== "updated") figures.refresh();
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
    els.banner.hidden = up;
  },
}, { events: "all" }); // PATIENT_UPDATED keeps the priority badges live

renderAll();
loadLines();
feed.start();
setInterval(tick, TICK_MS);
figures.keepFresh();
