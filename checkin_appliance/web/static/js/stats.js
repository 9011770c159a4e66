// Waiting times and today's figures as the staff pages show them.

import { api } from "./api.js";

const FIGURES_DEBOUNCE_MS = 150;
const FIGURES_EVERY_MS = 5 * 60_000; // today's figures roll over at midnight

export function minutesSince(iso, now = Date.now()) {
  return Math.max(0, Math.floor((now - Date.parse(iso)) / 60000));
}

// How long someone has been waiting so far: "just now", "12 min".
export function waitedText(t, iso) {
  const minutes = minutesSince(iso);
  return minutes < 1 ? t("common.just_now") : t("common.minutes", { n: minutes });
}

// A duration in seconds, or none yet: keys.none ("—"), keys.underAMinute, "12 min".
export function durationText(t, seconds, keys) {
  if (seconds === null || seconds === undefined) return t(keys.none);
  if (seconds < 60) return t(keys.underAMinute);
  return t("common.minutes", { n: Math.round(seconds / 60) });
}

// Today's figures from /api/stats/today/ in a list's <dd data-stat="…"> elements.
// t: the page's translator at the time of drawing (the language can change under it);
// keys: {none, underAMinute}, the page's catalog keys for an empty value and a short wait.
export class TodayFigures {
  constructor(list, t, keys) {
    this.list = list;
    this.t = t;
    this.keys = keys;
    this.figures = null; // until the first answer
    this.timer = null;
  }

  render() {
    for (const dd of this.list.querySelectorAll("[data-stat]")) {
      const key = dd.dataset.stat;
      if (!this.figures) {
        dd.textContent = this.t(this.keys.none);
      } else if (key === "median_wait_seconds") {
        dd.textContent = durationText(this.t, this.figures[key], this.keys);
      } else {
        dd.textContent = String(this.figures[key]);
      }
    }
  }

  // Coalesces a burst of events into one request; `now` skips the wait (the first load).
  refresh(now = false) {
    clearTimeout(this.timer);
    this.timer = setTimeout(async () => {
      try {
        this.figures = await api("GET", "/api/stats/today/");
        this.render();
      } catch {
        // Figures are a nicety; the next event or the periodic refresh tries again.
      }
    }, now ? 0 : FIGURES_DEBOUNCE_MS);
  }

  // Refreshed now and then even with no event, so that midnight starts a new day.
  keepFresh() {
    setInterval(() => this.refresh(), FIGURES_EVERY_MS);
  }
}
