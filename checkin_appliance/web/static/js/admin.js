// Administration: credentials (list, create with a token shown once, deactivate after a
// confirmation, a new password for one, e.g. imported from the original CheckIn with a weak
// one and flagged: it cannot sign in until then; a doctor's room and served lines), lines
// (list, add, edit, deactivate and reactivate: never delete), the clinic's settings (only
// changed keys are sent), the kiosk's intake form, the original CheckIn's compatibility
// preset (after a privacy warning), today's
// figures kept live by the queue feed, how this week's wait estimates held, and the box's
// device pages and version.

import { ApiError, api } from "./api.js";
import { byId, el } from "./dom.js";
import { QueueFeed } from "./feed.js";
import { applyTexts, pageData, renderStaffHeader, translator } from "./page.js";
import { fetchLines, lineChip as chipOf, lineIcon, lineName } from "./lines.js";
import { TodayFigures } from "./stats.js";

const MIN_PASSWORD = 8;
const MIN_ADMIN_PASSWORD = 12; // access.py's MIN_ADMIN_PASSWORD_LENGTH; the server decides
const SETTING_KEYS = ["clinic_name", "language", "display_names", "display_photos",
  "anonymous_feed", "announce_voice", "time_zone", "priority_question", "undo_seconds",
  "no_show_minutes", "end_of_day", "status_link_base", "photo_retention_days",
  "name_retention_days", "audit_retention_days"];
// The call cycle's settings, typed in fields the browser checks (min, max, step) before
// anything is sent: each with its own text when out of range. Empty no-show or end of day:
// off (null).
const CYCLE_KEYS = ["undo_seconds", "no_show_minutes", "end_of_day"];
// The same for the retention purge's days (both required: 0 is the shortest, not "off").
const CHECKED_KEYS = [...CYCLE_KEYS, "photo_retention_days", "name_retention_days",
  "audit_retention_days"];
// A line's call rule when it has none of its own (docs/call-order.md; lines.py).
const DEFAULT_RULE = { mode: "interleave", priority: 2, normal: 1, max_wait_minutes: 45 };
const CLOCK = /^([01][0-9]|2[0-3]):[0-5][0-9]$/;

const data = pageData();
const me = data.credential; // {label, role, room} (and token, once the server sends it)
let lang = data.lang;
let t = translator(data, lang);
let settings = { ...data.settings }; // what the server has now

const els = {
  banner: byId("feed-banner"),
  figures: byId("today-figures"),
  credentialsStatus: byId("credentials-status"),
  credentialsFlagged: byId("credentials-flagged"),
  credentialsBody: byId("credentials-body"),
  credentialsMessage: byId("credentials-message"),
  createForm: byId("create-form"),
  createRole: byId("create-role"),
  createRoleHint: byId("create-role-hint"),
  createLabel: byId("create-label"),
  createRoomField: byId("create-room-field"),
  createRoom: byId("create-room"),
  createPassword: byId("create-password"),
  createConfirm: byId("create-confirm"),
  createSubmit: byId("create-submit"),
  createStatus: byId("create-status"),
  reveal: byId("token-reveal"),
  revealHeading: byId("token-reveal-heading"),
  revealToken: byId("token-reveal-token"),
  revealDone: byId("token-reveal-done"),
  settingsForm: byId("settings-form"),
  settingsSubmit: byId("settings-submit"),
  settingsStatus: byId("settings-status"),
  anonymousWarning: byId("anonymous-warning"),
  endDay: byId("end-day"),
  endDaySchedule: byId("end-day-schedule"),
  endDayStatus: byId("end-day-status"),
  endDayDialog: byId("end-day-dialog"),
  endDayError: byId("end-day-error"),
  endDayCancel: byId("end-day-cancel"),
  endDayYes: byId("end-day-yes"),
  version: byId("version"),
  dialog: byId("confirm-dialog"),
  confirmHeading: byId("confirm-heading"),
  confirmBody: byId("confirm-body"),
  confirmSelf: byId("confirm-self"),
  confirmLastAdmin: byId("confirm-last-admin"),
  confirmError: byId("confirm-error"),
  confirmYes: byId("confirm-yes"),
  timeZone: byId("setting-time-zone"),
  timeZoneCustomField: byId("time-zone-custom-field"),
  timeZoneCustom: byId("setting-time-zone-custom"),
  linesStatus: byId("lines-status"),
  linesBody: byId("lines-body"),
  linesMessage: byId("lines-message"),
  lineForm: byId("line-form"),
  lineFormHeading: byId("line-form-heading"),
  lineNameEn: byId("line-name-en"),
  lineNameEs: byId("line-name-es"),
  linePrefix: byId("line-prefix"),
  lineColour: byId("line-colour"),
  lineIcon: byId("line-icon"),
  lineIconPreview: byId("line-icon-preview"),
  lineHours: byId("line-hours"),
  ruleNumbers: byId("rule-numbers"),
  ruleP: byId("line-rule-p"),
  ruleN: byId("line-rule-n"),
  ageing: byId("line-ageing"),
  ageingMinutes: byId("line-ageing-minutes"),
  lineSubmit: byId("line-submit"),
  lineCancel: byId("line-cancel"),
  lineStatus: byId("line-status"),
  credentialDialog: byId("credential-dialog"),
  credentialForm: byId("credential-form"),
  credentialHeading: byId("credential-dialog-heading"),
  credentialLabel: byId("credential-label"),
  credentialRoom: byId("credential-room"),
  credentialRoomField: byId("credential-room-field"),
  credentialLinesField: byId("credential-lines-field"),
  credentialLines: byId("credential-lines"),
  credentialError: byId("credential-error"),
  credentialSave: byId("credential-save"),
  passwordDialog: byId("password-dialog"),
  passwordForm: byId("password-form"),
  passwordHeading: byId("password-heading"),
  passwordBody: byId("password-body"),
  passwordSelf: byId("password-self"),
  passwordNew: byId("password-new"),
  passwordHint: byId("password-new-hint"),
  passwordConfirm: byId("password-confirm"),
  passwordError: byId("password-error"),
  passwordCancel: byId("password-cancel"),
  passwordSubmit: byId("password-submit"),
};

function showStatus(node, kind, text) {
  // kind: "ok" | "error" | "note"; an empty text clears it.
  node.textContent = text || "";
  node.className = `form-status${text && kind !== "note" ? ` alert alert--${kind}` : ""}`;
  if (kind === "note") node.classList.add("muted");
}

