// The login page (/login) and the wall-screen pairing page (/pair): one page, two forms. Signs in through the
// API (POST /api/v1/login or /api/v1/kiosks/session), which sets the session cookie; then goes to `next` (a path
// of this gateway only) or the board. A pairing link carries its code in the fragment (#K7QM3XPA), which no
// server ever logs; it is removed from the address bar at once.
"use strict";

(() => {
  const I18N = {
    ru: {
      loginTitle: "Вход", name: "Имя пользователя", password: "Пароль", signIn: "Войти",
      toPair: "Настенный экран? Подключить по коду", pairTitle: "Подключение экрана",
      pairHint: "Введите код, который показал администратор.", code: "Код", pair: "Подключить",
      toLogin: "Вход для сотрудников",
      wrong: "Неверное имя пользователя или пароль.", badCode: "Код неверный, уже использован или истёк.",
      locked: "Слишком много неудачных попыток. Повторите через {s} с.",
      unavailable: "Учётные записи на этом шлюзе недоступны.", offline: "Нет связи со шлюзом.",
      empty: "Заполните все поля.", refused: "Запрос отклонён: {detail}",
    },
    en: {
      loginTitle: "Sign in", name: "User name", password: "Password", signIn: "Sign in",
      toPair: "A wall screen? Pair it with a code", pairTitle: "Pair a wall screen",
      pairHint: "Enter the code an administrator gave you.", code: "Code", pair: "Pair",
      toLogin: "Staff sign-in",
      wrong: "Wrong user name or password.", badCode: "The code is wrong, used or expired.",
      locked: "Too many failed attempts. Try again in {s} s.",
      unavailable: "Accounts are not available on this gateway.", offline: "The gateway cannot be reached.",
      empty: "Fill in every field.", refused: "Refused: {detail}",
    },
    kk: {
      loginTitle: "Кіру", name: "Пайдаланушы аты", password: "Құпиясөз", signIn: "Кіру",
      toPair: "Қабырға экраны ма? Кодпен қосыңыз", pairTitle: "Қабырға экранын қосу",
      pairHint: "Әкімші берген кодты енгізіңіз.", code: "Код", pair: "Қосу",
      toLogin: "Қызметкерлерге кіру",
      wrong: "Пайдаланушы аты немесе құпиясөз қате.", badCode: "Код қате, пайдаланылған немесе мерзімі өткен.",
      locked: "Сәтсіз әрекеттер тым көп. {s} секундтан кейін қайталаңыз.",
      unavailable: "Бұл шлюзде есептік жазбалар қолжетімсіз.", offline: "Шлюзбен байланыс жоқ.",
      empty: "Барлық өрістерді толтырыңыз.", refused: "Сұрау қабылданбады: {detail}",
    },
  };
  const stored = localStorage.getItem("kartech.lang");
  let lang = Object.hasOwn(I18N, stored || "") ? stored : "ru";
  const t = (key, vars = {}) => I18N[lang][key].replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ""));

  // where to go after signing in: a path of this gateway, never another site ("//evil", "/\evil")
  const next = (() => {
    const wanted = new URLSearchParams(location.search).get("next") || "/";
    return /^\/(?![/\\])/.test(wanted) ? wanted : "/";
  })();

  function applyLang() {
    document.documentElement.lang = lang;
    localStorage.setItem("kartech.lang", lang);
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const b of document.querySelectorAll("[data-lang]")) b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
    document.title = `${t(pairing ? "pairTitle" : "loginTitle")} — Kartech Gateway`;
  }

  async function submit(form, url, body, errorEl, messages) {
    const button = form.querySelector("button[type=submit]");
    errorEl.textContent = "";
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      const r = await fetch(url, {
        method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (r.ok) {
        // the page's own place (#/m/x1c-01) never reaches the server, so it rides along on this page's address
        location.replace(!pairing && location.hash && !next.includes("#") ? next + location.hash : next);
        return;
      }
      let detail = "";
      try { detail = (await r.json()).detail || ""; } catch { /* not JSON */ }
      if (r.status === 401) errorEl.textContent = t(messages.unauthorized);
      else if (r.status === 429) errorEl.textContent = t("locked", { s: r.headers.get("Retry-After") || "60" });
      else if (r.status === 503) errorEl.textContent = t("unavailable");
      else errorEl.textContent = t("refused", { detail: typeof detail === "string" ? detail : r.status });
    } catch {
      errorEl.textContent = t("offline");
    } finally {
      button.disabled = false;
      form.removeAttribute("aria-busy");
    }
    messages.focus.focus();
  }

  const pairing = location.pathname === "/pair";
  const loginForm = document.getElementById("login-form");
  const pairForm = document.getElementById("pair-form");

  loginForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const name = loginForm.elements.username.value.trim();
    const password = loginForm.elements.password.value;
    const error = document.getElementById("login-error");
    if (!name || !password) { error.textContent = t("empty"); return; }
    submit(loginForm, "/api/v1/login", { name, password }, error,
      { unauthorized: "wrong", focus: loginForm.elements.password });
  });

  pairForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const code = pairForm.elements.code.value.replace(/[\s-]/g, "").toUpperCase();
    const error = document.getElementById("pair-error");
    if (!code) { error.textContent = t("empty"); return; }
    submit(pairForm, "/api/v1/kiosks/session", { code }, error,
      { unauthorized: "badCode", focus: pairForm.elements.code });
  });

  for (const b of document.querySelectorAll("[data-lang]")) {
    b.addEventListener("click", () => { lang = b.dataset.lang; applyLang(); });
  }
  for (const a of document.querySelectorAll(".switch a")) {  // keep where to go after signing in
    if (next !== "/") a.search = `?next=${encodeURIComponent(next)}`;
  }

  document.getElementById(pairing ? "pair" : "login").hidden = false;
  applyLang();
  if (pairing && location.hash.length > 1) {
    const code = decodeURIComponent(location.hash.slice(1));
    history.replaceState(null, "", location.pathname + location.search);
    pairForm.elements.code.value = code;
    pairForm.requestSubmit();
  } else {
    (pairing ? pairForm.elements.code : loginForm.elements.username).focus();
  }
})();
