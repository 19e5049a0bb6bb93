// Small SVG charts of our own: a line chart with a time axis in the site's zone, and a state timeline.
import { clock, number, t, stateName, timeOfDay } from "./i18n.js";

const NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

// time ticks every 5, 10, 15, 30 min or 1, 2, 3, 6 h: about `want` of them across [t0, t1] (ms)
function timeTicks(t0, t1, want = 6) {
  const steps = [5, 10, 15, 30, 60, 120, 180, 360, 720].map((m) => m * 60000);
  const step = steps.find((s) => (t1 - t0) / s <= want) ?? steps[steps.length - 1];
  const ticks = [];
  for (let x = Math.ceil(t0 / step) * step; x <= t1; x += step) ticks.push(x);
  return ticks;
}

// points: [{x: ms, y: number}], in time order; window: [t0, t1] in ms
export function lineChart(points, { window, label, unitText = "", width = 560, height = 200 }) {
  const pad = { l: 56, r: 12, t: 12, b: 28 };
  const [t0, t1] = window;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
    "aria-label": label });
  const ys = points.map((p) => p.y);
  let y0 = ys.length ? Math.min(...ys) : 0;
  let y1 = ys.length ? Math.max(...ys) : 1;
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const margin = (y1 - y0) * 0.08;
  y0 -= margin; y1 += margin;
  const px = (x) => pad.l + ((x - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const py = (y) => pad.t + (1 - (y - y0) / (y1 - y0)) * (height - pad.t - pad.b);
  const axis = svg("g", { class: "axis" });
  for (const tick of timeTicks(t0, t1)) {
    axis.append(svg("line", { x1: px(tick), x2: px(tick), y1: pad.t, y2: height - pad.b, class: "grid" }));
    axis.append(svg("text", { x: px(tick), y: height - 8, "text-anchor": "middle", class: "tick time" },
      timeOfDay(new Date(tick))));
  }
  for (const y of [y0 + margin, (y0 + y1) / 2, y1 - margin]) {
    axis.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: py(y), y2: py(y), class: "grid" }));
    axis.append(svg("text", { x: pad.l - 6, y: py(y) + 4, "text-anchor": "end", class: "tick" },
      number(y, Math.abs(y1 - y0) < 10 ? 1 : 0)));
  }
  axis.append(svg("text", { x: 4, y: pad.t + 2, class: "tick unit" }, unitText));
  root.append(axis);
  if (points.length) {
    const d = points.map((p, i) => `${i ? "L" : "M"}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join("");
    root.append(svg("path", { d, class: "line" }));
  } else {
    root.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, t("noData")));
  }
  return root;
}

// spans: [{from: ms, to: ms, state}] across window [t0, t1]
export function timeline(spans, { window, width = 560, height = 54 }) {
  const [t0, t1] = window;
  const pad = { l: 8, r: 8 };
  const px = (x) => pad.l + ((Math.max(t0, Math.min(t1, x)) - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "timeline", role: "img",
    "aria-label": t("timeline") });
  for (const s of spans) {
    const rect = svg("rect", { x: px(s.from), y: 4, width: Math.max(1, px(s.to) - px(s.from)), height: 24,
      class: `span s-${s.state}` });
    rect.append(svg("title", {}, `${stateName(s.state)}: ${clock(new Date(s.from))}–${clock(new Date(s.to))}`));
    root.append(rect);
  }
  for (const tick of timeTicks(t0, t1)) {
    root.append(svg("text", { x: px(tick), y: height - 6, "text-anchor": "middle", class: "tick time" },
      timeOfDay(new Date(tick))));
  }
  return root;
}
