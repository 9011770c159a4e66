// The waiting-room TV: the live queue from QueueFeed, the latest calls with a chime (and the
// name spoken, if the clinic wants), and nothing to touch after sign-in but one sound tap.

import { byId, decorative, el, photo } from "./dom.js";
import { QueueFeed } from "./feed.js";
import { applyTexts, clockText, pageData, translator } from "./page.js";

const CALL_NAME_REM = [8.5, 7.5, 6.5, 5.5, 4.75, 4, 3.5];
const CALL_NAME_ONE_LINE_MIN = 5.5; // smaller than this, two big lines read better
const CALL_ROOM_REM = [4.25, 3.75, 3.25, 2.75];
const EARLIER_CALLS = 3; // shown below the newest call
const LIST_LIMIT = 60; // rows ever put in the DOM; far more than a screen holds
const BURST_MS = 400; // calls arriving this close together (a replay) are announced together
const SPOKEN_PER_BURST = 2;
const CHIME_SECONDS = 1.4;
const CURSOR_IDLE_MS = 3000;
const VOICE_LANG = { en: "en-US", es: "es-ES" };

const data = pageData();
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
  list: byId("waiting-list"),
  more: byId("waiting-more"),
  waitingEmpty: byId("waiting-empty"),
  sound: byId("enable-sound"),
};

// --- what the feed says -----------------------------------------------------------------

function onMessage(message) {
  if (message.kind === "snapshot") onSnapshot(message);
  else if (message.kind === "added") onAdded(message.visit);
  else if (message.kind === "called") onCalled(message.visit);
  else if (message.kind === "settings") onSettings(message.settings);
}

function onSnapshot(snapshot) {
  state.waiting = snapshot.waiting;
  state.called = snapshot.called.slice(0, EARLIER_CALLS + 1);
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
  renderWaiting();
}

function onCalled(call) {
  state.waiting = state.waiting.filter((entry) => entry.entryId !== call.entryId);
  state.called = [call, ...state.called.filter((c) => c.entryId !== call.entryId)].slice(
    0,
    EARLIER_CALLS + 1,
  );
  state.freshCallId = call.entryId;
  render();
  state.freshCallId = null; // it glows once, not again on the next redraw
  announcer.add(call);
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
  if (person.image) return photo(person.image, className);
  if (!settings.display_photos) return null;
  const initial = (person.name.trim()[0] || "").toLocaleUpperCase(lang);
  return decorative(el("span", `${className} waiting__photo--none`, initial));
}

function render() {
  renderCalled();
  renderWaiting();
}

function renderCalled() {
  const [current, ...earlier] = state.called;
  els.calledEmpty.hidden = !state.loaded || Boolean(current);
  els.current.hidden = !current;
  els.current.replaceChildren();
  if (current) {
    const card = el("div", "call");
    if (current.entryId === state.freshCallId) card.classList.add("is-fresh");
    if (current.image) card.append(photo(current.image, "call__photo"));
    const text = el("div", "call__text");
    text.append(el("p", "call__name", current.name));
    if (current.room) {
      const room = el("p", "call__room");
      room.append(decorative(el("span", "call__arrow", "→")), ` ${current.room}`);
      text.append(room);
    } else {
      text.append(el("p", "call__room call__room--none", t("display.please_come_in")));
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
      li.append(el("span", "earlier__name", call.name));
      if (call.room) li.append(el("span", "earlier__room", `→ ${call.room}`));
      if (call.calledAt) {
        li.append(el("span", "earlier__time", clockText(lang, new Date(call.calledAt))));
      }
      return li;
    }),
  );
}

function renderWaiting() {
  const total = state.waiting.length;
  els.loading.hidden = state.loaded;
  els.waitingEmpty.hidden = !state.loaded || total > 0;
  els.count.hidden = !state.loaded || total === 0;
  els.count.textContent =
    total === 1 ? t("display.count_one") : t("display.count_many", { n: total });
  const rows = state.waiting.slice(0, LIST_LIMIT).map((entry, index) => {
    const li = el("li", "waiting__item");
    li.dataset.id = entry.entryId;
    if (!state.seenWaiting.has(entry.entryId)) li.classList.add("is-new");
    // The list itself is ordered: the number is for the eye.
    li.append(decorative(el("span", "waiting__pos", String(index + 1))));
    const face = avatar(entry, "waiting__photo");
    if (face) li.append(face);
    li.append(el("span", "waiting__name", entry.name));
    return li;
  });
  state.seenWaiting = new Set(state.waiting.map((entry) => entry.entryId));
  els.list.replaceChildren(...rows);
  fitWaiting();
}

