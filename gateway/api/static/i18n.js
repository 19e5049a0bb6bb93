// Words, numbers and times of the page in Russian, Kazakh and English; times always in the site's time zone.
export const LANGS = ["ru", "kk", "en"];
// Kazakh numbers follow Russian conventions (1 234,5; CLDR agrees), and browsers' Kazakh data varies (Chromium
// formats kk-KZ as 1,234.5): Kazakh pages format with ru-RU; month names come from our own table
const LOCALES = { ru: "ru-RU", kk: "ru-RU", en: "en-GB" };
const MONTHS = {
  ru: ["январь", "февраль", "март", "апрель", "май", "июнь", "июль", "август", "сентябрь", "октябрь", "ноябрь", "декабрь"],
  kk: ["қаңтар", "ақпан", "наурыз", "сәуір", "мамыр", "маусым", "шілде", "тамыз", "қыркүйек", "қазан", "қараша", "желтоқсан"],
  en: ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"],
};

const UI = {
  ru: {
    title: "Оборудование", board: "Оборудование", maintenance: "Обслуживание", billing: "Расчёты",
    wall: "Экран", signIn: "Войти", signOut: "Выйти", token: "Токен доступа", loginTitle: "Вход",
    badToken: "Неверный токен", signedOut: "Не подключено", connecting: "Подключение…", live: "Онлайн",
    reconnecting: "Переподключение…", offline: "Нет связи", idle: "Простой", running: "Работает",
    paused: "Пауза", error: "Ошибка", maintenanceState: "Обслуживание", all: "Все", lab: "Лаборатория",
    kind: "Тип", state: "Состояние", filters: "Фильтры", summary: "Сводка", shown: "{n} из {total}",
    alerts: "Тревоги", noAlerts: "Открытых тревог нет", critical: "Критическая", high: "Высокая",
    medium: "Средняя", low: "Низкая", ack: "Квитировать", shelve: "Отложить", note: "Примечание",
    confirm: "Подтвердить", cancel: "Отмена", minutes: "{n} мин", hours: "{n} ч",
    active_unacknowledged: "активна", acknowledged: "квитирована", cleared_unacknowledged: "снята, не квитирована",
    shelved: "отложена", suppressed: "подавлена", raised: "с {t}", job: "Задание", file: "Файл",
    progress: "Выполнено", layer: "Слой {x} из {y}", elapsed: "Прошло", finish: "Окончание", since: "с {t}",
    seen: "данные {t}", never: "нет данных", agoS: "{n} с назад", agoM: "{n} мин назад", agoH: "{n} ч назад",
    agoD: "{n} дн. назад", yes: "да", no: "нет", stale: "устарело", bad: "сбой", uncertain: "неточно",
    back: "Назад к оборудованию", values: "Текущие значения", charts: "Графики", lastHours: "Последние {n} ч",
    timeline: "Состояния", jobs: "Задания", noJobs: "Заданий нет", noData: "Нет данных", loading: "Загрузка…",
    mStatus: "Обслуживание", mHistory: "Выполненное обслуживание", task: "Работа", status: "Статус",
    used: "Наработка", lastDone: "Выполнено", done: "Выполнено", markDone: "Отметить выполненным",
    ok: "В норме", due_soon: "Скоро", due: "Просрочено", by: "кто", noTasks: "Работ по обслуживанию нет",
    usageMonth: "Использование за месяц", runningTime: "Время работы", entries: "Записей", machine: "Оборудование",
    partner: "Партнёр", statements: "Выписки", usage: "Использование", month: "Месяц", download: "Скачать",
    noUsage: "Использования нет", start: "Начало", duration: "Длительность", noAccess: "Нет доступа",
    running_h: "часы работы", material_m: "материал, м", days: "дни", cycles: "циклы", sound: "Звук",
    page: "Страница {n} из {total}", zone: "Время площадки", result: "Итог", completed: "завершено",
    failed: "ошибка", cancelled: "отменено", done_ok: "Сохранено", nobody: "не выполнялось", due_n: "{n} просрочено",
    due_soon_n: "{n} скоро", project: "Проект", unattributed: "не распределено", language: "Язык",
    welcome: "Қош келдіңіз! Добро пожаловать", open: "Открыть", close: "Закрыть", hoursShort: "{n} ч",
    problems: "Сначала проблемы",
    account: "Учётная запись", roleAdmin: "Администратор", roleTechnician: "Техник", rolePartner: "Партнёр",
    changePassword: "Смена пароля", currentPassword: "Текущий пароль", newPassword: "Новый пароль",
    repeatPassword: "Новый пароль ещё раз", passwordHint: "Не короче 10 символов. Другие ваши сеансы будут завершены.",
    passwordsDiffer: "Новые пароли не совпадают", wrongPassword: "Текущий пароль неверен",
    weakPassword: "Новый пароль не подходит: нужно от 10 до 1024 символов",
    tooManyTries: "Слишком много неудачных попыток, попробуйте позже", passwordChanged: "Пароль изменён",
    apiTokens: "Токены доступа", tokensHint: "Для скриптов и программ: токен действует с правами вашей учётной записи.",
    tokenLabel: "Название", validFor: "Срок", daysN: "{n} дн.", makeToken: "Создать токен",
    tokenOnce: "Скопируйте токен сейчас: он показан один раз и нигде не хранится.", copy: "Копировать",
    copied: "Скопировано", created: "Создан", expires: "Действует до", lastUsed: "Использован",
    notUsed: "не использовался", tokenActive: "действует", tokenExpired: "истёк", tokenRevoked: "отозван",
    revoke: "Отозвать", noTokens: "Токенов нет",
  },
  kk: {
    title: "Жабдық", board: "Жабдық", maintenance: "Қызмет көрсету", billing: "Есеп айырысу", wall: "Экран",
    signIn: "Кіру", signOut: "Шығу", token: "Қол жеткізу токені", loginTitle: "Кіру", badToken: "Токен жарамсыз",
    signedOut: "Қосылмаған", connecting: "Қосылуда…", live: "Онлайн", reconnecting: "Қайта қосылуда…",
    offline: "Байланыс жоқ", idle: "Бос тұр", running: "Жұмыс істеп тұр", paused: "Кідіртілді", error: "Қате",
    maintenanceState: "Қызмет көрсету", all: "Барлығы", lab: "Зертхана", kind: "Түрі", state: "Күйі",
    filters: "Сүзгілер", summary: "Жиынтық", shown: "{n} / {total}", alerts: "Дабылдар",
    noAlerts: "Ашық дабылдар жоқ", critical: "Сыни", high: "Жоғары", medium: "Орташа", low: "Төмен",
    ack: "Растау", shelve: "Кейінге қалдыру", note: "Ескертпе", confirm: "Растау", cancel: "Болдырмау",
    minutes: "{n} мин", hours: "{n} сағ", active_unacknowledged: "белсенді", acknowledged: "расталған",
    cleared_unacknowledged: "жойылды, расталмаған", shelved: "кейінге қалдырылған", suppressed: "басылған",
    raised: "{t} бастап", job: "Тапсырма", file: "Файл", progress: "Орындалды", layer: "{y} қабаттың {x}-і",
    elapsed: "Өтті", finish: "Аяқталуы", since: "{t} бастап", seen: "дерек {t}", never: "дерек жоқ",
    agoS: "{n} с бұрын", agoM: "{n} мин бұрын", agoH: "{n} сағ бұрын", agoD: "{n} күн бұрын", yes: "иә",
    no: "жоқ", stale: "ескірген", bad: "ақау", uncertain: "күмәнді", back: "Жабдыққа оралу",
    values: "Ағымдағы мәндер", charts: "Графиктер", lastHours: "Соңғы {n} сағ", timeline: "Күйлер",
    jobs: "Тапсырмалар", noJobs: "Тапсырмалар жоқ", noData: "Дерек жоқ", loading: "Жүктелуде…",
    mStatus: "Қызмет көрсету", mHistory: "Орындалған қызмет көрсету", task: "Жұмыс", status: "Мәртебесі",
    used: "Жұмыс көлемі", lastDone: "Орындалды", done: "Орындалды", markDone: "Орындалды деп белгілеу",
    ok: "Қалыпты", due_soon: "Жақында", due: "Мерзімі өтті", by: "кім", noTasks: "Қызмет көрсету жұмыстары жоқ",
    usageMonth: "Айдағы пайдалану", runningTime: "Жұмыс уақыты", entries: "Жазбалар", machine: "Жабдық",
    partner: "Серіктес", statements: "Үзінділер", usage: "Пайдалану", month: "Ай", download: "Жүктеп алу",
    noUsage: "Пайдалану жоқ", start: "Басы", duration: "Ұзақтығы", noAccess: "Қол жеткізу жоқ",
    running_h: "жұмыс сағаттары", material_m: "материал, м", days: "күндер", cycles: "циклдер", sound: "Дыбыс",
    page: "{total} беттің {n}-і", zone: "Алаң уақыты", result: "Нәтиже", completed: "аяқталды", failed: "қате",
    cancelled: "тоқтатылды", done_ok: "Сақталды", nobody: "орындалмаған", due_n: "{n} мерзімі өтті",
    due_soon_n: "{n} жақында", project: "Жоба", unattributed: "бөлінбеген", language: "Тіл",
    welcome: "Қош келдіңіз!", open: "Ашу", close: "Жабу", hoursShort: "{n} сағ", problems: "Алдымен ақаулар",
    account: "Тіркелгі", roleAdmin: "Әкімші", roleTechnician: "Техник", rolePartner: "Серіктес",
    changePassword: "Құпиясөзді өзгерту", currentPassword: "Қазіргі құпиясөз", newPassword: "Жаңа құпиясөз",
    repeatPassword: "Жаңа құпиясөз тағы бір рет",
    passwordHint: "Кемінде 10 таңба. Басқа сеанстарыңыз аяқталады.",
    passwordsDiffer: "Жаңа құпиясөздер сәйкес келмейді", wrongPassword: "Қазіргі құпиясөз қате",
    weakPassword: "Жаңа құпиясөз жарамайды: 10-нан 1024-ке дейін таңба қажет",
    tooManyTries: "Сәтсіз әрекеттер тым көп, кейінірек қайталаңыз", passwordChanged: "Құпиясөз өзгертілді",
    apiTokens: "Қол жеткізу токендері",
    tokensHint: "Скрипттер мен бағдарламалар үшін: токен сіздің тіркелгіңіздің құқықтарымен жұмыс істейді.",
    tokenLabel: "Атауы", validFor: "Мерзімі", daysN: "{n} күн", makeToken: "Токен жасау",
    tokenOnce: "Токенді қазір көшіріп алыңыз: ол бір рет қана көрсетіледі және еш жерде сақталмайды.",
    copy: "Көшіру", copied: "Көшірілді", created: "Жасалды", expires: "Мерзімі аяқталады",
    lastUsed: "Пайдаланылды", notUsed: "пайдаланылмаған", tokenActive: "белсенді", tokenExpired: "мерзімі өтті",
    tokenRevoked: "кері қайтарылды", revoke: "Кері қайтару", noTokens: "Токендер жоқ",
  },
  en: {
    title: "Machines", board: "Machines", maintenance: "Maintenance", billing: "Billing", wall: "Wall screen",
    signIn: "Sign in", signOut: "Sign out", token: "Access token", loginTitle: "Sign in", badToken: "Invalid token",
    signedOut: "Not connected", connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…",
    offline: "Offline", idle: "Idle", running: "Running", paused: "Paused", error: "Error",
    maintenanceState: "Maintenance", all: "All", lab: "Lab", kind: "Kind", state: "State", filters: "Filters",
    summary: "Summary", shown: "{n} of {total}", alerts: "Alerts", noAlerts: "No open alerts",
    critical: "Critical", high: "High", medium: "Medium", low: "Low", ack: "Acknowledge", shelve: "Shelve",
    note: "Note", confirm: "Confirm", cancel: "Cancel", minutes: "{n} min", hours: "{n} h",
    active_unacknowledged: "active", acknowledged: "acknowledged", cleared_unacknowledged: "cleared, not acknowledged",
    shelved: "shelved", suppressed: "suppressed", raised: "since {t}", job: "Job", file: "File",
    progress: "Progress", layer: "Layer {x} of {y}", elapsed: "Elapsed", finish: "Finish", since: "since {t}",
    seen: "seen {t}", never: "no data yet", agoS: "{n} s ago", agoM: "{n} min ago", agoH: "{n} h ago",
    agoD: "{n} d ago", yes: "yes", no: "no", stale: "stale", bad: "bad", uncertain: "uncertain",
    back: "Back to machines", values: "Live values", charts: "Charts", lastHours: "Last {n} h",
    timeline: "States", jobs: "Jobs", noJobs: "No jobs", noData: "No data", loading: "Loading…",
    mStatus: "Maintenance", mHistory: "Maintenance done", task: "Task", status: "Status", used: "Use",
    lastDone: "Last done", done: "Done", markDone: "Mark done", ok: "OK", due_soon: "Due soon", due: "Overdue",
    by: "by", noTasks: "No maintenance tasks", usageMonth: "Usage this month", runningTime: "Running time",
    entries: "Entries", machine: "Machine", partner: "Partner", statements: "Statements", usage: "Usage",
    month: "Month", download: "Download", noUsage: "No usage", start: "Start", duration: "Duration",
    noAccess: "No access", running_h: "running hours", material_m: "material, m", days: "days", cycles: "cycles",
    sound: "Sound", page: "Page {n} of {total}", zone: "Site time", result: "Result", completed: "completed",
    failed: "failed", cancelled: "cancelled", done_ok: "Saved", nobody: "never", due_n: "{n} overdue",
    due_soon_n: "{n} due soon", project: "Project", unattributed: "unattributed", language: "Language",
    welcome: "Қош келдіңіз! Welcome", open: "Open", close: "Close", hoursShort: "{n} h", problems: "Problems first",
    account: "Account", roleAdmin: "Administrator", roleTechnician: "Technician", rolePartner: "Partner",
    changePassword: "Change password", currentPassword: "Current password", newPassword: "New password",
    repeatPassword: "New password again", passwordHint: "At least 10 characters. Your other sessions will be signed out.",
    passwordsDiffer: "The new passwords do not match", wrongPassword: "The current password is wrong",
    weakPassword: "The new password does not fit: 10 to 1024 characters",
    tooManyTries: "Too many failed attempts; try again later", passwordChanged: "Password changed",
    apiTokens: "API tokens", tokensHint: "For scripts and programs: a token acts with your account's rights.",
    tokenLabel: "Name", validFor: "Valid for", daysN: "{n} days", makeToken: "Create token",
    tokenOnce: "Copy the token now: it is shown this once and stored nowhere.", copy: "Copy", copied: "Copied",
    created: "Created", expires: "Expires", lastUsed: "Last used", notUsed: "never", tokenActive: "active",
    tokenExpired: "expired", tokenRevoked: "revoked", revoke: "Revoke", noTokens: "No tokens",
  },
};

