// The kiosk's intake questions, built from the form GET /api/intake-form/ describes: dates
// as date inputs (no later than today), choices as big button groups with radio semantics,
// yes/no as a two-button toggle, digits with a numeric keypad and their exact count, and the
// most sensitive numbers hidden while typed (with a "show" toggle). The page's own name box
// and photo section stay as they are: fname and image are never rendered here.
//
// The DOM holds the answers; clear() empties every one of them for the next patient.

import { el } from "./dom.js";

export const BUILT_IN = new Set(["fname", "image"]);
const MASKED = new Set(["ssn", "medicaid_no"]); // typed as a password, with a show toggle

export function labelIn(map, lang) {
  if (!map) return "";
  return map[lang] ?? map.en ?? Object.values(map)[0] ?? "";
}

// The tablet's calendar date, as an <input type=date> wants it. The box decides in the end
// (its own local date): this only keeps the picker from offering tomorrow.
export function localToday(now = new Date()) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

// The server's field codes (errors.py), as our own texts (some depend on the field's kind).
const PROBLEMS = {
  field_required: "missing",
  field_blank: "missing",
  choice_invalid: "intake.error.choose",
  field_too_long: "intake.error.too_long",
  field_not_text: "intake.error.other",
  field_invalid_character: "intake.error.other",
  date_in_future: "intake.error.future",
  format_invalid: "format",
};

export function errorFor(field, code) {
  const problem = PROBLEMS[code] ?? "intake.error.other";
  if (problem === "missing") {
    return { key: field.kind === "choice" ? "intake.error.choose" : "intake.error.required" };
  }
  if (problem === "format") {
    if (field.kind === "date") return { key: "intake.error.date" };
    if (field.kind === "digits" && field.digits) {
      return { key: "intake.error.digits", values: { n: field.digits } };
    }
    return { key: "intake.error.other" };
  }
  return { key: problem };
}

export class IntakeForm {
  // onEdit(key): the patient changed the answer to question `key`.
  constructor(container, onEdit) {
    this.container = container;
    this.onEdit = onEdit;
    this.form = null; // the last form the server described
    this.signature = "";
    this.questions = []; // [{field, root, label, input?, group?, buttons?, error, toggle?}]
  }

  loaded() {
    return this.form !== null;
  }

  hasQuestions() {
    return this.questions.length > 0;
  }

  asksForPhoto() {
    return !this.form || this.form.fields.some((field) => field.key === "image");
  }

  // A new description from the server: rebuilt only when it changed (answers are lost then,
  // so the kiosk calls this between patients).
  setForm(form) {
    const signature = JSON.stringify(form);
    if (signature === this.signature) return false;
    this.form = form;
    this.signature = signature;
    this.questions = form.fields.filter((f) => !BUILT_IN.has(f.key)).map((f) => this.build(f));
    this.container.replaceChildren(...this.questions.map((q) => q.root));
    this.container.hidden = this.questions.length === 0;
    return true;
  }

  build(field) {
    const id = `q-${field.key}`;
    const root = el("div", `question question--${field.kind}`);
    root.dataset.key = field.key;
    const error = el("p", "field-error");
    error.id = `${id}-error`;
    error.hidden = true;
    const q = { field, root, error, hint: null, optional: null };
    if (field.kind === "choice") {
      q.label = el("p", "kiosk-label question__label");
      q.label.id = `${id}-label`;
      q.group = el("div", `choices${field.yes_no ? " choices--yes-no" : ""}`);
      q.group.id = id;
      q.group.setAttribute("role", "radiogroup");
      q.group.setAttribute("aria-labelledby", q.label.id);
      q.group.setAttribute("aria-describedby", error.id);
      if (field.required) q.group.setAttribute("aria-required", "true");
      q.buttons = (field.choices || []).map((choice, index) => {
        const button = el("button", "choice");
        button.type = "button";
        button.setAttribute("role", "radio");
        button.setAttribute("aria-checked", "false");
        button.tabIndex = index === 0 ? 0 : -1;
        button.dataset.value = choice.value;
        button.addEventListener("click", () => this.choose(q, button));
        button.addEventListener("keydown", (event) => this.arrow(q, button, event));
        return button;
      });
      q.group.append(...q.buttons);
      root.append(q.label, q.group, error);
      return q;
    }
    q.label = el("label", "kiosk-label question__label");
    q.label.htmlFor = id;
    const input = el("input", "kiosk-input question__input");
    input.id = id;
    input.name = field.key;
    input.autocomplete = "off";
    input.setAttribute("autocorrect", "off");
    input.setAttribute("autocapitalize", "off");
    input.spellcheck = false;
    if (field.required) input.setAttribute("aria-required", "true");
    const described = [];
    if (field.kind === "date") {
      input.type = "date";
      q.hint = el("p", "kiosk-hint");
      q.hint.dataset.hint = "date";
    } else if (field.kind === "digits") {
      input.type = "text";
      input.inputMode = "numeric";
      if (field.digits) {
        input.maxLength = field.digits;
        input.pattern = `[0-9]{${field.digits}}`;
      }
      q.hint = el("p", "kiosk-hint");
      q.hint.dataset.hint = "digits";
    } else {
      input.type = "text";
      input.setAttribute("autocapitalize", "words");
      if (field.max_length) input.maxLength = field.max_length;
    }
    q.masked = field.sensitive && MASKED.has(field.key);
    if (q.masked) input.type = "password"; // hidden while typed; "Show" reveals it
    if (q.hint) {
      q.hint.id = `${id}-hint`;
      described.push(q.hint.id);
    }
    described.push(error.id);
    input.setAttribute("aria-describedby", described.join(" "));
    input.addEventListener("input", () => this.onEdit(field.key));
    q.input = input;
    root.append(q.label);
    if (q.hint) root.append(q.hint);
    if (q.masked) {
      const row = el("div", "question__masked");
      q.toggle = el("button", "button kiosk-button question__show");
      q.toggle.type = "button";
      q.toggle.setAttribute("aria-pressed", "false");
      q.toggle.setAttribute("aria-controls", id);
      q.toggle.addEventListener("click", () => {
        const shown = q.input.type === "password";
        q.input.type = shown ? "text" : "password";
        q.toggle.setAttribute("aria-pressed", String(shown));
        this.renderToggle(q);
      });
      row.append(input, q.toggle);
      root.append(row);
    } else {
      root.append(input);
    }
    root.append(error);
    return q;
  }