// The server's error codes (errors.py) this page can meet, as texts of its own catalog.
const ERROR_TEXTS = {
  password_required: "admin.too_short",
  password_too_short: "admin.too_short",
  password_too_long: "admin.error.password_too_long",
  admin_password_too_short: "admin.error.admin_password_too_short",
  password_too_weak: "admin.error.password_too_weak",
  label_invalid: "admin.error.label_invalid",
  room_too_long: "admin.error.room_too_long",
  role_invalid: "admin.error.role_invalid",
  clinic_name_invalid: "admin.error.clinic_name_invalid",
  setting_value_invalid: "admin.error.setting_invalid",
  setting_unknown: "admin.error.setting_invalid",
  preset_unknown: "admin.error.setting_invalid",
  no_such_credential: "admin.error.no_such_credential",
  room_invalid_character: "admin.error.room_invalid_character",
  credential_change_invalid: "admin.error.credential_change_invalid",
  line_invalid: "admin.error.line_invalid",
  line_prefix_taken: "admin.error.line_prefix_taken",
  line_last_active: "admin.error.line_last_active",
  too_many_lines: "admin.error.too_many_lines",
  line_not_found: "admin.error.line_not_found",
  line_unknown: "admin.error.line_unknown",
};

function errorText(error) {
  if (error instanceof ApiError) return t(ERROR_TEXTS[error.code] || "common.error.generic");
  return t("common.error.network");
}

// --- today's figures ------------------------------------------------------------------------

const figures = new TodayFigures(els.figures, (key, values) => t(key, values), {
  none: "admin.no_value",
  underAMinute: "admin.under_a_minute",
});

// --- how the wait estimates held (GET /api/stats/estimates/) -------------------------------

const CALIBRATION_DEBOUNCE_MS = 1000; // a call moves it; a burst of calls: one read
let calibration = null; // null until loaded
let calibrationTimer = null;

function shareText(share, n) {
  if (share === null) return t("admin.no_value");
  const pct = Math.round(share * 100);
  return n === undefined ? t("admin.share", { pct }) : t("admin.share_of", { pct, n });
}

function calibrationRow(item) {
  const line = (lines || []).find((known) => known.id === item.line_id)
    || { prefix: item.prefix, name: item.name };
  const { shown, first_shown: first } = item;
  const error = shown.median_error_minutes;
  const tr = el("tr");
  tr.dataset.prefix = item.prefix;
  tr.append(
    cell("col-line", "admin.col_line", lineChip(line)),
    cell("col-number", "admin.col_shown", String(shown.shown)),
    cell("col-number", "admin.col_compared", String(shown.compared)),
    cell("col-number", "admin.col_inside", shareText(shown.inside_share)),
    cell("col-number", "admin.col_error",
      error === null ? t("admin.no_value") : t("common.minutes", { n: error })),
    cell("col-number", "admin.col_first_inside",
      shareText(first.inside_share, first.compared)),
  );
  return tr;
}

function renderCalibration() {
  const message = byId("estimates-message");
  if (calibration === null) return;
  const shownLines = calibration.lines.filter((item) => item.shown.shown > 0);
  byId("estimates-body").replaceChildren(...shownLines.map(calibrationRow));
  message.hidden = shownLines.length > 0;
  message.removeAttribute("data-i18n");
  message.textContent = t("admin.no_estimates");
}

function refreshCalibration() {
  clearTimeout(calibrationTimer);
  calibrationTimer = setTimeout(async () => {
    try {
      calibration = await api("GET", "/api/stats/estimates/");
    } catch {
      return; // a nicety: the next event tries again
    }
    renderCalibration();
  }, CALIBRATION_DEBOUNCE_MS);
}

// --- credentials ----------------------------------------------------------------------------

let credentials = null; // null until loaded

function isOwn(c) {
  if (me.token) return c.token === me.token;
  // Without the token in the page data, the best guess: same role and label.
  return c.role === me.role && c.label === me.label;
}

function activeAdmins() {
  return (credentials || []).filter((c) => c.active && c.role === "admin").length;
}

function dateText(iso) {
  return new Date(iso).toLocaleString(lang, { dateStyle: "medium", timeStyle: "short" });
}

// A device's last contact as the list shows it: "Online now" while a live feed of it is
// open, else how long ago, in this page's own words (the server sends a UTC time or null).
function seenText(c, now = Date.now()) {
  if (c.online) return t("admin.seen_online");
  if (!c.last_seen) return t("admin.seen_never");
  const minutes = Math.floor(Math.max(0, now - Date.parse(c.last_seen)) / 60000);
  if (minutes < 1) return t("admin.seen_now");
  if (minutes < 60) return t("admin.seen_minutes", { n: minutes });
  if (minutes < 48 * 60) return t("admin.seen_hours", { n: Math.floor(minutes / 60) });
  return t("admin.seen_days", { n: Math.floor(minutes / 1440) });
}

function seenCell(c) {
  const node = el(c.last_seen ? "time" : "span", c.online ? "badge badge--active" : null,
    seenText(c));
  if (c.last_seen) {
    node.dateTime = c.last_seen;
    node.title = dateText(c.last_seen);
  }
  return node;
}

function cell(className, labelKey, content) {
  const td = el("td", className);
  if (labelKey) td.dataset.label = t(labelKey); // shown above the value on narrow screens
  if (typeof content === "string") td.textContent = content;
  else if (content) td.append(content);
  return td;
}

function credentialRow(c) {
  const tr = el("tr");
  tr.dataset.token = c.token;
  if (!c.active) tr.classList.add("is-inactive");
  const label = document.createDocumentFragment();
  label.append(c.label);
  if (c.active && isOwn(c)) label.append(" ", el("span", "badge badge--you", t("admin.you")));
  // The last contact, under the name: a column of its own would not fit a laptop.
  const seen = el("div", "credential-seen");
  seen.append(seenCell(c));
  label.append(seen);
  const status = document.createDocumentFragment();
  status.append(el("span", `badge badge--${c.active ? "active" : "inactive"}`,
    t(c.active ? "admin.active" : "admin.inactive")));
  if (c.imported) status.append(" ", el("span", "badge badge--imported", t("admin.imported")));
  if (c.active && c.password_reset_required) {
    // It cannot sign in until an administrator sets a new password: said plainly.
    tr.classList.add("needs-password");
    status.append(" ", el("span", "badge badge--reset", t("admin.reset_needed")));
  }
  const time = el("time", null, dateText(c.created_at));
  time.dateTime = c.created_at;
  tr.append(
    cell("col-token", "admin.col_token", c.token),
    cell("col-role", "admin.col_role", t(`role.${c.role}`)),
    cell("col-label", "admin.col_label", label),
    cell("col-room", "admin.col_room", c.room || t("admin.no_value")),
    cell("col-lines", "admin.col_lines", servedText(c)),
    cell("col-status", "admin.col_status", status),
    cell("col-created", "admin.col_created", time),
  );
  const action = cell("col-action", null, null);
  if (c.active) {
    const reset = el("button", c.password_reset_required ? "button button--primary" : "button",
      t("admin.set_password_action"));
    reset.type = "button";
    reset.dataset.action = "password";
    reset.setAttribute("aria-label", t("admin.set_password_name", { label: c.label }));
    reset.addEventListener("click", () => askPassword(c));
    const buttons = el("div", "row-actions");
    const edit = el("button", "button button--quiet", t("admin.edit"));
    edit.type = "button";
    edit.dataset.action = "edit";
    edit.setAttribute("aria-label", t("admin.edit_name", { label: c.label }));
    edit.addEventListener("click", () => editCredential(c));
    buttons.append(edit, reset);
    const button = el("button", "button button--danger", t("admin.deactivate"));
    button.type = "button";
    button.setAttribute("aria-label", t("admin.deactivate_name", { label: c.label }));
    button.addEventListener("click", () => askDeactivate(c));
    buttons.append(button);
    action.append(buttons);
  } else {
    const again = el("button", "button", t("admin.reactivate"));
    again.type = "button";
    again.dataset.action = "reactivate";
    again.setAttribute("aria-label", t("admin.reactivate_name", { label: c.label }));
    again.addEventListener("click", () => reactivate(c, again));
    action.append(again);
  }
  tr.append(action);
  return tr;
}

