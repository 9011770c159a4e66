// The waiting-room TV: the live queue from QueueFeed, the latest calls with a chime (and the
// name spoken, if the clinic wants), and nothing to touch after sign-in but one sound tap.
// Its URL chooses what it shows (README "The pages"):
//   ?lines=A,N   only these lines (ticket prefixes); several lines are shown as columns
//   ?show=ticket | ticket_name | name   how patients are told apart (default ticket_name)
//   ?page_seconds=8   how long each page of a long list stays (1-60)

import { api } from "./api.js";
import { byId, decorative, el, photo } from "./dom.js";
import { QueueFeed } from "./feed.js";
import { fetchLines, inkOn, lineIcon, lineName } from "./lines.js";
import { applyTexts, clockText, pageData, translator } from "./page.js";

const CALL_NAME_REM = [8.5, 7.5, 6.5, 5.5, 4.75, 4, 3.5];
const CALL_NAME_ONE_LINE_MIN = 5.5; // smaller than this, two big lines read better
const CALL_ROOM_REM = [4.25, 3.75, 3.25, 2.75];
const CALL_TICKET_REM = [7, 6.25, 5.5, 4.75, 4, 3.5]; // "A-012 → Room 3"
const CALL_UNDER_REM = [4.5, 4, 3.5, 3, 2.5]; // the name under the ticket
const EARLIER_CALLS = 3; // shown below the newest call
const CALLS_KEPT = 40; // today's latest calls kept, so a screen for some lines still has its own
const LIST_LIMIT = 500; // rows per line ever put in the DOM; all of them are paged through
const PAGE_SECONDS = 8;
const LINES_REFRESH_MS = 5 * 60_000; // an admin may add or rename a line
const PLACES_AFTER_MS = 300; // after a change, the real call order is fetched once things settle
const DEFAULT_LINE = "A"; // visits from before lines belong to line A
const SHOW = ["ticket", "ticket_name", "name"];
const BURST_MS = 400; // calls arriving this close together (a replay) are announced together
const SPOKEN_PER_BURST = 2;
const CHIME_SECONDS = 1.4;
const CURSOR_IDLE_MS = 3000;
const VOICE_LANG = { en: "en-US", es: "es-ES" };
const SPEECH_FETCH_MS = 8000; // the box renders a call in well under a second
const SPEECH_LONGEST_MS = 15000; // no spoken call is longer: the next one never waits more

const data = pageData();
const params = new URLSearchParams(location.search);
const chosenLines = listParam(params.get("lines"));
const showing = SHOW.includes(params.get("show")) ? params.get("show") : "ticket_name";
const pageSeconds = boundedSeconds(params.get("page_seconds"));
let settings = data.settings;
let lang = data.lang;
let t = translator(data, lang);

const state = {
  loaded: false,
  waiting: [], // visits (feed.js), in queue order
  called: [], // visits with calledAt, newest first
  freshCallId: null, // the call that just arrived live: highlighted once
  seenWaiting: new Set(), // entry ids already rendered, so only newcomers fade in
};
let lines = null; // GET /api/lines/, in the admin's order; null until read
let columns = []; // what renderWaiting drew: {line, list, pageMark, pages: [[from, to]]}
let pageTurn = 0;

function listParam(value) {
  const prefixes = (value || "")
    .split(",")
    .map((part) => part.trim().toUpperCase())
    .filter((part) => /^[A-Z]{1,2}$/.test(part));
  return prefixes.length ? [...new Set(prefixes)] : null;
}

function boundedSeconds(value) {
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds >= 1 ? Math.min(seconds, 60) : PAGE_SECONDS;
}

const els = {
  clinic: byId("clinic-name"),
  date: byId("date"),
  clock: byId("clock"),
  banner: byId("feed-banner"),
  current: byId("called-current"),
  calledEmpty: byId("called-empty"),
  earlier: byId("earlier"),
  earlierList: byId("earlier-list"),
  count: byId("waiting-count"),
  loading: byId("waiting-loading"),
  main: byId("tv-main"),
  columns: byId("waiting-columns"),
  pageMark: byId("waiting-page"),
  waitingEmpty: byId("waiting-empty"),
  sound: byId("enable-sound"),
};

