// The doctor's console: the live waiting list, "Call next" (button, Space or Enter), a
// per-patient Call, the last call's confirmation, recent calls and today's figures.
// A patient's name (waiting or recently called) opens their details and intake answers;
// sensitive answers stay hidden until "Show" is pressed.
// The live feed drives the list, so two doctors calling at once always agree.

import { ApiError, api } from "./api.js";
import { NAME_SLOT, byId, decorative, el, photo, withIsolatedName } from "./dom.js";
import { QueueFeed } from "./feed.js";
import { applyTexts, clockText, pageData, renderStaffHeader, translator } from "./page.js";
import { TodayFigures, minutesSince, waitedText } from "./stats.js";
import { labelIn } from "./intake.js";

const RECENT_LIMIT = 6;
const TICK_MS = 30_000; // waiting times move on without a reload
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
  waiting: [], // visits (feed.js), oldest first
  recent: [], // visits with calledAt, newest first
  busy: false,
  result: null, // what the last call said: {kind, key?, name?, room?, at?}
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
  detail: byId("detail"),
  detailPhoto: byId("detail-photo"),
  detailName: byId("detail-name"),
  detailClose: byId("detail-close"),
  detailMessage: byId("detail-message"),
  detailFacts: byId("detail-facts"),
  detailAnswers: byId("detail-answers"),
};

// --- state changes ------------------------------------------------------------------------

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
  li.append(decorative(el("span", "patient__pos"))); // the list itself tells its order
  li.append(avatar(entry, "patient__photo"));
  const main = el("div", "patient__main");
  main.append(nameButton(entry, "patient__name"));
  main.append(el("span", "patient__meta"));
  li.append(main);
  const wait = el("span", "patient__wait");
  wait.dataset.since = entry.checkedInAt;
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
    t("doctor.arrived", { time: clockText(lang, new Date(entry.checkedInAt)) });
  updateWait(li.querySelector(".patient__wait"), entry.checkedInAt);
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
  els.nextUp.replaceChildren(
    ...(first ? withIsolatedName(t("doctor.next_up", { name: NAME_SLOT }), first.name) : [t("doctor.nobody_next")]),
  );
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
    li.append(nameButton(call, "recent__name"));
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
  try {
    const answer = await api("POST", "/api/doctors/", { json: body });
    const patient = answer.patient;
    const at = new Date().toISOString();
    state.result = { kind: "called", name: patient.fname, room, at };
    removeWaiting(patient.id);
    const image = patient.image || null;
    addRecent({ patientId: patient.id, name: patient.fname, image, room, calledAt: at });
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
    state.waiting = [...message.waiting].sort((a, b) => a.entryId - b.entryId);
    state.recent = message.called.slice(0, RECENT_LIMIT);
    renderQueue();
    renderRecent();
    figures.refresh(true);
    return;
  }
  const visit = message.visit;
  if (message.kind === "added") {
    if (addWaiting(visit)) announce(t("doctor.new_patient", { name: visit.name }));
  } else {
    removeWaiting(visit.patientId);
    addRecent(visit);
  }
  renderQueue();
  renderRecent();
  figures.refresh();
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
});

renderAll();
feed.start();
setInterval(tick, TICK_MS);
figures.keepFresh();
