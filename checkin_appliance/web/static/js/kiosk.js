// The check-in kiosk: a patient types their name, may add a photo (the camera, or a file
// input where there is no camera or it is refused) and checks in. Each submission carries an
// Idempotency-Key and network failures are retried with the same key, so a lost answer never
// adds anybody twice. After each patient, or when left half-done, everything is cleared and
// the clinic's language comes back: nothing of one patient is left for the next.
// With more than one line open, the patient first chooses a line (lines.js draws its icon);
// the thank-you screen shows the ticket, how the TV will show them and their place in line.
// When the clinic's intake form asks more than the name, its questions (intake.js) come after
// the name; they are checked here before sending and the server's refusals are shown beside
// each one, in our own words.

import { api } from "./api.js";
import { byId, el, showText } from "./dom.js";
import { IntakeForm, errorFor } from "./intake.js";
import { fetchLines, inkOn, lineIcon, lineName, orderedLines } from "./lines.js";
import { QueueFeed } from "./feed.js";
import { applyTexts, pageData, translator } from "./page.js";

const SUCCESS_RESET_SECONDS = 10;
const QR_RESET_SECONDS = 60; // long enough to take out a phone and scan; "Done" ends it sooner
const IDLE_RESET_MS = 60_000;
const REQUEST_TIMEOUT_MS = 30_000; // a request that hangs counts as a network failure
const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000]; // then RETRY_MAX_DELAY_MS each time
const RETRY_MAX_DELAY_MS = 10_000;
const GIVE_UP_AFTER_MS = 2 * 60_000; // then the patient may press again (same key)
const PHOTO_MAX_SIDE = 1280; // the server keeps 800 px; this keeps uploads small
const JPEG_QUALITY = 0.9;
const ACTIVITY = ["pointerdown", "keydown", "input", "touchstart", "wheel"];

const data = pageData();
let settings = data.settings;
let clinicName = settings.clinic_name;
let clinicLang = data.lang; // the clinic's language, already checked by the server
let t = translator(data, clinicLang);

const els = {
  clinicName: byId("clinic-name"),
  langButtons: [...document.querySelectorAll(".lang-switch__option")],
  formScreen: byId("form-screen"),
  welcome: byId("welcome"),
  form: byId("checkin-form"),
  name: byId("fname"),
  nameError: byId("fname-error"),
  intake: byId("intake-fields"),
  photoSection: byId("photo-section"),
  video: byId("preview"),
  still: byId("still"),
  placeholder: byId("placeholder"),
  placeholderText: byId("placeholder-text"),
  cameraStart: byId("camera-start"),
  takePhoto: byId("take-photo"),
  retake: byId("retake"),
  fileChoose: byId("file-choose"),
  fileInput: byId("photo-file"),
  fileChooseText: byId("file-choose-text"),
  noPhoto: byId("no-photo"),
  cameraNote: byId("camera-note"),
  photoError: byId("photo-error"),
  photoStatus: byId("photo-status"),
  privacyWho: byId("privacy-who"),
  formMessage: byId("form-message"),
  submit: byId("submit"),
  submitText: byId("submit-text"),
  submitSpinner: byId("submit-spinner"),
  sendStatus: byId("send-status"),
  successScreen: byId("success-screen"),
  thanks: byId("thanks"),
  position: byId("position"),
  estimate: byId("estimate"),
  done: byId("done"),
  countdown: byId("countdown"),
  lineScreen: byId("line-screen"),
  chooseLine: byId("choose-line"),
  lineChoices: byId("line-choices"),
  lineMessage: byId("line-message"),
  chosenLine: byId("chosen-line"),
  chosenLineBadge: byId("chosen-line-badge"),
  chosenLineName: byId("chosen-line-name"),
  changeLine: byId("change-line"),
  priority: byId("priority-question"),
  priorityInputs: [...document.querySelectorAll(".priority__input")],
  ticketBox: byId("ticket-box"),
  ticket: byId("ticket"),
  ticketLine: byId("ticket-line"),
  statusQr: byId("status-qr"),
  statusQrCode: byId("status-qr-code"),
  tvPreview: byId("tv-preview"),
  tvTicket: byId("tv-ticket"),
  tvName: byId("tv-name"),
};