// --- what the feed says -----------------------------------------------------------------

function onMessage(message) {
  if (message.kind === "snapshot") onSnapshot(message);
  else if (message.kind === "added") onAdded(message.visit);
  else if (message.kind === "called" || message.kind === "recalled") onCalled(message.visit);
  else if (message.kind === "left") onLeft(message.visit);
  else if (message.kind === "settings") onSettings(message.settings);
}

function onSnapshot(snapshot) {
  state.waiting = snapshot.waiting;
  state.called = snapshot.called.slice(0, CALLS_KEPT);
  state.freshCallId = null;
  if (!state.loaded) {
    // The first picture is not news: nothing fades in.
    state.loaded = true;
    state.seenWaiting = new Set(state.waiting.map((entry) => entry.entryId));
    document.body.classList.remove("is-loading");
  }
  render();
}

function onAdded(visit) {
  if (!state.waiting.some((entry) => entry.entryId === visit.entryId)) state.waiting.push(visit);
  render(); // a newcomer may share a name with someone called: both show tickets
  refreshPlacesSoon();
}

// Cancelled, or closed at the end of the day: off the list, no call shown or announced.
function onLeft(visit) {
  state.waiting = state.waiting.filter((entry) => entry.entryId !== visit.entryId);
  render();
  refreshPlacesSoon();
}

function onCalled(call) {
  state.waiting = state.waiting.filter((entry) => entry.entryId !== call.entryId);
  state.called = [call, ...state.called.filter((c) => c.entryId !== call.entryId)].slice(
    0,
    CALLS_KEPT,
  );
  state.freshCallId = call.entryId;
  render();
  state.freshCallId = null; // it glows once, not again on the next redraw
  if (shownHere(call)) announcer.add(call);
  refreshPlacesSoon();
}

// Live events do not carry places; a priority patient may go ahead of others. The queue
// read once things settle gives the real call order (the feed stays the judge of who waits).
let placesTimer = null;

function refreshPlacesSoon() {
  clearTimeout(placesTimer);
  placesTimer = setTimeout(refreshPlaces, PLACES_AFTER_MS);
}

async function refreshPlaces() {
  let queue;
  try {
    queue = await api("GET", "/api/queue/");
  } catch {
    return; // the next change tries again
  }
  if (!Array.isArray(queue)) return;
  const places = new Map(queue.map((item) => [item.id, item.place]));
  let changed = false;
  for (const visit of state.waiting) {
    const place = places.get(visit.entryId);
    if (Number.isInteger(place) && place !== visit.place) {
      visit.place = place;
      changed = true;
    }
  }
  if (changed) renderWaiting();
}

async function refreshLines() {
  const fresh = await fetchLines();
  if (!fresh) return;
  lines = fresh;
  render();
}

function onSettings(next) {
  const privacyChanged =
    next.display_names !== settings.display_names ||
    next.display_photos !== settings.display_photos;
  const langChanged = next.language !== lang;
  settings = next;
  if (langChanged) {
    lang = next.language;
    t = translator(data, lang);
    document.documentElement.lang = lang;
    applyTexts(t);
  }
  showClinicName();
  tick();
  render();
  refreshLines();
  // Names and photos come from the server as the new setting allows: fetch them afresh.
  if (privacyChanged) feed.resync();
}

function onStatus(isUp) {
  els.banner.hidden = isUp;
  document.body.classList.toggle("is-offline", !isUp);
}

// --- drawing ----------------------------------------------------------------------------

// With photos on, a row without one keeps the column straight with a plain initial.
function avatar(person, className) {
  if (showing === "ticket") return null; // a ticket-only screen shows nobody's face either
  if (person.image) return photo(person.image, className);
  if (!settings.display_photos) return null;
  const initial = (person.name.trim()[0] || "").toLocaleUpperCase(lang);
  return decorative(el("span", `${className} waiting__photo--none`, initial));
}