// The newest call as large as it can be: the name on one line if it stays big, else on two;
// whole words, never cut off. The room likewise, on one line.
function fitCall() {
  const name = els.current.querySelector(".call__name");
  const room = els.current.querySelector(".call__room");
  if (name) fitText(name, CALL_NAME_REM, CALL_NAME_ONE_LINE_MIN);
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

// Never scroll on a TV: show what fits, then "+N more".
function fitWaiting() {
  const rows = [...els.list.children];
  for (const row of rows) row.hidden = false;
  els.more.hidden = true;
  const overflows = () => els.list.scrollHeight > els.list.clientHeight + 1;
  if (!overflows() && rows.length === state.waiting.length) return;
  els.more.hidden = false;
  let shown = rows.length;
  const setMore = () => {
    els.more.textContent = t("display.more", { n: state.waiting.length - shown });
  };
  setMore();
  while (shown > 1 && overflows()) {
    shown -= 1;
    rows[shown].hidden = true;
    setMore();
  }
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

// --- sound: a chime for every call, the name spoken if the clinic turned that on ---------

const sound = {
  ctx: null,

  init() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    this.ctx = new Context();
    this.ctx.addEventListener("statechange", () => this.showButton());
    els.sound.addEventListener("click", () => this.unlock());
    this.showButton();
  },

  // Browsers keep audio off until someone touches the page; the button is that one touch.
  showButton() {
    els.sound.hidden = !this.ctx || this.ctx.state === "running" || this.ctx.state === "closed";
  },

  unlock() {
    // Speech too needs a touch in some browsers: an empty utterance inside the click counts.
    if ("speechSynthesis" in window) {
      window.speechSynthesis.speak(new SpeechSynthesisUtterance(""));
    }
    this.ctx.resume().then(
      () => this.showButton(),
      () => this.showButton(),
    );
  },

  chime() {
    if (!this.allowed) return;
    const ctx = this.ctx;
    const start = ctx.currentTime + 0.05;
    const out = ctx.createGain();
    out.gain.value = 0.22;
    out.connect(ctx.destination);
    // Two soft bell tones, high then low: E5, C5, each with a faint octave for a bell timbre.
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

  // Sound is one switch for people: no chime allowed means no voice either.
  get allowed() {
    return Boolean(this.ctx) && this.ctx.state === "running";
  },

  say(call) {
    if (!settings.announce_voice || !this.allowed || !("speechSynthesis" in window)) return;
    const text = call.room
      ? t("display.say_call_room", { name: call.name, room: call.room })
      : t("display.say_call", { name: call.name });
    const utterance = new SpeechSynthesisUtterance(text);
    utterance.lang = VOICE_LANG[lang] || VOICE_LANG.en;
    const voice = this.voice(utterance.lang);
    if (voice) utterance.voice = voice;
    utterance.rate = 0.9;
    window.speechSynthesis.speak(utterance);
  },
};

// Calls that arrive together (a replay after an outage) get one chime and only the newest
// names spoken: a TV reading out a backlog of old calls helps nobody.
const announcer = {
  batch: [],
  timer: null,

  add(call) {
    if (!sound.allowed) return; // made while sound was off: it stays silent, also later
    this.batch.push(call);
    if (this.timer === null) this.timer = setTimeout(() => this.flush(), BURST_MS);
  },

  flush() {
    const calls = this.batch.slice(-SPOKEN_PER_BURST);
    this.batch = [];
    this.timer = null;
    sound.chime();
    setTimeout(() => {
      for (const call of calls) sound.say(call);
    }, CHIME_SECONDS * 1000);
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
const feed = new QueueFeed({ onMessage, onStatus }, { view: "display" });

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
  fitWaiting();
});
feed.start();