// The lines open now, in the admin's order: in the page (no name form flashes before the
// line choice), then read again between patients (GET /api/lines/). Each patient is offered
// the lines known when they started.
const openOf = (lines) => orderedLines(lines).filter((line) => line.active && line.open_now);
let openLines = openOf(data.lines ?? []);

// Everything about the current patient; freshPatient() is what the next one starts from.
function freshPatient() {
  return {
    screen: "form", // "form" | "success"
    lang: clinicLang,
    camera: "off", // "off" | "starting" | "live"
    stream: null,
    capturing: false, // or, while the picture is being made, the promise of it
    photo: null, // {blob, url, viewable}
    photoStatus: "", // a catalog key announced to screen readers
    photoError: null, // {key, values}
    nameError: null, // a catalog key
    intakeErrors: {}, // {field: {key, values}}: what is wrong with each answer
    message: null, // {key, values, kind}
    sending: false,
    sendStatus: null, // a catalog key
    key: null, // the Idempotency-Key of the submission being tried
    position: null,
    countdown: 0,
    options: openLines, // the lines this patient may choose from
    line: null, // the prefix chosen, with several lines
    lineMessage: null, // {key}: why the patient is choosing again
    priority: null, // "priority" | "normal" once answered (with priority_question on)
    ticket: null, // the 201's ticket, line (prefix) and how the TV shows the name
    ticketLine: null,
    tvName: null,
    statusUrl: null, // the 201's status_url: the patient's own page, shown as a QR code
    estimate: null, // {low_minutes, high_minutes}: the wait that page shows, when known
  };
}

let state = freshPatient();
let cameraUsable = Boolean(navigator.mediaDevices?.getUserMedia); // else the file input
let generation = 0; // bumped on every reset: late results for an earlier patient are dropped
let idleTimer = null;
let countdownTimer = null;

const intake = new IntakeForm(els.intake, (key) => {
  state.key = null; // a changed answer is a new submission
  if (state.intakeErrors[key]) {
    delete state.intakeErrors[key];
    if (Object.keys(state.intakeErrors).length === 0 && state.message?.kind === "error") {
      state.message = null;
    }
    render();
  }
});

// --- texts ------------------------------------------------------------------------------

function setLanguage(lang) {
  state.lang = lang in data.messages ? lang : clinicLang;
  t = translator(data, state.lang);
  document.documentElement.lang = state.lang;
  applyTexts(t);
  render();
}

function text(message) {
  return message ? t(message.key, message.values) : "";
}

// --- rendering ----------------------------------------------------------------------------

