// The operators' dashboard: polls /api/v1/admin/stats every second and
// /api/v1/admin/miners every two, and draws plain SVG (no library, no build step).
"use strict";

const KEY = "taskledger-admin-key";
const STATS_EVERY_MS = 1000;
const MINERS_EVERY_MS = 2000;
const STATUSES = ["PENDING", "DISTRIBUTED", "DONE", "APPROVED", "FAILED", "CANCELLED"];
const COLORS = {
  PENDING: "var(--pending)", DISTRIBUTED: "var(--distributed)", DONE: "var(--done)",
  APPROVED: "var(--approved)", FAILED: "var(--failed)", CANCELLED: "var(--cancelled)",
  created: "var(--created)", approved: "var(--approved)", failed: "var(--failed)",
};
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function svg(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function el(name, text, className) {
  const node = document.createElement(name);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function fmt(value, unit) {
  if (value === null || value === undefined) return "—";
  if (unit === "ms") return value >= 1000 ? (value / 1000).toFixed(2) + " s" : value.toFixed(0) + " ms";
  return String(value);
}

function drawStatuses(counts) {
  const chart = $("status-chart");
  chart.replaceChildren();
  const max = Math.max(1, ...STATUSES.map((s) => counts[s] || 0));
  STATUSES.forEach((status, row) => {
    const count = counts[status] || 0;
    const y = row * 21 + 2;
    chart.append(svg("text", { x: 0, y: y + 13 }, status));
    chart.append(svg("rect", { x: 120, y, height: 16, rx: 2, fill: COLORS[status],
                               width: Math.max(1, (count / max) * 960) }));
    chart.append(svg("text", { x: 1100, y: y + 13, id: "count-" + status, "data-count": count },
                     String(count)));
  });
}

function drawThroughput(throughput) {
  const chart = $("throughput-chart");
  chart.replaceChildren();
  const rows = throughput.per_minute;
  const series = ["created", "approved", "failed"];
  const max = Math.max(1, ...rows.flatMap((r) => series.map((s) => r[s])));
  const left = 40, width = 550, top = 10, height = 160;
  const x = (i) => left + (rows.length > 1 ? (i / (rows.length - 1)) * width : 0);
  const y = (v) => top + height - (v / max) * height;
  chart.append(svg("line", { x1: left, y1: top + height, x2: left + width, y2: top + height, class: "axis" }));
  chart.append(svg("text", { x: 0, y: top + 10 }, String(max)));
  chart.append(svg("text", { x: 0, y: top + height }, "0"));
  chart.append(svg("text", { x: left, y: top + height + 20 }, "−15 min"));
  chart.append(svg("text", { x: left + width - 30, y: top + height + 20 }, "now"));
  for (const name of series) {
    const points = rows.map((r, i) => `${x(i).toFixed(1)},${y(r[name]).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", { points, fill: "none", stroke: COLORS[name], "stroke-width": 2 }));
  }
  $("approved-rate").textContent = `(${throughput.approved_per_second} approved/s)`;
}

function drawLatency(latency) {
  const chart = $("latency-chart");
  chart.replaceChildren();
  const groups = [["intake → first response", latency.first_response],
                  ["intake → APPROVED", latency.approved]];
  const max = Math.max(1, ...groups.flatMap(([, s]) => [s.p50 || 0, s.p99 || 0]));
  groups.forEach(([label, summary], g) => {
    const y = g * 90 + 5;
    chart.append(svg("text", { x: 0, y: y + 12 }, `${label} (${summary.count} tasks)`));
    [["p50", summary.p50], ["p99", summary.p99]].forEach(([name, value], i) => {
      const barY = y + 22 + i * 26;
      chart.append(svg("text", { x: 0, y: barY + 14 }, name));
      chart.append(svg("rect", { x: 40, y: barY, height: 18, rx: 2,
                                 fill: i ? "var(--pending)" : "var(--created)",
                                 width: Math.max(1, ((value || 0) / max) * 440) }));
      chart.append(svg("text", { x: 490, y: barY + 14, id: `latency-${g}-${name}` }, fmt(value, "ms")));
    });
  });
}

function drawFacts(stats) {
  const processors = stats.processors || {};
  $("lag").textContent = processors.projection_lag_events === undefined
    ? (processors.status || "—") : `${processors.projection_lag_events} events`;
  const restarts = processors.restarts || {};
  const total = Object.values(restarts).reduce((a, b) => a + b, 0);
  $("restarts").textContent = total ? JSON.stringify(restarts) : "none";
  $("miners-healthy").textContent = `${stats.miners.healthy} of ${stats.miners.known}`;
  const anchors = stats.anchors || {};
  const latest = anchors.latest
    ? ` — ${anchors.checkpoints} checkpoints signed, latest at position ${anchors.latest.position}, ${anchors.latest.at}`
    : "";
  $("anchors").textContent = anchors.configured
    ? `${(anchors.sinks || []).join(", ")}: ${anchors.status}${latest}`
    : `none configured${latest}`;
  const list = $("failures");
  list.replaceChildren();
  if (!stats.failures.length) list.append(el("li", "none in the last 15 minutes", "muted"));
  for (const failure of stats.failures) {
    const item = el("li");
    item.append(el("code", `${failure.failed_at || ""} ${failure.type} ${failure.task_id.slice(0, 8)} `));
    item.append(document.createTextNode(failure.reason));
    list.append(item);
  }
}

function drawMiners(miners) {
  const body = $("miners").tBodies[0];
  body.replaceChildren();
  for (const m of miners) {
    const row = document.createElement("tr");
    row.dataset.hotkey = m.hotkey;
    const hotkey = el("td", m.hotkey.slice(0, 10) + "…");
    hotkey.title = m.hotkey;
    row.append(hotkey);
    const health = el("td");
    health.append(el("span", null, "dot " + (m.healthy ? "up" : "down")));
    row.append(health);
    row.append(el("td", m.capabilities.join(", ")));
    for (const field of ["in_flight", "assigned", "responded", "failed", "timed_out"]) {
      const cell = el("td", String(m[field]));
      cell.dataset.field = field;
      row.append(cell);
    }
    const success = el("td");
    const bar = el("span", null, "bar");
    bar.style.width = `${Math.round(m.success_rate * 60)}px`;
    success.append(bar, document.createTextNode(` ${(m.success_rate * 100).toFixed(0)}%`));
    row.append(success);
    row.append(el("td", fmt(m.latency_ms_avg, "ms")));
    row.append(el("td", m.reward_avg.toFixed(3)));
    const weight = el("td");
    const wbar = el("span", null, "bar");
    wbar.style.width = `${Math.round(m.weight * 60)}px`;
    weight.append(wbar, document.createTextNode(` ${m.weight.toFixed(3)}`));
    row.append(weight);
    body.append(row);
  }
}

async function fetchJson(path) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY) } });
  if (response.status === 401 || response.status === 403) {
    const body = await response.json().catch(() => ({}));
    throw Object.assign(new Error((body.error && body.error.message) || "refused"), { refused: true });
  }
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

let timers = [];

function signOut(message) {
  timers.forEach(clearInterval);
  timers = [];
  sessionStorage.removeItem(KEY);
  $("board").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("state").textContent = "not signed in";
  $("state").className = "state";
}

function failed(error) {
  if (error.refused) return signOut(error.message);
  $("state").textContent = "stale: " + error.message;
  $("state").className = "state stale";
}

async function refreshStats() {
  try {
    const stats = await fetchJson("/api/v1/admin/stats");
    drawStatuses(stats.tasks_by_status);
    drawThroughput(stats.throughput);
    drawLatency(stats.latency_ms);
    drawFacts(stats);
    $("state").textContent = "live";
    $("state").className = "state live";
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    $("board").hidden = false;
    $("login").hidden = true;
    $("signout").hidden = false;
  } catch (error) { failed(error); }
}

async function refreshMiners() {
  try { drawMiners((await fetchJson("/api/v1/admin/miners")).miners); } catch (error) { failed(error); }
}

function start() {
  refreshStats();
  refreshMiners();
  timers = [setInterval(refreshStats, STATS_EVERY_MS), setInterval(refreshMiners, MINERS_EVERY_MS)];
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("admin-key").value.trim());
  $("admin-key").value = "";
  start();
});
$("signout").addEventListener("click", () => signOut());

if (sessionStorage.getItem(KEY)) start(); else signOut();
