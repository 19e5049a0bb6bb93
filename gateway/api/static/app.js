"use strict";
// Kartech Gateway live page: token login, live machine cards over the WebSocket, history chart on <canvas>.
(() => {
  const STATES = ["offline", "idle", "running", "paused", "error", "maintenance"];
  const UNITS = { degC: "°C", degF: "°F", percent: "%", pct: "%" };
  const I18N = {
    ru: {
      welcome: "Қош келдіңіз! Добро пожаловать в лабораторный хаб Kartech",
      loginTitle: "Вход", token: "Токен доступа", signIn: "Войти", signOut: "Выйти",
      badToken: "Неверный токен", machines: "Оборудование", search: "Поиск", state: "Состояние",
      allStates: "Все состояния", searchHint: "название, тип, лаборатория", noLab: "Без лаборатории",
      signedOut: "Не подключено", connecting: "Подключение…", live: "Онлайн", reconnecting: "Переподключение…",
      offline: "Нет связи", idle: "Простой", running: "Работает", paused: "Пауза", error: "Ошибка",
      maintenance: "Обслуживание", since: "с {t}", lastSeen: "данные {t}", never: "нет данных",
      s: "{n} с назад", m: "{n} мин назад", h: "{n} ч назад", d: "{n} дн назад", yes: "да", no: "нет",
      stale: "устарело", bad: "сбой", uncertain: "неточно", shown: "{n} из {total}", close: "Закрыть",
      chartSignal: "График", noNumeric: "Нет числовых сигналов", noHistory: "Нет данных за последний час",
      loading: "Загрузка…", lastHour: "последний час, {n} точек", driver: "Драйвер", lab: "Лаборатория",
      connected: "Связь", id: "ID",
    },
    en: {
      welcome: "Қош келдіңіз! Welcome to the Kartech lab hub",
      loginTitle: "Sign in", token: "Access token", signIn: "Sign in", signOut: "Sign out",
      badToken: "Invalid token", machines: "Machines", search: "Search", state: "State",
      allStates: "All states", searchHint: "name, kind, lab", noLab: "No lab",
      signedOut: "Not connected", connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…",
      offline: "Offline", idle: "Idle", running: "Running", paused: "Paused", error: "Error",
      maintenance: "Maintenance", since: "since {t}", lastSeen: "seen {t}", never: "no data yet",
      s: "{n} s ago", m: "{n} min ago", h: "{n} h ago", d: "{n} d ago", yes: "yes", no: "no",
      stale: "stale", bad: "bad", uncertain: "uncertain", shown: "{n} of {total}", close: "Close",
      chartSignal: "Chart", noNumeric: "No numeric signals", noHistory: "No data in the last hour",
      loading: "Loading…", lastHour: "last hour, {n} points", driver: "Driver", lab: "Lab",
      connected: "Link", id: "ID",
    },
    kk: {
      welcome: "Kartech зертханалық хабына қош келдіңіз!",
      loginTitle: "Кіру", token: "Қол жеткізу токені", signIn: "Кіру", signOut: "Шығу",
      badToken: "Токен жарамсыз", machines: "Жабдық", search: "Іздеу", state: "Күйі",
      allStates: "Барлық күйлер", searchHint: "атауы, түрі, зертхана", noLab: "Зертханасыз",
      signedOut: "Қосылмаған", connecting: "Қосылуда…", live: "Онлайн", reconnecting: "Қайта қосылуда…",
      offline: "Байланыс жоқ", idle: "Бос тұр", running: "Жұмыс істеп тұр", paused: "Кідіртілді",
      error: "Қате", maintenance: "Қызмет көрсету", since: "{t} бастап", lastSeen: "дерек {t}",
      never: "дерек жоқ", s: "{n} с бұрын", m: "{n} мин бұрын", h: "{n} сағ бұрын", d: "{n} күн бұрын",
      yes: "иә", no: "жоқ", stale: "ескірген", bad: "ақау", uncertain: "күмәнді", shown: "{n} / {total}",
      close: "Жабу", chartSignal: "График", noNumeric: "Сандық сигналдар жоқ",
      noHistory: "Соңғы сағатта дерек жоқ", loading: "Жүктелуде…", lastHour: "соңғы сағат, {n} нүкте",
      driver: "Драйвер", lab: "Зертхана", connected: "Байланыс", id: "ID",
    },
  };
  const LOCALES = { ru: "ru-RU", en: "en-GB", kk: "kk-KZ" };

  const $ = (id) => document.getElementById(id);
  const machines = new Map();
  const cards = new Map();
  let lang = I18N[localStorage.getItem("kartech.lang")] ? localStorage.getItem("kartech.lang") : "ru";
  let token = localStorage.getItem("kartech.token") || "";
  let socket = null;
  let backoffMs = 1000;
  let retryTimer = null;
  let conn = "signedOut";
  let selected = null;
  let chart = { machine: null, signal: null, points: [], unit: null };

  const t = (key, vars = {}) =>
    (I18N[lang][key] ?? I18N.ru[key] ?? key).replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ""));

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  // --- formatting -------------------------------------------------------------------------------------------
  function formatValue(value, unit) {
    if (value === null || value === undefined) return "—";
    if (typeof value === "boolean") return value ? t("yes") : t("no");
    if (typeof value !== "number") return String(value);
    const abs = Math.abs(value);
    const digits = Number.isInteger(value) ? 0 : abs >= 100 ? 1 : abs >= 1 ? 2 : 3;
    const text = new Intl.NumberFormat(LOCALES[lang], { maximumFractionDigits: digits }).format(value);
    const u = unit ? UNITS[unit] ?? unit : "";
    return u ? (u === "%" ? text + u : `${text} ${u}`) : text;
  }

  function ago(iso) {
    if (!iso) return t("never");
    const secs = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (secs < 60) return t("s", { n: secs });
    if (secs < 3600) return t("m", { n: Math.floor(secs / 60) });
    if (secs < 86400) return t("h", { n: Math.floor(secs / 3600) });
    return t("d", { n: Math.floor(secs / 86400) });
  }

  function clock(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    const sameDay = d.toDateString() === new Date().toDateString();
    const opts = sameDay ? { hour: "2-digit", minute: "2-digit" }
      : { day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" };
    return d.toLocaleString(LOCALES[lang], opts);
  }

  // --- cards ------------------------------------------------------------------------------------------------
  function signalRow(name, s) {
    const q = s.quality || "good";
    const tag = q === "good" ? null : el("span", { class: "qtag", text: t(q) });
    return el("div", { class: `sig q-${q}` },
      el("dt", { text: name }), el("dd", {}, el("span", { text: formatValue(s.value, s.unit) }), tag));
  }

  function fillCard(card, m) {
    card.className = `card s-${m.state}`;
    card.dataset.state = m.state;
    card.replaceChildren(
      el("div", { class: "card-head" },
        el("h3", {}, el("button", { type: "button", class: "open", text: m.name })),
        el("span", { class: `badge s-${m.state}`, text: t(m.state) })),
      el("p", { class: "kind", text: `${m.kind} · ${m.id}` }),
      el("p", { class: "times" },
        m.state_since ? el("span", { title: m.state_since, text: t("since", { t: clock(m.state_since) }) })
          : el("span"),
        el("span", { class: "ago", "data-ago": m.last_seen || "",
                     text: m.last_seen ? t("lastSeen", { t: ago(m.last_seen) }) : t("never") })),
      el("dl", { class: "signals" },
        ...Object.entries(m.signals).filter(([n]) => n !== "state").map(([n, s]) => signalRow(n, s))));
  }

  function matches(m) {
    const want = $("state-filter").value;
    const q = $("q").value.trim().toLowerCase();
    const hay = [m.name, m.id, m.kind, m.lab || "", t(m.state)].join(" ").toLowerCase();
    return (!want || m.state === want) && (!q || hay.includes(q));
  }

  function renderAll() {
    const byLab = new Map();
    const sorted = [...machines.values()].sort((a, b) =>
      (a.lab || "\uffff").localeCompare(b.lab || "\uffff") || a.name.localeCompare(b.name));
    for (const m of sorted) {
      const lab = m.lab || "";
      if (!byLab.has(lab)) byLab.set(lab, []);
      byLab.get(lab).push(m);
    }
    cards.clear();
    const sections = [];
    for (const [lab, list] of byLab) {
      const grid = el("div", { class: "grid" });
      for (const m of list) {
        const card = el("article", { "data-id": m.id });
        fillCard(card, m);
        cards.set(m.id, card);
        grid.append(card);
      }
      sections.push(el("section", { class: "lab", "data-lab": lab },
        el("h2", { text: lab || t("noLab") }), grid));
    }
    $("labs").replaceChildren(...sections);
    applyFilter();
  }

  function applyFilter() {
    let shown = 0;
    for (const [id, card] of cards) {
      const ok = matches(machines.get(id));
      card.hidden = !ok;
      if (ok) shown += 1;
    }
    for (const section of $("labs").children) {
      section.hidden = ![...section.querySelectorAll(".card")].some((c) => !c.hidden);
    }
    $("count").textContent = t("shown", { n: shown, total: machines.size });
  }

  function onMachine(m) {
    const isNew = !machines.has(m.id);
    machines.set(m.id, m);
    if (isNew) return renderAll();
    fillCard(cards.get(m.id), m);
    applyFilter();
    if (selected === m.id) {
      renderDetailMeta();
      const s = m.signals[chart.signal];
      const last = chart.points[chart.points.length - 1];
      if (chart.machine === m.id && s && typeof s.value === "number" && (!last || s.ts > last.ts)) {
        chart.points.push({ ts: s.ts, value: s.value, quality: s.quality });
        drawChart();
      }
    }
  }

  function tickTimes() {
    for (const span of document.querySelectorAll("[data-ago]")) {
      if (span.dataset.ago) span.textContent = t("lastSeen", { t: ago(span.dataset.ago) });
    }
  }

  // --- connection -------------------------------------------------------------------------------------------
  function setConn(state) {
    conn = state;
    $("conn").dataset.conn = state;
    document.body.dataset.conn = state;
    $("conn-text").textContent = t(state);
  }

  function connect() {
    clearTimeout(retryTimer);
    const url = new URL("api/v1/live", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    setConn(conn === "reconnecting" ? "reconnecting" : "connecting");
    const ws = new WebSocket(url);
    socket = ws;
    // the token goes in the first message, never in the URL (URLs end up in logs)
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token }));
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "snapshot") {
        backoffMs = 1000;
        machines.clear();
        for (const m of msg.machines) machines.set(m.id, m);
        setConn("live");
        showBoard();
        renderAll();
      } else if (msg.type === "machine") {
        onMachine(msg.machine);
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

  function showBoard() {
    $("login").hidden = true;
    $("board").hidden = false;
    $("logout").hidden = false;
  }

  function signOut(message = "") {
    token = "";
    localStorage.removeItem("kartech.token");
    clearTimeout(retryTimer);
    if (socket) {
      const ws = socket;
      socket = null;
      ws.close();
    }
    machines.clear();
    closeDetail();
    setConn("signedOut");
    $("board").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message;
    $("token").focus();
  }

  async function api(path) {
    const res = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
    if (res.status === 401) {
      signOut(t("badToken"));
      throw new Error(t("badToken"));
    }
    const body = await res.json();
    if (!res.ok) throw new Error(body.detail || res.statusText);
    return body;
  }

  // --- detail panel and chart -------------------------------------------------------------------------------
  function renderDetailMeta() {
    const m = machines.get(selected);
    $("detail-title").textContent = m.name;
    const rows = [
      [t("state"), t(m.state) + " · " + t("since", { t: clock(m.state_since) })],
      [t("id"), m.id], [t("driver"), m.driver], [t("lab"), m.lab || t("noLab")],
      [t("connected"), m.connected ? t("yes") : t("no")],
    ];
    $("detail-meta").replaceChildren(...rows.map(([k, v]) => el("div", {}, el("dt", { text: k }),
      el("dd", { text: v }))));
  }

  function openDetail(id) {
    selected = id;
    const m = machines.get(id);
    renderDetailMeta();
    const numeric = Object.keys(m.signals).filter((n) => typeof m.signals[n].value === "number");
    const pick = $("chart-signal");
    pick.replaceChildren(...numeric.map((n) => el("option", { value: n, text: n })));
    pick.disabled = numeric.length === 0;
    $("detail").hidden = false;
    $("detail-close").focus();
    if (numeric.length) loadChart(id, numeric[0]);
    else {
      chart = { machine: id, signal: null, points: [], unit: null };
      drawChart();
      $("chart-note").textContent = t("noNumeric");
    }
  }

  function closeDetail() {
    const wasOpen = selected;
    selected = null;
    $("detail").hidden = true;
    if (wasOpen && cards.has(wasOpen)) cards.get(wasOpen).querySelector(".open").focus();
  }

  async function loadChart(id, signal) {
    chart = { machine: id, signal, points: [], unit: machines.get(id).signals[signal]?.unit ?? null };
    $("chart-note").textContent = t("loading");
    drawChart();
    try {
      const q = new URLSearchParams({ signal, limit: "2000" });
      const body = await api(`api/v1/machines/${encodeURIComponent(id)}/history?${q}`);
      if (chart.machine !== id || chart.signal !== signal) return;
      chart.points = body.points.filter((p) => typeof p.value === "number");
      $("chart-note").textContent = chart.points.length ? t("lastHour", { n: chart.points.length })
        : t("noHistory");
    } catch (err) {
      $("chart-note").textContent = err.message;
    }
    drawChart();
  }

  function drawChart() {
    const canvas = $("chart");
    const css = getComputedStyle(document.documentElement);
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 300;
    const h = canvas.clientHeight || 180;
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    const pts = chart.points.map((p) => ({ x: Date.parse(p.ts), y: p.value, bad: p.quality === "bad" }));
    canvas.setAttribute("aria-label", `${chart.signal || ""}: ${$("chart-note").textContent}`);
    if (pts.length === 0) return;
    const pad = { l: 8, r: 8, t: 18, b: 18 };
    const xs = pts.map((p) => p.x);
    const ys = pts.map((p) => p.y);
    let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    if (x0 === x1) { x0 -= 1000; x1 += 1000; }
    if (y0 === y1) { y0 -= 1; y1 += 1; }
    const px = (x) => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
    const py = (y) => pad.t + (1 - (y - y0) / (y1 - y0)) * (h - pad.t - pad.b);
    g.strokeStyle = css.getPropertyValue("--grid");
    g.lineWidth = 1;
    g.beginPath();
    for (const y of [y0, y1]) { g.moveTo(pad.l, py(y)); g.lineTo(w - pad.r, py(y)); }
    g.stroke();
    g.strokeStyle = css.getPropertyValue("--accent");
    g.lineWidth = 2;
    g.beginPath();
    let penDown = false;
    for (const p of pts) {
      if (p.bad) { penDown = false; continue; }
      if (penDown) g.lineTo(px(p.x), py(p.y)); else g.moveTo(px(p.x), py(p.y));
      penDown = true;
    }
    g.stroke();
    g.fillStyle = css.getPropertyValue("--muted");
    g.font = "12px system-ui, sans-serif";
    g.fillText(formatValue(y1, chart.unit), pad.l, 12);
    g.fillText(formatValue(y0, chart.unit), pad.l, h - 4);
    const last = pts[pts.length - 1];
    const label = formatValue(last.y, chart.unit);
    g.fillStyle = css.getPropertyValue("--accent");
    g.fillText(label, w - pad.r - g.measureText(label).width, 12);
  }

  // --- language and wiring ----------------------------------------------------------------------------------
  function applyLang() {
    document.documentElement.lang = lang;
    localStorage.setItem("kartech.lang", lang);
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll("[data-i18n-label]")) {
      node.setAttribute("aria-label", t(node.dataset.i18nLabel));
    }
    for (const b of document.querySelectorAll("[data-lang]")) {
      b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
    }
    $("q").placeholder = t("searchHint");
    const filter = $("state-filter");
    const current = filter.value;
    filter.replaceChildren(el("option", { value: "", text: t("allStates") }),
      ...STATES.map((s) => el("option", { value: s, text: t(s) })));
    filter.value = current;
    setConn(conn);
    if (machines.size) renderAll();
    if (selected) { renderDetailMeta(); drawChart(); }
  }

  function init() {
    for (const b of document.querySelectorAll("[data-lang]")) {
      b.addEventListener("click", () => { lang = b.dataset.lang; applyLang(); });
    }
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      token = $("token").value.trim();
      $("token").value = "";
      $("login-error").textContent = "";
      localStorage.setItem("kartech.token", token);
      connect();
    });
    $("logout").addEventListener("click", () => signOut());
    $("filters").addEventListener("submit", (ev) => ev.preventDefault());
    $("q").addEventListener("input", applyFilter);
    $("state-filter").addEventListener("change", applyFilter);
    $("labs").addEventListener("click", (ev) => {
      const card = ev.target.closest(".card");
      if (card) openDetail(card.dataset.id);
    });
    $("detail-close").addEventListener("click", closeDetail);
    $("chart-signal").addEventListener("change", (ev) => loadChart(selected, ev.target.value));
    document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && selected) closeDetail(); });
    window.addEventListener("resize", () => { if (selected) drawChart(); });
    fetch("api/v1/health").then((r) => r.json()).then((h) => {
      $("site-name").textContent = h.site_name;
      document.title = `${h.site_name} · Kartech Gateway`;
    }).catch(() => {});
    applyLang();
    setInterval(tickTimes, 1000);
    if (token) connect();
    else signOut();
  }

  init();
})();