function render() {
  const { sending, camera, photo } = state;
  document.title = `${t("kiosk.title")} · ${clinicName}`;
  els.clinicName.textContent = clinicName;
  for (const button of els.langButtons) {
    button.setAttribute("aria-pressed", String(button.dataset.lang === state.lang));
  }
  const choosing = state.screen === "form" && chooser() && !state.line;
  els.lineScreen.hidden = !choosing;
  els.formScreen.hidden = state.screen !== "form" || choosing;
  els.successScreen.hidden = state.screen !== "success";
  renderLines();

  // The name.
  els.name.readOnly = sending;
  els.name.setAttribute("aria-invalid", String(Boolean(state.nameError)));
  showText(els.nameError, state.nameError && t(state.nameError));

  // The intake questions (none in the name-only form), and the photo if the form has it.
  intake.render(t, state.lang, state.intakeErrors, sending);
  els.form.classList.toggle("checkin--intake", intake.hasQuestions());
  els.photoSection.hidden = !intake.asksForPhoto();

  // The photo: a live preview, the photo taken or chosen, or a calm placeholder.
  els.video.hidden = camera !== "live";
  els.still.hidden = !(photo && photo.viewable && camera === "off");
  els.placeholder.hidden = !els.video.hidden || !els.still.hidden;
  els.placeholderText.textContent = t(
    camera === "starting" ? "kiosk.camera_starting" : photo ? "kiosk.photo_chosen" : "kiosk.photo_none",
  );
  els.cameraStart.hidden = !cameraUsable || camera !== "off" || Boolean(photo);
  els.takePhoto.hidden = camera === "off";
  els.takePhoto.disabled = sending || camera !== "live" || state.capturing;
  els.retake.hidden = !cameraUsable || camera !== "off" || !photo;
  els.fileChoose.hidden = cameraUsable;
  els.fileChooseText.textContent = t(photo ? "kiosk.choose_another" : "kiosk.choose_photo");
  els.noPhoto.hidden = camera === "off" && !photo;
  for (const control of [els.cameraStart, els.retake, els.noPhoto, els.fileInput]) {
    control.disabled = sending;
  }
  els.fileChoose.classList.toggle("is-disabled", sending);
  els.cameraNote.hidden = cameraUsable;
  showText(els.photoError, text(state.photoError));
  els.photoStatus.textContent = state.photoStatus ? t(state.photoStatus) : "";

  // Sending. The button keeps its focus while busy: aria-disabled, not disabled.
  els.submit.setAttribute("aria-disabled", String(sending));
  els.submitSpinner.hidden = !sending;
  els.submitText.textContent = t(sending ? "kiosk.sending" : "kiosk.submit");
  els.sendStatus.textContent = state.sendStatus ? t(state.sendStatus) : "";
  showText(els.formMessage, text(state.message));
  els.formMessage.classList.toggle("kiosk-alert--calm", state.message?.kind === "calm");

  // Thank you: the ticket large, how the TV shows it, the place in that line.
  const line = state.ticketLine && chooser() ? lineOf(state.ticketLine) : null;
  els.successScreen.classList.toggle("has-ticket", Boolean(state.ticket));
  els.ticketBox.hidden = !state.ticket;
  els.ticket.textContent = state.ticket || "";
  showText(els.ticketLine, line && lineName(line, state.lang));
  els.tvPreview.hidden = !state.ticket;
  els.tvTicket.textContent = state.ticket || "";
  els.tvName.textContent = state.tvName || "";
  if (state.position) {
    els.position.textContent = line
      ? t(state.position === 1 ? "kiosk.position_next_line" : "kiosk.position_line", {
          n: state.position,
          line: lineName(line, state.lang),
        })
      : state.position === 1
        ? t("kiosk.position_next")
        : t("kiosk.position", { n: state.position });
  }
  els.position.hidden = !state.position;
  const wait = state.estimate;
  showText(els.estimate, wait && t("kiosk.estimate", { low: wait.low_minutes, high: wait.high_minutes }));
  els.countdown.textContent = t("kiosk.resets_in", { n: state.countdown });
  renderStatusQr();
}

// Focus that sat on a control which has just disappeared goes somewhere sensible.
function keepFocus(target) {
  const active = document.activeElement;
  if (!active || active === document.body || active.closest("[hidden]") || active.disabled) {
    target.focus();
  }
}

// --- the camera ---------------------------------------------------------------------------

async function detectCamera() {
  if (!navigator.mediaDevices?.getUserMedia) return false; // e.g. not a secure context
  try {
    const permission = await navigator.permissions?.query({ name: "camera" });
    if (permission?.state === "denied") return false;
  } catch {
    // The browser cannot say: getUserMedia will.
  }
  try {
    const devices = await navigator.mediaDevices.enumerateDevices();
    return devices.some((device) => device.kind === "videoinput");
  } catch {
    return true;
  }
}

async function refreshCameraSupport() {
  const usable = await detectCamera();
  if (state.camera === "off" && usable !== cameraUsable) {
    cameraUsable = usable;
    render();
  }
}

function stopCamera() {
  const stream = state.stream;
  state.stream = null;
  state.camera = "off";
  state.capturing = false;
  if (stream) for (const track of stream.getTracks()) track.stop();
  els.video.pause();
  els.video.srcObject = null;
}

async function startCamera() {
  if (state.sending || state.camera !== "off" || !cameraUsable) return;
  const gen = generation;
  clearPhoto();
  state.photoError = null;
  state.photoStatus = "";
  state.key = null;
  state.camera = "starting";
  render(); // a keyboard user's focus waits for "Take photo" (keepFocus below)
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "user", width: { ideal: 1280 }, height: { ideal: 960 } },
      audio: false,
    });
  } catch {
    // Refused, missing or busy: the file input takes over (a tablet opens its camera app).
    if (gen !== generation || state.camera !== "starting") return;
    state.camera = "off";
    cameraUsable = false;
    render();
    keepFocus(els.fileInput);
    return;
  }
  if (gen !== generation || state.camera !== "starting") {
    for (const track of stream.getTracks()) track.stop(); // "No photo" or a reset came first
    return;
  }
  state.stream = stream;
  els.video.srcObject = stream;
  try {
    await els.video.play();
  } catch {
    // Autoplay of a muted inline video is allowed; a failure here shows in videoWidth.
  }
  if (gen !== generation || state.stream !== stream) return;
  state.camera = "live";
  render();
  keepFocus(els.takePhoto);
}