// alert messages of the built-in rules; {machine} and {plan} are names, {value} comes formatted with its unit,
// {code} is the alert's value as the machine sent it (a printer's HMS codes)
const ALERTS = {
  "printer-hms": {
    ru: "{machine}: принтер сообщает о неисправности {code}",
    kk: "{machine}: принтер ақау туралы хабарлайды {code}",
    en: "{machine}: the printer reports {code}" },
  "printer-filament-low": {
    ru: "{machine}: на катушке осталось {value} пластика — подготовьте следующую катушку.",
    kk: "{machine}: катушкада {value} пластик қалды — келесі катушканы дайындаңыз.",
    en: "{machine}: {value} of filament left on the loaded spool — have the next spool ready." },
  "printer-thermal-runaway": {
    ru: "{machine}: сопло {value}, выше заданной — тепловой разгон? Немедленно проверьте принтер.",
    kk: "{machine}: саптама {value}, белгіленгеннен жоғары — жылу бақылаудан шықты ма? Принтерді дереу тексеріңіз.",
    en: "{machine}: nozzle at {value}, above its target — thermal runaway? Check the printer at once." },
  "furnace-overshoot": {
    ru: "{machine}: {value}, перегрев выше уставки.", kk: "{machine}: {value}, белгіленген мәннен асып кетті.",
    en: "{machine}: {value}, overshoot above the setpoint." },
  "furnace-door-open-heating": {
    ru: "{machine}: дверь открыта во время нагрева.", kk: "{machine}: қыздыру кезінде есік ашық.",
    en: "{machine}: door open while heating." },
  "machine-error": { ru: "{machine}: ошибка оборудования.", kk: "{machine}: жабдық қатесі.",
    en: "{machine} reports an error." },
  "machine-error-unattended": { ru: "{machine}: ошибка без внимания уже давно.",
    kk: "{machine}: қате ұзақ уақыт бойы назарсыз.", en: "{machine} has been in error for long." },
  "machine-offline": { ru: "{machine} не передаёт данные.", kk: "{machine} дерек жібермейді.",
    en: "{machine} sends no data." },
  maintenance: { ru: "{machine}: обслуживание «{plan}» — {status}.", kk: "{machine}: «{plan}» қызмет көрсетуі — {status}.",
    en: "{machine}: maintenance '{plan}' — {status}." },
};
const ALERT_UNITS = { "printer-thermal-runaway": "degC", "furnace-overshoot": "degC", "printer-filament-low": "%" };

