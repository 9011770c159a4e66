// The doctor's console: the live waiting list, "Call next" (button, Space or Enter), a
// per-patient Call, the last call's confirmation, recent calls and today's figures.
// The live feed drives the list, so two doctors calling at once always agree.

import { ApiError, api } from "./api.js";
import { QueueFeed } from "./feed.js";
import { applyTexts, clockText, minutesSince, pageData, translator } from "./page.js";

const RECENT_LIMIT = 6;
const TICK_MS = 30_000; // waiting times move on without a reload
const STATS_EVERY_MS = 5 * 60_000; // and today's figures roll over at midnight
const STATS_DEBOUNCE_MS = 150;
const LONG_WAIT_MINUTES = 30;
// Where Space and Enter already mean something: never "call next" from there.
const INTERACTIVE = "a, button, input, select, textarea, summary, label, [contenteditable], " +
  "[role=button], [role=link], [role=checkbox], [role=radio], [role=menuitem]";

const data = pageData();
const room = data.credential.room || null;
let lang = data.lang;
let t = translator(data, lang);
let clinicName = data.settings.clinic_name;

const state = {
  loaded: false,
  waiting: [], // {patientId, entryId, fname, image, checkInTime}, oldest first
  recent: [], // {patientId, fname, room, at}, newest first
  stats: null,
  busy: false,
  result: null, // what the last call said: {kind, key?, name?, room?, at?}
};

const $ = (id) => document.getElementById(id);
const els = {
  banner: $("feed-banner"),
  roomLine: $("room-line"),
  count: $("waiting-count"),
  loading: $("queue-loading"),
  list: $("queue-list"),
  empty: $("queue-empty"),
  callNext: $("call-next"),
  callNextText: $("call-next-text"),
  nextUp: $("next-up"),
  result: $("call-result"),
  today: $("today"),
  recent: $("recent-list"),
  recentEmpty: $("recent-empty"),
  announcer: $("announcer"),
};

// --- state changes ------------------------------------------------------------------------

function fromQueueItem(item) {
  return {
    patientId: item.patient.id,
    entryId: item.id,
    fname: item.patient.fname,
    image: item.patient.image,
    checkInTime: item.check_in_time,
  };
}

function addWaiting(entry) {
  if (state.waiting.some((w) => w.patientId === entry.patientId)) return false;
  state.waiting.push(entry);
  state.waiting.sort((a, b) => a.entryId - b.entryId);
  return true;
}

function removeWaiting(patientId) {
  state.waiting = state.waiting.filter((w) => w.patientId !== patientId);
}

function addRecent(call) {
  state.recent = [call, ...state.recent.filter((r) => r.patientId !== call.patientId)]
    .sort((a, b) => Date.parse(b.at) - Date.parse(a.at))
    .slice(0, RECENT_LIMIT);
}

// --- rendering ----------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function initials(name) {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : words;
  return letters.map((w) => w[0]).join("").toUpperCase();
}

function photo(entry, className) {
  if (entry.image && entry.image.startsWith("/media/")) {
    const img = el("img", className);
    img.src = entry.image;
    img.alt = ""; // the name is right beside it
    img.decoding = "async";
    return img;
  }
  const placeholder = el("span", `${className} ${className}--none`, initials(entry.fname));
  placeholder.setAttribute("aria-hidden", "true");
  return placeholder;
}

function waitText(iso) {
  const minutes = minutesSince(iso);
  return minutes < 1 ? t("common.just_now") : t("common.minutes", { n: minutes });
}

function minutesText(seconds) {
  if (seconds === null || seconds === undefined) return t("doctor.no_value");
  if (seconds < 60) return t("doctor.under_a_minute");
  return t("common.minutes", { n: Math.round(seconds / 60) });
}

function updateWait(node, iso) {
  node.textContent = waitText(iso);
  node.classList.toggle("patient__wait--long", minutesSince(iso) >= LONG_WAIT_MINUTES);
}