function shownHere(visit) {
  return !chosenLines || chosenLines.includes(visit.line || DEFAULT_LINE);
}

// The lines this screen shows, each a column when there are several: the ones the URL names
// (in its order), else every active line, and any other line someone still waits in.
function shownLines() {
  const known = new Map((lines || []).map((line) => [line.prefix, line]));
  const prefixes = chosenLines
    ? [...chosenLines]
    : (lines || []).filter((line) => line.active).map((line) => line.prefix);
  for (const visit of state.waiting) {
    const prefix = visit.line || DEFAULT_LINE;
    if (!prefixes.includes(prefix) && shownHere(visit)) prefixes.push(prefix);
  }
  return prefixes.map((prefix) => known.get(prefix) || { prefix, name: {}, colour: null, icon: null });
}

// How a patient is told apart on this screen. Names are what the server sends a display
// (display_names); the URL chooses among ticket, ticket and name, or name. Two patients
// whose names read the same always show their tickets, whatever the choice.
function sameNames(visits) {
  const seen = new Map();
  for (const visit of visits) {
    const key = visit.name.trim().toLocaleLowerCase(lang);
    seen.set(key, (seen.get(key) || 0) + 1);
  }
  return (visit) => (seen.get(visit.name.trim().toLocaleLowerCase(lang)) || 0) > 1;
}

function identity(visit, ambiguous) {
  if (!visit.ticket) return { ticket: null, name: visit.name };
  if (showing === "ticket") return { ticket: visit.ticket, name: null };
  if (showing === "name" && !ambiguous(visit)) return { ticket: null, name: visit.name };
  return { ticket: visit.ticket, name: visit.name };
}

function render() {
  const ambiguous = sameNames([...state.waiting, ...state.called]);
  renderCalled(ambiguous);
  renderWaiting(ambiguous);
}

function renderCalled(ambiguous = sameNames([...state.waiting, ...state.called])) {
  const calls = state.called.filter(shownHere).slice(0, EARLIER_CALLS + 1);
  const [current, ...earlier] = calls;
  els.calledEmpty.hidden = !state.loaded || Boolean(current);
  els.current.hidden = !current;
  els.current.replaceChildren();
  if (current) {
    const card = el("div", "call");
    if (current.entryId === state.freshCallId) card.classList.add("is-fresh");
    const face = showing === "ticket" ? null : current.image;
    if (face) card.append(photo(face, "call__photo"));
    const text = el("div", "call__text");
    const who = identity(current, ambiguous);
    if (current.ticket) {
      // The ticket is what everyone looks for: "A-012 → Room 3", the name beneath.
      const head = el("p", "call__ticket");
      head.append(el("span", "call__ticket-no", current.ticket));
      if (current.room) {
        head.append(" ", decorative(el("span", "call__arrow", "→")), " ");
        head.append(el("span", "call__ticket-room", current.room));
      }
      text.append(head);
      if (showing !== "ticket") text.append(el("p", "call__name call__name--under", current.name));
      if (!current.room) {
        text.append(el("p", "call__room call__room--none", t("display.please_come_in")));
      }
    } else {
      text.append(el("p", "call__name", who.name));
      if (current.room) {
        const room = el("p", "call__room");
        room.append(decorative(el("span", "call__arrow", "→")), ` ${current.room}`);
        text.append(room);
      } else {
        text.append(el("p", "call__room call__room--none", t("display.please_come_in")));
      }
    }
    card.append(text);
    els.current.append(card);
    fitCall();
  }
  els.earlier.hidden = earlier.length === 0;
  els.earlierList.replaceChildren(
    ...earlier.map((call) => {
      const li = el("li", "earlier__item");
      const face = avatar(call, "earlier__photo");
      if (face) li.append(face);
      if (call.ticket) li.append(el("span", "earlier__ticket", call.ticket));
      if (!call.ticket || showing !== "ticket") li.append(el("span", "earlier__name", call.name));
      if (call.room) li.append(el("span", "earlier__room", `→ ${call.room}`));
      if (call.calledAt) {
        li.append(el("span", "earlier__time", clockText(lang, new Date(call.calledAt))));
      }
      return li;
    }),
  );
}