function renderCredentials() {
  if (credentials === null) return;
  const sorted = [...credentials].sort((a, b) =>
    Number(b.active) - Number(a.active) || b.created_at.localeCompare(a.created_at)
      || b.token.localeCompare(a.token));
  els.credentialsBody.replaceChildren(...sorted.map(credentialRow));
  els.credentialsFlagged.hidden = !sorted.some((c) => c.active && c.password_reset_required);
  els.credentialsMessage.hidden = sorted.length > 0;
  els.credentialsMessage.removeAttribute("data-i18n");
  els.credentialsMessage.textContent = t("admin.no_credentials");
}

// No confirmation: reactivating harms nobody, and the device must still sign in again.
async function reactivate(c, button) {
  button.disabled = true;
  try {
    await api("POST", `/api/credentials/${encodeURIComponent(c.token)}/reactivate/`);
  } catch (error) {
    els.credentialsStatus.textContent = errorText(error);
    els.credentialsStatus.hidden = false;
    button.disabled = false;
    return;
  }
  els.credentialsStatus.textContent = t("admin.reactivated", { label: c.label });
  els.credentialsStatus.hidden = false;
  await loadCredentials();
}

async function loadCredentials() {
  try {
    credentials = await api("GET", "/api/credentials/");
    renderCredentials();
  } catch {
    els.credentialsMessage.hidden = false;
    els.credentialsMessage.removeAttribute("data-i18n");
    els.credentialsMessage.textContent = t("admin.load_failed");
  }
}

function servedText(c) {
  if (c.role !== "doctor") return t("admin.no_value");
  if (!c.lines || c.lines.length === 0) return t("admin.lines_every");
  return c.lines.join(", ");
}

// A credential's label and, for a doctor, room and served lines, in a dialog (Escape or
// Cancel changes nothing).
let editing = null; // the credential in the dialog

function editCredential(c) {
  editing = c;
  els.credentialHeading.textContent = t("admin.credential_edit_heading", { label: c.label });
  const doctor = c.role === "doctor";
  els.credentialLabel.value = c.label;
  els.credentialRoom.value = c.room || "";
  els.credentialRoomField.hidden = !doctor;
  els.credentialLinesField.hidden = !doctor;
  const served = new Set(c.lines || []);
  const boxes = (lines || [])
    .filter((line) => line.active || served.has(line.prefix))
    .map((line) => {
      const label = el("label", "checkbox");
      const input = el("input");
      input.type = "checkbox";
      input.name = "lines";
      input.value = line.prefix;
      input.checked = served.has(line.prefix);
      label.append(input, " ", lineChip(line));
      return label;
    });
  els.credentialLines.replaceChildren(...boxes);
  els.credentialError.hidden = true;
  els.credentialSave.disabled = false;
  els.credentialDialog.showModal();
  els.credentialLabel.focus();
}

els.credentialDialog.addEventListener("close", () => {
  editing = null;
});

els.credentialForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const c = editing;
  if (!c) return;
  const label = els.credentialLabel.value.trim();
  if (!label) {
    els.credentialError.textContent = t("admin.error.label_invalid");
    els.credentialError.hidden = false;
    els.credentialLabel.focus();
    return;
  }
  const body = { label };
  if (c.role === "doctor") {
    body.room = els.credentialRoom.value.trim() || null;
    body.lines = [...els.credentialLines.querySelectorAll("input:checked")].map((i) => i.value);
  }
  els.credentialSave.disabled = true;
  try {
    await api("PATCH", `/api/credentials/${encodeURIComponent(c.token)}/`, { json: body });
  } catch (error) {
    els.credentialError.textContent = errorText(error);
    els.credentialError.hidden = false;
    els.credentialSave.disabled = false;
    return;
  }
  els.credentialDialog.close();
  els.credentialsStatus.textContent = t("admin.credential_saved", { label });
  els.credentialsStatus.hidden = false;
  await loadCredentials();
});

function renderRoleHint() {
  const role = els.createRole.value;
  els.createRoleHint.textContent = t(`admin.role_hint.${role}`);
  els.createRoomField.hidden = role !== "doctor";
}

els.createRole.addEventListener("change", renderRoleHint);

let revealed = null; // {label, token} of the credential just created, until "done"

function renderReveal() {
  els.reveal.hidden = !revealed;
  els.revealHeading.textContent = revealed ? t("admin.new_token_heading", { label: revealed.label }) : "";
  els.revealToken.textContent = revealed ? revealed.token : "";
}

els.revealDone.addEventListener("click", () => {
  revealed = null; // shown once: gone from the page for good
  renderReveal();
  els.createLabel.focus();
});

function problemWithNewCredential() {
  if (!els.createLabel.value.trim()) return [els.createLabel, "admin.label_missing"];
  if (els.createPassword.value.length < MIN_PASSWORD) return [els.createPassword, "admin.too_short"];
  if (els.createPassword.value !== els.createConfirm.value) return [els.createConfirm, "admin.mismatch"];
  return null;
}

let creating = false;

els.createForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (creating) return;
  const problem = problemWithNewCredential();
  for (const input of [els.createLabel, els.createPassword, els.createConfirm]) {
    input.removeAttribute("aria-invalid");
  }
  if (problem) {
    const [input, key] = problem;
    input.setAttribute("aria-invalid", "true");
    showStatus(els.createStatus, "error", t(key));
    input.focus();
    return;
  }
  const role = els.createRole.value;
  const body = { role, label: els.createLabel.value.trim(), password: els.createPassword.value };
  if (role === "doctor" && els.createRoom.value.trim()) body.room = els.createRoom.value.trim();
  creating = true;
  els.createSubmit.disabled = true;
  els.createSubmit.textContent = t("admin.creating");
  showStatus(els.createStatus, "note", "");
  revealed = null;
  renderReveal();
  try {
    const created = await api("POST", "/api/credentials/", { json: body });
    els.createForm.reset();
    els.createRole.value = role;
    renderRoleHint();
    revealed = { label: created.label, token: created.token };
    renderReveal();
    els.reveal.focus();
    els.reveal.scrollIntoView({ block: "nearest" });
    await loadCredentials();
  } catch (error) {
    showStatus(els.createStatus, "error", errorText(error));
  } finally {
    creating = false;
    els.createSubmit.disabled = false;
    els.createSubmit.textContent = t("admin.create");
  }
});

// Deactivation asks first, in a modal dialog (Escape or Cancel leaves everything as it was).
let pending = null;

