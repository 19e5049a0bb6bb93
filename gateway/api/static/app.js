"use strict";
// Kartech Gateway web app: fleet board, alerts, machine pages, maintenance and billing, one's own account (password
// and API tokens); a wall-screen mode
// (?wall=1) and a phone layout. Plain modules, no build step; every request goes through auth.js.
import * as auth from "./auth.js";
import * as L from "./i18n.js";
import { lineChart, timeline } from "./chart.js";

const { t } = L;
const STATES = ["error", "offline", "paused", "maintenance", "running", "idle"]; // problems first
const SEVERITIES = ["critical", "high", "medium", "low"];
const HIDDEN_ALERT_STATES = new Set(["shelved", "suppressed"]);
const WALL = new URLSearchParams(location.search).has("wall");
const WALL_PAGE_S = 12;
const FLASH_S = 20;

const machines = new Map();
const alerts = new Map();
const flashed = new Set();
let site = null;
let socket = null;
let backoffMs = 1000;
let retryTimer = null;
let conn = "signedOut";
let view = { name: "", id: null, hours: 3, series: new Map(), redraw: null };
const filters = { lab: "", kind: "", state: "" };
let wallPage = 0;
let audio = null;

const $ = (id) => document.getElementById(id);
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}
const name = (text) => el("span", { class: "name", text });
const canAct = () => site && ["technician", "admin"].includes(site.caller.role);
const machineName = (id) => machines.get(id)?.name ?? id;
const sig = (m, s) => m.signals?.[s];
const num = (m, s) => (typeof sig(m, s)?.value === "number" ? sig(m, s).value : null);

// --- alerts ------------------------------------------------------------------------------------------------
function openAlerts(machine = null) {
  return [...alerts.values()]
    .filter((a) => !machine || a.machine === machine)
    .sort((a, b) => SEVERITIES.indexOf(a.severity) - SEVERITIES.indexOf(b.severity) || b.id - a.id);
}

function takeAlert(a, live) {
  if (a.closed || HIDDEN_ALERT_STATES.has(a.state)) alerts.delete(a.id);
  else alerts.set(a.id, a);
  if (WALL && a.severity === "critical" && !a.acknowledged && !a.closed && (live || !flashed.has(a.id))) flash(a);
}

function messageNode(a) {
  const planName = a.rule.startsWith("maintenance:") ? planNames.get(a.rule.slice(12)) : null;
  return el("span", { class: "msg" },
    L.alertMessage(a, machineName(a.machine), planName).map((p) => (typeof p === "string" ? p : name(p.name))));
}
const planNames = new Map();

function alertItem(a) {
  const item = el("li", { class: `alert sev-${a.severity}`, "data-alert": a.id },
    el("span", { class: "sev", text: t(a.severity) }),
    el("span", { class: "alert-body" }, messageNode(a),
      el("span", { class: "alert-meta" }, `${t(a.state)} · ${t("raised", { t: L.clock(a.raised) })}`,
        a.count > 1 ? ` · ×${L.number(a.count)}` : "")));
  if (canAct() && !WALL) {
    const tools = el("span", { class: "alert-tools" });
    const ackForm = () => actionForm(tools, "ack", async (note) => {
      takeAlert(await auth.post(`api/v1/alerts/${a.id}/ack`, { note }), false);
    });
    const shelveForm = () => actionForm(tools, "shelve", async (note, minutes) => {
      takeAlert(await auth.post(`api/v1/alerts/${a.id}/shelve`, { duration_min: minutes, note }), false);
    }, true);
    if (!a.acknowledged) tools.append(el("button", { type: "button", class: "act", text: t("ack"), onclick: ackForm }));
    tools.append(el("button", { type: "button", class: "act ghost", text: t("shelve"), onclick: shelveForm }));
    item.append(tools);
  }
  return item;
}

// an inline form with a note (and a duration for shelving) that replaces the buttons until sent or cancelled
function actionForm(holder, kind, send, withDuration = false) {
  const saved = [...holder.childNodes];
  const note = el("input", { type: "text", name: "note", maxlength: "2000", "aria-label": t("note"),
    placeholder: t("note") });
  const minutes = withDuration ? el("select", { name: "minutes", "aria-label": t("duration") },
    [15, 60, 240, 1440].map((m) => el("option", { value: m, text: m < 60 ? t("minutes", { n: m })
      : t("hours", { n: m / 60 }) }))) : null;
  const error = el("span", { class: "error", role: "alert" });
  const form = el("form", { class: `inline-form ${kind}-form` }, note, minutes,
    el("button", { type: "submit", class: "act", text: t(kind === "done" ? "markDone" : kind) }),
    el("button", { type: "button", class: "act ghost", text: t("cancel"),
      onclick: () => holder.replaceChildren(...saved) }), error);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await send(note.value.trim(), minutes ? Number(minutes.value) : undefined);
      holder.replaceChildren(...saved);
      render();
    } catch (err) {
      if (err instanceof auth.Unauthorized) return signOut(t("badToken"));
      error.textContent = err.message;
    }
  });
  holder.replaceChildren(form);
  note.focus();
}