async function takePhoto() {
  const video = els.video;
  if (state.camera !== "live" || state.capturing || !video.videoWidth) return;
  // While the picture is made (toBlob takes a moment on a slow tablet), "Check in" waits
  // for it: a quick "Take photo", "Check in" sends the photo, not nothing.
  state.capturing = capture(video);
  render();
  await state.capturing;
}

async function capture(video) {
  const gen = generation;
  const scale = Math.min(1, PHOTO_MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
  canvas.width = 0; // let the pixels go
  if (gen !== generation) return;
  stopCamera(); // the photo is taken: the camera is not needed any more
  if (blob) {
    setPhoto(blob, true);
    state.photoStatus = "kiosk.photo_taken";
  }
  render();
  keepFocus(els.retake);
}

// --- the photo ----------------------------------------------------------------------------

function setPhoto(blob, viewable) {
  clearPhoto();
  const url = URL.createObjectURL(blob);
  state.photo = { blob, url, viewable };
  state.photoError = null;
  state.key = null;
  els.still.src = url;
}

function clearPhoto() {
  if (state.photo) URL.revokeObjectURL(state.photo.url);
  state.photo = null;
  els.still.removeAttribute("src");
  els.fileInput.value = "";
}

// A chosen picture is turned upright, made smaller and re-encoded as JPEG here, which also
// drops its metadata before it leaves the tablet. What the browser cannot read is sent as it
// is, and the server says what is wrong with it.
async function preparedPhoto(file) {
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, PHOTO_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
    canvas.width = 0;
    if (blob) return { blob, viewable: true };
  } catch {
    // Not something this browser can decode.
  }
  return { blob: file, viewable: false };
}

async function photoChosen() {
  const file = els.fileInput.files[0];
  if (!file || state.sending) return;
  const gen = generation;
  const { blob, viewable } = await preparedPhoto(file);
  if (gen !== generation) return;
  setPhoto(blob, viewable);
  state.photoStatus = "kiosk.photo_chosen";
  render();
}

function noPhoto() {
  if (state.sending) return;
  stopCamera();
  clearPhoto();
  state.photoError = null;
  state.photoStatus = "kiosk.photo_dropped";
  state.key = null;
  render();
  keepFocus(cameraUsable ? els.cameraStart : els.fileInput);
}

// --- checking in --------------------------------------------------------------------------

function newKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // crypto.randomUUID needs a secure context; a kiosk on plain http still gets a v4 UUID.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function retryDelay(attempt) {
  const base = RETRY_DELAYS_MS[attempt] ?? RETRY_MAX_DELAY_MS;
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

// One attempt: {status, body}, or a rejection when the network (or our timeout) failed.
async function post(name, answers, photo, key) {
  const body = new FormData();
  body.append("fname", name);
  for (const [field, value] of lineFields()) body.append(field, value);
  for (const [field, value] of answers) body.append(field, value);
  if (photo) body.append("image", photo, photo.type === "image/jpeg" ? "photo.jpg" : "photo");
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  try {
    const response = await fetch("/api/patients/", {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { Accept: "application/json", "Idempotency-Key": key },
      signal: controller.signal,
    });
    const raw = await response.text();
    let parsed = null;
    try {
      parsed = raw ? JSON.parse(raw) : null;
    } catch {
      // A proxy's HTML error page: the status says enough.
    }
    return { status: response.status, body: parsed };
  } finally {
    clearTimeout(timer);
  }
}