// A line's waiting patients in its call order: by the place the server last gave, newcomers
// (no place yet) after, in the order they came.
function inCallOrder(visits) {
  return visits
    .map((visit, index) => ({ visit, index }))
    .sort(
      (a, b) =>
        (a.visit.place ?? Infinity) - (b.visit.place ?? Infinity) || a.index - b.index,
    )
    .map(({ visit }) => visit);
}

function row(entry, number, ambiguous) {
  const li = el("li", "waiting__item");
  li.dataset.id = entry.entryId;
  if (entry.ticket) li.dataset.ticket = entry.ticket;
  if (!state.seenWaiting.has(entry.entryId)) li.classList.add("is-new");
  // The list itself is ordered: the number is for the eye.
  li.append(decorative(el("span", "waiting__pos", String(number))));
  const face = avatar(entry, "waiting__photo");
  if (face) li.append(face);
  const who = identity(entry, ambiguous);
  if (who.ticket) li.append(el("span", "waiting__ticket", who.ticket));
  if (who.name !== null) li.append(el("span", "waiting__name", who.name));
  return li;
}

function columnHead(line) {
  const head = el("div", "column__head");
  if (line.colour) {
    head.style.setProperty("--line-colour", line.colour);
    head.style.setProperty("--line-ink", inkOn(line.colour));
  }
  const badge = decorative(el("span", "column__badge"));
  badge.append(lineIcon(line.icon, "column__icon"), el("span", "column__prefix", line.prefix));
  head.append(badge, el("h3", "column__name", lineName(line, lang) || line.prefix));
  return head;
}

function renderWaiting(ambiguous = sameNames([...state.waiting, ...state.called])) {
  const visible = state.waiting.filter(shownHere);
  const total = visible.length;
  els.loading.hidden = state.loaded;
  els.waitingEmpty.hidden = !state.loaded || total > 0;
  els.count.hidden = !state.loaded || total === 0;
  els.count.textContent =
    total === 1 ? t("display.count_one") : t("display.count_many", { n: total });
  const columnLines = shownLines();
  const several = columnLines.length > 1;
  els.main.classList.toggle("is-columns", several);
  columns = (several ? columnLines : [null]).map((line) => {
    const mine = line
      ? visible.filter((visit) => (visit.line || DEFAULT_LINE) === line.prefix)
      : visible;
    const ordered = inCallOrder(mine).slice(0, LIST_LIMIT);
    const list = el("ol", "waiting__list");
    list.replaceChildren(...ordered.map((entry, index) => row(entry, index + 1, ambiguous)));
    const pageMark = el("span", "waiting__page");
    pageMark.hidden = true;
    const column = { line, list, pageMark, pages: [[0, ordered.length]], node: null };
    if (line) {
      const node = el("section", "column");
      node.dataset.line = line.prefix;
      node.setAttribute("aria-label", lineName(line, lang) || line.prefix);
      const head = columnHead(line);
      head.append(pageMark);
      list.setAttribute("aria-label", lineName(line, lang) || line.prefix);
      node.append(head, list);
      if (ordered.length === 0) node.append(el("p", "column__empty", t("display.column_empty")));
      column.node = node;
    } else {
      list.id = "waiting-list";
      list.setAttribute("aria-labelledby", "waiting-heading");
    }
    return column;
  });
  state.seenWaiting = new Set(state.waiting.map((entry) => entry.entryId));
  els.columns.replaceChildren(...columns.map((column) => column.node || column.list));
  els.pageMark.replaceChildren();
  if (!several && total > 0) els.pageMark.append(columns[0].pageMark);
  els.columns.hidden = total === 0 && !several;
  paginate();
}

