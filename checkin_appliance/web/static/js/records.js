// The day's history (/admin/records): pick a day, search by ticket, see each visit with
// every transition; the sensitive intake answers only when ticked (the server audits that
// look); download the visits or the daily figures as CSV; print the day's report (the page's
// print styles leave out the controls). Times are the clinic's, as the server writes them
// (ISO 8601 with the clinic's offset): the page shows their clock part, never the browser's.

import { ApiError, api, downloadFile } from "./api.js";
import { byId, el, showText } from "./dom.js";
import { applyTexts, pageData, renderStaffHeader, translator } from "./page.js";

const data = pageData();
const lang = data.lang;
const t = translator(data, lang);

const COLUMNS = ["ticket", "line", "name", "check_in", "called", "started", "ended", "wait",
  "room", "doctor", "outcome"];
const TIMES = new Set(["check_in", "called", "started", "ended"]);
const FIGURES = ["checked_in", "called", "done", "no_show", "cancelled", "not_seen", "open",
  "median_wait_seconds", "p90_wait_seconds"];
const NO_VALUE = t("records.no_value");
// The server's codes (errors.py) this page has its own words for; any other: records.error.other.
const ERROR_TEXTS = {
  records_date_invalid: "records.error.records_date_invalid",
  records_range_invalid: "records.error.records_range_invalid",
  records_query_invalid: "records.error.records_query_invalid",
};

const els = {
  form: byId("records-form"),
  date: byId("records-date"),
  ticket: byId("records-ticket"),
  sensitive: byId("records-sensitive"),
  print: byId("records-print"),
  from: byId("export-from"),
  to: byId("export-to"),
  exportVisits: byId("export-visits"),
  exportDays: byId("export-days"),
  exportStatus: byId("records-export-status"),
  heading: byId("records-report-heading"),
  status: byId("records-status"),
  figures: byId("records-figures"),
  linesHead: byId("records-lines-head"),
  linesBody: byId("records-lines-body"),
  head: byId("records-head"),
  body: byId("records-body"),
};

// "2026-12-03T09:22:05+01:00" -> "09:22": the clinic's own clock, whatever the browser's zone.
function clockOf(iso) {
  return iso ? iso.slice(11, 16) : NO_VALUE;
}

function minutesText(seconds) {
  if (seconds === null || seconds === undefined) return NO_VALUE;
  return t("records.minutes", { n: Math.round(seconds / 60) });
}

function errorText(error) {
  const code = error instanceof ApiError ? error.code : null;
  return t(ERROR_TEXTS[code] ?? "records.error.other");
}

function query() {
  const params = new URLSearchParams({ date: els.date.value });
  if (els.ticket.value.trim()) params.set("ticket", els.ticket.value.trim());
  if (els.sensitive.checked) params.set("sensitive", "1");
  return params;
}

let loading = 0; // the newest request: an older answer arriving late is dropped

async function load() {
  const mine = ++loading;
  showText(els.status, t("records.loading"));
  let day;
  try {
    day = await api("GET", `/api/records/day/?${query()}`);
  } catch (error) {
    if (mine === loading) showText(els.status, errorText(error));
    return;
  }
  if (mine !== loading) return;
  render(day);
}

function render(day) {
  els.heading.textContent = t("records.report_heading", { date: day.date });
  document.title = `${t("records.report_heading", { date: day.date })} · ${data.settings.clinic_name}`;
  for (const key of FIGURES) {
    const dd = els.figures.querySelector(`[data-stat="${key}"]`);
    const value = day.figures[key];
    dd.textContent = key.endsWith("_seconds") ? minutesText(value) : String(value);
  }
  renderLines(day.lines);
  renderVisits(day);
  if (day.visits.length === 0) {
    showText(els.status, t(day.ticket ? "records.no_match" : "records.empty"));
  } else {
    showText(els.status, t("records.count", { n: day.visits.length }));
  }
}

function headerCell(text) {
  const th = el("th", undefined, text);
  th.scope = "col";
  return th;
}

function renderLines(lines) {
  els.linesHead.replaceChildren(headerCell(t("records.col_line")),
    ...FIGURES.map((key) => headerCell(t(`records.stat_${key}`))));
  els.linesBody.replaceChildren(...lines.map((line) => {
    const tr = el("tr");
    tr.append(el("td", "col-line", line.line), ...FIGURES.map((key) => el("td", "col-number",
      key.endsWith("_seconds") ? minutesText(line[key]) : String(line[key]))));
    return tr;
  }));
}