function renderBanner() {
  const list = openAlerts();
  const banner = $("alerts");
  banner.hidden = site === null || site.caller.role === "partner";
  const counts = SEVERITIES.map((s) => [s, list.filter((a) => a.severity === s).length]).filter(([, n]) => n);
  $("alerts-counts").replaceChildren(...counts.map(([s, n]) =>
    el("span", { class: `sevcount sev-${s}`, text: `${t(s)}: ${L.number(n)}` })));
  $("alerts-counts").dataset.empty = String(!list.length);
  // low-severity alerts (maintenance coming due and the like) fold away behind one line; the rest are always shown
  const urgent = list.filter((a) => a.severity !== "low");
  const low = list.filter((a) => a.severity === "low");
  const items = (WALL ? list.slice(0, 2) : urgent).map(alertItem);
  if (!WALL && low.length) {
    const open = $("alerts-list").querySelector("details")?.open ?? false;
    items.push(el("li", { class: "low-alerts" }, el("details", { open },
      el("summary", { text: `${t("low")}: ${L.number(low.length)}` }),
      el("ul", { class: "alerts-list" }, low.map(alertItem)))));
  }
  $("alerts-list").replaceChildren(...(items.length ? items : [el("li", { class: "none", text: t("noAlerts") })]));
  banner.dataset.worst = list[0]?.severity ?? "none";
}

function flash(a) {
  flashed.add(a.id);
  const box = $("flash");
  box.replaceChildren(el("strong", { text: t("critical") }), messageNode(a));
  box.hidden = false;
  clearTimeout(box.timer);
  box.timer = setTimeout(() => { box.hidden = true; }, FLASH_S * 1000);
  if (localStorage.getItem("kartech.sound") === "on") beep();
}

function beep() {
  try {
    audio = audio || new AudioContext();
    for (let i = 0; i < 3; i += 1) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = 880;
      gain.gain.value = 0.2;
      osc.connect(gain).connect(audio.destination);
      const at = audio.currentTime + i * 0.35;
      osc.start(at);
      osc.stop(at + 0.2);
    }
  } catch { /* no audio device: the flash is enough */ }
}

// --- board -------------------------------------------------------------------------------------------------
function hasHighAlert(id) {
  return openAlerts(id).some((a) => a.severity === "critical" || a.severity === "high");
}
function rank(m) {
  if (m.state === "error" || hasHighAlert(m.id)) return 0;
  return STATES.indexOf(m.state);
}
function matches(m) {
  const st = filters.state;
  return (!filters.lab || m.lab === filters.lab) && (!filters.kind || m.kind === filters.kind)
    && (!st || (st === "error" ? m.state === "error" || hasHighAlert(m.id) : m.state === st));
}
const sorted = () => [...machines.values()].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));

function tileRow(m, spec) {
  const s = sig(m, spec.signal);
  if (!s) return null;
  const target = spec.target ? sig(m, spec.target) : null;
  let text;
  if (target && typeof s.value === "number" && typeof target.value === "number") {
    text = `${L.number(s.value, 0)}/${L.value(Math.round(target.value), s.unit)}`;
  } else text = L.value(s.value, s.unit);
  const q = s.quality || "good";
  return el("div", { class: `sig q-${q}`, "data-signal": spec.signal },
    el("dt", { text: L.signalName(spec.signal) }),
    el("dd", {}, L.isNameSignal(spec.signal) ? name(text) : el("span", { class: "v", text }),
      q === "good" ? null : el("span", { class: "qtag", text: t(q) })));
}

function jobInfo(m) {
  if (!m.job || !L.kindSpec(m.kind).job) return null;
  const progress = num(m, "progress_pct");
  const since = Date.parse(m.job.since);
  const elapsed = num(m, "elapsed_s") ?? (Number.isNaN(since) ? null : (Date.now() - since) / 1000);
  const remaining = num(m, "remaining_s");
  let finish = null;
  if (remaining !== null) finish = Date.parse(sig(m, "remaining_s").ts) + remaining * 1000;
  else if (progress > 0 && elapsed !== null) finish = Date.now() + (elapsed * (100 - progress)) / progress * 1000;
  return { file: m.job.name, progress, layer: num(m, "layer"), layers: num(m, "total_layers"), elapsed, finish };
}

function jobCard(m, big = false) {
  const j = jobInfo(m);
  if (!j) return null;
  const facts = [];
  if (j.layer !== null && j.layers) facts.push(el("span", { class: "layer", text: t("layer", { x: L.number(j.layer), y: L.number(j.layers) }) }));
  if (j.elapsed !== null) facts.push(el("span", { class: "elapsed", text: `${t("elapsed")} ${L.duration(j.elapsed)}` }));
  if (j.finish !== null) facts.push(el("span", { class: "finish", text: `${t("finish")} ` }, el("time", { class: "clock", datetime: new Date(j.finish).toISOString(), text: L.clock(new Date(j.finish)) })));
  return el("section", { class: big ? "job big" : "job", "aria-label": t("job") },
    el("div", { class: "job-file" }, el("span", { class: "label", text: `${t("file")} ` }), name(j.file)),
    j.progress === null ? null : el("div", { class: "job-progress" },
      el("progress", { max: "100", value: String(j.progress), "aria-label": t("progress") }),
      el("span", { class: "pct", text: `${L.number(j.progress, 0)}\u00a0%` })),
    el("div", { class: "job-facts" }, facts));
}