// Never scroll on a TV: rows are split into pages of what fits, and the pages take turns
// (page_seconds each), so everyone in line is on screen at least once per round.
function paginate() {
  for (const column of columns) {
    const rows = [...column.list.children];
    for (const item of rows) item.hidden = false;
    const room = column.list.clientHeight;
    const pages = [];
    let start = 0;
    let top = rows[0]?.offsetTop ?? 0;
    rows.forEach((item, index) => {
      if (index > start && item.offsetTop + item.offsetHeight - top > room + 1) {
        pages.push([start, index]);
        start = index;
        top = item.offsetTop;
      }
    });
    pages.push([start, rows.length]);
    column.pages = pages;
  }
  showPages();
}

function showPages() {
  for (const column of columns) {
    const count = column.pages.length;
    const current = pageTurn % count;
    const [from, to] = column.pages[current];
    [...column.list.children].forEach((item, index) => {
      item.hidden = index < from || index >= to;
    });
    column.pageMark.hidden = count < 2;
    column.pageMark.textContent = t("display.page", { n: current + 1, of: count });
  }
}

function turnPage() {
  pageTurn += 1;
  showPages();
}

// The newest call as large as it can be: the name on one line if it stays big, else on two;
// whole words, never cut off. The room likewise, on one line.
function fitCall() {
  const ticket = els.current.querySelector(".call__ticket");
  const name = els.current.querySelector(".call__name");
  const room = els.current.querySelector(".call__room");
  if (ticket) fitText(ticket, CALL_TICKET_REM, CALL_TICKET_REM.at(-1));
  if (name) {
    const sizes = ticket ? CALL_UNDER_REM : CALL_NAME_REM;
    fitText(name, sizes, ticket ? sizes.at(-1) : CALL_NAME_ONE_LINE_MIN);
  }
  if (room) fitText(room, CALL_ROOM_REM, CALL_ROOM_REM.at(-1));
}

function fitText(node, sizes, oneLineMin) {
  node.style.fontSize = "";
  node.style.overflowWrap = "";
  const fits = (lines) => {
    const lineHeight = parseFloat(getComputedStyle(node).lineHeight);
    return node.scrollWidth <= node.clientWidth + 1 && node.offsetHeight <= lineHeight * lines + 1;
  };
  const tryAt = (size, lines) => {
    node.style.fontSize = `${size}rem`;
    return fits(lines);
  };
  if (sizes.some((size) => size >= oneLineMin && tryAt(size, 1))) return;
  if (sizes.some((size) => tryAt(size, 2))) return;
  node.style.overflowWrap = "anywhere"; // one endless word: break it rather than cut it
}

function showClinicName() {
  els.clinic.textContent = settings.clinic_name;
  document.title = `${t("display.title")} · ${settings.clinic_name}`;
}

let today = new Date().toDateString();

function tick() {
  const now = new Date();
  if (now.toDateString() !== today) {
    // A new day: yesterday's last call is not "now calling". The snapshot has today's only.
    today = now.toDateString();
    feed.resync();
  }
  const clock = clockText(lang, now);
  if (els.clock.textContent !== clock) els.clock.textContent = clock;
  const day = now.toLocaleDateString(lang, { weekday: "long", day: "numeric", month: "long" });
  const date = day.charAt(0).toLocaleUpperCase(lang) + day.slice(1);
  if (els.date.textContent !== date) els.date.textContent = date;
}

// --- sound: a chime for every call, then the call spoken if the clinic turned that on ---
// The box renders the spoken call itself (espeak-ng, GET /api/speech/call/): TV and kiosk
// browsers rarely have a voice of their own. Without it (503 speech_unavailable) the
// browser's voice says it, if the browser has one; else the chime alone.