let lang = LANGS.includes(localStorage.getItem("kartech.lang")) ? localStorage.getItem("kartech.lang") : "ru";
let zone = "UTC";
let vocab = { kinds: {}, signals: {}, units: {}, labs: {}, values: {}, name_signals: [] };

export const getLang = () => lang;
export function setLang(value) {
  lang = LANGS.includes(value) ? value : "ru";
  localStorage.setItem("kartech.lang", lang);
  document.documentElement.lang = lang;
}
export const setZone = (value) => { zone = value || "UTC"; };
export const getZone = () => zone;
export const setVocab = (value) => { vocab = value; };
export const kindSpec = (kind) => vocab.kinds[kind] || { tile: [], chart: [] };

export const t = (key, vars = {}) =>
  String(UI[lang][key] ?? UI.en[key] ?? key).replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ""));
const pick = (table, key) => (table[key] ? table[key][lang] ?? table[key].en : null);
export const kindName = (kind) => vocab.kinds[kind]?.name?.[lang] ?? kind;
export const signalName = (s) => pick(vocab.signals, s) ?? s;
export const labName = (lab) => (lab ? pick(vocab.labs, lab) ?? lab : "—");
export const unitName = (u) => (u ? pick(vocab.units, u) ?? u : "");
export const isNameSignal = (s) => vocab.name_signals.includes(s);
export const stateName = (s) => t(s === "maintenance" ? "maintenanceState" : s);