function tile(m) {
  const spec = L.kindSpec(m.kind);
  const own = openAlerts(m.id);
  const worst = own[0]?.severity;
  return el("article", { class: `tile s-${m.state}${worst ? " has-" + worst : ""}`, "data-id": m.id,
    "data-state": m.state, "data-rank": rank(m) },
  el("header", {},
    el("h3", {}, el("a", { class: "open name", href: `#/m/${encodeURIComponent(m.id)}`, text: m.name })),
    el("span", { class: `badge s-${m.state}`, text: L.stateName(m.state) })),
  el("p", { class: "meta", text: `${L.kindName(m.kind)} · ${L.labName(m.lab)}` }),
  el("dl", { class: "signals" }, spec.tile.map((s) => tileRow(m, s))),
  jobCard(m),
  own.length ? el("ul", { class: "tile-alerts" }, own.slice(0, 2).map((a) =>
    el("li", { class: `sev-${a.severity}` }, messageNode(a)))) : null,
  el("p", { class: "seen", "data-ago": m.last_seen || "", text: t("seen", { t: L.ago(m.last_seen) }) }));
}

function options(values, label, current) {
  return [el("option", { value: "", text: t("all") }),
    ...values.map(([v, text]) => el("option", { value: v, text, selected: v === current }))];
}

function renderBoard(root) {
  const list = sorted();
  const counts = STATES.map((s) => [s, list.filter((m) => m.state === s).length]);
  const labs = [...new Set(list.map((m) => m.lab).filter(Boolean))].sort();
  const kinds = [...new Set(list.map((m) => m.kind))].sort();
  const summary = el("ul", { class: "summary", "aria-label": t("summary") }, counts.map(([s, n]) =>
    el("li", {}, el("button", { type: "button", class: `chip s-${s}`, "aria-pressed": String(filters.state === s),
      "data-state": s, onclick: () => { filters.state = filters.state === s ? "" : s; render(); } },
    el("span", { class: "n", text: L.number(n) }), ` ${L.stateName(s)}`))));
  const pick = (key, label, values) => el("label", {}, el("span", { text: label }),
    el("select", { id: `f-${key}`, onchange: (ev) => { filters[key] = ev.target.value; render(); } },
      options(values, label, filters[key])));
  const bar = el("form", { class: "filters", role: "search", "aria-label": t("filters"),
    onsubmit: (ev) => ev.preventDefault() },
  pick("lab", t("lab"), labs.map((l) => [l, L.labName(l)])),
  pick("kind", t("kind"), kinds.map((k) => [k, L.kindName(k)])),
  pick("state", t("state"), STATES.map((s) => [s, L.stateName(s)])));
  const shown = list.filter(matches);
  let page = shown;
  let pager = null;
  if (WALL) {
    const per = wallCapacity();
    const pages = Math.max(1, Math.ceil(shown.length / per));
    wallPage %= pages;
    page = shown.slice(wallPage * per, wallPage * per + per);
    if (pages > 1) pager = el("p", { class: "pager", text: t("page", { n: wallPage + 1, total: pages }) });
  }
  const grid = el("div", { class: "grid", id: "grid" }, page.map(tile));
  root.replaceChildren(...[el("h2", { class: "visually-hidden", text: t("board") }), summary,
    WALL ? null : bar, el("p", { class: "count", id: "count", text: t("shown", { n: shown.length, total: list.length }) }),
    grid, pager].filter(Boolean));
}

function wallCapacity() {
  const cols = Math.max(1, Math.floor(window.innerWidth / 370));
  const rows = Math.max(1, Math.floor((window.innerHeight - 290) / 195));
  document.documentElement.style.setProperty("--wall-cols", String(cols));
  document.documentElement.style.setProperty("--wall-rows", String(rows));
  return cols * rows;
}

// --- machine page ------------------------------------------------------------------------------------------
function section(title, ...body) {
  return el("section", { class: "panel" }, el("h3", { text: title }), ...body);
}

function renderMachine(root, id) {
  const m = machines.get(id);
  if (!m) { root.replaceChildren(el("p", { text: t("loading") })); return; }
  const spec = L.kindSpec(m.kind);
  const order = [...spec.tile.flatMap((s) => [s.signal, s.target]).filter(Boolean),
    ...Object.keys(m.signals).sort()].filter((s, i, all) => all.indexOf(s) === i && m.signals[s]);
  const values = el("dl", { class: "values" }, order.map((s) => el("div", { class: `sig q-${m.signals[s].quality}`,
    "data-signal": s }, el("dt", { text: L.signalName(s) }),
  el("dd", {}, L.isNameSignal(s) ? name(String(m.signals[s].value)) : L.value(m.signals[s].value, m.signals[s].unit)))));
  const hours = el("div", { class: "hours", role: "group", "aria-label": t("charts") }, [1, 3, 12].map((h) =>
    el("button", { type: "button", class: "act ghost", "aria-pressed": String(view.hours === h),
      text: t("lastHours", { n: h }), onclick: () => { view.hours = h; view.series.clear(); render(); } })));
  root.replaceChildren(...[
    el("p", {}, el("a", { href: "#/", class: "back", text: `← ${t("back")}` })),
    el("header", { class: `machine-head s-${m.state}` },
      el("h2", {}, name(m.name)), el("span", { class: `badge s-${m.state}`, text: L.stateName(m.state) }),
      el("p", { class: "meta" }, `${L.kindName(m.kind)} · ${L.labName(m.lab)} · ${t("since", { t: L.clock(m.state_since) })} · `,
        el("span", { "data-ago": m.last_seen || "", text: t("seen", { t: L.ago(m.last_seen) }) }))),
    openAlerts(id).length ? el("ul", { class: "alerts-list" }, openAlerts(id).map(alertItem)) : null,
    jobCard(m, true),
    el("div", { class: "columns" },
      section(t("values"), values),
      section(t("charts"), hours, el("div", { id: "charts", class: "charts" }),
        el("h4", { text: t("timeline") }), el("div", { id: "timeline" }))),
    el("div", { class: "columns" },
      section(t("jobs"), el("div", { id: "jobs", text: t("loading") })),
      section(t("mStatus"), el("div", { id: "m-tasks", text: t("loading") }),
        el("h4", { text: t("mHistory") }), el("div", { id: "m-log" }))),
    site.caller.role === "admin" ? section(t("usageMonth"), el("div", { id: "m-usage", text: t("loading") })) : null,
  ].filter(Boolean));
  loadCharts(m, spec);
  loadTimelineAndJobs(m);
  loadTasks(m.id);
  if (site.caller.role === "admin") loadMachineUsage(m.id);
}

