// What every page's script starts from: the inert JSON the server put in #page-data,
// and the message catalog for the page's language.

export function pageData() {
  return JSON.parse(document.getElementById("page-data").textContent);
}

export function translator(data, lang = data.lang) {
  const texts = data.messages[lang] || data.messages.en;
  return (key, values = {}) => {
    const text = texts[key] ?? data.messages.en[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
  };
}

// Elements carry data-i18n="key"; re-run after a language switch.
export function applyTexts(t, root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll("[data-i18n-aria-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
  }
}

export function minutesSince(iso, now = Date.now()) {
  return Math.max(0, Math.floor((now - Date.parse(iso)) / 60000));
}

export function clockText(lang, date = new Date()) {
  return date.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
}
