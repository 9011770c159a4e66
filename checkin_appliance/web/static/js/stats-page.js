// The statistics page (/admin/stats): a range of days (the last 7 by default), optionally one
// line and one doctor; draws what GET /api/stats/arrivals|times|outcomes/ answer, each figure
// beside the period before. The server does all the arithmetic: this is glue between its
// JSON and Chart.js (static/vendor/, window.Chart), and every chart's numbers are also text
// (figures, an accessible summary on the canvas, tables) for screen readers.

import { ApiError, api } from "./api.js";
import { byId, el, showText } from "./dom.js";
import { applyTexts, pageData, renderStaffHeader, translator } from "./page.js";

const data = pageData();
const lang = data.lang;
const t = translator(data, lang);
const Chart = window.Chart;

const DEFAULT_DAYS = 7;
const WEEKDAYS = [0, 1, 2, 3, 4, 5, 6]; // the API's rows: Monday first
const HOURS = Array.from({ length: 24 }, (_, hour) => String(hour).padStart(2, "0"));
const OUTCOMES = ["done", "no_show", "cancelled", "not_seen", "open"];
const NO_VALUE = t("stats.no_value");
// The server's codes (errors.py) this page has its own words for; any other: stats.error.other.
const ERROR_TEXTS = {
  stats_range_invalid: "stats.error.stats_range_invalid",
  stats_line_unknown: "stats.error.stats_line_unknown",
  stats_doctor_unknown: "stats.error.stats_doctor_unknown",
};

const els = {
  form: byId("stats-form"),
  from: byId("stats-from"),
  to: byId("stats-to"),
  line: byId("stats-line"),
  doctor: byId("stats-doctor"),
  status: byId("stats-status"),
  periods: byId("stats-periods"),
};

// The palette of app.css, read once: the charts follow the stylesheet, not a copy of it.
const style = getComputedStyle(document.documentElement);
const colour = (name) => style.getPropertyValue(name).trim();
const CURRENT = colour("--teal-600");
const PREVIOUS = colour("--line");
const INK = colour("--ink-soft");

// "#0e6f80" with an opacity, for the heat map's cells.
function withAlpha(hex, alpha) {
  const [r, g, b] = [1, 3, 5].map((at) => parseInt(hex.slice(at, at + 2), 16));
  return `rgba(${r}, ${g}, ${b}, ${alpha.toFixed(3)})`;
}

Chart.defaults.animation = false; // drawn at once: no motion, and the numbers are final
Chart.defaults.color = INK;
Chart.defaults.font.family = colour("--font");

// --- numbers as text ----------------------------------------------------------------------

const integer = new Intl.NumberFormat(lang);
const decimal = new Intl.NumberFormat(lang, { maximumFractionDigits: 1 });

// Seconds as "45 s", "12 min", "12 min 30 s" (medians and p90s are to 10 s).
function duration(seconds) {
  if (seconds === null || seconds === undefined) return NO_VALUE;
  const minutes = Math.floor(seconds / 60);
  const rest = seconds % 60;
  if (minutes === 0) return t("stats.seconds", { s: rest });
  if (rest === 0) return t("stats.minutes", { m: minutes });
  return t("stats.minutes_seconds", { m: minutes, s: rest });
}

function share(value) {
  if (value === null || value === undefined) return NO_VALUE;
  return t("stats.percent", { n: decimal.format(value * 100) });
}

function count(value) {
  return value === null || value === undefined ? NO_VALUE : integer.format(value);
}

function binText(bin) {
  return bin.to_minutes === null
    ? t("stats.bin_over", { from: bin.from_minutes })
    : t("stats.bin", { from: bin.from_minutes, to: bin.to_minutes });
}

// --- the figures beside their period before ------------------------------------------------