function fieldLabel(field) {
  return field.label[lang] ?? field.label.en ?? field.key;
}

function renderVisits(day) {
  els.head.replaceChildren(...COLUMNS.map((key) => headerCell(t(`records.col_${key}`))),
    ...day.intake_fields.map((field) => headerCell(fieldLabel(field))),
    headerCell(t("records.col_history")));
  els.body.replaceChildren(...day.visits.map((visit) => visitRow(visit, day.intake_fields)));
}

function cellText(visit, key) {
  if (TIMES.has(key)) return clockOf(visit[key]);
  if (key === "wait") return minutesText(visit.wait_seconds);
  if (key === "outcome") return t(`records.state.${visit.outcome}`);
  return visit[key] || NO_VALUE; // a purged name, no room, nobody called
}

function visitRow(visit, fields) {
  const tr = el("tr");
  tr.dataset.ticket = visit.ticket ?? "";
  for (const key of COLUMNS) {
    const td = el("td", `col-${key}`);
    td.dataset.col = key;
    // A name is the patient's own text: isolated, so a right-to-left one reorders nothing.
    if (key === "name") td.append(el("bdi", undefined, cellText(visit, key)));
    else td.textContent = cellText(visit, key);
    tr.append(td);
  }
  for (const field of fields) {
    const td = el("td", "col-answer", visit.intake[field.key] ?? NO_VALUE);
    td.dataset.col = field.key;
    tr.append(td);
  }
  tr.append(historyCell(visit));
  return tr;
}

function historyCell(visit) {
  const td = el("td", "col-history");
  if (visit.transitions.length === 0) {
    td.textContent = NO_VALUE;
    return td;
  }
  const details = el("details");
  details.append(el("summary", undefined, t("records.steps", { n: visit.transitions.length })));
  const list = el("ol", "records-steps");
  for (const step of visit.transitions) {
    const item = el("li", step.undone ? "is-undone" : undefined);
    const parts = [clockOf(step.at), t(`records.action.${step.action}`),
      `${t(`records.state.${step.from}`)} → ${t(`records.state.${step.to}`)}`];
    if (step.from_line !== step.to_line) parts.push(`${step.from_line} → ${step.to_line}`);
    parts.push(step.by ?? t("records.by_box"));
    if (step.undone) parts.push(t("records.undone"));
    item.textContent = parts.join(" · ");
    list.append(item);
  }
  details.append(list);
  td.append(details);
  return td;
}

// --- exports ------------------------------------------------------------------------------

// The file as the server names it (Content-Disposition), through a link the page clicks:
// an error answer is shown here instead of being saved as a file.
async function download(path) {
  showText(els.exportStatus, t("records.exporting"));
  try {
    const name = await downloadFile(path, "records.csv");
    if (name !== null) showText(els.exportStatus, t("records.exported", { name }));
  } catch (error) {
    showText(els.exportStatus, errorText(error)); // a network error: "records.error.other"
  }
}

function range() {
  const params = new URLSearchParams({ from: els.from.value || els.date.value });
  params.set("to", els.to.value || params.get("from"));
  return params;
}

els.exportVisits.addEventListener("click", () => {
  const params = range();
  if (els.sensitive.checked) params.set("sensitive", "1");
  download(`/api/records/visits.csv?${params}`);
});
els.exportDays.addEventListener("click", () => download(`/api/records/days.csv?${range()}`));

// --- the controls ---------------------------------------------------------------------------

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});
els.date.addEventListener("change", () => {
  // The export follows the day shown until a range is chosen by hand.
  if (!els.from.dataset.edited) els.from.value = els.date.value;
  if (!els.to.dataset.edited) els.to.value = els.date.value;
  load();
});
els.sensitive.addEventListener("change", load);
for (const input of [els.from, els.to]) {
  input.addEventListener("change", () => { input.dataset.edited = "1"; });
}
els.print.addEventListener("click", () => window.print());

renderStaffHeader(t, { lang, title: "records.title", clinicName: data.settings.clinic_name,
  label: data.credential.label });
applyTexts(t);
els.date.value = els.from.value = els.to.value = data.today;
load();
