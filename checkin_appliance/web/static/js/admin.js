// Administration: credentials (list, create with a token shown once, deactivate after a
// confirmation, a new password for one, e.g. imported from the original CheckIn with a weak
// one and flagged: it cannot sign in until then), the clinic's settings (only changed keys are sent), the kiosk's intake
// form, the original CheckIn's compatibility preset (after a privacy warning), today's
// figures kept live by the queue feed, and the box's device pages and version.

import { ApiError, api } from "./api.js";
import { byId, el } from "./dom.js";
import { QueueFeed } from "./feed.js";
import { applyTexts, pageData, renderStaffHeader, translator } from "./page.js";
import { TodayFigures } from "./stats.js";

const MIN_PASSWORD = 8;
const MIN_ADMIN_PASSWORD = 12; // access.py's MIN_ADMIN_PASSWORD_LENGTH; the server decides
const SETTING_KEYS = ["clinic_name", "language", "display_names", "display_photos",
  "anonymous_feed", "announce_voice"];

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
  version: byId("version"),
  dialog: byId("confirm-dialog"),
  confirmHeading: byId("confirm-heading"),
  confirmBody: byId("confirm-body"),
  confirmSelf: byId("confirm-self"),
  confirmLastAdmin: byId("confirm-last-admin"),
  confirmError: byId("confirm-error"),
  confirmYes: byId("confirm-yes"),
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
    buttons.append(reset);
    const button = el("button", "button button--danger", t("admin.deactivate"));
    button.type = "button";
    button.setAttribute("aria-label", t("admin.deactivate_name", { label: c.label }));
    button.addEventListener("click", () => askDeactivate(c));
    buttons.append(button);
    action.append(buttons);
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
  const field = form.elements[key];
  if (key === "clinic_name") return field.value.trim();
  if (field instanceof RadioNodeList) return field.value;
  return field.checked;
}

function setFormValue(key, value) {
  const field = form.elements[key];
  if (key === "clinic_name") field.value = value;
  else if (field instanceof RadioNodeList) field.value = value;
  else field.checked = Boolean(value);
}

function renderAnonymousWarning() {
  const on = form.elements.anonymous_feed.checked;
  els.anonymousWarning.className = on
    ? "settings-warning alert alert--warn" : "settings-warning field__hint";
}

form.elements.anonymous_feed.addEventListener("change", renderAnonymousWarning);
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
    showStatus(els.settingsStatus, "error", errorText(error));
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
  loadIntakeForm(saved);
}

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
  renderPasswordDialog();
  figures.render();
  renderAnonymousWarning();
  renderCompat();
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
renderAll();
loadCredentials();
fillIntake(settings.intake_form ?? null);
loadIntakeForm(true);

new QueueFeed({
  onMessage(message) {
    if (message.kind === "settings") useSettings(message.settings);
    else figures.refresh(message.kind === "snapshot"); // at once on the first load
  },
  onStatus(up) {
    els.banner.hidden = up;
  },
}).start();
figures.keepFresh();