const sound = {
  ctx: null,
  player: null, // one <audio> for every spoken call: calls never overlap
  mediaBlocked: false, // the browser refused to play the audio (autoplay policy)
  speechProblem: null, // the last code the box's speech answered with, if not ok

  init() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    this.ctx = new Context();
    this.player = new Audio();
    this.player.preload = "auto";
    this.ctx.addEventListener("statechange", () => this.showButton());
    els.sound.addEventListener("click", () => this.unlock());
    this.showButton();
  },

  // Browsers keep audio off until someone touches the page; the button is that one touch.
  // It shows only while sound is blocked.
  showButton() {
    const running = this.ctx && (this.ctx.state === "running" || this.ctx.state === "closed");
    els.sound.hidden = !this.ctx || (running && !this.mediaBlocked);
  },

  unlock() {
    // Speech too needs a touch in some browsers: an empty utterance inside the click counts.
    if ("speechSynthesis" in window) {
      window.speechSynthesis.speak(new SpeechSynthesisUtterance(""));
    }
    this.mediaBlocked = false;
    this.ctx.resume().then(
      () => this.showButton(),
      () => this.showButton(),
    );
  },

  // Two soft bell tones; resolves when they have rung out, so the voice comes after.
  chime() {
    if (!this.allowed) return Promise.resolve();
    const ctx = this.ctx;
    const start = ctx.currentTime + 0.05;
    const out = ctx.createGain();
    out.gain.value = 0.22;
    out.connect(ctx.destination);
    // High then low: E5, C5, each with a faint octave for a bell timbre.
    for (const [frequency, delay] of [
      [659.25, 0],
      [523.25, 0.45],
    ]) {
      for (const [multiple, level] of [
        [1, 1],
        [2, 0.2],
      ]) {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.type = "sine";
        osc.frequency.value = frequency * multiple;
        const at = start + delay;
        gain.gain.setValueAtTime(0.0001, at);
        gain.gain.exponentialRampToValueAtTime(level, at + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, at + CHIME_SECONDS - 0.4);
        osc.connect(gain).connect(out);
        osc.start(at);
        osc.stop(at + CHIME_SECONDS);
      }
    }
    return wait(CHIME_SECONDS * 1000);
  },

  // Sound is one switch for people: no chime allowed means no voice either.
  get allowed() {
    return Boolean(this.ctx) && this.ctx.state === "running";
  },

  // The call spoken: the box's audio, else the browser's voice. Resolves when it is over.
  async speak(call) {
    if (!settings.announce_voice || !this.allowed) return;
    let audio;
    try {
      audio = await fetchSpeech(call);
    } catch (error) {
      this.noteProblem(error.code || "network");
      await this.say(call);
      return;
    }
    this.noteProblem(null);
    await this.play(audio);
  },

  noteProblem(code) {
    if (code === this.speechProblem) return;
    this.speechProblem = code;
    // Nothing for patients to read: the admin previewing the TV finds it in the console.
    if (code) console.warn(t(`display.speech_error.${code}`));
  },

  play(audio) {
    return new Promise((resolve) => {
      const player = this.player;
      const url = URL.createObjectURL(audio);
      let guard = null;
      const done = () => {
        clearTimeout(guard);
        player.onended = null;
        player.onerror = null;
        URL.revokeObjectURL(url);
        resolve();
      };
      player.onended = done;
      player.onerror = done;
      guard = setTimeout(done, SPEECH_LONGEST_MS); // never stuck on one call
      player.src = url;
      player.play().catch((error) => {
        if (error?.name === "NotAllowedError") {
          // Blocked by the browser although the chime may ring: the hint shows.
          this.mediaBlocked = true;
          this.showButton();
        }
        done();
      });
    });
  },

  voice(tag) {
    const voices = window.speechSynthesis.getVoices();
    const base = tag.split("-")[0];
    return (
      voices.find((v) => v.lang.replace("_", "-") === tag) ||
      voices.find((v) => v.lang.toLowerCase().startsWith(base)) ||
      null
    );
  },

  // The browser's own voice, where it has one (the fallback).
  say(call) {
    if (!("speechSynthesis" in window)) return Promise.resolve();
    // A ticket-only screen says the ticket ("A 12"), never a name.
    const name =
      showing === "ticket" && call.ticket
        ? call.ticket.replace(/^([A-Z]+)-0*(\d)/, "$1 $2")
        : call.name;
    const text = call.room
      ? t("display.say_call_room", { name, room: call.room })
      : t("display.say_call", { name });
    const utterance = new SpeechSynthesisUtterance(text);
    utterance.lang = VOICE_LANG[lang] || VOICE_LANG.en;
    const voice = this.voice(utterance.lang);
    if (voice) utterance.voice = voice;
    utterance.rate = 0.9;
    return new Promise((resolve) => {
      const guard = setTimeout(resolve, SPEECH_LONGEST_MS);
      const done = () => {
        clearTimeout(guard);
        resolve();
      };
      utterance.onend = done;
      utterance.onerror = done;
      window.speechSynthesis.speak(utterance);
    });
  },
};