function askDeactivate(c) {
  pending = c;
  els.confirmHeading.textContent = t("admin.confirm_heading", { label: c.label });
  els.confirmBody.textContent = t("admin.confirm_body", { token: c.token });
  els.confirmSelf.hidden = !isOwn(c);
  els.confirmLastAdmin.hidden = !(c.role === "admin" && activeAdmins() <= 1);
  els.confirmError.hidden = true;
  els.confirmYes.disabled = false;
  els.dialog.showModal();
  byId("confirm-cancel").focus(); // the safe choice is the default one
}

els.dialog.addEventListener("close", () => {
  pending = null;
});

els.confirmYes.addEventListener("click", async () => {
  const c = pending;
  if (!c) return;
  els.confirmYes.disabled = true;
  try {
    await api("POST", `/api/credentials/${encodeURIComponent(c.token)}/deactivate/`);
  } catch (error) {
    els.confirmError.textContent = errorText(error);
    els.confirmError.hidden = false;
    els.confirmYes.disabled = false;
    return;
  }
  const own = isOwn(c) && Boolean(me.token);
  els.dialog.close();
  if (own) {
    window.location.assign("/login"); // this page's own session has just ended
    return;
  }
  els.credentialsStatus.textContent = t("admin.deactivated", { label: c.label });
  els.credentialsStatus.hidden = false;
  await loadCredentials();
});

// --- lines ----------------------------------------------------------------------------------

let lines = null; // GET /api/lines/ (admin's order); null until loaded
let editingLine = null; // the line in the form, or null: the form adds a line
let shownRule = null; // the rule as the form showed it: an untouched rule is not sent

function lineChip(line) {
  return chipOf(line, line.prefix, lang);
}

function hoursText(hours) {
  if (!hours) return t("admin.hours_always");
  return hours.map(([start, end]) => `${start}–${end}`).join(", ");
}

function ruleText(rule) {
  if (!rule) {
    const { priority, normal, max_wait_minutes: minutes } = DEFAULT_RULE;
    return t("admin.rule_default", { priority, normal, minutes });
  }
  const mode = rule.mode === "strict" ? t("admin.rule_strict")
    : t("admin.rule_interleave", { priority: rule.priority, normal: rule.normal });
  const ageing = rule.max_wait_minutes === null || rule.max_wait_minutes === undefined
    ? t("admin.rule_no_ageing") : t("admin.rule_ageing", { minutes: rule.max_wait_minutes });
  return `${mode} · ${ageing}`;
}

function lineRow(line) {
  const tr = el("tr");
  tr.dataset.prefix = line.prefix;
  if (!line.active) tr.classList.add("is-inactive");
  const status = document.createDocumentFragment();
  status.append(el("span", `badge badge--${line.active ? "active" : "inactive"}`,
    t(line.active ? "admin.active" : "admin.inactive")));
  if (line.active && line.open_now === false) {
    status.append(" ", el("span", "badge badge--inactive", t("admin.closed_now")));
  }
  tr.append(
    cell("col-line", "admin.col_line", lineChip(line)),
    cell("col-hours", "admin.col_hours", hoursText(line.hours)),
    cell("col-rule", "admin.col_rule", ruleText(line.call_rule)),
    cell("col-status", "admin.col_status", status),
  );
  const name = `${line.prefix} ${lineName(line, lang)}`;
  const action = cell("col-action", null, null);
  const edit = el("button", "button button--quiet", t("admin.edit"));
  edit.type = "button";
  edit.setAttribute("aria-label", t("admin.edit_name", { label: name }));
  edit.addEventListener("click", () => editLine(line));
  const toggle = el("button", `button ${line.active ? "button--danger" : ""}`,
    t(line.active ? "admin.deactivate" : "admin.reactivate"));
  toggle.type = "button";
  toggle.setAttribute("aria-label",
    t(line.active ? "admin.deactivate_name" : "admin.reactivate_name", { label: name }));
  toggle.addEventListener("click", () => setLineActive(line, !line.active));
  action.append(edit, " ", toggle);
  tr.append(action);
  return tr;
}

function renderLines() {
  if (lines === null) return;
  els.linesBody.replaceChildren(...lines.map(lineRow));
  els.linesMessage.hidden = lines.length > 0;
  els.linesMessage.removeAttribute("data-i18n");
  els.linesMessage.textContent = t("admin.no_lines");
}

async function loadLines() {
  const loaded = await fetchLines();
  if (loaded === null) {
    els.linesMessage.hidden = false;
    els.linesMessage.removeAttribute("data-i18n");
    els.linesMessage.textContent = t("admin.load_failed");
    return;
  }
  lines = loaded;
  renderLines();
  renderCalibration(); // its lines with their colours and icons
  renderCredentials(); // the lines a doctor serves are shown by name
  renderDisplayLines();
}

// --- a wall display's address: which lines it shows and how it tells patients apart -------

const displayEls = {
  lines: byId("display-lines"),
  show: byId("display-show"),
  url: byId("display-url"),
  copy: byId("display-copy"),
  status: byId("display-status"),
};

function renderDisplayLines() {
  const ticked = new Set(
    [...displayEls.lines.querySelectorAll("input:checked")].map((box) => box.value));
  displayEls.lines.replaceChildren(...lines.filter((line) => line.active).map((line) => {
    const label = el("label", "checkbox");
    const box = el("input");
    box.type = "checkbox";
    box.value = line.prefix;
    box.checked = ticked.has(line.prefix);
    box.addEventListener("change", renderDisplayUrl);
    label.append(box, " ", lineChip(line));
    return label;
  }));
  renderDisplayUrl();
}

function renderDisplayUrl() {
  const query = new URLSearchParams();
  const chosen = [...displayEls.lines.querySelectorAll("input:checked")].map((box) => box.value);
  if (chosen.length) query.set("lines", chosen.join(","));
  if (displayEls.show.value !== "ticket_name") query.set("show", displayEls.show.value);
  const text = query.toString().replaceAll("%2C", ",");
  displayEls.url.value = `${location.origin}/display${text ? `?${text}` : ""}`;
  displayEls.status.hidden = true;
}

displayEls.show.addEventListener("change", renderDisplayUrl);
displayEls.copy.addEventListener("click", async () => {
  displayEls.url.select();
  try {
    await navigator.clipboard.writeText(displayEls.url.value);
    displayEls.status.textContent = t("admin.display_copied");
  } catch {
    displayEls.status.textContent = t("admin.display_select");  // plain HTTP: no clipboard
  }
  displayEls.status.hidden = false;
});
renderDisplayUrl();

function showLinesStatus(kind, text) {
  els.linesStatus.className = `alert alert--${kind}`;
  els.linesStatus.textContent = text;
  els.linesStatus.hidden = !text;
}

async function setLineActive(line, active) {
  showLinesStatus("ok", "");
  try {
    await api("PATCH", `/api/lines/${line.id}/`, { json: { active } });
  } catch (error) {
    showLinesStatus("error", errorText(error));
    return;
  }
  const key = active ? "admin.line_reactivated" : "admin.line_deactivated";
  showLinesStatus("ok", t(key, { prefix: line.prefix }));
  await loadLines();
}