// a text value the machine sent: a known word, or a word with a number ("hold-2"), translated; else as sent
export function textValue(text) {
  const whole = pick(vocab.values, text);
  if (whole) return whole;
  const m = /^([A-Za-z-]+?)[-_ ]?(\d+)$/.exec(text);
  const word = m && pick(vocab.values, m[1]);
  return word ? `${word} ${m[2]}` : text;
}

export function number(value, digits) {
  const abs = Math.abs(value);
  const d = digits ?? (Number.isInteger(value) ? 0 : abs >= 100 ? 1 : abs >= 1 ? 2 : 3);
  return new Intl.NumberFormat(LOCALES[lang], { maximumFractionDigits: d }).format(value);
}

export function value(v, unit) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "boolean") return v ? t("yes") : t("no");
  if (typeof v !== "number") return textValue(String(v));
  const u = unitName(unit);
  return u ? (u === "%" ? number(v) + "\u00a0%" : `${number(v)}\u00a0${u}`) : number(v);
}

// seconds as "2 ч 05 мин" / "45 мин" / "30 с"
export function duration(secs) {
  const s = Math.max(0, Math.round(secs));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const [hu, mu, su] = { ru: ["ч", "мин", "с"], kk: ["сағ", "мин", "с"], en: ["h", "min", "s"] }[lang];
  if (h) return `${h}\u00a0${hu} ${String(m).padStart(2, "0")}\u00a0${mu}`;
  if (m) return `${m}\u00a0${mu}`;
  return `${s}\u00a0${su}`;
}

