// /admin's backups section: download an encrypted backup now, the nightly schedule to a
// mounted folder (save, run now, turn off), and restore by upload, after which the box
// restarts and this page waits for it to come back (web/backups.py's API).

import { ApiError, api, downloadFile } from "./api.js";
import { byId } from "./dom.js";
import { pageData, translator } from "./page.js";

const data = pageData();
const t = translator(data, data.lang);
const MIN_PASSPHRASE = 12;
const RESTART_POLL_MS = 1000;
const RESTART_GIVE_UP_MS = 180_000;

function errorText(error) {
  const key = `backups.error.${error?.code}`;
  const text = t(key);
  return text === key ? t("backups.error.other") : text;
}

function say(node, text) {
  node.textContent = text;
}

function passphraseProblem(first, again, { optional = false } = {}) {
  if (optional && !first.value && !again.value) return null;
  if (first.value.length < MIN_PASSPHRASE) return t("backups.error.backup_passphrase_invalid");
  if (first.value !== again.value) return t("backups.error.mismatch");
  return null;
}

// --- download now ------------------------------------------------------------------------

const download = {
  form: byId("backup-download-form"),
  passphrase: byId("backup-download-passphrase"),
  again: byId("backup-download-again"),
  button: byId("backup-download"),
  status: byId("backup-download-status"),
};

download.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const problem = passphraseProblem(download.passphrase, download.again);
  if (problem) return say(download.status, problem);
  download.button.disabled = true;
  say(download.status, t("backups.downloading"));
  try {
    const name = await downloadFile("/api/backups/", "checkin-backup.tar.age",
                                    { json: { passphrase: download.passphrase.value } });
    if (name) say(download.status, t("backups.downloaded", { name }));
    download.form.reset();
    refreshSchedule();
  } catch (error) {
    say(download.status, errorText(error));
  } finally {
    download.button.disabled = false;
  }
});

// --- nightly -------------------------------------------------------------------------------

const nightly = {
  form: byId("backup-schedule-form"),
  folder: byId("backup-folder"),
  at: byId("backup-at"),
  keep: byId("backup-keep"),
  unit: byId("backup-keep-unit"),
  passphrase: byId("backup-schedule-passphrase"),
  again: byId("backup-schedule-again"),
  runNow: byId("backup-run-now"),
  off: byId("backup-schedule-off"),
  state: byId("backup-schedule-state"),
  status: byId("backup-schedule-status"),
};

function sizeText(bytes) {
  return `${(bytes / 1_000_000).toFixed(1)} MB`;
}

function timeText(iso) {
  return new Date(iso).toLocaleString(data.lang, { dateStyle: "medium", timeStyle: "short" });
}

function showSchedule(answer) {
  const lines = [];
  const schedule = answer.schedule;
  if (schedule) {
    nightly.folder.value = schedule.folder;
    nightly.at.value = schedule.at;
    nightly.unit.value = schedule.keep_days !== null ? "keep_days" : "keep_copies";
    nightly.keep.value = schedule.keep_days ?? schedule.keep_copies;
    lines.push(t("backups.state_on", { next: timeText(answer.next_run) }));
    if (!answer.target_ready) lines.push(t("backups.not_ready"));
    else if (!answer.mount_point) lines.push(t("backups.not_mount_point"));
  } else {
    lines.push(t("backups.state_off"));
  }
  const last = answer.last;
  if (!last) lines.push(t("backups.last_none"));
  else if (last.ok) lines.push(t("backups.last_ok", { at: timeText(last.at), size: sizeText(last.bytes) }));
  else lines.push(t("backups.last_failed", { at: timeText(last.at) }));
  say(nightly.state, lines.join(" "));
  nightly.runNow.disabled = !schedule;
  nightly.off.disabled = !schedule;
}

async function refreshSchedule() {
  try {
    showSchedule(await api("GET", "/api/backups/schedule/"));
  } catch (error) {
    say(nightly.state, errorText(error));
  }
}

nightly.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const problem = passphraseProblem(nightly.passphrase, nightly.again, { optional: true });
  if (problem) return say(nightly.status, problem);
  const body = { folder: nightly.folder.value.trim(), at: nightly.at.value,
                 [nightly.unit.value]: Number(nightly.keep.value) };
  if (nightly.passphrase.value) body.passphrase = nightly.passphrase.value;
  try {
    showSchedule(await api("PUT", "/api/backups/schedule/", { json: body }));
    nightly.passphrase.value = nightly.again.value = "";
    say(nightly.status, t("backups.saved"));
  } catch (error) {
    say(nightly.status, errorText(error));
  }
});

nightly.runNow.addEventListener("click", async () => {
  nightly.runNow.disabled = true;
  say(nightly.status, t("backups.running"));
  try {
    await api("POST", "/api/backups/run/");
    say(nightly.status, t("backups.ran"));
  } catch (error) {
    say(nightly.status, errorText(error));
  }
  await refreshSchedule();
});

nightly.off.addEventListener("click", async () => {
  try {
    showSchedule(await api("DELETE", "/api/backups/schedule/"));
    say(nightly.status, t("backups.turned_off"));
  } catch (error) {
    say(nightly.status, errorText(error));
  }
});

// --- restore by upload ----------------------------------------------------------------------

const restore = {
  form: byId("backup-restore-form"),
  file: byId("backup-restore-file"),
  passphrase: byId("backup-restore-passphrase"),
  confirm: byId("backup-restore-confirm"),
  button: byId("backup-restore"),
  progress: byId("backup-restore-progress"),
  status: byId("backup-restore-status"),
};

// XMLHttpRequest, not fetch: only it reports the upload's progress.
function upload(form) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/api/backups/restore/");
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      const percent = Math.floor((100 * event.loaded) / event.total);
      restore.progress.value = percent;
      say(restore.status, percent < 100 ? t("backups.uploading", { percent })
                                        : t("backups.checking"));
    });
    request.addEventListener("load", () => {
      if (request.status === 202) resolve(request.response);
      else reject(new ApiError(request.status, request.response));
    });
    request.addEventListener("error", () => reject(new ApiError(0, null)));
    request.send(form);
  });
}

// The box stops, then answers again: wait to see it gone (or a few seconds), then back.
async function waitForRestart() {
  const started = Date.now();
  let wentAway = false;
  while (Date.now() - started < RESTART_GIVE_UP_MS) {
    await new Promise((done) => setTimeout(done, RESTART_POLL_MS));
    let up = false;
    try {
      up = (await fetch("/healthz", { cache: "no-store" })).ok;
    } catch {
      up = false;
    }
    if (!up) wentAway = true;
    else if (wentAway || Date.now() - started > 10_000) {
      say(restore.status, t("backups.back"));
      window.location.reload();
      return;
    }
  }
}

restore.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!restore.file.files.length || !restore.passphrase.value || !restore.confirm.checked) {
    restore.form.reportValidity();
    return;
  }
  const form = new FormData();
  form.append("passphrase", restore.passphrase.value);
  form.append("file", restore.file.files[0]);
  restore.button.disabled = true;
  restore.progress.hidden = false;
  restore.progress.value = 0;
  try {
    const answer = await upload(form);
    if (!answer.restarting) {
      say(restore.status, t("backups.staged"));
      return;
    }
    say(restore.status, t("backups.restarting"));
    await waitForRestart();
  } catch (error) {
    say(restore.status, errorText(error));
    restore.button.disabled = false;
    restore.progress.hidden = true;
  }
});

refreshSchedule();
