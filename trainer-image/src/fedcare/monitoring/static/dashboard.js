// fedcare dashboard: polls the coordinator's /status (FederatedJobStatus JSON) every second
// and draws it with the DOM and inline SVG. No library, no network beyond this origin.
// Every text goes through textContent, never parsed as markup: participant names come from
// certificates and messages from the job, so none of it is trusted markup.
"use strict";

(function () {
  const POLL_MS = 1000;
  const SVG = "http://www.w3.org/2000/svg";
  // Metrics charted after the headline one, in this order (at most three charts).
  const CHART_ORDER = ["auroc", "cindex", "accuracy", "r2", "mae", "loss", "auprc", "mse", "rmse"];
  // Metrics that live in [0, 1]: their axis never goes past either end.
  const UNIT_RANGE = new Set(["auroc", "auprc", "accuracy", "cindex", "brier", "ece"]);
  // The status keeps the last 20 rounds; the x axis spans at most that many.
  const ROUND_WINDOW = 20;
  const LOWER_IS_BETTER = new Set(["loss", "mse", "rmse", "mae", "brier", "ece"]);
  const LABELS = {
    auroc: "AUROC", auprc: "AUPRC", cindex: "C-index", accuracy: "Accuracy", loss: "Loss",
    mse: "MSE", rmse: "RMSE", mae: "MAE", r2: "R\u00b2", brier: "Brier score", ece: "ECE",
  };
  const CHART_W = 420;
  const CHART_H = 190;
  const PAD = { left: 46, right: 14, top: 12, bottom: 28 };

  const meta = (name) => {
    const el = document.querySelector(`meta[name="${name}"]`);
    return el ? el.getAttribute("content") || "" : "";
  };
  const headline = meta("fedcare-headline");
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ small helpers
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function setText(id, text) {
    const node = $(id);
    if (node) node.textContent = text === undefined || text === null ? "" : String(text);
  }
  const label = (key) => LABELS[key] || key;
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const fmtInt = (v) => (isNum(v) ? Math.round(v).toLocaleString("en-US") : "\u2014");
  function fmtMetric(v) {
    if (!isNum(v)) return "\u2014";
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
    return a >= 100 ? v.toFixed(1) : v.toFixed(4);
  }
  function fmtEps(v) {
    if (!isNum(v)) return "\u2014";
    return v >= 100 ? v.toFixed(0) : v.toPrecision(3);
  }
  function fmtDelta(v) {
    if (!isNum(v)) return "";
    return v >= 1e-3 ? String(v) : v.toExponential(0);
  }
  function fmtDuration(seconds) {
    if (!isNum(seconds) || seconds < 0) return "";
    const s = Math.round(seconds);
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${s % 60}s`;
    return `${Math.floor(m / 60)}h ${m % 60}m`;
  }
  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }
  function badge(state) {
    const safe = String(state || "Unknown");
    return el("span", { class: `badge s-${safe.replace(/[^A-Za-z]/g, "")}` }, safe);
  }

  // ------------------------------------------------------------------ charts
  function chartMetrics(rounds) {
    const present = new Set();
    for (const r of rounds) for (const k of Object.keys(r.metrics || {})) present.add(k);
    const keys = [];
    if (headline && present.has(headline)) keys.push(headline);
    for (const k of CHART_ORDER) if (present.has(k) && !keys.includes(k)) keys.push(k);
    if (keys.length === 0 && headline) keys.push(headline);
    return keys.slice(0, 3);
  }

  function niceTicks(lo, hi, count) {
    const span = hi - lo;
    const raw = span / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= count) || raw;
    const first = Math.ceil(lo / step - 1e-9) * step;
    const ticks = [];
    for (let t = first; t <= hi + step * 1e-6; t += step) ticks.push(Number(t.toPrecision(12)));
    return { ticks, step };
  }

  function drawChart(key, rounds, totalRounds) {
    const points = rounds
      .filter((r) => isNum((r.metrics || {})[key]))
      .map((r) => ({ x: r.round, y: r.metrics[key], version: r.modelVersion }));
    const node = svg("svg", {
      viewBox: `0 0 ${CHART_W} ${CHART_H}`,
      role: "img",
      "aria-label": `${label(key)} per round`,
      "data-metric": key,
      "data-points": points.length,
    });
    const iw = CHART_W - PAD.left - PAD.right;
    const ih = CHART_H - PAD.top - PAD.bottom;
    const grid = svg("g", { class: "grid" });
    const axis = svg("g", { class: "axis" });
    node.append(grid, axis);
    if (points.length === 0) {
      node.append(
        svg("text", { class: "placeholder", x: CHART_W / 2, y: CHART_H / 2, "text-anchor": "middle" },
          "Waiting for the first round\u2026"),
      );
      return node;
    }
    let lo = Math.min(...points.map((p) => p.y));
    let hi = Math.max(...points.map((p) => p.y));
    if (hi - lo < 1e-9) {
      const pad = Math.max(Math.abs(hi) * 0.02, 1e-3);
      lo -= pad;
      hi += pad;
    } else {
      const pad = (hi - lo) * 0.12;
      lo -= pad;
      hi += pad;
    }
    if (UNIT_RANGE.has(key)) {
      lo = Math.max(lo, 0);
      hi = Math.min(hi, 1);
    }
    const { ticks } = niceTicks(lo, hi, 4);
    lo = Math.min(lo, ticks[0]);
    hi = Math.max(hi, ticks[ticks.length - 1]);
    // The x axis runs to the job's last round (within the window the status keeps), so the
    // line grows to the right as rounds complete.
    const x0 = points[0].x;
    const lastX = points[points.length - 1].x;
    const x1 = Math.max(lastX, Math.min(totalRounds || lastX, x0 + ROUND_WINDOW - 1), x0 + 1);
    const sx = (x) => PAD.left + ((x - x0) / (x1 - x0)) * iw;
    const sy = (y) => PAD.top + (1 - (y - lo) / (hi - lo)) * ih;
    const digits = Math.max(0, Math.min(4, -Math.floor(Math.log10((ticks[1] - ticks[0]) || 1)) + 1));
    for (const t of ticks) {
      const y = sy(t).toFixed(1);
      grid.append(svg("line", { x1: PAD.left, x2: CHART_W - PAD.right, y1: y, y2: y }));
      axis.append(svg("text", { x: PAD.left - 7, y: Number(y) + 3.5, "text-anchor": "end" },
        Math.abs(t) >= 1e4 ? t.toExponential(1) : t.toFixed(digits)));
    }
    const xStep = Math.max(1, Math.ceil((x1 - x0 + 1) / 10));
    for (let x = x0; x <= x1; x += xStep) {
      axis.append(svg("text", { x: sx(x).toFixed(1), y: CHART_H - 9, "text-anchor": "middle" }, x));
    }
    const line = points.map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join("");
    if (points.length > 1) {
      const base = (PAD.top + ih).toFixed(1);
      const last = points[points.length - 1];
      node.append(svg("path", {
        class: "area",
        d: `${line}L${sx(last.x).toFixed(1)},${base}L${sx(points[0].x).toFixed(1)},${base}Z`,
      }));
    }
    node.append(svg("path", { class: "series", d: line }));
    points.forEach((p, i) => {
      const dot = svg("circle", {
        class: i === points.length - 1 ? "pt last" : "pt",
        cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: 3.6,
        "data-round": p.x,
      });
      dot.append(svg("title", {}, `round ${p.x}: ${label(key)} ${fmtMetric(p.y)} (${p.version || ""})`));
      node.append(dot);
    });
    return node;
  }

  function renderCharts(rounds, totalRounds) {
    const host = $("charts");
    const keys = chartMetrics(rounds);
    if (keys.length === 0) keys.push("");
    clear(host);
    keys.forEach((key, i) => {
      const card = el("div", { class: `chart c${i}`, "data-metric": key });
      const head = el("div", { class: "chart-head" });
      const title = el("div", { class: "chart-title" }, key ? label(key) : "Validation metrics");
      if (key && key === headline) title.append(el("span", { class: "tag" }, "headline"));
      const values = rounds.map((r) => (r.metrics || {})[key]).filter(isNum);
      const now = el("div", { class: "chart-value" }, values.length ? fmtMetric(values[values.length - 1]) : "");
      if (values.length > 1) {
        const d = values[values.length - 1] - values[values.length - 2];
        const better = LOWER_IS_BETTER.has(key) ? d < 0 : d > 0;
        const arrow = d === 0 ? "\u00b10" : `${d > 0 ? "\u25b2 +" : "\u25bc \u2212"}${fmtMetric(Math.abs(d))}`;
        now.append(el("span", { class: `chart-delta ${d === 0 ? "" : better ? "up" : "down"}` }, arrow));
      }
      head.append(title, now);
      card.append(head, drawChart(key, rounds, totalRounds));
      host.append(card);
    });
  }

  // ------------------------------------------------------------------ tables
  function renderParticipants(s) {
    const body = $("participants").tBodies[0];
    clear(body);
    const sites = [...(s.participants || [])].sort((a, b) => String(a.name).localeCompare(String(b.name)));
    for (const p of sites) {
      const tr = el("tr", { "data-name": String(p.name) });
      const name = el("td", { class: "name" }, p.name);
      if (p.message) name.append(el("span", { class: "note" }, p.message));
      const state = el("td");
      state.append(badge(p.state));
      tr.append(
        name,
        state,
        el("td", { class: "num" }, fmtInt(p.samples)),
        el("td", { class: p.lastRound ? "num" : "num dim" }, p.lastRound ? p.lastRound : "\u2014"),
        el("td", { class: isNum(p.epsilonSpent) ? "num" : "num dim" }, fmtEps(p.epsilonSpent)),
      );
      body.append(tr);
    }
    $("participants-empty").classList.toggle("hidden", sites.length > 0);
  }

  function renderVersions(s) {
    const rounds = s.rounds || [];
    const key = chartMetrics(rounds)[0] || headline;
    setText("versions-metric", key ? label(key) : "Metric");
    const body = $("versions").tBodies[0];
    clear(body);
    const latest = s.latestModel;
    for (const r of [...rounds].reverse()) {
      const tr = el("tr", { "data-round": r.round });
      if (latest && latest.version === r.modelVersion) tr.className = "current";
      tr.append(
        el("td", { class: "num" }, r.round),
        el("td", { class: "mono" }, r.modelVersion),
        el("td", { class: "num" }, fmtMetric((r.metrics || {})[key])),
        el("td", { class: "num" }, fmtInt(r.participants)),
        el("td", { class: "num" }, fmtInt(r.samples)),
        el("td", { class: "num" }, isNum(r.durationSeconds) ? r.durationSeconds.toFixed(2) : "\u2014"),
      );
      body.append(tr);
    }
    $("versions-empty").classList.toggle("hidden", rounds.length > 0);
    const dl = $("latest-model");
    clear(dl);
    if (latest) {
      const sha = String(latest.sha256 || "");
      const rows = [
        ["Latest", `${latest.version} (round ${latest.round})`, ""],
        ["sha256", sha ? `${sha.slice(0, 16)}\u2026` : "\u2014", "mono"],
        ["Stored at", latest.uri, "mono"],
      ];
      for (const [k, v, cls] of rows) {
        dl.append(el("dt", {}, k));
        const dd = el("dd", cls ? { class: cls } : {}, v);
        if (k === "sha256" && sha) dd.title = sha;
        dl.append(dd);
      }
    }
  }

  function renderConditions(s) {
    const body = $("conditions").tBodies[0];
    clear(body);
    for (const c of s.conditions || []) {
      const status = el("td");
      status.append(badge(c.status));
      body.append(el("tr", {}));
      body.lastChild.append(
        el("td", { class: "name" }, c.type),
        status,
        el("td", {}, c.reason),
        el("td", {}, c.message || ""),
        el("td", { class: "dim" }, c.lastTransitionTime || ""),
      );
    }
    $("conditions").closest(".card").classList.toggle("hidden", !(s.conditions || []).length);
  }

  // ------------------------------------------------------------------ header and tiles
  function renderSummary(s) {
    document.body.dataset.phase = s.phase || "";
    const phase = $("phase");
    phase.className = `badge s-${String(s.phase || "Unknown").replace(/[^A-Za-z]/g, "")}`;
    phase.textContent = s.phase === "WaitingForParticipants" ? "Waiting for sites" : s.phase || "Unknown";
    setText("message", s.message || "");

    const total = s.totalRounds || 0;
    const done = (s.rounds || []).length ? s.rounds[s.rounds.length - 1].round : 0;
    setText("round", total ? `${s.currentRound || 0} / ${total}` : "\u2014");
    const fill = total ? Math.min(100, (100 * done) / total) : 0;
    $("round-bar").style.width = `${fill.toFixed(1)}%`;

    const sites = s.participants || [];
    setText("ready", `${s.readyParticipants || 0} / ${sites.length || s.minParticipants || 0}`);
    setText("ready-sub", s.minParticipants ? `${s.minParticipants} needed to start` : "");

    const latest = s.latestModel;
    setText("latest", latest ? latest.version : "\u2014");
    setText("latest-sub", latest && latest.sha256 ? `sha256 ${String(latest.sha256).slice(0, 12)}` : "none stored yet");

    if (isNum(s.epsilonSpent)) {
      setText("epsilon", `\u03b5 ${fmtEps(s.epsilonSpent)}`);
      setText("epsilon-sub", isNum(s.delta) ? `at \u03b4 = ${fmtDelta(s.delta)}` : "");
    } else {
      setText("epsilon", "\u2014");
      setText("epsilon-sub", "no differential privacy");
    }
    setText("rejected", fmtInt(s.rejectedUpdates || 0));
    setText("rejected-sub", "refused by the coordinator");
    renderElapsed(s);
  }

  // Ticks with every poll, not only when the status changes.
  function renderElapsed(s) {
    const start = s.startTime ? Date.parse(s.startTime) : NaN;
    if (!Number.isFinite(start)) {
      setText("elapsed", "");
      return;
    }
    const end = s.completionTime ? Date.parse(s.completionTime) : Date.now();
    const took = fmtDuration(Math.max(0, end - start) / 1000);
    setText("elapsed", s.completionTime ? `took ${took}` : `running for ${took}`);
  }

  function render(s) {
    renderSummary(s);
    renderCharts(s.rounds || [], s.totalRounds || 0);
    renderParticipants(s);
    renderVersions(s);
    renderConditions(s);
  }

  // ------------------------------------------------------------------ polling
  let lastText = "";
  let lastStatus = null;
  function setLive(ok) {
    const dot = $("live");
    dot.className = ok ? "live on" : "live stale";
    const time = new Date().toLocaleTimeString("en-GB");
    if (ok) {
      setText("updated", `Live \u00b7 updated ${time} \u00b7 refreshes every second`);
    } else if (lastStatus && (lastStatus.phase === "Succeeded" || lastStatus.phase === "Failed")) {
      dot.className = "live";
      setText("updated", `The job has ended and its coordinator stopped serving; this is its final status.`);
    } else {
      setText("updated", `Coordinator unreachable at ${time}; showing the last status received. Retrying\u2026`);
    }
  }

  async function poll() {
    try {
      const response = await fetch("status", { cache: "no-store", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const text = await response.text();
      if (text !== lastText) {
        const status = JSON.parse(text);
        lastText = text;
        lastStatus = status;
        render(status);
      }
      renderElapsed(lastStatus);
      setLive(true);
    } catch (err) {
      setLive(false);
    } finally {
      window.setTimeout(poll, POLL_MS);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    renderCharts([], 0);
    poll();
  });
})();