// Tries until the server answers (anything below 500, or a full disk: waiting will not free
// it) or GIVE_UP_AFTER_MS have passed.
async function send(name, answers, photo, key, gen) {
  const started = Date.now();
  for (let attempt = 0; ; attempt += 1) {
    let answer = null;
    try {
      answer = await post(name, answers, photo, key);
    } catch {
      answer = null;
    }
    if (gen !== generation) return { kind: "dropped" };
    if (answer && (answer.status < 500 || answer.body?.code === "disk_full")) {
      return { kind: "answer", ...answer };
    }
    if (Date.now() - started >= GIVE_UP_AFTER_MS) return { kind: "unreachable" };
    state.sendStatus = "kiosk.still_trying";
    render();
    await sleep(retryDelay(attempt));
    if (gen !== generation) return { kind: "dropped" };
  }
}

// What the server's error code (errors.py) means for the patient, in their language, and
// what they can change. The server's own text is for the log, never shown or matched.
const PROBLEMS = {
  line_unavailable: { line: true, key: "kiosk.error_line_unavailable" },
  priority_invalid: { key: "kiosk.error_priority" },
  photo_too_large: { photo: true, key: "kiosk.error_photo_too_large" },
  photo_not_an_image: { photo: true, key: "kiosk.error_photo_type" },
  photo_empty: { photo: true, key: "kiosk.error_photo_damaged" },
  photo_damaged: { photo: true, key: "kiosk.error_photo_damaged" },
  photo_too_many_pixels: { photo: true, key: "kiosk.error_photo_damaged" },
  photo_not_a_file: { photo: true, key: "kiosk.error_photo_type" },
  photo_filename_too_long: { photo: true, key: "kiosk.error_photo_type" },
  photo_extension_not_allowed: { photo: true, key: "kiosk.error_photo_type" },
  photo_type_not_allowed: { photo: true, key: "kiosk.error_photo_type" },
  photo_over_original_limit: { photo: true, key: "kiosk.error_photo_too_large" },
  name_required: { name: "kiosk.name_missing" },
  name_too_long: { name: "kiosk.error_name_too_long" },
  disk_full: { key: "kiosk.error_disk_full" },
};

function problem(status, body) {
  const known = PROBLEMS[body?.code];
  if (known) return known;
  // A proxy's own 413 or 403 carries no code: the status says enough.
  if (status === 413) return PROBLEMS.photo_too_large;
  if (status === 403) return { key: "kiosk.error_refused" };
  return { key: "kiosk.error_other", values: { message: t("common.error.generic") } };
}

async function submit(event) {
  event.preventDefault();
  if (state.sending || state.screen !== "form") return;
  const name = els.name.value.trim();
  state.message = null;
  state.photoError = null; // pressing again after a refused photo means "without a photo"
  if (!intake.loaded()) {
    // Pressed before the clinic's questions arrived: wait for them. If they came, the patient
    // answers them first; if they cannot be read, the name goes alone and the box decides.
    const gen = generation;
    await loadIntake();
    if (gen !== generation || state.sending) return;
    if (intake.hasQuestions()) {
      render();
      intake.focus(intake.values()[0][0]);
      return;
    }
  }
  state.intakeErrors = intake.check();
  const intakeMissing = Object.keys(state.intakeErrors);
  state.nameError = name ? null : "kiosk.name_missing";
  if (!name || intakeMissing.length) {
    if (intakeMissing.length) state.message = { key: "intake.error.summary", kind: "error" };
    render();
    if (!name) els.name.focus();
    else intake.focus(intakeMissing[0]);
    return;
  }
  const answers = intake.values();
  const gen = generation;
  state.sending = true; // from here on a second press does nothing
  state.sendStatus = null;
  render();
  if (state.capturing) await state.capturing; // the photo being taken goes with the name
  if (gen !== generation) return;
  if (state.camera !== "off") stopCamera(); // a preview without a photo taken sends no photo
  state.key ??= newKey();
  render();

  const outcome = await send(name, answers, state.photo?.blob ?? null, state.key, gen);
  if (outcome.kind === "dropped") return;
  state.sending = false;
  state.sendStatus = null;
  noteActivity();

  if (outcome.kind === "unreachable") {
    // The same key is used again if the patient presses again without changing anything.
    state.message = { key: "kiosk.gave_up", kind: "calm" };
    render();
    return;
  }
  if (outcome.status === 200 || outcome.status === 201) {
    succeeded(outcome.body?.position, outcome.body);
    return;
  }
  if (outcome.status === 401) {
    // This kiosk's session ended: the server says how (signed out by the administrator, or
    // the sign-in page).
    window.location.assign("/kiosk");
    return;
  }
  state.key = null; // refused: nothing was stored, the corrected form is a new submission
  if (answersRefused(outcome.body)) return;
  const found = problem(outcome.status, outcome.body);
  if (found.line) {
    lineClosed(found.key);
    return;
  }
  if (outcome.body?.code === "priority_invalid") refreshSettings(); // the question was turned off
  if (found.photo) {
    clearPhoto();
    state.photoStatus = "";
    state.photoError = { key: found.key };
  } else if (found.name) {
    state.nameError = found.name;
  } else {
    state.message = { key: found.key, values: found.values, kind: "error" };
  }
  render();
  if (found.name) els.name.focus();
}

