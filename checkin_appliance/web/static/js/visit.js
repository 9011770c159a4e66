// The patient's own status page (/v/<token>): the ticket, the line, the place, the estimate,
// then "Called — go to Room 3" with a vibration, a beep and a flashing title. It follows the
// visit through Server-Sent Events (EventSource reconnects by itself, and the server sends
// the full status on each connection, so nothing is replayed); while the stream is down a
// line says "Reconnecting…" and the last known state stays. It never shows a name.

import { applyTexts, pageData, translator } from "./page.js";

const data = pageData();
const lang = data.lang;
const t = translator(data, lang);
const base = data.status_path; // /v/<token>
const SOUND_KEY = "visit-sound"; // the patient turned sound on once: remember it
const FLASH_MS = 1000;

const $ = (id) => document.getElementById(id);
const els = {
  ticket: $("ticket"),
  line: $("line"),
  place: $("place"),
  estimate: $("estimate"),
  call: $("call"),
  callText: $("call-text"),
  note: $("note"),
  offline: $("offline"),
  sound: $("sound"),
};

let last = null; // the last status shown
let audio = null; // the AudioContext, once a tap allowed it
let flashing = null;
const plainTitle = document.title;

function ordinal(n) {
  if (lang === "es") return `${n}.º`;
  const rule = new Intl.PluralRules("en", { type: "ordinal" }).select(n);
  return `${n}${{ one: "st", two: "nd", few: "rd" }[rule] || "th"}`;
}

function lineName(line) {
  if (!line || !line.name) return "";
  return line.name[lang] || line.name.en || Object.values(line.name)[0] || "";
}

function calledText(room) {
  if (!room) return t("visit.called_no_room");
  return /^\d+$/.test(room) ? t("visit.called_room", { room }) : t("visit.called", { room });
}

function estimateText(estimate) {
  if (!estimate || !Number.isFinite(estimate.low_minutes)) return "—";
  return t("visit.estimate_range", { low: estimate.low_minutes, high: estimate.high_minutes });
}

function render(status) {
  els.ticket.textContent = status.ticket || "—";
  els.line.textContent = lineName(status.line);
  if (status.line && status.line.colour) {
    document.documentElement.style.setProperty("--line-colour", status.line.colour);
  }
  const waiting = status.status === "waiting";
  const called = status.status === "called";
  els.place.hidden = !waiting || !status.place;
  if (waiting && status.place) {
    els.place.textContent =
      status.place === 1 ? t("visit.place_next") : t("visit.place", { nth: ordinal(status.place) });
  }
  $("estimate-box").hidden = !waiting;
  els.estimate.textContent = estimateText(status.estimate);
  els.call.hidden = !called;
  els.callText.textContent = called ? calledText(status.room) : "";
  const notes = {
    waiting: "visit.waiting",
    in_service: "visit.in_service",
    done: "visit.done",
    no_show: "visit.no_show",
    cancelled: "visit.cancelled",
    not_seen: "visit.not_seen",
  };
  els.note.textContent = notes[status.status] ? t(notes[status.status]) : "";
}

// A new call (or a recall: call_count grew) alerts; the same status again never does.
function isNewCall(status) {
  if (status.status !== "called") return false;
  return !last || last.status !== "called" || status.call_count > last.call_count;
}

function alertCall() {
  if (typeof navigator.vibrate === "function") navigator.vibrate([400, 200, 400, 200, 400]);
  beep();
  flashTitle();
}

function beep() {
  if (!audio) return;
  try {
    if (audio.state === "suspended") audio.resume();
    const now = audio.currentTime;
    for (const [start, freq] of [[0, 880], [0.35, 660], [0.7, 880]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + start);
      gain.gain.exponentialRampToValueAtTime(0.5, now + start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + start + 0.3);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + start);
      osc.stop(now + start + 0.32);
    }
  } catch {
    // No sound on this phone: the vibration and the title still say it.
  }
}

function flashTitle() {
  stopFlashing();
  let on = false;
  flashing = setInterval(() => {
    on = !on;
    document.title = on ? `▶ ${t("visit.your_turn")}` : plainTitle;
  }, FLASH_MS);
  document.title = `▶ ${t("visit.your_turn")}`;
}

function stopFlashing() {
  if (flashing !== null) clearInterval(flashing);
  flashing = null;
  document.title = plainTitle;
}

function soundOn() {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return;
  if (!audio) audio = new Context(); // a tap: the browser allows it now
  if (audio.state === "suspended") audio.resume();
  try {
    localStorage.setItem(SOUND_KEY, "1");
  } catch {
    // Private mode: remembered for this page only.
  }
  els.sound.setAttribute("aria-pressed", "true");
  els.sound.textContent = t("visit.sound_is_on");
}

function show(status) {
  const alerting = isNewCall(status);
  render(status);
  last = status;
  if (alerting) alertCall();
  else if (status.status !== "called") stopFlashing();
}

function online(yes) {
  els.offline.hidden = yes;
}

function connect() {
  if (!window.EventSource) {
    poll();
    return;
  }
  const source = new EventSource(`${base}/events`);
  source.onmessage = (event) => {
    online(true);
    try {
      show(JSON.parse(event.data));
    } catch {
      // A damaged message: the next one brings the full status again.
    }
  };
  source.onopen = () => online(true);
  source.onerror = () => {
    online(false);
    // The link ended (404): EventSource gives up by itself; the page says so on reload.
    if (source.readyState === EventSource.CLOSED) setTimeout(checkEnded, 5000);
  };
}

// Browsers without EventSource (none of the last five years, but cheap): poll the JSON.
async function poll() {
  try {
    const resp = await fetch(`${base}/status`, { cache: "no-store" });
    if (resp.status === 404) {
      location.reload();
      return;
    }
    show(await resp.json());
    online(true);
  } catch {
    online(false);
  }
  setTimeout(poll, 5000);
}

async function checkEnded() {
  try {
    const resp = await fetch(`${base}/status`, { cache: "no-store" });
    if (resp.status === 404) location.reload(); // the server's "this link has ended" page
    else connect();
  } catch {
    setTimeout(checkEnded, 5000);
  }
}

applyTexts(t);
els.sound.addEventListener("click", soundOn);
// The flashing title stops once the patient has seen it: a tap, a key, the page shown again.
for (const type of ["pointerdown", "keydown", "focus"]) window.addEventListener(type, stopFlashing);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) stopFlashing();
});
try {
  // Sound was turned on before: the context waits for the first tap to resume.
  if (localStorage.getItem(SOUND_KEY) === "1") {
    document.addEventListener("pointerdown", soundOn, { once: true });
  }
} catch {
  // No storage: the button stays.
}
connect();