function windowMs() { const now = Date.now(); return [now - view.hours * 3600000, now]; }

async function loadCharts(m, spec) {
  const wanted = (spec.chart.length ? spec.chart : Object.keys(m.signals)
    .filter((s) => typeof m.signals[s].value === "number").slice(0, 2)).filter((s) => m.signals[s]);
  const [t0, t1] = windowMs();
  for (const s of wanted) {
    if (view.series.has(s)) continue;
    view.series.set(s, []);
    try {
      const q = new URLSearchParams({ signal: s, start: new Date(t0).toISOString(), limit: "3000" });
      const body = await auth.api(`api/v1/machines/${encodeURIComponent(m.id)}/history?${q}`);
      view.series.set(s, body.points.filter((p) => typeof p.value === "number" && p.quality !== "bad")
        .map((p) => ({ x: Date.parse(p.ts), y: p.value })));
    } catch (err) { if (err instanceof auth.Unauthorized) return signOut(t("badToken")); }
  }
  view.redraw = () => drawCharts(m.id, wanted);
  view.redraw();
  void t1;
}

function drawCharts(id, wanted) {
  const box = $("charts");
  const m = machines.get(id);
  if (!box || !m) return;
  box.replaceChildren(...wanted.map((s) => el("figure", { class: "chart-box", "data-signal": s },
    el("figcaption", { text: `${L.signalName(s)}, ${L.unitName(m.signals[s]?.unit) || "—"}` }),
    lineChart(view.series.get(s) || [], { window: windowMs(), label: L.signalName(s),
      unitText: L.unitName(m.signals[s]?.unit) }))));
}

async function loadTimelineAndJobs(m) {
  const [t0, t1] = windowMs();
  const q = (type, from) => new URLSearchParams({ machine: m.id, type, from: new Date(from).toISOString(),
    limit: "500" });
  try {
    const states = await auth.api(`api/v1/events?${q("state", t0)}`);
    const ends = await auth.api(`api/v1/events?${q("job_end", t1 - 24 * 3600000)}`);
    const changes = states.slice().reverse();
    const spans = [];
    let from = t0;
    let state = changes[0]?.data.from ?? m.state;
    for (const e of changes) {
      spans.push({ from, to: Date.parse(e.ts), state });
      from = Date.parse(e.ts);
      state = e.data.to;
    }
    spans.push({ from, to: t1, state: m.state });
    $("timeline")?.replaceChildren(timeline(spans, { window: [t0, t1] }));
    const rows = ends.map((e) => el("tr", {},
      el("td", {}, name(e.data.job)), el("td", { text: L.clock(e.ts) }),
      el("td", { text: L.duration(e.data.duration_s ?? 0) }), el("td", { text: t(e.data.result) })));
    const running = m.job ? el("tr", { class: "running" }, el("td", {}, name(m.job.name)),
      el("td", { text: t("since", { t: L.clock(m.job.since) }) }), el("td", { text: L.duration((Date.now() - Date.parse(m.job.since)) / 1000) }),
      el("td", { text: L.stateName(m.state) })) : null;
    $("jobs")?.replaceChildren(rows.length || running ? el("table", { class: "table" },
      el("thead", {}, el("tr", {}, [t("file"), t("finish"), t("duration"), t("result")].map((h) => el("th", { text: h })))),
      el("tbody", {}, running, rows)) : el("p", { text: t("noJobs") }));
  } catch (err) {
    if (err instanceof auth.Unauthorized) return signOut(t("badToken"));
    $("jobs")?.replaceChildren(el("p", { class: "error", text: err.message }));
  }
}

function limitsText(task) {
  return Object.entries(task.limits).map(([k, v]) =>
    `${t(k)} ${L.number(v.used, 1)} / ${L.number(v.limit, 0)}`).join(" · ");
}

function taskRow(task, withMachine) {
  const tools = el("td", { class: "tools" });
  if (canAct()) {
    tools.append(el("button", { type: "button", class: "act", text: t("markDone"), onclick: () =>
      actionForm(tools, "done", async (note) => {
        await auth.post(`api/v1/maintenance/${encodeURIComponent(task.machine)}/${encodeURIComponent(task.task)}/done`, { note });
        $("toast").textContent = t("done_ok");
      }) }));
  }
  return el("tr", { class: `task st-${task.status}`, "data-task": `${task.machine}/${task.task}` },
    withMachine ? el("td", {}, el("a", { class: "name", href: `#/m/${encodeURIComponent(task.machine)}`, text: machineName(task.machine) })) : null,
    el("td", {}, name(task.name)),
    el("td", {}, el("span", { class: `status st-${task.status}`, text: t(task.status) })),
    el("td", { class: "use" }, el("progress", { max: "100", value: String(Math.min(100, task.pct)), "aria-label": t("used") }),
      el("span", { text: ` ${L.number(task.pct, 0)}\u00a0% · ${limitsText(task)}` })),
    el("td", { class: "last-done" }, task.last_done ? `${L.dateTime(task.last_done.at)} · ${t("by")} ` : t("nobody"),
      task.last_done ? name(task.last_done.by) : null), tools);
}