// A figure's <dd>: the number as text, its raw value for whoever checks it against the API.
function setFigure(key, value, before, format) {
  const node = document.querySelector(`[data-figure="${key}"]`);
  node.textContent = format(value);
  node.dataset.value = value ?? "";
  const previous = document.querySelector(`[data-before="${key}"]`);
  previous.textContent = t("stats.before", { value: format(before) });
  previous.dataset.value = before ?? "";
}

// --- charts ---------------------------------------------------------------------------------

const charts = new Map(); // canvas id -> Chart: replaced on each answer

function draw(id, config, summary) {
  charts.get(id)?.destroy();
  const canvas = byId(id);
  canvas.setAttribute("aria-label", summary);
  const chart = new Chart(canvas, {
    ...config,
    options: { responsive: true, maintainAspectRatio: false, ...config.options },
  });
  charts.set(id, chart);
}

function weekdayName(index) {
  return t(`stats.weekday.${index}`);
}

// The weekday x hour map as a chartjs-chart-matrix dataset; both periods share one scale of
// colour (`max`), so a darker cell is more arrivals in either.
function heatConfig(map, max) {
  const cells = [];
  for (const day of WEEKDAYS) {
    for (let hour = 0; hour < 24; hour++) {
      cells.push({ x: HOURS[hour], y: weekdayName(day), v: map[day][hour] });
    }
  }
  return {
    type: "matrix",
    data: {
      datasets: [{
        label: t("stats.arrivals_heading"),
        data: cells,
        backgroundColor: (context) => {
          const value = context.raw?.v ?? 0;
          if (!value) return "rgba(0, 0, 0, 0.04)";
          return withAlpha(CURRENT, 0.15 + 0.85 * value / max);
        },
        borderWidth: 0,
        width: ({ chart }) => (chart.chartArea?.width ?? 0) / 24 - 1,
        height: ({ chart }) => (chart.chartArea?.height ?? 0) / 7 - 1,
      }],
    },
    options: {
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            title: (items) => `${items[0].raw.y} ${items[0].raw.x}:00`,
            label: (item) => t("stats.arrivals_cell", { n: item.raw.v }),
          },
        },
      },
      scales: {
        x: { type: "category", labels: HOURS, offset: true, grid: { display: false } },
        y: { type: "category", labels: WEEKDAYS.map(weekdayName), offset: true, reverse: true,
             grid: { display: false } },
      },
    },
  };
}

function busiest(map) {
  let best = { day: 0, hour: 0, n: 0 };
  for (const day of WEEKDAYS) {
    for (let hour = 0; hour < 24; hour++) {
      if (map[day][hour] > best.n) best = { day, hour, n: map[day][hour] };
    }
  }
  return best;
}

function heatSummary(figures) {
  if (!figures.total) return t("stats.heat_summary_empty");
  const peak = busiest(figures.heat_map);
  return t("stats.heat_summary", { total: figures.total, day: weekdayName(peak.day),
    hour: HOURS[peak.hour], n: peak.n });
}

function renderArrivals(answer) {
  const { current, previous } = answer;
  setFigure("arrivals.total", current.total, previous.total, count);
  const max = Math.max(1, ...current.heat_map.flat(), ...previous.heat_map.flat());
  draw("chart-heat", heatConfig(current.heat_map, max), heatSummary(current));
  draw("chart-heat-previous", heatConfig(previous.heat_map, max), heatSummary(previous));
  byId("heat-head").replaceChildren(headerCell(t("stats.col_weekday")),
    ...HOURS.map((hour) => headerCell(hour)));
  byId("heat-body").replaceChildren(...WEEKDAYS.map((day) => {
    const row = el("tr");
    const name = el("th", undefined, weekdayName(day));
    name.scope = "row";
    row.append(name, ...current.heat_map[day].map((n) => el("td", "col-number", count(n))));
    return row;
  }));
}