// A 400 that names intake answers (codes: {field: code}): each one is explained beside its
// question; a refused name or photo alongside is explained as usual.
function answersRefused(body) {
  const codes = body && typeof body.codes === "object" && body.codes ? body.codes : {};
  const fields = Object.keys(codes).filter((key) => intake.knows(key));
  if (Object.keys(codes).some((key) => !intake.knows(key) && key !== "fname" && key !== "image")) {
    // The box asks something this page does not show: the form changed since it was read.
    loadIntake(true);
  }
  if (fields.length === 0) return false;
  state.intakeErrors = {};
  for (const key of fields) state.intakeErrors[key] = errorFor(intake.field(key), codes[key]);
  const nameProblem = codes.fname && PROBLEMS[codes.fname];
  if (nameProblem?.name) state.nameError = nameProblem.name;
  const photoProblem = codes.image && (PROBLEMS[codes.image] || PROBLEMS.photo_not_an_image);
  if (photoProblem?.photo) {
    clearPhoto();
    state.photoStatus = "";
    state.photoError = { key: photoProblem.key };
  }
  state.message = { key: "intake.error.summary", kind: "error" };
  render();
  if (nameProblem?.name) els.name.focus();
  else intake.focus(fields[0]);
  return true;
}

// The patient's own status link as a QR code, made by the box (/v/<token>/qr.svg, loaded
// from this kiosk's own origin whatever address the code points phones to).
function renderStatusQr() {
  const url = state.screen === "success" ? state.statusUrl : null;
  let src = "";
  if (url) {
    try {
      src = `${new URL(url, location.href).pathname}/qr.svg`;
    } catch {
      src = "";
    }
  }
  els.statusQr.hidden = !src;
  if (src) els.statusQr.dataset.statusUrl = url;
  else delete els.statusQr.dataset.statusUrl;
  if (els.statusQrCode.getAttribute("src") !== (src || null)) {
    if (src) els.statusQrCode.src = src;
    else els.statusQrCode.removeAttribute("src");
  }
}

// The estimated wait, read as the patient's own page reads it (/v/<token>/status, from this
// kiosk's origin); nothing is shown while the box cannot estimate it (too little known).
async function showEstimate(url) {
  const gen = generation;
  let estimate = null;
  try {
    const resp = await fetch(`${new URL(url, location.href).pathname}/status`, { cache: "no-store" });
    if (resp.ok) estimate = (await resp.json()).estimate ?? null;
  } catch {
    estimate = null; // offline: the QR still works once the phone reaches the box
  }
  if (gen !== generation || state.screen !== "success") return;
  state.estimate = estimate;
  render();
}

function succeeded(position, body = null) {
  clearPatientData(); // the form is gone from view; its contents go too, at once
  state.screen = "success";
  state.position = Number.isInteger(position) && position > 0 ? position : null;
  state.ticket = typeof body?.ticket === "string" ? body.ticket : null;
  state.ticketLine = typeof body?.line === "string" ? body.line : null;
  state.statusUrl = typeof body?.status_url === "string" ? body.status_url : null;
  if (state.ticket) showTvName(body.queue_entry_id);
  if (state.statusUrl) showEstimate(state.statusUrl);
  state.countdown = state.statusUrl ? QR_RESET_SECONDS : SUCCESS_RESET_SECONDS;
  clearTimeout(idleTimer);
  countdownTimer = setInterval(() => {
    state.countdown -= 1;
    if (state.countdown <= 0) reset();
    else render();
  }, 1000);
  render();
  els.thanks.focus();
}

// --- clearing for the next patient --------------------------------------------------------