function tasksTable(tasks, withMachine) {
  if (!tasks.length) return el("p", { text: t("noTasks") });
  const heads = [withMachine ? t("machine") : null, t("task"), t("status"), t("used"), t("lastDone"), ""].filter((h) => h !== null);
  return el("table", { class: "table tasks" }, el("thead", {}, el("tr", {}, heads.map((h) => el("th", { text: h })))),
    el("tbody", {}, tasks.map((x) => taskRow(x, withMachine))));
}

async function loadTasks(id) {
  try {
    const tasks = await auth.api(`api/v1/maintenance?machine=${encodeURIComponent(id)}`);
    const log = await auth.api(`api/v1/maintenance/log?machine=${encodeURIComponent(id)}&limit=20`);
    $("m-tasks")?.replaceChildren(tasksTable(tasks, false));
    $("m-log")?.replaceChildren(log.length ? el("ul", { class: "log" }, log.map((e) => el("li", {},
      `${L.dateTime(e.at)} · `, name(planNames.get(e.task) ?? e.task), ` · ${t("by")} `, name(e.by),
      e.note ? el("q", { text: e.note }) : null))) : el("p", { text: t("noData") }));
  } catch (err) {
    if (err instanceof auth.Unauthorized) return signOut(t("badToken"));
    $("m-tasks")?.replaceChildren(el("p", { class: "error", text: err.message }));
  }
}

const usageSum = (entries) => entries.reduce((acc, e) => acc + e.sign * e.running_s, 0);

async function loadMachineUsage(id) {
  try {
    const body = await auth.api(`api/v1/usage?month=${L.siteMonth()}`);
    const mine = body.entries.filter((e) => e.machine === id);
    $("m-usage")?.replaceChildren(el("p", { class: "big-number" }, `${t("runningTime")}: ${L.duration(usageSum(mine))} · ${t("entries")}: ${L.number(mine.length)}`));
  } catch (err) {
    $("m-usage")?.replaceChildren(el("p", { text: err.status === 403 ? t("noAccess") : err.message }));
  }
}

// --- maintenance and billing pages --------------------------------------------------------------------------
async function renderMaintenance(root) {
  root.replaceChildren(el("h2", { text: t("maintenance") }), el("div", { id: "tasks", text: t("loading") }));
  try {
    const tasks = (await auth.api("api/v1/maintenance")).sort((a, b) =>
      ["due", "due_soon", "ok"].indexOf(a.status) - ["due", "due_soon", "ok"].indexOf(b.status) || b.pct - a.pct);
    for (const x of tasks) planNames.set(x.task, x.name);
    const due = tasks.filter((x) => x.status === "due").length;
    const soon = tasks.filter((x) => x.status === "due_soon").length;
    $("tasks")?.replaceChildren(el("p", { class: "summary-line" },
      el("span", { class: "status st-due", text: t("due_n", { n: L.number(due) }) }), " ",
      el("span", { class: "status st-due_soon", text: t("due_soon_n", { n: L.number(soon) }) })),
    tasksTable(tasks, true));
  } catch (err) {
    if (err instanceof auth.Unauthorized) return signOut(t("badToken"));
    $("tasks")?.replaceChildren(el("p", { class: "error", text: err.message }));
  }
}