const fmt = (opts) => new Intl.DateTimeFormat(LOCALES[lang], { timeZone: zone, ...opts });
const dayKey = (d) => fmt({ year: "numeric", month: "2-digit", day: "2-digit" }).format(d);

// hours and minutes in the site's zone (a chart's time axis)
export const timeOfDay = (d) => fmt({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(d);

// a clock time in the site's zone; the date too when it is not today there
export function clock(when) {
  if (when === null || when === undefined || when === "") return "—";
  const d = when instanceof Date ? when : new Date(when);
  if (Number.isNaN(d.getTime())) return "—";
  const hm = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  return dayKey(d) === dayKey(new Date()) ? fmt(hm).format(d) : dateTime(d);
}
// "30.11 14:05" in the site's zone (numeric: no month names that a browser might lack for Kazakh)
export function dateTime(when) {
  const d = when instanceof Date ? when : new Date(when);
  if (Number.isNaN(d.getTime())) return "—";
  const p = Object.fromEntries(new Intl.DateTimeFormat("en-GB", { timeZone: zone, day: "2-digit", month: "2-digit",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).formatToParts(d).map((x) => [x.type, x.value]));
  return `${p.day}.${p.month} ${p.hour}:${p.minute}`;
}
// "30.11.2026": a moment (Date or ISO time) as a date in the site's zone, or a calendar day given as "2026-11-30"
export function date(when) {
  if (typeof when === "string" && /^\d{4}-\d\d-\d\d$/.test(when)) return when.split("-").reverse().join(".");
  const d = when instanceof Date ? when : new Date(when);
  if (Number.isNaN(d.getTime())) return "—";
  const p = Object.fromEntries(new Intl.DateTimeFormat("en-GB", { timeZone: zone, day: "2-digit", month: "2-digit",
    year: "numeric" }).formatToParts(d).map((x) => [x.type, x.value]));
  return `${p.day}.${p.month}.${p.year}`;
}
export function monthName(ym) {
  const word = MONTHS[lang][Number(ym.slice(5, 7)) - 1];
  return `${word[0].toUpperCase()}${word.slice(1)} ${ym.slice(0, 4)}`;
}

// YYYY-MM of a moment in the site's zone, and n months before
export function siteMonth(d = new Date(), back = 0) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric",
    month: "2-digit" }).formatToParts(d).map((p) => [p.type, p.value]));
  const n = Number(parts.year) * 12 + Number(parts.month) - 1 - back;
  return `${Math.floor(n / 12)}-${String((n % 12) + 1).padStart(2, "0")}`;
}

