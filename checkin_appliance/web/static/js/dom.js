// The few DOM steps every page script takes: find an element, make one, show a text.

export const byId = (id) => document.getElementById(id);

// Text goes in as text, never as HTML: much of what the pages show is typed by patients.
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// A translated sentence with a patient's name in it ("Next: {name}") as nodes, the name in
// a <bdi>, so a right-to-left name never reorders the words around it. Translate with
// NAME_SLOT as the name (the server refuses names with NUL), then split there.
export const NAME_SLOT = "\u0000";

export function withIsolatedName(text, name) {
  const [before, after = ""] = text.split(NAME_SLOT);
  return [before, el("bdi", undefined, name), after];
}

// Decoration that screen readers skip, because the text beside it says the same.
export function decorative(node) {
  node.setAttribute("aria-hidden", "true");
  return node;
}

export function photo(src, className) {
  const img = el("img", className);
  img.src = src;
  img.alt = ""; // the name is right beside it
  img.decoding = "async";
  return img;
}

// A message element that is there only while it has something to say.
export function showText(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}
