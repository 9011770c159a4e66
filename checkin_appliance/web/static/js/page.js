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

// The staff pages' title and top bar (_staff_header.html) in the current language.
export function renderStaffHeader(t, { lang, title, clinicName, label }) {
  document.documentElement.lang = lang;
  document.title = `${t(title)} · ${clinicName}`;
  for (const node of document.querySelectorAll("[data-clinic-name]")) node.textContent = clinicName;
  const signedInAs = document.querySelector(".topbar__label");
  if (signedInAs) signedInAs.textContent = t("common.signed_in_as", { label });
  const signOut = document.querySelector(".topbar__user button");
  if (signOut) signOut.textContent = t("common.sign_out");
}

export function clockText(lang, date = new Date()) {
  return date.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
}