  choose(q, button) {
    if (q.group.getAttribute("aria-disabled") === "true") return;
    for (const other of q.buttons) {
      const on = other === button;
      other.setAttribute("aria-checked", String(on));
      other.tabIndex = on ? 0 : -1;
    }
    this.onEdit(q.field.key);
  }

  // Radio keys: the arrows move through the answers and pick the one they land on.
  arrow(q, button, event) {
    const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[event.key];
    if (!step) return;
    event.preventDefault();
    const index = q.buttons.indexOf(button);
    const next = q.buttons[(index + step + q.buttons.length) % q.buttons.length];
    next.focus();
    this.choose(q, next);
  }

  renderToggle(q) {
    const shown = q.input.type !== "password";
    const label = labelIn(q.field.label, this.lang);
    q.toggle.textContent = this.t(shown ? "intake.hide" : "intake.show");
    q.toggle.setAttribute("aria-label", this.t(shown ? "intake.hide_field" : "intake.show_field",
      { label }));
  }

  // errors: {key: {key: catalogKey, values}}; busy: while sending nothing can change.
  render(t, lang, errors, busy) {
    this.t = t;
    this.lang = lang;
    const today = localToday();
    for (const q of this.questions) {
      const { field } = q;
      q.label.replaceChildren(labelIn(field.label, lang));
      if (!field.required) {
        q.label.append(" ", el("span", "question__optional", t("intake.optional")));
      }
      if (q.hint) {
        q.hint.textContent = q.hint.dataset.hint === "date"
          ? t("intake.date_hint") : t("intake.digits_hint", { n: field.digits });
      }
      const problem = errors[field.key];
      q.error.textContent = problem ? t(problem.key, problem.values) : "";
      q.error.hidden = !problem;
      q.root.classList.toggle("question--invalid", Boolean(problem));
      if (q.group) {
        q.group.setAttribute("aria-invalid", String(Boolean(problem)));
        q.group.setAttribute("aria-disabled", String(busy));
        field.choices.forEach((choice, i) => {
          q.buttons[i].textContent = labelIn(choice.label, lang);
        });
      } else {
        q.input.readOnly = busy;
        q.input.setAttribute("aria-invalid", String(Boolean(problem)));
        if (field.kind === "date") q.input.max = today;
        if (q.toggle) {
          q.toggle.disabled = busy;
          this.renderToggle(q);
        }
      }
    }
  }

  value(q) {
    if (q.group) return q.buttons.find((b) => b.getAttribute("aria-checked") === "true")
      ?.dataset.value ?? "";
    return q.field.kind === "date" ? q.input.value : q.input.value.trim();
  }

  // Every question's answer, in the form's order ("" where there is none).
  values() {
    return this.questions.map((q) => [q.field.key, this.value(q)]);
  }

  // What the patient must fix before anything is sent: {key: {key, values}}.
  check() {
    const problems = {};
    for (const q of this.questions) {
      const { field } = q;
      const answer = this.value(q);
      if (field.kind === "date" && !answer && q.input.validity.badInput) {
        problems[field.key] = { key: "intake.error.date" };
      } else if (!answer) {
        if (field.required) problems[field.key] = errorFor(field, "field_required");
      } else if (field.kind === "digits" && field.digits
                 && !new RegExp(`^[0-9]{${field.digits}}$`).test(answer)) {
        problems[field.key] = errorFor(field, "format_invalid");
      }
    }
    return problems;
  }

  knows(key) {
    return this.questions.some((q) => q.field.key === key);
  }

  field(key) {
    return this.questions.find((q) => q.field.key === key)?.field ?? null;
  }

  focus(key) {
    const q = this.questions.find((item) => item.field.key === key);
    if (!q) return;
    const target = q.group
      ? q.buttons.find((b) => b.tabIndex === 0) || q.buttons[0]
      : q.input;
    target?.focus();
  }

  isEmpty() {
    return this.questions.every((q) => !this.value(q) && !(q.input?.validity.badInput));
  }

  clear() {
    for (const q of this.questions) {
      if (q.group) {
        q.buttons.forEach((b, i) => {
          b.setAttribute("aria-checked", "false");
          b.tabIndex = i === 0 ? 0 : -1;
        });
      } else {
        q.input.value = "";
        if (q.masked) {
          q.input.type = "password";
          q.toggle.setAttribute("aria-pressed", "false");
        }
      }
    }
  }
}