// the site's offset from UTC now, as "UTC+5" / "UTC+5:30"
export function zoneOffset(d = new Date()) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", { timeZone: zone, hourCycle: "h23",
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" })
    .formatToParts(d).map((p) => [p.type, p.value]));
  const local = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute);
  const mins = Math.round((local - Math.floor(d.getTime() / 60000) * 60000) / 60000);
  const sign = mins < 0 ? "−" : "+";
  const a = Math.abs(mins);
  return `UTC${sign}${Math.floor(a / 60)}${a % 60 ? ":" + String(a % 60).padStart(2, "0") : ""}`;
}

export function ago(iso) {
  if (!iso) return t("never");
  const secs = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (secs < 60) return t("agoS", { n: secs });
  if (secs < 3600) return t("agoM", { n: Math.floor(secs / 60) });
  if (secs < 86400) return t("agoH", { n: Math.floor(secs / 3600) });
  return t("agoD", { n: Math.floor(secs / 86400) });
}

// an alert's message as [text, {name}] parts in the page's language: built-in rules from our own templates,
// the site's own rules from the gateway's Russian or English text
export function alertMessage(alert, machineName, planName) {
  const rule = alert.rule.startsWith("maintenance:") ? "maintenance" : alert.rule;
  const tpl = ALERTS[rule]?.[lang];
  if (!tpl) return [alert.message?.[lang === "en" ? "en" : "ru"] ?? alert.rule];
  const vars = { value: typeof alert.value === "number" ? value(alert.value, ALERT_UNITS[rule]) : "",
    status: t(alert.value >= 100 && rule === "maintenance" ? "due" : "due_soon").toLowerCase() };
  const out = [];
  for (const piece of tpl.split(/(\{\w+\})/)) {
    const key = piece.slice(1, -1);
    if (piece === "{machine}") out.push({ name: machineName });
    else if (piece === "{plan}") out.push({ name: planName || alert.rule.slice("maintenance:".length) });
    else if (piece === "{code}") out.push({ name: String(alert.value ?? "") }); // a code, shown as sent
    else if (piece.startsWith("{") && key in vars) out.push(vars[key]);
    else out.push(piece);
  }
  return out;
}