async function renderBilling(root) {
  root.replaceChildren(el("h2", { text: t("billing") }), el("div", { id: "bill", text: t("loading") }));
  const caller = site.caller;
  try {
    const partners = caller.role === "partner" ? [{ id: caller.partner, name: caller.partner_name || caller.partner }]
      : await auth.api("api/v1/partners");
    const months = [0, 1, 2].map((n) => L.siteMonth(new Date(), n));
    const docLang = L.getLang();
    const statements = el("table", { class: "table statements" },
      el("thead", {}, el("tr", {}, [t("partner"), t("month"), t("download")].map((h) => el("th", { text: h })))),
      el("tbody", {}, partners.flatMap((p) => months.map((mo) => el("tr", { "data-partner": p.id, "data-month": mo },
        el("td", {}, name(p.name)), el("td", { text: L.monthName(mo) }),
        el("td", { class: "tools" }, ["csv", "html", "pdf"].map((f) => el("button", { type: "button", class: "act ghost",
          "aria-label": `${t("download")} ${f.toUpperCase()} ${L.monthName(mo)}`,
          text: f.toUpperCase(), onclick: () => auth.download(
            `api/v1/billing/statements/${encodeURIComponent(p.id)}/${mo}?format=${f}&lang=${docLang}`,
            `${p.id}-${mo}.${f}`).catch((err) => { $("toast").textContent = err.message; }) }))))))));
    const usage = await auth.api(`api/v1/usage?month=${months[0]}`);
    const names = new Map(partners.map((p) => [p.id, p.name]));
    const rows = usage.entries.map((e) => el("tr", { "data-partner": e.partner ?? "" },
      el("td", {}, name(machineName(e.machine))), el("td", {}, name(e.job ?? "—")),
      el("td", {}, e.partner ? name(names.get(e.partner) ?? e.partner) : t("unattributed")),
      el("td", { text: L.dateTime(e.start) }), el("td", { text: L.duration(e.sign * e.running_s) })));
    $("bill")?.replaceChildren(
      section(t("statements"), statements),
      section(`${t("usage")}: ${L.monthName(months[0])}`, rows.length ? el("table", { class: "table usage" },
        el("thead", {}, el("tr", {}, [t("machine"), t("job"), t("partner"), t("start"), t("runningTime")].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows)) : el("p", { text: t("noUsage") })));
  } catch (err) {
    if (err instanceof auth.Unauthorized) return signOut(t("badToken"));
    $("bill")?.replaceChildren(el("p", { class: "error", text: err.status === 403 ? t("noAccess") : err.message }));
  }
}

// --- own account: password and API tokens -------------------------------------------------------------------
// people with a password (not a kiosk) signed in with the session; the API asks for the session to change them
const ownAccount = () => site && auth.viaSession() && ["admin", "technician", "partner"].includes(site.caller.role);
const ROLE_KEYS = { admin: "roleAdmin", technician: "roleTechnician", partner: "rolePartner" };

function field(id, label, attrs) {
  return el("p", { class: "field" }, el("label", { for: id, text: label }), el("input", { id, name: id, ...attrs }));
}

function passwordError(err) {
  return { 400: t("wrongPassword"), 422: t("weakPassword"), 429: t("tooManyTries") }[err.status] ?? err.message;
}

function renderAccount(root) {
  if (!ownAccount()) { root.replaceChildren(el("p", { text: t("noAccess") })); return; }
  // a re-render (a reconnect, the alerts) keeps what is being typed; a language switch redraws
  if (root.querySelector("#password-form") && root.dataset.lang === L.getLang()) return;
  root.dataset.lang = L.getLang();
  const caller = site.caller;
  const pwError = el("p", { class: "error", role: "alert", id: "password-error" });
  const secret = { type: "password", maxlength: "1024", required: true };
  const pwForm = el("form", { id: "password-form", class: "stack-form", novalidate: true },
    el("input", { type: "text", name: "username", autocomplete: "username", value: caller.name, hidden: true }),
    field("pw-current", t("currentPassword"), { ...secret, autocomplete: "current-password" }),
    field("pw-new", t("newPassword"), { ...secret, autocomplete: "new-password", "aria-describedby": "pw-hint" }),
    field("pw-repeat", t("repeatPassword"), { ...secret, autocomplete: "new-password" }),
    el("p", { id: "pw-hint", class: "hint", text: t("passwordHint") }),
    el("button", { type: "submit", class: "act", text: t("changePassword") }), pwError);
  pwForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    pwError.textContent = "";
    const [current, next, again] = ["pw-current", "pw-new", "pw-repeat"].map((id) => $(id).value);
    if (next !== again) { pwError.textContent = t("passwordsDiffer"); return; }
    try {
      await auth.post("api/v1/me/password", { current, new: next });
      pwForm.reset();
      $("toast").textContent = t("passwordChanged");
    } catch (err) {
      if (err instanceof auth.Unauthorized) return signOut(t("badToken"));
      pwError.textContent = passwordError(err);
    }
  });

  const tkError = el("span", { class: "error", role: "alert" });
  const label = el("input", { id: "token-label", type: "text", name: "label", maxlength: "200",
    "aria-label": t("tokenLabel"), placeholder: t("tokenLabel") });
  const days = el("select", { id: "token-days", name: "days", "aria-label": t("validFor") },
    [30, 90, 365].map((n) => el("option", { value: n, text: t("daysN", { n: L.number(n) }), selected: n === 90 })));
  const tkForm = el("form", { id: "token-form", class: "inline-form" }, label, days,
    el("button", { type: "submit", class: "act", text: t("makeToken") }), tkError);
  tkForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    tkError.textContent = "";
    try {
      const made = await auth.post("api/v1/me/tokens", { label: label.value.trim(), days: Number(days.value) });
      label.value = "";
      showSecret(made.token);
      loadOwnTokens();
    } catch (err) {
      if (err instanceof auth.Unauthorized) return signOut(t("badToken"));
      tkError.textContent = err.message;
    }
  });

  root.replaceChildren(
    el("h2", { text: t("account") }),
    el("p", { class: "meta account-meta" }, name(caller.name), ` · ${t(ROLE_KEYS[caller.role])}`,
      caller.partner ? " · " : null, caller.partner ? name(caller.partner_name || caller.partner) : null),
    el("div", { class: "columns" },
      section(t("changePassword"), pwForm),
      section(t("apiTokens"), el("p", { class: "hint", text: t("tokensHint") }), tkForm,
        el("div", { id: "new-token", class: "new-token", hidden: true }),
        el("div", { id: "tokens", text: t("loading") }))));
  loadOwnTokens();
}

// a token just made: shown once, with a copy button (the clipboard API needs a secure context; else select+copy)
function showSecret(value) {
  const box = $("new-token");
  const input = el("input", { id: "new-token-value", type: "text", readonly: true, value, class: "mono",
    "aria-label": t("apiTokens"), spellcheck: "false" });
  const copy = async () => {
    try { await navigator.clipboard.writeText(value); } catch { input.select(); document.execCommand("copy"); }
    $("toast").textContent = t("copied");
  };
  box.replaceChildren(el("p", { text: t("tokenOnce") }),
    el("div", { class: "inline-form" }, input, el("button", { type: "button", class: "act", id: "copy-token",
      text: t("copy"), onclick: copy })));
  box.hidden = false;
  input.select();
}