function clearPatientData() {
  stopCamera();
  clearPhoto();
  els.form.reset();
  els.name.value = "";
  intake.clear();
  state.key = null;
}

function pristine() {
  return (
    state.screen === "form" &&
    !els.name.value &&
    intake.isEmpty() &&
    !state.photo &&
    state.camera === "off" &&
    state.lang === clinicLang &&
    !state.message &&
    !state.nameError &&
    !state.photoError &&
    Object.keys(state.intakeErrors).length === 0 &&
    !state.line &&
    state.priority === null &&
    !state.lineMessage
  );
}

function reset() {
  generation += 1;
  clearInterval(countdownTimer);
  clearTimeout(idleTimer);
  clearPatientData();
  const wasSuccess = state.screen === "success";
  state = freshPatient();
  setLanguage(clinicLang); // renders
  window.scrollTo(0, 0);
  if (wasSuccess || els.formScreen.contains(document.activeElement)) els.welcome.focus();
  if (!els.lineScreen.hidden) els.chooseLine.focus();
  refreshSettings();
  loadLines();
  loadIntake();
  refreshCameraSupport();
}

function noteActivity() {
  clearTimeout(idleTimer);
  if (state.screen === "form") idleTimer = setTimeout(idle, IDLE_RESET_MS);
}

function idle() {
  if (state.sending) {
    noteActivity(); // a check-in on its way is never thrown away
    return;
  }
  if (!pristine()) reset();
}

// The clinic's name and language may have changed since this page loaded (kiosks run for
// months): take the current ones between patients.
async function refreshSettings() {
  let fresh;
  try {
    fresh = await api("GET", "/api/settings/");
  } catch {
    return; // keep what we have; the next reset tries again
  }
  if (!fresh) return;
  const calm = pristine();
  settings = fresh;
  clinicName = fresh.clinic_name || clinicName;
  clinicLang = fresh.language in data.messages ? fresh.language : clinicLang;
  const who = fresh.display_photos ? "kiosk.privacy_who_display" : "kiosk.privacy_who_staff";
  els.privacyWho.dataset.i18n = who;
  els.privacyWho.textContent = t(who);
  if (calm && state.lang !== clinicLang) setLanguage(clinicLang);
  else render();
}

// --- lines and priority -------------------------------------------------------------------

function chooser() {
  return state.options.length > 1;
}

function lineOf(prefix) {
  return state.options.find((line) => line.prefix === prefix) || null;
}

// What a check-in sends beside the name: the line (always, when lines are known) and, with
// the priority question on, the answer (no answer counts as no).
function lineFields() {
  const fields = [];
  const line = state.line || (state.options.length === 1 ? state.options[0].prefix : null);
  if (line) fields.push(["line", line]);
  if (settings.priority_question) fields.push(["priority", state.priority || "normal"]);
  return fields;
}

function paintLine(node, line) {
  if (!line.colour) return;
  node.style.setProperty("--line-colour", line.colour);
  node.style.setProperty("--line-ink", inkOn(line.colour));
}

let drawnLines = ""; // what the choice buttons show now: redrawn only when that changes

function renderLines() {
  const drawn = JSON.stringify([state.lang, state.options]);
  if (drawn !== drawnLines) {
    drawnLines = drawn;
    els.lineChoices.replaceChildren(
      ...state.options.map((line) => {
        const button = el("button", "line-choice");
        button.type = "button";
        button.dataset.line = line.prefix;
        paintLine(button, line);
        const badge = el("span", "line-choice__badge");
        badge.setAttribute("aria-hidden", "true");
        badge.append(lineIcon(line.icon, "line-choice__icon"));
        button.append(badge, el("span", "line-choice__name", lineName(line, state.lang)));
        button.addEventListener("click", () => chooseLine(line.prefix));
        return button;
      }),
    );
  }
  showText(els.lineMessage, text(state.lineMessage));
  const line = state.line ? lineOf(state.line) : null;
  els.chosenLine.hidden = !line;
  if (line) {
    paintLine(els.chosenLine, line);
    els.chosenLineBadge.replaceChildren(lineIcon(line.icon));
    els.chosenLineName.textContent = lineName(line, state.lang);
  }
  els.changeLine.disabled = state.sending;
  els.priority.hidden = !settings.priority_question;
  for (const input of els.priorityInputs) {
    input.checked = input.value === state.priority;
    input.disabled = state.sending;
  }
}

