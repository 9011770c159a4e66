// The audit viewer (/admin/audit): filter the trail by who (a credential's token or label, or
// "system"), action and days; page through it newest first; verify the hash chain; export
// the filtered rows as CSV (the server audits the export). Rows carry ids, never a name.

import { ApiError, api, downloadFile } from "./api.js";
import { byId, el, showText } from "./dom.js";
import { applyTexts, pageData, renderStaffHeader, translator } from "./page.js";

const data = pageData();
const lang = data.lang;
const t = translator(data, lang);

// The server's codes (errors.py) this page has its own words for; any other: audit.error.other.
const ERROR_TEXTS = {
  audit_query_invalid: "audit.error.audit_query_invalid",
  audit_range_invalid: "audit.error.audit_range_invalid",
  audit_who_unknown: "audit.error.audit_who_unknown",
};
// The chain's verdicts (/api/audit/verify/'s status).
const VERDICT_TEXTS = {
  ok: "audit.verdict.ok",
  unkeyed: "audit.verdict.unkeyed",
  broken: "audit.verdict.broken",
  key_unreadable: "audit.verdict.key_unreadable",
};

const els = {
  form: byId("audit-form"),
  who: byId("audit-who"),
  action: byId("audit-action"),
  from: byId("audit-from"),
  to: byId("audit-to"),
  exportButton: byId("audit-export"),
  verify: byId("audit-verify"),
  exportStatus: byId("audit-export-status"),
  verdict: byId("audit-verdict"),
  status: byId("audit-status"),
  body: byId("audit-body"),
  newer: byId("audit-newer"),
  older: byId("audit-older"),
};

function errorText(error) {
  const code = error instanceof ApiError ? error.code : null;
  return t(ERROR_TEXTS[code] ?? "audit.error.other");
}

// Only the filters that are set: the server refuses an empty from, to or action.
function filters() {
  const params = new URLSearchParams();
  if (els.who.value.trim()) params.set("who", els.who.value.trim());
  if (els.action.value) params.set("action", els.action.value);
  if (els.from.value) params.set("from", els.from.value);
  if (els.to.value) params.set("to", els.to.value);
  return params;
}

function whoText(who) {
  if (who.system) return t("audit.system");
  if (who.label === null) return t("audit.credential", { id: who.credential });
  return `${who.label} (${t(`role.${who.role}`)})`;
}

function subjectsText(subjects) {
  return Object.entries(subjects).map(([kind, id]) => `${kind} ${id}`).join(", ");
}

function actionText(action) {
  const key = `audit.action.${action}`;
  const text = t(key);
  return text === key ? action : text;
}

function renderRows(rows) {
  els.body.replaceChildren(...rows.map((row) => {
    const tr = el("tr");
    tr.dataset.id = String(row.id);
    tr.dataset.action = row.action;
    const detail = row.detail === null ? "" : JSON.stringify(row.detail);
    for (const text of [String(row.id), row.at, whoText(row.who), row.address,
      actionText(row.action), subjectsText(row.subjects), detail]) {
      tr.append(el("td", "", text));
    }
    return tr;
  }));
}

// The page's place: the `before` of each page shown so far (null: the newest), so "Newer"
// goes back without the server keeping anything.
let pages = [null];
let loading = 0; // the newest request: an older answer arriving late is dropped

async function load() {
  const mine = ++loading;
  showText(els.status, t("audit.loading"));
  const params = filters();
  const before = pages[pages.length - 1];
  if (before !== null) params.set("before", String(before));
  let page;
  try {
    page = await api("GET", `/api/audit/?${params}`);
  } catch (error) {
    if (mine === loading) showText(els.status, errorText(error));
    return;
  }
  if (mine !== loading) return;
  fillActions(page.actions);
  renderRows(page.rows);
  showText(els.status, page.rows.length ? t("audit.count", { n: page.rows.length })
    : t("audit.empty"));
  els.older.hidden = page.next_before === null;
  els.older.dataset.before = page.next_before ?? "";
  els.newer.hidden = pages.length === 1;
}

function fillActions(actions) {
  if (els.action.options.length > 1) return;
  for (const action of actions) {
    const option = el("option", "", actionText(action));
    option.value = action;
    els.action.append(option);
  }
}

async function verify() {
  showText(els.verdict, t("audit.verifying"));
  els.verdict.dataset.status = "";
  let verdict;
  try {
    verdict = await api("GET", "/api/audit/verify/");
  } catch (error) {
    showText(els.verdict, errorText(error));
    return;
  }
  els.verdict.dataset.status = verdict.status;
  els.verdict.dataset.row = verdict.row ?? "";
  showText(els.verdict, t(VERDICT_TEXTS[verdict.status] ?? "audit.error.other",
    { count: verdict.count, row: verdict.row }));
}

// The file as the server names it (Content-Disposition), through a link the page clicks:
// an error answer is shown here instead of being saved as a file.
async function download() {
  showText(els.exportStatus, t("audit.exporting"));
  try {
    const name = await downloadFile(`/api/audit.csv?${filters()}`, "audit.csv");
    if (name !== null) showText(els.exportStatus, t("audit.exported", { name }));
  } catch (error) {
    showText(els.exportStatus, errorText(error)); // a network error: "audit.error.other"
  }
}

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  pages = [null];
  load();
});
els.older.addEventListener("click", () => {
  pages.push(Number(els.older.dataset.before));
  load();
});
els.newer.addEventListener("click", () => {
  if (pages.length > 1) pages.pop();
  load();
});
els.verify.addEventListener("click", verify);
els.exportButton.addEventListener("click", download);

renderStaffHeader(t, { lang, title: "audit.title", clinicName: data.settings.clinic_name,
  label: data.credential.label });
applyTexts(t);
load();