function tokenState(x) {
  if (x.revoked) return "tokenRevoked";
  return Date.parse(x.expires) <= Date.now() ? "tokenExpired" : "tokenActive";
}

function tokenRow(x) {
  const state = tokenState(x);
  const tools = el("td", { class: "tools" });
  const ask = () => tools.replaceChildren(
    el("button", { type: "button", class: "act", text: t("confirm"), onclick: async () => {
      try {
        await auth.api(`api/v1/me/tokens/${x.id}`, { method: "DELETE" });
        loadOwnTokens();
      } catch (err) {
        if (err instanceof auth.Unauthorized) return signOut(t("badToken"));
        $("toast").textContent = err.message;
      }
    } }),
    el("button", { type: "button", class: "act ghost", text: t("cancel"), onclick: () => tools.replaceChildren(revoke) }));
  const revoke = el("button", { type: "button", class: "act ghost", text: t("revoke"), onclick: ask });
  if (state === "tokenActive") tools.append(revoke);
  return el("tr", { class: `token ${state}`, "data-token": x.id },
    el("td", {}, name(x.label || "—")), el("td", { text: L.date(x.created) }), el("td", { text: L.date(x.expires) }),
    el("td", { text: x.last_used ? L.date(x.last_used) : t("notUsed") }),
    el("td", { class: "token-state", text: t(state) }), tools);
}

async function loadOwnTokens() {
  try {
    const list = (await auth.api("api/v1/me/tokens")).reverse(); // newest first
    $("tokens")?.replaceChildren(list.length ? el("table", { class: "table tokens" },
      el("thead", {}, el("tr", {}, [t("tokenLabel"), t("created"), t("expires"), t("lastUsed"), t("status"), ""]
        .map((h) => el("th", { text: h })))),
      el("tbody", {}, list.map(tokenRow))) : el("p", { text: t("noTokens") }));
  } catch (err) {
    if (err instanceof auth.Unauthorized) return signOut(t("badToken"));
    $("tokens")?.replaceChildren(el("p", { class: "error", text: err.message }));
  }
}

// --- routing and rendering ---------------------------------------------------------------------------------
function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  if (WALL) return { name: "board" };
  if (hash.startsWith("m/")) return { name: "machine", id: decodeURIComponent(hash.slice(2)) };
  if (["maintenance", "billing", "account"].includes(hash)) return { name: hash };
  return { name: site?.caller.role === "partner" ? "billing" : "board" };
}

function render() {
  if (!site) return;
  const r = route();
  if (r.name !== view.name || r.id !== view.id) {
    view = { name: r.name, id: r.id ?? null, hours: view.hours, series: new Map(), redraw: null };
    window.scrollTo(0, 0);
  }
  for (const a of document.querySelectorAll("nav a[data-view]")) {
    if (a.dataset.view === r.name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  renderBanner();
  const root = $("view");
  if (r.name === "board") renderBoard(root);
  else if (r.name === "machine") renderMachine(root, r.id);
  else if (r.name === "maintenance") renderMaintenance(root);
  else if (r.name === "account") renderAccount(root);
  else renderBilling(root);
}

// only what changed when a machine reports: its tile (or page) and the counts
function onMachine(m) {
  const isNew = !machines.has(m.id);
  machines.set(m.id, m);
  if (view.name === "board") {
    const old = document.querySelector(`.tile[data-id="${CSS.escape(m.id)}"]`);
    if (isNew || !old || (WALL && rank(m) !== Number(old.dataset.rank ?? rank(m)))) return renderBoard($("view"));
    if (old.contains(document.activeElement)) return; // keep the keyboard focus where it is
    if (!matches(m)) return renderBoard($("view"));
    old.replaceWith(tile(m));
    for (const s of STATES) {
      const n = document.querySelector(`.chip[data-state="${s}"] .n`);
      if (n) n.textContent = L.number([...machines.values()].filter((x) => x.state === s).length);
    }
  } else if (view.name === "machine" && view.id === m.id) {
    for (const [s, pts] of view.series) {
      const v = m.signals[s];
      if (v && typeof v.value === "number" && v.quality !== "bad") pts.push({ x: Date.parse(v.ts), y: v.value });
    }
    const focusInside = $("view").contains(document.activeElement) && document.activeElement !== document.body;
    if (!focusInside) {
      const head = document.querySelector(".machine-head");
      if (head) {
        head.className = `machine-head s-${m.state}`;
        head.querySelector(".badge").textContent = L.stateName(m.state);
      }
      for (const dd of document.querySelectorAll(".values .sig")) {
        const v = m.signals[dd.dataset.signal];
        if (v && !L.isNameSignal(dd.dataset.signal)) dd.querySelector("dd").textContent = L.value(v.value, v.unit);
      }
      const job = document.querySelector(".job.big");
      const fresh = jobCard(m, true);
      if (job && fresh) job.replaceWith(fresh);
    }
    view.redraw?.();
  }
}

function setConn(state) {
  conn = state;
  $("conn").dataset.conn = state;
  document.body.dataset.conn = state;
  $("conn-text").textContent = t(state);
}

function connect() {
  clearTimeout(retryTimer);
  const url = new URL("api/v1/live", location.href);
  url.search = "";
  url.hash = "";
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  setConn(conn === "reconnecting" ? "reconnecting" : "connecting");
  const ws = new WebSocket(url);
  socket = ws;
  ws.onopen = () => { const hello = auth.liveHello(); if (hello) ws.send(hello); };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "snapshot") {
      backoffMs = 1000;
      machines.clear();
      for (const m of msg.machines) machines.set(m.id, m);
      setConn("live");
      loadAlerts().then(render);
    } else if (msg.type === "machine") onMachine(msg.machine);
    else if (msg.type === "alert") {
      takeAlert(msg.alert, msg.transition === "raised");
      renderBanner();
      if (view.name === "board") renderBoard($("view"));
    } else if (msg.type === "event" && view.name === "machine" && msg.event.machine === view.id
      && ["state", "job_end", "job_start"].includes(msg.event.type)) {
      const m = machines.get(view.id);
      if (m) loadTimelineAndJobs(m);
    }
  };
  ws.onclose = (ev) => {
    if (socket !== ws) return;
    socket = null;
    if (ev.code === 4401) return signOut(t("badToken"));
    setConn("reconnecting");
    retryTimer = setTimeout(connect, backoffMs + Math.random() * 500);
    backoffMs = Math.min(backoffMs * 2, 30000);
  };
}