function renderIconPreview() {
  const icon = els.lineIcon.value;
  els.lineIconPreview.replaceChildren(...(icon ? [lineIcon(icon, "icon-pick__svg")] : []));
  els.lineIconPreview.style.setProperty("--line-colour", els.lineColour.value);
}

els.lineIcon.addEventListener("change", renderIconPreview);
els.lineColour.addEventListener("input", renderIconPreview);

function ruleMode() {
  return els.lineForm.elements.mode.value;
}

function renderRuleFields() {
  els.ruleNumbers.hidden = ruleMode() !== "interleave";
  els.ageingMinutes.disabled = !els.ageing.checked;
}

for (const radio of els.lineForm.elements.mode) radio.addEventListener("change", renderRuleFields);
els.ageing.addEventListener("change", renderRuleFields);

function fillLineForm(line) {
  const rule = line?.call_rule || DEFAULT_RULE;
  els.lineNameEn.value = line?.name?.en || "";
  els.lineNameEs.value = line?.name?.es || "";
  els.linePrefix.value = line?.prefix || "";
  els.lineColour.value = line?.colour || "#0b5d6b";
  els.lineIcon.value = line?.icon || "";
  els.lineHours.value = line?.hours ? line.hours.map(([a, b]) => `${a}-${b}`).join(", ") : "";
  els.lineForm.elements.mode.value = rule.mode;
  els.ruleP.value = String(rule.priority ?? DEFAULT_RULE.priority);
  els.ruleN.value = String(rule.normal ?? DEFAULT_RULE.normal);
  const minutes = rule.max_wait_minutes;
  els.ageing.checked = minutes !== null && minutes !== undefined;
  els.ageingMinutes.value = String(minutes ?? DEFAULT_RULE.max_wait_minutes);
  renderRuleFields();
  renderIconPreview();
  shownRule = JSON.stringify(formRule());
}

function renderLineForm() {
  els.lineFormHeading.textContent = editingLine
    ? t("admin.line_edit_heading", { prefix: editingLine.prefix }) : t("admin.line_create_heading");
  els.lineSubmit.textContent = t(editingLine ? "admin.line_save" : "admin.line_create");
  els.lineCancel.hidden = !editingLine;
}

function editLine(line) {
  editingLine = line;
  fillLineForm(line);
  renderLineForm();
  showStatus(els.lineStatus, "note", "");
  els.lineFormHeading.scrollIntoView({ block: "nearest" });
  els.lineNameEn.focus();
}

function stopEditingLine() {
  editingLine = null;
  fillLineForm(null);
  renderLineForm();
}

els.lineCancel.addEventListener("click", () => {
  stopEditingLine();
  showStatus(els.lineStatus, "note", "");
});

// "08:00-12:00, 14:00-18:00" -> [["08:00", "12:00"], ["14:00", "18:00"]]; empty -> null;
// undefined when it cannot be read.
function parsedHours(text) {
  const parts = text.split(/[,;\n]/).map((part) => part.trim()).filter(Boolean);
  if (parts.length === 0) return null;
  const hours = [];
  for (const part of parts) {
    const pair = part.split(/\s*[-–]\s*/);
    const [start, end] = pair.map((time) => (/^\d:/.test(time) ? `0${time}` : time));
    if (pair.length !== 2 || !CLOCK.test(start) || !CLOCK.test(end)) return undefined;
    hours.push([start, end]);
  }
  return hours.length <= 8 ? hours : undefined;
}

function wholeIn(input, low, high) {
  const value = Number(input.value);
  return Number.isInteger(value) && value >= low && value <= high ? value : null;
}

function formRule() {
  const rule = { mode: ruleMode() };
  if (rule.mode === "interleave") {
    rule.priority = wholeIn(els.ruleP, 1, 10);
    rule.normal = wholeIn(els.ruleN, 1, 10);
  }
  rule.max_wait_minutes = els.ageing.checked ? wholeIn(els.ageingMinutes, 5, 480) : null;
  return rule;
}

function problemWithLine(hours, rule) {
  if (!els.lineNameEn.value.trim()) return [els.lineNameEn, "admin.line_name_missing"];
  if (!/^[A-Za-z]{1,2}$/.test(els.linePrefix.value.trim())) {
    return [els.linePrefix, "admin.line_prefix_wrong"];
  }
  if (hours === undefined) return [els.lineHours, "admin.line_hours_wrong"];
  if (rule.priority === null || rule.normal === null) {
    return [rule.priority === null ? els.ruleP : els.ruleN, "admin.line_rule_wrong"];
  }
  if (els.ageing.checked && rule.max_wait_minutes === null) {
    return [els.ageingMinutes, "admin.line_rule_wrong"];
  }
  return null;
}

let savingLine = false;

els.lineForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (savingLine) return;
  const hours = parsedHours(els.lineHours.value);
  const rule = formRule();
  const fields = [els.lineNameEn, els.linePrefix, els.lineHours, els.ruleP, els.ruleN,
    els.ageingMinutes];
  for (const input of fields) input.removeAttribute("aria-invalid");
  const problem = problemWithLine(hours, rule);
  if (problem) {
    const [input, key] = problem;
    input.setAttribute("aria-invalid", "true");
    showStatus(els.lineStatus, "error", t(key));
    input.focus();
    return;
  }
  const name = { en: els.lineNameEn.value.trim() };
  if (els.lineNameEs.value.trim()) name.es = els.lineNameEs.value.trim();
  const body = {
    name,
    prefix: els.linePrefix.value.trim().toUpperCase(),
    colour: els.lineColour.value.toLowerCase(),
    icon: els.lineIcon.value || null,
    hours,
  };
  // An untouched rule stays as it is (a line without its own rule keeps following the default).
  if (!editingLine || JSON.stringify(rule) !== shownRule) body.call_rule = rule;
  const line = editingLine;
  savingLine = true;
  els.lineSubmit.disabled = true;
  showStatus(els.lineStatus, "note", "");
  try {
    const saved = line
      ? await api("PATCH", `/api/lines/${line.id}/`, { json: body })
      : await api("POST", "/api/lines/", { json: body });
    stopEditingLine();
    const key = line ? "admin.line_saved" : "admin.line_created";
    showStatus(els.lineStatus, "ok", t(key, { prefix: saved.prefix }));
    await loadLines();
  } catch (error) {
    showStatus(els.lineStatus, "error", errorText(error));
  } finally {
    savingLine = false;
    els.lineSubmit.disabled = false;
  }
});

els.lineForm.addEventListener("input", () => showStatus(els.lineStatus, "note", ""));
// A new password for a credential (POST /api/credentials/{token}/password/): same rules as a
// new credential's; the server clears "needs a new password" and ends its sessions.
let passwordFor = null; // the credential the dialog is open for