function barConfig(labels, current, previous, axis) {
  return {
    type: "bar",
    data: {
      labels,
      datasets: [
        { label: t("stats.this_period"), data: current, backgroundColor: CURRENT },
        { label: t("stats.previous_period"), data: previous, backgroundColor: PREVIOUS },
      ],
    },
    options: {
      scales: {
        x: { title: { display: Boolean(axis), text: axis } },
        y: { beginAtZero: true, ticks: { precision: 0 } },
      },
    },
  };
}

function renderDistribution(kind, now, before) {
  setFigure(`${kind}.median`, now.median_seconds, before.median_seconds, duration);
  setFigure(`${kind}.p90`, now.p90_seconds, before.p90_seconds, duration);
  setFigure(`${kind}.count`, now.count, before.count, count);
  const labels = now.bins.map(binText);
  const summary = now.count
    ? t("stats.times_summary", { n: now.count, median: duration(now.median_seconds),
      p90: duration(now.p90_seconds), before: count(before.count),
      before_median: duration(before.median_seconds) })
    : t("stats.times_summary_empty");
  draw(`chart-${kind}`, barConfig(labels, now.bins.map((bin) => bin.count),
    before.bins.map((bin) => bin.count), t("stats.axis_minutes")), summary);
  byId(`${kind}-body`).replaceChildren(...now.bins.map((bin, index) => {
    const row = el("tr");
    const label = el("th", undefined, labels[index]);
    label.scope = "row";
    row.append(label, el("td", "col-number", count(bin.count)),
      el("td", "col-number", count(before.bins[index].count)));
    return row;
  }));
}

function renderTimes(answer) {
  renderDistribution("waiting", answer.current.waiting, answer.previous.waiting);
  renderDistribution("service", answer.current.service, answer.previous.service);
}

function renderOutcomes(answer) {
  const now = answer.current.all;
  const before = answer.previous.all;
  setFigure("outcomes.visits", now.visits, before.visits, count);
  setFigure("outcomes.no_show_share", now.no_show_share, before.no_show_share, share);
  setFigure("outcomes.cancel_share", now.cancel_share, before.cancel_share, share);
  const summary = t("stats.outcomes_summary", { visits: count(now.visits),
    no_show: share(now.no_show_share), cancel: share(now.cancel_share),
    before_no_show: share(before.no_show_share), before_cancel: share(before.cancel_share) });
  draw("chart-outcomes", barConfig(OUTCOMES.map((key) => t(`stats.outcome.${key}`)),
    OUTCOMES.map((key) => now[key]), OUTCOMES.map((key) => before[key]), ""), summary);
}

// --- per line and per doctor ----------------------------------------------------------------

const ROW_COLUMNS = [
  ["visits", (row) => count(row.visits)],
  ["done", (row) => count(row.done)],
  ["no_show", (row) => count(row.no_show)],
  ["cancelled", (row) => count(row.cancelled)],
  ["no_show_share", (row) => share(row.no_show_share)],
  ["cancel_share", (row) => share(row.cancel_share)],
  ["waiting_median", (row) => duration(row.waiting?.median_seconds)],
  ["waiting_p90", (row) => duration(row.waiting?.p90_seconds)],
  ["service_median", (row) => duration(row.service?.median_seconds)],
  ["service_p90", (row) => duration(row.service?.p90_seconds)],
];

function headerCell(text) {
  const th = el("th", undefined, text);
  th.scope = "col";
  return th;
}

// One row per line (or doctor) from both answers, joined on `key`: a line with visits but no
// waiting time yet (nobody called) still has its outcome counts, and the other way round.
function joined(outcomeRows, timeRows, key) {
  const rows = new Map();
  for (const row of outcomeRows) rows.set(row[key], { ...row });
  for (const row of timeRows) {
    rows.set(row[key], { ...(rows.get(row[key]) ?? { [key]: row[key], label: row.label }),
      waiting: row.waiting, service: row.service });
  }
  return [...rows.values()];
}

