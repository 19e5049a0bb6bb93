// Every place where the web page proves who it is, in one module.
// People sign in at /login: the session cookie (HttpOnly) goes with every request (credentials: "same-origin"), and
// unsafe requests carry the session's CSRF token, which GET /api/v1/me hands out (`whoAmI`). A gateway without
// accounts (no business store) serves the page without a login; it then asks for a site-file token, kept in
// localStorage and sent as a bearer header.
const TOKEN_KEY = "kartech.token";
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

export class Unauthorized extends Error {}

export const token = () => localStorage.getItem(TOKEN_KEY) || "";
export const saveToken = (value) => localStorage.setItem(TOKEN_KEY, value);
export const forgetToken = () => localStorage.removeItem(TOKEN_KEY);

let me = null; // the caller as GET /api/v1/me answered: name, role, partner, via (session | token | site-token)

export async function whoAmI() {
  me = await api("api/v1/me");
  return me;
}

// the session's own way out: the login page, which comes back here afterwards
export const viaSession = () => Boolean(me && me.via === "session");
export const toLogin = () => location.assign(
  `/login?next=${encodeURIComponent(location.pathname + location.search + location.hash)}`);
export async function logout() {
  if (viaSession()) { try { await post("api/v1/logout", {}); } catch { /* the session is gone anyway */ } }
  me = null;
}

export function authorised(init = {}) {
  const method = (init.method || "GET").toUpperCase();
  const headers = new Headers(init.headers || {});
  if (token()) headers.set("Authorization", `Bearer ${token()}`);
  if (me && me.csrf_token && !SAFE.has(method)) headers.set("X-CSRF-Token", me.csrf_token);
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