function renderPasswordDialog() {
  const c = passwordFor;
  if (!c) return;
  els.passwordHeading.textContent = t("admin.password_heading", { label: c.label });
  els.passwordBody.textContent = t("admin.password_body", { token: c.token });
  els.passwordHint.textContent = t(c.role === "admin" ? "admin.new_password_hint_admin"
    : "admin.new_password_hint");
  els.passwordSelf.hidden = !isOwn(c);
  if (!els.passwordSubmit.disabled) els.passwordSubmit.textContent = t("admin.set_password");
}

function showPasswordError(key, input = null) {
  for (const field of [els.passwordNew, els.passwordConfirm]) field.removeAttribute("aria-invalid");
  els.passwordError.hidden = !key;
  els.passwordError.textContent = key ? t(key) : "";
  if (input) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
}

function askPassword(c) {
  passwordFor = c;
  els.passwordForm.reset();
  showPasswordError(null);
  els.passwordSubmit.disabled = false;
  renderPasswordDialog();
  els.passwordDialog.showModal();
  els.passwordCancel.focus(); // the safe choice is the default one, as in the other dialogs
}

els.passwordCancel.addEventListener("click", () => els.passwordDialog.close());
els.passwordDialog.addEventListener("close", () => {
  passwordFor = null;
  els.passwordForm.reset(); // no password stays in the page
});

let settingPassword = false;

els.passwordForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const c = passwordFor;
  if (!c || settingPassword) return;
  const password = els.passwordNew.value;
  if (password.length < MIN_PASSWORD) {
    showPasswordError("admin.too_short", els.passwordNew);
    return;
  }
  if (c.role === "admin" && password.length < MIN_ADMIN_PASSWORD) {
    showPasswordError("admin.error.admin_password_too_short", els.passwordNew);
    return;
  }
  if (password !== els.passwordConfirm.value) {
    showPasswordError("admin.mismatch", els.passwordConfirm);
    return;
  }
  showPasswordError(null);
  settingPassword = true;
  els.passwordSubmit.disabled = true;
  els.passwordSubmit.textContent = t("admin.setting_password");
  try {
    await api("POST", `/api/credentials/${encodeURIComponent(c.token)}/password/`,
      { json: { password } });
  } catch (error) {
    els.passwordError.textContent = errorText(error);
    els.passwordError.hidden = false;
    if (error instanceof ApiError && error.code !== "no_such_credential") {
      els.passwordNew.setAttribute("aria-invalid", "true");
      els.passwordNew.focus();
    }
    return;
  } finally {
    settingPassword = false;
    els.passwordSubmit.disabled = false;
    els.passwordSubmit.textContent = t("admin.set_password");
  }
  const own = isOwn(c) && Boolean(me.token);
  els.passwordDialog.close();
  if (own) {
    window.location.assign("/login"); // this page's own session has just ended
    return;
  }
  els.credentialsStatus.textContent = t("admin.password_set", { label: c.label });
  els.credentialsStatus.hidden = false;
  await loadCredentials();
  // The row was drawn anew: focus goes back to its button, not to the top of the page.
  els.credentialsBody.querySelector(`tr[data-token="${CSS.escape(c.token)}"] [data-action="password"]`)
    ?.focus();
});

// --- settings -------------------------------------------------------------------------------

const form = els.settingsForm;

function formValue(key) {
  if (key === "time_zone") return els.timeZone.value || els.timeZoneCustom.value.trim();
  const field = form.elements[key];
  if (key === "end_of_day") return field.value || null;
  if (CHECKED_KEYS.includes(key)) return field.value === "" ? null : Number(field.value);
  if (key === "clinic_name") return field.value.trim();
  if (key === "status_link_base") return field.value.trim() || null; // empty: the kiosk's own
  if (field instanceof RadioNodeList) return field.value;
  return field.checked;
}

function setFormValue(key, value) {
  if (key === "time_zone") {
    const listed = [...els.timeZone.options].some((o) => o.value && o.value === value);
    els.timeZone.value = listed ? value : "";
    els.timeZoneCustom.value = listed ? "" : value;
    renderTimeZone();
    return;
  }
  const field = form.elements[key];
  if (CHECKED_KEYS.includes(key)) field.value = value ?? "";
  else if (key === "clinic_name") field.value = value;
  else if (key === "status_link_base") field.value = value ?? "";
  else if (field instanceof RadioNodeList) field.value = value;
  else field.checked = Boolean(value);
}

function renderAnonymousWarning() {
  const on = form.elements.anonymous_feed.checked;
  els.anonymousWarning.className = on
    ? "settings-warning alert alert--warn" : "settings-warning field__hint";
}

form.elements.anonymous_feed.addEventListener("change", renderAnonymousWarning);

// A common zone from the list, or "Other…" and any IANA name the server accepts.
function renderTimeZone() {
  els.timeZoneCustomField.hidden = els.timeZone.value !== "";
}

els.timeZone.addEventListener("change", () => {
  renderTimeZone();
  if (els.timeZone.value === "") els.timeZoneCustom.focus();
});
// "Saved." describes the form as it was; once edited again, it no longer does.
form.addEventListener("input", () => showStatus(els.settingsStatus, "note", ""));
form.addEventListener("change", () => showStatus(els.settingsStatus, "note", ""));
els.createForm.addEventListener("input", () => showStatus(els.createStatus, "note", ""));

function changedSettings() {
  const changes = {};
  for (const key of SETTING_KEYS) {
    const value = formValue(key);
    if (value !== settings[key]) changes[key] = value;
  }
  return changes;
}

let saving = false;

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (saving) return;
  const invalid = CHECKED_KEYS.find((key) => !form.elements[key].checkValidity());
  if (invalid) {
    showStatus(els.settingsStatus, "error", t(`admin.error.${invalid}`));
    form.elements[invalid].focus();
    return;
  }
  const changes = changedSettings();
  if (Object.keys(changes).length === 0) {
    showStatus(els.settingsStatus, "note", t("admin.nothing_changed"));
    return;
  }
  saving = true;
  els.settingsSubmit.disabled = true;
  els.settingsSubmit.textContent = t("admin.saving");
  showStatus(els.settingsStatus, "note", "");
  try {
    useSettings(await api("PATCH", "/api/settings/", { json: changes }), true);
    showStatus(els.settingsStatus, "ok", t("admin.saved"));
  } catch (error) {
    const invalid = error?.code === "setting_value_invalid";
    const zone = invalid && "time_zone" in changes;
    const base = invalid && "status_link_base" in changes && !zone;
    showStatus(els.settingsStatus, "error", zone ? t("admin.error.time_zone_invalid")
      : base ? t("admin.error.status_link_base") : errorText(error));
  } finally {
    saving = false;
    els.settingsSubmit.disabled = false;
    els.settingsSubmit.textContent = t("admin.save");
  }
});

// New settings from the server (our save, or another admin's): fields the user has not
// touched follow them; a field being edited keeps what the user typed.
function useSettings(next, saved = false) {
  for (const key of SETTING_KEYS) {
    if (saved || formValue(key) === settings[key]) setFormValue(key, next[key]);
  }
  const languageChanged = next.language !== lang;
  settings = { ...next };
  if (languageChanged) {
    lang = next.language;
    t = translator(data, lang);
  }
  renderAll();
  renderPhoneTest();
  loadIntakeForm(saved);
}

