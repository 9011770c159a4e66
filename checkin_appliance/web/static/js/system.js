// /admin's System section: the box's health from GET /api/system/ (system.py), warnings
// first, refreshed every minute; in the page's language, following <html lang> when the
// settings change it. Each warning code has its own text (messages/system.py).
// The box's clock: when it is implausible or more than a minute off this browser's, a banner
// compares the two and offers to set the box's clock to this browser's time (POST
// /api/system/clock/, through the package's clock helper: clock_setting.py).

import { api, ApiError } from "./api.js";
import { byId, el } from "./dom.js";
import { pageData, translator } from "./page.js";

const REFRESH_MS = 60_000;
const CLOCK_OFF_MS = 60_000; // a box's clock further off this browser's gets the banner
const CLOCK_SETTLE_MS = 5_000; // the helper sets the clock within seconds: look again then
const data = pageData();
const els = {
  warnings: byId("system-warnings"),
  status: byId("system-status"),
  clock: byId("system-clock"),
  clockCompare: byId("system-clock-compare"),
  clockSet: byId("system-clock-set"),
  clockStatus: byId("system-clock-status"),
};
let last = null; // the last answer, re-rendered when the language changes
let clock = null; // GET /api/system/clock/, and this browser's time when it came

const lang = () => document.documentElement.lang || data.lang;

function has(key) {
  return key in (data.messages[lang()] || data.messages.en);
}

// Disk sizes as the card's label says them: decimal MB, and GB with one decimal above 1 GB.
export function size(bytes, language) {
  const number = (value, digits) =>
    new Intl.NumberFormat(language, {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    }).format(value);
  return bytes >= 1e9 ? `${number(bytes / 1e9, 1)} GB` : `${number(bytes / 1e6, 0)} MB`;
}

function age(t, since, now) {
  const minutes = Math.max(0, Math.floor((Date.parse(now) - Date.parse(since)) / 60_000));
  if (minutes >= 24 * 60) return t("admin.system.age_days", { n: Math.floor(minutes / 1440) });
  if (minutes >= 60) return t("admin.system.age_hours", { n: Math.floor(minutes / 60) });
  return t("admin.system.age_minutes", { n: minutes });
}

function figures(t, s) {
  const language = lang();
  const up = s.uptime_seconds;
  const days = Math.floor(up / 86400);
  const hours = Math.floor((up % 86400) / 3600);
  const clock = new Date(s.clock.now).toLocaleString(language, {
    timeZone: s.clock.time_zone,
    dateStyle: "medium",
    timeStyle: "medium",
  });
  const cert = s.certificate;
  const mode = cert.mode === "off" ? "" : t(`admin.system.cert_mode.${cert.mode}`);
  const backup = s.last_backup;
  return {
    version: s.version,
    uptime: days
      ? t("admin.system.uptime_days", { days, hours })
      : t("admin.system.uptime_hours", { hours, minutes: Math.floor((up % 3600) / 60) }),
    clock: t("admin.system.clock_value", { time: clock, zone: s.clock.time_zone }),
    disk: t("admin.system.disk_value", {
      free: size(s.disk.free_bytes, language),
      total: size(s.disk.total_bytes, language),
    }),
    database: t("admin.system.database_value", {
      db: size(s.database.db_bytes, language),
      wal: size(s.database.wal_bytes, language),
    }),
    health: s.database.ok
      ? t("admin.system.health_ok", { seconds: s.database.check_seconds.toFixed(2) })
      : t("admin.system.health_damaged"),
    certificate:
      cert.mode === "off"
        ? t("admin.system.cert_off")
        : cert.not_after
          ? t("admin.system.cert_value", {
              mode,
              date: new Date(cert.not_after).toLocaleDateString(language, { dateStyle: "long" }),
            })
          : t("admin.system.cert_unreadable", { mode }),
    backup: !backup
      ? t("admin.system.backup_none")
      : backup.ok
        ? t("admin.system.backup_ok", {
            age: age(t, backup.at, s.clock.now),
            size: size(backup.bytes ?? 0, language),
            where: backup.where,
          })
        : t("admin.system.backup_failed", {
            age: age(t, backup.at, s.clock.now),
            where: backup.where,
            error: backup.error ?? "",
          }),
  };
}