function renderRows(table, firstColumn, rows, nameOf) {
  table.querySelector("thead tr").replaceChildren(headerCell(t(firstColumn)),
    ...ROW_COLUMNS.map(([name]) => headerCell(t(`stats.col_${name}`))));
  const body = table.querySelector("tbody");
  if (rows.length === 0) {
    const cell = el("td", "muted", t("stats.no_rows"));
    cell.colSpan = ROW_COLUMNS.length + 1;
    const tr = el("tr");
    tr.append(cell);
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(...rows.map((row) => {
    const tr = el("tr");
    const name = el("th", undefined, nameOf(row));
    name.scope = "row";
    tr.append(name);
    for (const [column, format] of ROW_COLUMNS) {
      const td = el("td", "col-number", format(row));
      td.dataset.col = column;
      tr.append(td);
    }
    tr.dataset.key = nameOf(row);
    return tr;
  }));
}

function renderTables(times, outcomes) {
  renderRows(byId("by-line"), "stats.col_line",
    joined(outcomes.current.lines, times.current.lines, "line"), (row) => row.line ?? NO_VALUE);
  renderRows(byId("by-doctor"), "stats.col_doctor",
    joined(outcomes.current.doctors, times.current.doctors, "doctor"),
    (row) => row.label ?? NO_VALUE);
}

// --- loading --------------------------------------------------------------------------------

function errorText(error) {
  const code = error instanceof ApiError ? error.code : null;
  return t(ERROR_TEXTS[code] ?? "stats.error.other");
}

function query() {
  const params = new URLSearchParams({ from: els.from.value, to: els.to.value });
  if (els.line.value) params.set("line", els.line.value);
  if (els.doctor.value) params.set("doctor", els.doctor.value);
  return params;
}

let loading = 0; // the newest request: an older answer arriving late is dropped

async function load() {
  const mine = ++loading;
  document.body.classList.add("is-loading");
  showText(els.status, t("stats.loading"));
  const params = query();
  let answers;
  try {
    answers = await Promise.all(["arrivals", "times", "outcomes"].map(
      (name) => api("GET", `/api/stats/${name}/?${params}`)));
  } catch (error) {
    if (mine === loading) {
      showText(els.status, errorText(error));
      document.body.classList.remove("is-loading");
    }
    return;
  }
  if (mine !== loading) return;
  const [arrivals, times, outcomes] = answers;
  els.periods.textContent = t("stats.periods", { from: arrivals.current.from,
    to: arrivals.current.to, before_from: arrivals.previous.from,
    before_to: arrivals.previous.to });
  renderArrivals(arrivals);
  renderTimes(times);
  renderOutcomes(outcomes);
  renderTables(times, outcomes);
  showText(els.status, "");
  document.body.classList.remove("is-loading");
  document.body.dataset.shown = params.toString(); // the query the page now shows (tests)
}

// The filters' choices: every line by its prefix and name, every doctor by label.
async function fillFilters() {
  const [lines, credentials] = await Promise.all([api("GET", "/api/lines/"),
    api("GET", "/api/credentials/")]);
  for (const line of lines) {
    const name = line.name?.[lang] ?? line.name?.en ?? "";
    els.line.append(new Option(name ? `${line.prefix} · ${name}` : line.prefix, line.prefix));
  }
  for (const credential of credentials.filter((c) => c.role === "doctor")) {
    els.doctor.append(new Option(credential.label, credential.token));
  }
}

function daysBefore(isoDate, days) {
  const date = new Date(`${isoDate}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() - days);
  return date.toISOString().slice(0, 10);
}

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});
for (const input of [els.from, els.to, els.line, els.doctor]) {
  input.addEventListener("change", load);
}

renderStaffHeader(t, { lang, title: "stats.title", clinicName: data.settings.clinic_name,
  label: data.credential.label });
applyTexts(t);
els.to.value = data.today;
els.from.value = daysBefore(data.today, DEFAULT_DAYS - 1);
try {
  await fillFilters();
} catch (error) {
  showText(els.status, errorText(error));
}
load();