async function loadAlerts() {
  try {
    const [open, tasks] = await Promise.all([auth.api("api/v1/alerts?state=open"), auth.api("api/v1/maintenance")]);
    for (const x of tasks) planNames.set(x.task, x.name);
    alerts.clear();
    for (const a of open) takeAlert(a, false);
  } catch (err) {
    if (err instanceof auth.Unauthorized) signOut(t("badToken"));
  }
}

async function start() {
  // with accounts the gateway sent the browser to /login unless it had a session; without, a token is asked for
  if (!auth.token() && !(await fetch("api/v1/health").then((r) => r.json()).catch(() => ({}))).accounts) {
    return signOut();
  }
  try {
    await auth.whoAmI();
    site = await auth.api("api/v1/site");
  } catch (err) {
    if (err instanceof auth.Unauthorized) return signOut(auth.token() ? t("badToken") : "");
    $("login-error").textContent = err.message;
    return;
  }
  L.setZone(site.timezone);
  $("site-name").textContent = site.name;
  document.title = `${site.name} · Kartech`;
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  const partner = site.caller.role === "partner";
  for (const a of document.querySelectorAll("nav a[data-view]")) {
    const v = a.dataset.view;
    a.hidden = v === "account" ? !ownAccount() : partner ? v !== "billing" : v === "billing" && site.caller.role !== "admin";
  }
  tick();
  if (partner) { setConn("live"); render(); } else connect();
}

async function signOut(message = "", { server = false } = {}) {
  const session = auth.viaSession();
  if (server) await auth.logout();
  auth.forgetToken();
  if (session) return auth.toLogin(); // signed out, or the session ended: sign in again, then come back
  clearTimeout(retryTimer);
  if (socket) { const ws = socket; socket = null; ws.close(); }
  site = null;
  machines.clear();
  alerts.clear();
  setConn("signedOut");
  $("app").hidden = true;
  $("alerts").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token").focus();
}

function tick() {
  if (site) {
    $("zone-clock").textContent = L.clock(new Date());
    $("zone-name").textContent = `${t("zone")}, ${L.zoneOffset()}`;
    $("zone").title = site.timezone;
  }
  for (const node of document.querySelectorAll("[data-ago]")) {
    if (node.dataset.ago) node.textContent = t("seen", { t: L.ago(node.dataset.ago) });
  }
}

function applyLang() {
  L.setLang(L.getLang());
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-label]")) node.setAttribute("aria-label", t(node.dataset.i18nLabel));
  for (const b of document.querySelectorAll("[data-lang]")) b.setAttribute("aria-pressed", String(b.dataset.lang === L.getLang()));
  $("sound").setAttribute("aria-pressed", String(localStorage.getItem("kartech.sound") === "on"));
  setConn(conn);
  tick();
  render();
}

async function init() {
  if (WALL) document.body.classList.add("wall");
  $("sound").hidden = !WALL;
  for (const b of document.querySelectorAll("[data-lang]")) {
    b.addEventListener("click", () => { L.setLang(b.dataset.lang); applyLang(); });
  }
  $("sound").addEventListener("click", () => {
    const on = localStorage.getItem("kartech.sound") !== "on";
    localStorage.setItem("kartech.sound", on ? "on" : "off");
    $("sound").setAttribute("aria-pressed", String(on));
    if (on) beep(); // the click lets the browser start audio; the beep says it works
  });
  $("flash").addEventListener("click", () => { $("flash").hidden = true; });
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") $("flash").hidden = true; });
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    auth.saveToken($("token").value.trim());
    $("token").value = "";
    $("login-error").textContent = "";
    start();
  });
  $("logout").addEventListener("click", () => signOut("", { server: true }));
  window.addEventListener("hashchange", render);
  window.addEventListener("resize", () => { if (WALL) render(); else view.redraw?.(); });
  fetch("api/v1/health").then((r) => r.json()).then((h) => { if (!site) $("site-name").textContent = h.site_name; })
    .catch(() => {});
  L.setVocab(await (await fetch("static/kinds.json")).json());
  applyLang();
  setInterval(tick, 1000);
  if (WALL) setInterval(() => { wallPage += 1; if (view.name === "board") renderBoard($("view")); }, WALL_PAGE_S * 1000);
  start();
}

init();