function patientRow(entry) {
  const li = el("li", "patient");
  li.dataset.patientId = String(entry.patientId);
  const position = el("span", "patient__pos");
  position.setAttribute("aria-hidden", "true"); // the list itself tells its order
  li.append(position);
  li.append(photo(entry, "patient__photo"));
  const main = el("div", "patient__main");
  main.append(el("span", "patient__name", entry.fname));
  main.append(el("span", "patient__meta"));
  li.append(main);
  const wait = el("span", "patient__wait");
  wait.dataset.since = entry.checkInTime;
  li.append(wait);
  const button = el("button", "button patient__call", t("doctor.call"));
  button.type = "button";
  button.addEventListener("click", () => call(entry.patientId));
  li.append(button);
  return li;
}

function fillRow(li, entry, index) {
  const position = li.querySelector(".patient__pos");
  position.textContent = String(index + 1);
  li.querySelector(".patient__meta").textContent =
    t("doctor.arrived", { time: clockText(lang, new Date(entry.checkInTime)) });
  updateWait(li.querySelector(".patient__wait"), entry.checkInTime);
  const button = li.querySelector(".patient__call");
  button.textContent = t("doctor.call");
  button.setAttribute("aria-label", t("doctor.call_name", { name: entry.fname }));
  button.disabled = state.busy;
}

function renderQueue() {
  // Rows are kept by patient, so a focused Call button survives other rows changing.
  const rows = new Map([...els.list.children].map((li) => [Number(li.dataset.patientId), li]));
  const focusedRow = document.activeElement?.closest?.(".patient");
  const focusedIndex = focusedRow ? [...els.list.children].indexOf(focusedRow) : -1;
  const keep = new Set(state.waiting.map((w) => w.patientId));
  let lostFocus = false;
  for (const [id, li] of rows) {
    if (!keep.has(id)) {
      if (li === focusedRow) lostFocus = true;
      li.remove();
      rows.delete(id);
    }
  }
  state.waiting.forEach((entry, index) => {
    const li = rows.get(entry.patientId) || patientRow(entry);
    fillRow(li, entry, index);
    if (els.list.children[index] !== li) els.list.insertBefore(li, els.list.children[index] || null);
  });
  if (lostFocus) {
    // Keyboard users keep their place: the row that moved up, or the big button.
    const next = els.list.children[Math.min(focusedIndex, els.list.children.length - 1)];
    (next?.querySelector(".patient__call") || els.callNext).focus({ preventScroll: true });
  }

  const n = state.waiting.length;
  els.loading.hidden = state.loaded;
  els.empty.hidden = !state.loaded || n > 0;
  els.list.hidden = n === 0;
  els.count.hidden = !state.loaded;
  els.count.textContent = String(n);
  renderCallPanel();
}

function renderCallPanel() {
  const first = state.waiting[0];
  els.callNext.disabled = state.busy || !first;
  els.callNext.setAttribute("aria-busy", String(state.busy));
  els.callNextText.textContent = t(state.busy ? "doctor.calling" : "doctor.call_next");
  els.nextUp.textContent = first ? t("doctor.next_up", { name: first.fname }) : t("doctor.nobody_next");
  for (const button of els.list.querySelectorAll(".patient__call")) button.disabled = state.busy;
}

function renderResult() {
  const box = els.result;
  box.replaceChildren();
  box.className = "call-result";
  const r = state.result;
  if (!r) return;
  if (r.kind === "called") {
    box.classList.add("call-result--called");
    const text = r.room ? t("doctor.called_room", { name: r.name, room: r.room })
      : t("doctor.called", { name: r.name });
    box.append(el("p", "call-result__text", text));
    box.append(el("p", "call-result__time", t("doctor.called_at", { time: clockText(lang, new Date(r.at)) })));
  } else {
    box.classList.add(r.kind === "info" ? "call-result--info" : "call-result--error");
    box.append(el("p", "call-result__text", t(r.key)));
  }
}

function renderRecent() {
  const items = state.recent.map((call) => {
    const li = el("li", "recent");
    li.append(photo(call, "recent__photo"));
    li.append(el("span", "recent__name", call.fname));
    if (call.room) li.append(el("span", "recent__room", call.room));
    const time = el("time", "recent__time", clockText(lang, new Date(call.at)));
    time.dateTime = call.at;
    li.append(time);
    return li;
  });
  els.recent.replaceChildren(...items);
  els.recent.hidden = items.length === 0;
  els.recentEmpty.hidden = items.length > 0;
}

