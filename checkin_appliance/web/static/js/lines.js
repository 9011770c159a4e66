// Lines (services) as the patient-facing pages show them: the list from GET /api/lines/, a
// line's name in the page's language and its icon, drawn here from our own paths (lines.py
// ICONS names them; pages are offline, so nothing is fetched from elsewhere).

import { api } from "./api.js";
import { el } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

// Each icon: stroked paths on a 24×24 grid, drawn in currentColor.
const ICON_PATHS = {
  doctor: ["M7 3v5a5 5 0 0 0 10 0V3", "M12 13v3a4 4 0 0 0 8 0v-2", "M20 14a1.6 1.6 0 1 0 0-.1"],
  nurse: ["M5 21v-3a7 7 0 0 1 14 0v3", "M12 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8z", "M12 14v5M9.5 16.5h5"],
  lab: ["M9 3h6", "M10 3v6l-5 9a2 2 0 0 0 2 3h10a2 2 0 0 0 2-3l-5-9V3", "M7.5 15h9"],
  pharmacy: ["M4 12l8-8a4.2 4.2 0 0 1 6 6l-8 8a4.2 4.2 0 0 1-6-6z", "M8 8l8 8"],
  dentist: ["M7 3c-2.5 0-4 2-4 4.5 0 3 1.5 5 2 8s1 5.5 2.5 5.5 2-5 4.5-5 3 5 4.5 5 2-2.5 2.5-5.5 2-5 2-8C21 5 19.5 3 17 3c-2 0-3 1-5 1S9 3 7 3z"],
  eye: ["M2 12s3.6-7 10-7 10 7 10 7-3.6 7-10 7S2 12 2 12z", "M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6z"],
  child: ["M12 9a3 3 0 1 0 0-6 3 3 0 0 0 0 6z", "M6 11l6 1 6-1", "M12 12v4l-3 5M12 16l3 5"],
  xray: ["M4 3h16v18H4z", "M12 6v12", "M8 9h8M8.5 12h7M9 15h6"],
  vaccine: ["M18 2l4 4", "M20 4l-9 9", "M15 5l4 4", "M16 8l-9 9H4v-3l9-9", "M4 20l3-3", "M10 9l2 2M8 11l2 2"],
  heart: ["M12 20s-8-4.7-8-11a4.5 4.5 0 0 1 8-2.8A4.5 4.5 0 0 1 20 9c0 6.3-8 11-8 11z"],
  info: ["M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z", "M12 11v6", "M12 7.5v.5"],
  desk: ["M3 10h18", "M5 10v10M19 10v10", "M9 6h6v4H9z", "M12 3v3"],
};
const FALLBACK_ICON = "info";

export function lineIcon(name, className) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  if (className) svg.setAttribute("class", className);
  for (const d of ICON_PATHS[name] || ICON_PATHS[FALLBACK_ICON]) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", "2");
    path.setAttribute("stroke-linecap", "round");
    path.setAttribute("stroke-linejoin", "round");
    svg.append(path);
  }
  return svg;
}

// The name in the page's language, else English, else any, else the prefix.
export function lineName(line, lang) {
  const names = line?.name || {};
  return names[lang] || names.en || Object.values(names)[0] || line?.prefix || "";
}

// All lines, in the admin's order (position, then id); null when they cannot be read.
// The lines in the admin's order (position, then id), anything that is not a line left out.
export function orderedLines(lines) {
  return lines
    .filter((line) => line && typeof line.prefix === "string")
    .sort((a, b) => (a.position ?? 0) - (b.position ?? 0) || (a.id ?? 0) - (b.id ?? 0));
}

export async function fetchLines() {
  let lines;
  try {
    lines = await api("GET", "/api/lines/");
  } catch {
    return null;
  }
  return Array.isArray(lines) ? orderedLines(lines) : null;
}

// Black or white text, whichever reads better on a line's colour (#rrggbb).
export function inkOn(colour) {
  const match = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(colour || "");
  if (!match) return "#ffffff";
  const [r, g, b] = match.slice(1).map((hex) => {
    const c = parseInt(hex, 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return luminance > 0.179 ? "#111111" : "#ffffff";
}

// A line's chip for the staff pages: its colour, icon, prefix and name. `line` may be
// unknown (not loaded yet, or gone): then the prefix alone.
export function lineChip(line, prefix, lang) {
  const chip = el("span", "line-chip");
  chip.dataset.line = prefix || "";
  if (line) {
    chip.style.setProperty("--line-colour", line.colour);
    chip.style.setProperty("--line-ink", inkOn(line.colour));
    if (line.icon) chip.append(lineIcon(line.icon, "line-chip__icon"));
  }
  chip.append(el("span", "line-chip__prefix", prefix || ""));
  if (line) chip.append(el("span", "line-chip__name", lineName(line, lang)));
  return chip;
}
