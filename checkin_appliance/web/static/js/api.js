// JSON requests to our own API with the page's session cookie.

// `code` is the server's stable error code (errors.py): pages branch on it and show their
// own catalog's text; the message is the server's English, for the console only.
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || body?.detail || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code ?? null;
    this.body = body;
  }
}

export async function api(method, path, { json, body, headers = {}, signal } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers },
                 credentials: "same-origin", signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (response.status === 401) {
    // The session ended (deactivated, a new password, or signed out elsewhere): the page is
    // asked for again, and the server answers the sign-in page or, for a kiosk or display
    // the administrator signed out, a page that says so.
    window.location.assign(window.location.pathname);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// A file the server makes (a CSV export), saved under the name its Content-Disposition
// gives (else `fallbackName`) through a link the page clicks; returns that name. An error
// answer is thrown as an ApiError instead of being saved as a file; after a 401 the page is
// asked for again (as api() does) and null is returned. `json`: POSTed as the body (a
// backup's passphrase).
export async function downloadFile(path, fallbackName, { json } = {}) {
  const init = { credentials: "same-origin" };
  if (json !== undefined) {
    Object.assign(init, { method: "POST", body: JSON.stringify(json),
                          headers: { "Content-Type": "application/json" } });
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    window.location.assign(window.location.pathname);
    return null;
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new ApiError(response.status, body);
  }
  const blob = await response.blob();
  const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") ?? "");
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name ? name[1] : fallbackName;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000); // once the browser has it
  return link.download;
}