function renderStats() {
  const stats = state.stats;
  for (const dd of els.today.querySelectorAll("[data-stat]")) {
    const key = dd.dataset.stat;
    if (!stats) dd.textContent = t("doctor.no_value");
    else if (key === "median_wait_seconds") dd.textContent = minutesText(stats[key]);
    else dd.textContent = String(stats[key]);
  }
}

function renderChrome() {
  document.documentElement.lang = lang;
  document.title = `${t("doctor.title")} · ${clinicName}`;
  for (const node of document.querySelectorAll("[data-clinic-name]")) node.textContent = clinicName;
  const label = document.querySelector(".topbar__label");
  if (label) label.textContent = t("common.signed_in_as", { label: data.credential.label });
  const signOut = document.querySelector(".topbar__user button");
  if (signOut) signOut.textContent = t("common.sign_out");
  els.roomLine.textContent = room ? t("doctor.room", { room }) : t("doctor.no_room");
  applyTexts(t);
}

function renderAll() {
  renderChrome();
  renderQueue();
  renderResult();
  renderRecent();
  renderStats();
}

function tick() {
  for (const node of els.list.querySelectorAll(".patient__wait")) updateWait(node, node.dataset.since);
}

function announce(text) {
  els.announcer.textContent = text;
}

// --- today's figures ------------------------------------------------------------------------

let statsTimer = null;

// Coalesces a burst of events into one request; `now` skips the wait (the first load).
function refreshStats(now = false) {
  clearTimeout(statsTimer);
  statsTimer = setTimeout(async () => {
    try {
      state.stats = await api("GET", "/api/stats/today/");
      renderStats();
    } catch {
      // Figures are a nicety; the next event or the periodic refresh tries again.
    }
  }, now === true ? 0 : STATS_DEBOUNCE_MS);
}

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
  try {
    const answer = await api("POST", "/api/doctors/", { json: body });
    const patient = answer.patient;
    const at = new Date().toISOString();
    state.result = { kind: "called", name: patient.fname, room, at };
    removeWaiting(patient.id);
    addRecent({ patientId: patient.id, fname: patient.fname, image: patient.image, room, at });
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
    refreshStats();
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

document.addEventListener("keydown", (event) => {
  if (event.key !== " " && event.key !== "Enter") return;
  if (event.repeat || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
  if (event.defaultPrevented || event.isComposing) return;
  if (event.target instanceof Element && event.target.closest(INTERACTIVE)) return;
  event.preventDefault(); // Space would scroll the page
  call(null);
});

// --- the live feed --------------------------------------------------------------------------

const feed = new QueueFeed({
  onSnapshot(msg) {
    state.loaded = true;
    state.waiting = msg.queue.map(fromQueueItem).sort((a, b) => a.entryId - b.entryId);
    state.recent = (msg.called || [])
      .map((item) => ({
        patientId: item.patient.id,
        fname: item.patient.fname,
        image: item.patient.image,
        room: item.room,
        at: item.called_at,
      }))
      .slice(0, RECENT_LIMIT);
    renderQueue();
    renderRecent();
    refreshStats(true);
  },
  onEvent(msg) {
    if (msg.event === "PATIENT_ADDED") {
      const entry = {
        patientId: msg.patient.id,
        entryId: msg.id,
        fname: msg.patient.fname,
        image: msg.patient.image,
        checkInTime: msg.check_in_time,
      };
      if (addWaiting(entry)) announce(t("doctor.new_patient", { name: entry.fname }));
    } else if (msg.event === "PATIENT_COMPLETED") {
      removeWaiting(msg.patient.id);
      addRecent({
        patientId: msg.patient.id,
        fname: msg.patient.fname,
        image: msg.patient.image,
        room: msg.room || null,
        at: msg.at,
      });
    } else {
      return;
    }
    renderQueue();
    renderRecent();
    refreshStats();
  },
  onSettings(settings) {
    clinicName = settings.clinic_name;
    if (settings.language !== lang) {
      lang = settings.language;
      t = translator(data, lang);
    }
    renderAll();
  },
  onStatus(up) {
    els.banner.hidden = up;
  },
});

renderAll();
feed.start();
setInterval(tick, TICK_MS);
setInterval(() => refreshStats(), STATS_EVERY_MS);