function chooseLine(prefix) {
  if (state.sending) return;
  state.line = prefix;
  state.lineMessage = null;
  state.key = null; // another line is another submission
  render();
  els.name.focus();
}

function changeLine() {
  if (state.sending) return;
  const was = state.line;
  state.line = null;
  state.key = null;
  render();
  const button = [...els.lineChoices.children].find((node) => node.dataset.line === was);
  (button || els.chooseLine).focus();
}

// The chosen line closed (or was deactivated) meanwhile: choose again from the lines open now.
async function lineClosed(key) {
  const gen = generation;
  state.line = null;
  state.lineMessage = { key };
  render();
  els.chooseLine.focus();
  await loadLines(true);
  if (gen !== generation) return;
  if (!chooser()) {
    // One line left: the form is back; pressing again sends it there.
    state.message = { key, kind: "error" };
    render();
  }
}

async function loadLines(force = false) {
  const all = await fetchLines();
  if (!all) return; // keep what we have; the next reset tries again
  openLines = openOf(all);
  if (force || pristine()) {
    const wasChoosing = !els.lineScreen.hidden;
    state.options = openLines;
    render();
    if (!wasChoosing && !els.lineScreen.hidden && state.screen === "form") els.chooseLine.focus();
  }
}

// How the waiting-room TV will show this patient: the server's own display view of the name
// (display_names), read from the queue as the kiosk sees it.
async function showTvName(entryId) {
  const gen = generation;
  let queue;
  try {
    queue = await api("GET", "/api/queue/");
  } catch {
    return; // the ticket alone is shown
  }
  if (gen !== generation || !Array.isArray(queue)) return;
  const item = queue.find((entry) => entry.id === entryId);
  if (!item?.patient?.fname) return;
  state.tvName = item.patient.fname;
  render();
}

// The clinic's intake form: read at start and between patients (an admin may change it).
// A form that changed is rebuilt only while nobody is answering it.
let intakeLoading = null;

function loadIntake(force = false) {
  intakeLoading ??= (async () => {
    try {
      const form = await api("GET", "/api/intake-form/");
      if (form && Array.isArray(form.fields) && (force || !intake.loaded() || pristine())) {
        if (intake.setForm(form)) render();
      }
    } catch {
      // Keep what we have; the next reset tries again.
    } finally {
      intakeLoading = null;
    }
  })();
  return intakeLoading;
}

// --- wiring -------------------------------------------------------------------------------

els.form.addEventListener("submit", submit);
els.name.addEventListener("input", () => {
  state.key = null; // a changed name is a new submission
  if (state.nameError && els.name.value.trim()) {
    state.nameError = null;
    render();
  }
});
els.cameraStart.addEventListener("click", startCamera);
els.retake.addEventListener("click", startCamera);
els.takePhoto.addEventListener("click", takePhoto);
els.noPhoto.addEventListener("click", noPhoto);
els.fileInput.addEventListener("change", photoChosen);
els.done.addEventListener("click", reset);
els.changeLine.addEventListener("click", changeLine);
for (const input of els.priorityInputs) {
  input.addEventListener("change", () => {
    if (!input.checked || state.sending) return;
    state.priority = input.value;
    state.key = null; // another answer is another submission
    render();
  });
}
for (const button of els.langButtons) {
  button.addEventListener("click", () => {
    if (button.dataset.lang !== state.lang) setLanguage(button.dataset.lang);
  });
}
for (const type of ACTIVITY) {
  document.addEventListener(type, noteActivity, { capture: true, passive: true });
}
document.addEventListener("visibilitychange", () => {
  // A hidden page never keeps the camera on.
  if (document.hidden && state.camera !== "off") {
    stopCamera();
    render();
  }
});
navigator.mediaDevices?.addEventListener?.("devicechange", refreshCameraSupport);

// A live feed only to notice at once when the administrator signs this kiosk out (the feed
// closes with 4403 and QueueFeed asks for the page again) and to show it "online" on the
// admin page; its queue events are not shown, the display's own view keeps them short.
new QueueFeed({ onMessage: () => {} }, { view: "display" }).start();

setLanguage(clinicLang);
loadLines();
loadIntake();
refreshCameraSupport();
noteActivity();