// The test QR code (<status_link_base>/v/test, made by the box): drawn anew when the
// address changes, the query only telling the browser it is another picture.
function renderPhoneTest() {
  const code = byId("phone-test-code");
  const src = `/v/test/qr.svg?for=${encodeURIComponent(settings.status_link_base ?? "")}`;
  if (code.getAttribute("src") !== src) code.src = src;
}

// --- the end of the day (POST /api/queue/end-of-day/) ---------------------------------------

function renderEndDay() {
  els.endDaySchedule.textContent = settings.end_of_day
    ? t("admin.end_day_auto", { time: settings.end_of_day }) : t("admin.end_day_manual");
}

els.endDay.addEventListener("click", () => {
  els.endDayError.hidden = true;
  els.endDayYes.disabled = false;
  showStatus(els.endDayStatus, "note", "");
  els.endDayDialog.showModal();
  els.endDayCancel.focus(); // the safe choice is the default one
});

els.endDayYes.addEventListener("click", async () => {
  els.endDayYes.disabled = true;
  let answer;
  try {
    answer = await api("POST", "/api/queue/end-of-day/");
  } catch (error) {
    els.endDayError.textContent = errorText(error);
    els.endDayError.hidden = false;
    els.endDayYes.disabled = false;
    return;
  }
  els.endDayDialog.close();
  showStatus(els.endDayStatus, "ok", answer.closed
    ? t("admin.end_day_done", { count: answer.closed }) : t("admin.end_day_none"));
  figures.refresh();
  els.endDay.focus();
});

// --- the intake form ------------------------------------------------------------------------

// The catalogue: every question a form may ask, in the original CheckIn's order, with what
// it asks by default and its standard labels (GET /api/intake-form/catalogue/).
let catalogue = new Map(); // key -> field

const intakeEls = {
  form: byId("intake-form"),
  custom: byId("intake-custom"),
  body: byId("intake-body"),
  submit: byId("intake-submit"),
  status: byId("intake-status"),
  compatState: byId("compat-state"),
  compatOn: byId("compat-on"),
  compatOff: byId("compat-off"),
  compatStatus: byId("compat-status"),
  dialog: byId("preset-dialog"),
  dialogHeading: byId("preset-heading"),
  dialogBody: byId("preset-body"),
  dialogWarning: byId("preset-warning"),
  dialogError: byId("preset-error"),
  dialogYes: byId("preset-yes"),
};

let intakeForm = null; // what the box has now: {preset, fields: [...]} (GET /api/intake-form/)
let intakeEdited = false; // the admin is changing it: news from elsewhere waits
let intakeRows = []; // [{key, tr, ask, required, sensitive, en, es}] in the order shown

function catalogueLabel(key, language = lang) {
  return catalogue.get(key)?.label[language] ?? key;
}

function intakeRow(key) {
  const tr = el("tr");
  tr.dataset.key = key;
  const name = catalogueLabel(key);
  const box = (labelKey, className) => {
    const input = el("input", className);
    input.type = "checkbox";
    input.setAttribute("aria-label", t(labelKey, { label: name }));
    return input;
  };
  const text = (language, labelKey) => {
    const input = el("input", "input input--small");
    input.maxLength = 100;
    input.autocomplete = "off";
    input.lang = language;
    input.placeholder = catalogueLabel(key, language);
    input.setAttribute("aria-label", t(labelKey, { label: name }));
    return input;
  };
  const row = {
    key,
    tr,
    ask: box("admin.intake_ask_field", "intake-ask"),
    required: box("admin.intake_required_field", "intake-required"),
    sensitive: box("admin.intake_sensitive_field", "intake-sensitive"),
    en: text("en", "admin.intake_label_en_field"),
    es: text("es", "admin.intake_label_es_field"),
  };
  if (key === "fname" || key === "image") {
    // The queue needs a name: always asked, always required. The photo is always offered,
    // never required.
    row.ask.disabled = true;
    row.required.disabled = true;
  }
  row.ask.addEventListener("change", () => renderIntakeRow(row));
  tr.append(
    cell("intake-field", "admin.intake_col_field", name),
    cell("intake-switch", "admin.intake_col_ask", row.ask),
    cell("intake-switch", "admin.intake_col_required", row.required),
    cell("intake-switch", "admin.intake_col_sensitive", row.sensitive),
    cell("intake-label", "admin.intake_col_label_en", row.en),
    cell("intake-label", "admin.intake_col_label_es", row.es),
  );
  const keys = ["admin.intake_col_field", "admin.intake_col_ask", "admin.intake_col_required",
    "admin.intake_col_sensitive", "admin.intake_col_label_en", "admin.intake_col_label_es"];
  [...tr.children].forEach((td, i) => {
    td.dataset.labelKey = keys[i];
  });
  return row;
}

function renderIntakeRow(row) {
  const on = row.ask.checked;
  row.tr.classList.toggle("is-inactive", !on);
  for (const input of [row.required, row.sensitive, row.en, row.es]) {
    input.disabled = !on || (input === row.required && ["fname", "image"].includes(row.key));
  }
}

// The rows as the box has them: a custom form's questions first, in its order, then the rest
// of the catalogue as it would be asked by default (not ticked).
function fillIntake(form) {
  const chosen = form?.preset === "custom" ? form.fields : [];
  const byKey = new Map(chosen.map((f) => [f.key, f]));
  const keys = [...catalogue.keys()];
  const listed = chosen.map((f) => f.key).filter((k) => catalogue.has(k));
  const order = ["fname", ...listed, ...keys.filter((k) => !byKey.has(k))]
    .filter((k, i, all) => all.indexOf(k) === i);
  intakeRows = order.map((key) => {
    const row = intakeRow(key);
    const field = byKey.get(key);
    row.ask.checked = key === "fname" || key === "image" || Boolean(field);
    const standard = catalogue.get(key) ?? { required: true, sensitive: false }; // not loaded yet
    row.required.checked = key === "fname" || (key !== "image" && (field?.required ?? standard.required));
    row.sensitive.checked = field?.sensitive ?? standard.sensitive;
    if (field?.label) {
      // Shown only where it differs from our standard wording.
      for (const language of ["en", "es"]) {
        const typed = field.label[language] || "";
        if (typed && typed !== catalogueLabel(key, language)) row[language].value = typed;
      }
    }
    renderIntakeRow(row);
    return row;
  });
  intakeEls.body.replaceChildren(...intakeRows.map((row) => row.tr));
  const preset = form?.preset ?? "name";
  intakeEls.form.elements.intake_preset.value = preset;
  renderIntakeChoice();
}

function renderIntakeChoice() {
  intakeEls.custom.hidden = intakeEls.form.elements.intake_preset.value !== "custom";
}

function currentPreset() {
  return settings.intake_form?.preset ?? intakeForm?.preset ?? null;
}