// A moment in the clinic's time zone, as the Clock figure shows it.
function when(moment) {
  return new Date(moment).toLocaleString(lang(), {
    timeZone: last?.clock.time_zone ?? "UTC",
    dateStyle: "medium",
    timeStyle: "medium",
  });
}

function duration(t, seconds) {
  const minutes = Math.max(1, Math.round(Math.abs(seconds) / 60));
  if (minutes >= 24 * 60) return t("admin.system.age_days", { n: Math.round(minutes / 1440) });
  if (minutes >= 60) return t("admin.system.age_hours", { n: Math.round(minutes / 60) });
  return t("admin.system.age_minutes", { n: minutes });
}

function warningText(t, warning) {
  let key = `admin.system.warning.${warning.code}`;
  const values = { ...warning };
  if (warning.code === "clock_jumped") {
    key += warning.seconds > 0 ? ".forward" : ".back";
    Object.assign(values, { amount: duration(t, warning.seconds), at: when(warning.at) });
  } else if (warning.code === "clock_implausible") {
    const reason = `admin.system.clock_reason.${warning.reason}`;
    values.reason = has(reason) ? t(reason) : warning.reason;
  }
  if (!has(key)) return t("admin.system.warning.other", { code: warning.code });
  if (typeof warning.free_bytes === "number") values.free = size(warning.free_bytes, lang());
  return t(key, values);
}

function renderClock(t) {
  const off = clock && last ? Date.parse(clock.now) - clock.seen : 0;
  const shown = Boolean(clock && last) && (clock.status !== "ok" || Math.abs(off) > CLOCK_OFF_MS);
  els.clock.hidden = !shown;
  if (!shown) return;
  els.clockCompare.textContent = t("admin.system.clock_compare", {
    box: when(clock.now),
    browser: when(clock.seen),
  });
}

async function setClock() {
  const t = translator(data, lang());
  const asked = new Date();
  if (!window.confirm(t("admin.system.clock_confirm", { browser: when(asked) }))) return;
  els.clockSet.disabled = true;
  try {
    await api("POST", "/api/system/clock/", { json: { time: asked.toISOString() } });
    els.clockStatus.textContent = t("admin.system.clock_asked", { time: when(asked) });
    setTimeout(refresh, CLOCK_SETTLE_MS);
  } catch (error) {
    const code = error instanceof ApiError ? error.code : null;
    const key = `admin.system.clock_error.${code}`;
    els.clockStatus.textContent = has(key)
      ? t(key)
      : t("admin.system.clock_error.other", { code: code ?? "network" });
  } finally {
    els.clockSet.disabled = false;
  }
}

function render() {
  const t = translator(data, lang());
  renderClock(t);
  if (!last) return;
  const shown = figures(t, last);
  for (const dd of document.querySelectorAll("#system-figures [data-system]")) {
    dd.textContent = shown[dd.dataset.system];
  }
  els.warnings.replaceChildren(
    ...last.warnings.map((warning) => {
      const item = el("li", "alert alert--warn", warningText(t, warning));
      item.dataset.code = warning.code;
      return item;
    }),
  );
}

async function refresh() {
  try {
    const [state, clockState] = await Promise.all([
      api("GET", "/api/system/"),
      api("GET", "/api/system/clock/"),
    ]);
    last = state;
    clock = { ...clockState, seen: Date.now() };
    els.status.textContent = "";
    render();
  } catch {
    els.status.textContent = translator(data, lang())("admin.system.error");
  }
}

new MutationObserver(render).observe(document.documentElement, {
  attributes: true,
  attributeFilter: ["lang"],
});
els.clockSet.addEventListener("click", setClock);
refresh();
setInterval(refresh, REFRESH_MS);
