// Every place where the web page proves who it is, in one module.
// Today: a bearer token typed once and kept in localStorage. With a session cookie (set by a login page), requests
// carry the cookie (credentials: "same-origin") and unsafe ones an X-CSRF-Token header copied from the
// `kartech_csrf` cookie; both work side by side, so the page keeps working whichever the gateway offers.
const TOKEN_KEY = "kartech.token";
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

export class Unauthorized extends Error {}

export const token = () => localStorage.getItem(TOKEN_KEY) || "";
export const saveToken = (value) => localStorage.setItem(TOKEN_KEY, value);
export const forgetToken = () => localStorage.removeItem(TOKEN_KEY);

function csrfCookie() {
  const hit = document.cookie.split("; ").find((c) => c.startsWith("kartech_csrf="));
  return hit ? decodeURIComponent(hit.slice("kartech_csrf=".length)) : "";
}

export function authorised(init = {}) {
  const method = (init.method || "GET").toUpperCase();
  const headers = new Headers(init.headers || {});
  if (token()) headers.set("Authorization", `Bearer ${token()}`);
  const csrf = csrfCookie();
  if (csrf && !SAFE.has(method)) headers.set("X-CSRF-Token", csrf);
  return { ...init, method, headers, credentials: "same-origin" };
}

// fetch with the page's credentials; 401 throws Unauthorized, other errors throw with the API's `detail`
export async function api(path, init = {}) {
  const res = await fetch(path, authorised(init));
  if (res.status === 401) throw new Unauthorized(res.statusText);
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail || detail; } catch { /* not JSON */ }
    const err = new Error(detail);
    err.status = res.status;
    throw err;
  }
  const type = res.headers.get("content-type") || "";
  return type.includes("json") ? res.json() : res;
}

export const post = (path, body) => api(path, { method: "POST", headers: { "Content-Type": "application/json" },
  body: JSON.stringify(body) });

// whether the page may hold credentials at all: a token, or the readable CSRF cookie of a session (the session
// cookie itself is HttpOnly); without either, asking the API would only be answered 401
export const mayBeSignedIn = () => Boolean(token() || csrfCookie());

// the first frame of the live WebSocket: the token (a browser cannot set headers on a WebSocket); none with a cookie
export const liveHello = () => (token() ? JSON.stringify({ type: "auth", token: token() }) : null);

// a document (statement) the browser saves: fetched with the credentials, then handed over as a blob
export async function download(path, filename) {
  const res = await api(path);
  const url = URL.createObjectURL(await res.blob());
  const a = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