function renderCompat() {
  const preset = currentPreset();
  const on = settings.anonymous_feed && settings.display_names === "full" && settings.display_photos
    && preset === "original";
  const off = !settings.anonymous_feed && settings.display_names === "first_initial"
    && !settings.display_photos && preset === "name";
  intakeEls.compatState.textContent = t(on ? "admin.compat_state_on"
    : off ? "admin.compat_state_private" : "admin.compat_state_mixed");
}

async function loadIntakeForm(force = false) {
  try {
    if (!catalogue.size) {
      const { fields } = await api("GET", "/api/intake-form/catalogue/");
      catalogue = new Map(fields.map((field) => [field.key, field]));
    }
    const form = await api("GET", "/api/intake-form/");
    intakeForm = form;
    if (force || !intakeEdited) {
      intakeEdited = false;
      fillIntake(settings.intake_form ?? form); // the setting has only what the admin chose
    }
  } catch {
    // Keep what is shown; the next settings change tries again.
  }
  renderCompat();
}

function chosenIntake() {
  const preset = intakeEls.form.elements.intake_preset.value;
  if (preset !== "custom") return { preset };
  const fields = intakeRows.filter((row) => row.ask.checked).map((row) => {
    const field = { key: row.key, sensitive: row.sensitive.checked };
    if (row.key !== "image") field.required = row.key === "fname" || row.required.checked;
    const label = {}; // only what was typed: the box has the standard wording for the rest
    for (const language of ["en", "es"]) {
      const typed = row[language].value.trim();
      if (typed) label[language] = typed;
    }
    if (Object.keys(label).length) field.label = label;
    return field;
  });
  return { preset, fields };
}

intakeEls.form.addEventListener("change", (event) => {
  intakeEdited = true;
  if (event.target.name === "intake_preset") renderIntakeChoice();
  showStatus(intakeEls.status, "note", "");
});
intakeEls.form.addEventListener("input", () => {
  intakeEdited = true;
  showStatus(intakeEls.status, "note", "");
});

let savingIntake = false;

intakeEls.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (savingIntake) return;
  const value = chosenIntake();
  if (value.preset === "custom" && value.fields.every((f) => f.key === "fname" || f.key === "image")) {
    showStatus(intakeEls.status, "error", t("admin.intake_none_chosen"));
    return;
  }
  savingIntake = true;
  intakeEls.submit.disabled = true;
  showStatus(intakeEls.status, "note", "");
  try {
    const next = await api("PATCH", "/api/settings/", { json: { intake_form: value } });
    intakeEdited = false;
    useSettings(next, true);
    await loadIntakeForm(true);
    showStatus(intakeEls.status, "ok", t("admin.intake_saved"));
  } catch (error) {
    showStatus(intakeEls.status, "error", errorText(error));
  } finally {
    savingIntake = false;
    intakeEls.submit.disabled = false;
  }
});

// --- compatibility with the original CheckIn (POST /api/settings/preset/) --------------------

let pendingPreset = null;

function askPreset(name) {
  pendingPreset = name;
  const on = name === "original";
  intakeEls.dialogHeading.textContent = t(on ? "admin.compat_confirm_on" : "admin.compat_confirm_off");
  intakeEls.dialogBody.textContent = t(on ? "admin.compat_confirm_on_body"
    : "admin.compat_confirm_off_body");
  intakeEls.dialogYes.textContent = t(on ? "admin.compat_confirm_on_yes"
    : "admin.compat_confirm_off_yes");
  intakeEls.dialogYes.className = on ? "button button--danger-solid" : "button button--primary";
  intakeEls.dialogWarning.hidden = !on;
  intakeEls.dialogError.hidden = true;
  intakeEls.dialogYes.disabled = false;
  intakeEls.dialog.showModal();
  byId("preset-cancel").focus(); // the safe choice is the default one
}

intakeEls.compatOn.addEventListener("click", () => askPreset("original"));
intakeEls.compatOff.addEventListener("click", () => askPreset("private"));
intakeEls.dialog.addEventListener("close", () => {
  pendingPreset = null;
});

intakeEls.dialogYes.addEventListener("click", async () => {
  const name = pendingPreset;
  if (!name) return;
  intakeEls.dialogYes.disabled = true;
  let next;
  try {
    next = await api("POST", "/api/settings/preset/", { json: { name } });
  } catch (error) {
    intakeEls.dialogError.textContent = errorText(error);
    intakeEls.dialogError.hidden = false;
    intakeEls.dialogYes.disabled = false;
    return;
  }
  intakeEls.dialog.close();
  intakeEdited = false;
  useSettings(next, true);
  showStatus(intakeEls.compatStatus, "ok",
    t(name === "original" ? "admin.compat_done_on" : "admin.compat_done_off"));
  (name === "original" ? intakeEls.compatOff : intakeEls.compatOn).focus();
});

// --- the page as a whole --------------------------------------------------------------------

function renderChrome() {
  const clinicName = settings.clinic_name;
  renderStaffHeader(t, { lang, title: "admin.title", clinicName, label: me.label });
  els.version.textContent = t("admin.version", { version: els.version.dataset.version });
  applyTexts(t);
}

function renderAll() {
  renderChrome();
  renderRoleHint();
  renderReveal();
  renderCredentials();
  renderLines();
  renderLineForm();
  renderPasswordDialog();
  figures.render();
  renderCalibration();
  renderAnonymousWarning();
  renderCompat();
  renderEndDay();
  for (const row of intakeRows) {
    const name = catalogueLabel(row.key);
    row.tr.firstChild.textContent = name;
    row.ask.setAttribute("aria-label", t("admin.intake_ask_field", { label: name }));
    row.required.setAttribute("aria-label", t("admin.intake_required_field", { label: name }));
    row.sensitive.setAttribute("aria-label", t("admin.intake_sensitive_field", { label: name }));
    row.en.setAttribute("aria-label", t("admin.intake_label_en_field", { label: name }));
    row.es.setAttribute("aria-label", t("admin.intake_label_es_field", { label: name }));
    for (const td of row.tr.children) td.dataset.label = t(td.dataset.labelKey);
  }
  if (!els.createSubmit.disabled) els.createSubmit.textContent = t("admin.create");
  if (!els.settingsSubmit.disabled) els.settingsSubmit.textContent = t("admin.save");
}

for (const key of SETTING_KEYS) setFormValue(key, settings[key]);
fillLineForm(null);
renderAll();
loadCredentials();
// Who is online changes by itself: the list is read again every 30 s while the page is seen
// (the relative times move on with it).
const SEEN_REFRESH_MS = 30000;
setInterval(() => {
  if (!document.hidden && credentials !== null) loadCredentials();
}, SEEN_REFRESH_MS);
loadLines();
fillIntake(settings.intake_form ?? null);
loadIntakeForm(true);

new QueueFeed({
  onMessage(message) {
    if (message.kind === "settings") useSettings(message.settings);
    else {
      figures.refresh(message.kind === "snapshot"); // at once on the first load
      refreshCalibration();
    }
  },
  onStatus(up) {
    els.banner.hidden = up;
  },
}).start();
figures.keepFresh();