function wait(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class SpeechError extends Error {
  constructor(code) {
    super(code || "speech");
    this.code = code;
  }
}

// The box builds the phrase from the entry and the settings; the URL names only the entry,
// the language and what this screen shows. The call's time keeps a recall elsewhere apart
// from the first call in the browser's cache.
async function fetchSpeech(call) {
  const query = new URLSearchParams({ entry: String(call.entryId), lang, show: showing });
  if (call.calledAt) query.set("v", call.calledAt);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), SPEECH_FETCH_MS);
  try {
    const response = await fetch(`/api/speech/call/?${query}`, {
      credentials: "same-origin",
      signal: controller.signal,
    });
    if (!response.ok) {
      let code = null;
      try {
        code = (await response.json()).code;
      } catch {
        // not our JSON (a proxy's page): a plain failure
      }
      throw new SpeechError(code);
    }
    return await response.blob();
  } catch (error) {
    if (error instanceof SpeechError) throw error;
    throw new SpeechError("network");
  } finally {
    clearTimeout(timer);
  }
}

// Calls that arrive together (a replay after an outage) get one chime and only the newest
// ones spoken: a TV reading out a backlog of old calls helps nobody. Each announcement
// waits for the one before it, so two calls (or a call and its recall) never overlap.
const announcer = {
  batch: [],
  timer: null,
  queue: Promise.resolve(),

  // A call, or "announce this entry again" (a recall): the same thing, queued.
  add(call) {
    if (!sound.allowed) return; // made while sound was off: it stays silent, also later
    this.batch.push(call);
    if (this.timer === null) this.timer = setTimeout(() => this.flush(), BURST_MS);
  },

  flush() {
    const calls = this.batch.slice(-SPOKEN_PER_BURST);
    this.batch = [];
    this.timer = null;
    this.queue = this.queue.then(() => this.announce(calls)).catch(() => {});
  },

  async announce(calls) {
    await sound.chime();
    for (const call of calls) await sound.speak(call);
  },
};

// --- the screen itself ------------------------------------------------------------------

// A mouse left in the middle of a TV is clutter: hide the pointer when it rests.
function hideIdleCursor() {
  let timer = null;
  const rest = () => document.body.classList.add("cursor-idle");
  document.addEventListener("pointermove", () => {
    document.body.classList.remove("cursor-idle");
    clearTimeout(timer);
    timer = setTimeout(rest, CURSOR_IDLE_MS);
  });
  timer = setTimeout(rest, CURSOR_IDLE_MS);
}

// Keep the TV from dimming where the browser allows it (secure contexts only).
async function keepAwake() {
  if (!("wakeLock" in navigator)) return;
  try {
    await navigator.wakeLock.request("screen");
  } catch {
    // Not allowed here (plain http, or power saving): the TV's own settings decide.
  }
}

// An admin previewing the TV sees what the TV shows: the display view of names and photos.
// events: "all": a cancel is not announced as a call, and a recall is announced again.
const feed = new QueueFeed({ onMessage, onStatus }, { view: "display", events: "all" });

showClinicName();
tick();
setInterval(tick, 1000);
render();
sound.init();
hideIdleCursor();
keepAwake();
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") keepAwake();
});
window.addEventListener("resize", () => {
  fitCall();
  paginate();
});
setInterval(turnPage, pageSeconds * 1000);
setInterval(refreshLines, LINES_REFRESH_MS);
refreshLines();
feed.start();
